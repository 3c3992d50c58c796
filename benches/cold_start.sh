#!/usr/bin/env bash
# Cold start through `lazypull mount` against a full pull: the time from the start of the pull
# (or mount) to the exit of a python workload that prints 42, run with chroot in the python
# test image. Three variants:
#   - full: the plain image; manifest and blobs fetched with curl (blobs in parallel, each
#     checked against its digest while it downloads), layers unpacked in order with tar and
#     unpigz, whiteouts applied, then the workload;
#   - lazy: the image converted by `lazypull convert`, mounted with `lazypull mount`, then the
#     workload;
#   - lazy-optimized: the image converted again with `--prioritize` and the paths the workload
#     opened (recorded once with `lazypull mount --record-trace` from a local OCI layout), so
#     the mount prefetches them before it reports ready.
# Each run starts with a fresh directory, a fresh lazypull cache and state directory, and an
# empty page cache (`sync; echo 3 > /proc/sys/vm/drop_caches`). Rounds interleave the variants.
#
# Two networks, each with its own docker-registry:
#   - loopback: the registry on 127.0.0.1;
#   - shaped: the registry in a network namespace of its own, reached from a second
#     namespace over a veth pair with `tc tbf` at 100 Mbit/s on both ends, through
#     benches/rtt_proxy.py, which delays every chunk by 10 ms each way (RTT about 20 ms).
#     Every client (curl, lazypull mount) runs in the client namespace, started with nsenter.
#     While the namespaces exist, a route in the root namespace makes their subnet
#     unreachable, so a client started in the wrong namespace fails at once.
#
# Prints a Markdown report to stdout; progress goes to stderr.
#
# Usage: sudo benches/cold_start.sh [RUNS]          (default 3 runs per variant and network)
# Environment:
#   LAZYPULL       the binary (default: target/release/lazypull; build it with
#                  `cargo build --release -p lazypull`)
#   SOURCE_LAYOUT  OCI layout of the plain image, tag `latest` (default: the test image built
#                  by scripts/build-test-image.sh)
#   NETWORKS       which networks to measure, in order (default: "loopback shaped")
#   MOUNT_ARGS     extra options for every timed `lazypull mount`, e.g. "--readahead-kib 0"
#   KEEP_WORK      1 keeps the work directory (converted images, trace, logs) for inspection
#   QUIET_LOAD     1-minute load average to wait for before each network's runs (default 2)
#   QUIET_WAIT     longest wait for it, in seconds (default 300)
# Needs root, docker-registry, skopeo, curl, jq, unpigz, strace, python3, GNU tar, and for the
# shaped network ip, tc and nsenter. Sends nothing outside 127.0.0.1 and the namespaces it
# creates.

set -euo pipefail

runs=${1:-3}
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${LAZYPULL_CACHE_DIR:-/var/cache/lazypull}
lazypull=${LAZYPULL:-$repo/target/release/lazypull}
source_layout=${SOURCE_LAYOUT:-$cache/images/python}
networks=${NETWORKS:-"loopback shaped"}
keep_work=${KEEP_WORK:-0}
read -r -a mount_args <<<"${MOUNT_ARGS:-}"
quiet_load=${QUIET_LOAD:-2}
quiet_wait=${QUIET_WAIT:-300}
workload='import json, sqlite3, ssl, email.mime.text, http.client, asyncio; c = sqlite3.connect(":memory:"); c.execute("create table t(x)"); c.execute("insert into t values (42)"); print(c.execute("select x from t").fetchone()[0])'
expected_output=42

server_ns=lpbench-srv
client_ns=lpbench-cli
subnet=10.203.0.0/24
server_address=10.203.0.1
client_address=10.203.0.2
proxy_port=5000
delay_ms=10

needed=(docker-registry skopeo curl jq unpigz strace python3 tar sha256sum)
[[ " $networks " == *" shaped "* ]] && needed+=(ip tc nsenter)
for program in "${needed[@]}"; do
    command -v "$program" >/dev/null || { echo "missing $program; run scripts/setup.sh" >&2; exit 1; }
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a positive integer, got '$runs'" >&2; exit 2; }
[[ $quiet_load =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "QUIET_LOAD must be a number, got '$quiet_load'" >&2; exit 2; }
[[ $quiet_wait =~ ^[0-9]+$ ]] || { echo "QUIET_WAIT must be a whole number of seconds, got '$quiet_wait'" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root: sudo $0" >&2; exit 1; }
[ -x "$lazypull" ] || { echo "missing $lazypull; run cargo build --release -p lazypull" >&2; exit 1; }
[ -f "$source_layout/index.json" ] || { echo "missing $source_layout; run scripts/build-test-image.sh" >&2; exit 1; }
for network in $networks; do
    [[ $network == loopback || $network == shaped ]] || { echo "unknown network '$network' (loopback, shaped)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/lazypull-cold-start-XXXXXX)
results=$work/results.jsonl
pids=()
mounts=()
namespaces_created=0

log() { echo "cold_start.sh: $*" >&2; }

# Stops what the script started: lazy mounts, processes, namespaces and the route, then the
# work directory. Runs on every exit, also after a failure.
cleanup() {
    set +e
    local point pid
    for point in "${mounts[@]}"; do
        "$lazypull" unmount --state-dir "${point%/rootfs}/state" "$point" >/dev/null 2>&1
    done
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    done
    # Whatever is still mounted below the work directory, deepest first.
    grep -F " $work/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r point; do
        umount -l "$point"
    done
    delete_namespaces
    if [ "$keep_work" = 1 ]; then
        log "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

wait_for() {
    local what=$1 tries=300
    shift
    until "$@" >/dev/null 2>&1; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || { echo "timed out waiting for $what" >&2; return 1; }
        sleep 0.1
    done
}

# The current network decides where clients and the registry run.
network=loopback

in_client() {
    if [ "$network" = shaped ]; then
        # nsenter, not `ip netns exec`: the latter remounts /sys and keeps FUSE mounts out of
        # the root mount namespace.
        nsenter --net="/run/netns/$client_ns" "$@"
    else
        "$@"
    fi
}

in_server() {
    if [ "$network" = shaped ]; then
        nsenter --net="/run/netns/$server_ns" "$@"
    else
        "$@"
    fi
}

create_namespaces() {
    ip route replace unreachable "$subnet"
    namespaces_created=1
    ip netns add "$server_ns"
    ip netns add "$client_ns"
    ip link add lpbench-s0 netns "$server_ns" type veth peer name lpbench-c0 netns "$client_ns"
    ip -n "$server_ns" addr add "$server_address/24" dev lpbench-s0
    ip -n "$client_ns" addr add "$client_address/24" dev lpbench-c0
    local pair ns device
    for pair in "$server_ns:lpbench-s0" "$client_ns:lpbench-c0"; do
        ns=${pair%%:*}
        device=${pair#*:}
        ip -n "$ns" link set lo up
        ip -n "$ns" link set "$device" up
        nsenter --net="/run/netns/$ns" tc qdisc replace dev "$device" root tbf rate 100mbit burst 64kb limit 4mb
    done
}

delete_namespaces() {
    [ "$namespaces_created" = 1 ] || return 0
    ip netns delete "$server_ns" 2>/dev/null
    ip netns delete "$client_ns" 2>/dev/null
    ip route del unreachable "$subnet" 2>/dev/null
    namespaces_created=0
}

seconds_since() {
    python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$EPOCHREALTIME"
}

drop_page_cache() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

# Waits up to $quiet_wait seconds for the 1-minute load average to drop below $quiet_load, so
# the conversions this script just ran, or other work on the machine, overlap the measurements
# as little as possible. Measures anyway after the wait, and the report prints the load.
wait_for_quiet() {
    local waited=0 load
    while :; do
        load=$(cut -d' ' -f1 /proc/loadavg)
        awk -v load="$load" -v limit="$quiet_load" 'BEGIN { exit !(load < limit) }' && return 0
        if [ "$waited" -ge "$quiet_wait" ]; then
            log "load average still $load after $waited s; measuring anyway"
            return 0
        fi
        sleep 10
        waited=$((waited + 10))
    done
}

# Prints the current time in milliseconds since the Unix epoch.
now_ms() {
    local micros=${EPOCHREALTIME/./}
    echo $((micros / 1000))
}

# Writes the counters of the lazy mount in $1 to file $3, from a stats file the mount wrote
# after time $2 (milliseconds since the epoch). `lazypull status` prints that file, and the
# mount rewrites it only every second, so an older copy can miss the last reads.
fresh_status() {
    local dir=$1 after_ms=$2 output=$3 tries=50
    while :; do
        "$lazypull" status --state-dir "$dir/state" "$dir/rootfs" >"$output"
        [ "$(jq .updated_unix_ms "$output")" -gt "$after_ms" ] && return 0
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || { echo "the stats of the mount in $dir were not rewritten after $after_ms" >&2; return 1; }
        sleep 0.1
    done
}

# ---------------------------------------------------------------- full pull helpers

# Unpacks the gzip layer $1 over the root $2 as a runtime does: entries replace what lower
# layers had, `.wh.NAME` deletes NAME from the lower layers, `.wh..wh..opq` empties its
# directory of lower-layer entries, and the markers themselves are removed.
unpack_layer() {
    local blob=$1 root=$2 listing
    listing=$(mktemp "$work/listing-XXXXXX")
    tar --extract --verbose --file "$blob" --directory "$root" --use-compress-program=unpigz \
        --same-permissions --same-owner --numeric-owner --quoting-style=literal >"$listing"
    python3 - "$root" "$listing" <<'EOF'
import os, shutil, sys
root, listing = sys.argv[1], sys.argv[2]
names = [line.rstrip("\n").rstrip("/") for line in open(listing, encoding="utf-8", errors="surrogateescape")]
names = [os.path.normpath(name[2:] if name.startswith("./") else name) for name in names if name]

def remove(path):
    if os.path.islink(path) or not os.path.isdir(path):
        if os.path.lexists(path):
            os.unlink(path)
    else:
        shutil.rmtree(path)

in_layer = set(names)
for name in names:
    if name.startswith("..") or name.startswith("/"):
        sys.exit(f"layer entry escapes the root: {name}")
    parent, base = os.path.split(name)
    if base == ".wh..wh..opq":
        directory = os.path.join(root, parent)
        for child in os.listdir(directory):
            if os.path.join(parent, child) not in in_layer:
                remove(os.path.join(directory, child))
        remove(os.path.join(root, name))
    elif base.startswith(".wh."):
        remove(os.path.join(root, parent, base[len(".wh."):]))
        remove(os.path.join(root, name))
EOF
    rm -f "$listing"
}

# Fetches image $2 (REPOSITORY:TAG) from registry $1 into directory $3 (manifest, config and
# layers, blobs in parallel, each digest checked as it streams in) and unpacks it to $3/rootfs.
full_pull() {
    local registry=$1 image=$2 dir=$3
    local repository=${image%%:*} tag=${image#*:}
    mkdir -p "$dir/blobs" "$dir/rootfs"
    in_client curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -o "$dir/manifest.json" "http://$registry/v2/$repository/manifests/$tag"
    local digest blob_pids=()
    for digest in $(jq -r '.config.digest, .layers[].digest' "$dir/manifest.json"); do
        (
            set -o pipefail
            in_client curl -fsS "http://$registry/v2/$repository/blobs/$digest" |
                tee "$dir/blobs/${digest#sha256:}" | sha256sum | awk '{print $1}' >"$dir/blobs/${digest#sha256:}.sum"
        ) &
        blob_pids+=($!)
    done
    local pid
    for pid in "${blob_pids[@]}"; do
        wait "$pid"
    done
    for digest in $(jq -r '.config.digest, .layers[].digest' "$dir/manifest.json"); do
        [ "$(cat "$dir/blobs/${digest#sha256:}.sum")" = "${digest#sha256:}" ] ||
            { echo "blob $digest does not match its digest" >&2; return 1; }
    done
    for digest in $(jq -r '.layers[].digest' "$dir/manifest.json"); do
        unpack_layer "$dir/blobs/${digest#sha256:}" "$dir/rootfs"
    done
}

# ---------------------------------------------------------------- registry

registry_log=
registry_address=

start_registry() {
    local port
    port=$(in_server python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    local dir=$work/registry-$network
    mkdir -p "$dir"
    # The access log (one combined-format line per request, with status and bytes) is how
    # the script counts what the registry served.
    cat >"$dir/config.yml" <<CONFIG
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/storage
http:
  addr: 127.0.0.1:$port
  secret: benchmark-only
CONFIG
    registry_log=$dir/log
    # Background jobs start the program itself, not the in_server function, so that $! is
    # the process to stop (a function would run in a subshell of its own).
    local launch=()
    [ "$network" = shaped ] && launch=(nsenter --net="/run/netns/$server_ns")
    "${launch[@]}" docker-registry serve "$dir/config.yml" >"$registry_log" 2>&1 &
    pids+=($!)
    wait_for registry in_server curl -sf "http://127.0.0.1:$port/v2/"
    local layout
    for layout in python:latest python-esgz:latest python-esgz-prioritized:latest; do
        in_server skopeo --insecure-policy copy --quiet --preserve-digests --dest-tls-verify=false \
            "oci:$work/images/${layout%%:*}:latest" "docker://127.0.0.1:$port/$layout"
    done
    registry_address=127.0.0.1:$port
    if [ "$network" = shaped ]; then
        "${launch[@]}" python3 "$repo/benches/rtt_proxy.py" "$server_address" "$proxy_port" 127.0.0.1 "$port" "$delay_ms" \
            >"$dir/proxy.log" 2>&1 &
        pids+=($!)
        registry_address=$server_address:$proxy_port
        wait_for "the delaying proxy" in_client curl -sf "http://$registry_address/v2/"
    fi
}

# Prints "REQUESTS BYTES": the GET and HEAD requests the registry logged after byte offset $1
# of its log, and the body bytes it sent for them.
registry_served_since() {
    sleep 0.2
    tail -c +"$(($1 + 1))" "$registry_log" | python3 -c '
import re, sys
requests = sent = 0
for line in sys.stdin:
    match = re.search(r"\"(GET|HEAD) /v2/\S+ HTTP/[0-9.]+\" \d{3} (\d+)", line)
    if match:
        requests += 1
        sent += int(match.group(2))
print(requests, sent)'
}

log_size() {
    stat -c %s "$registry_log"
}

# ---------------------------------------------------------------- one run

# Appends one JSON line to the results: network, variant, run, seconds and counters.
record() {
    python3 - "$@" >>"$results" <<'EOF'
import json, sys
network, variant, run, seconds, registry_requests, registry_bytes, status = sys.argv[1:8]
row = {"network": network, "variant": variant, "run": int(run), "seconds": float(seconds),
       "registry_requests": int(registry_requests), "registry_bytes": int(registry_bytes)}
if status:
    total = json.load(open(status))["total"]
    row["lazypull_requests"] = total["http_requests"]
    row["lazypull_bytes"] = total["bytes_fetched"]
    row["prefetch_bytes"] = total["prefetch_bytes"]
print(json.dumps(row))
EOF
}

check_output() {
    local variant=$1 output=$2
    [ "$output" = "$expected_output" ] || { echo "$network $variant: the workload printed '$output', expected $expected_output" >&2; exit 1; }
}

run_full() {
    local n=$1
    local dir=$work/run-$network-full-$n
    drop_page_cache
    local offset started output seconds
    offset=$(log_size)
    started=$EPOCHREALTIME
    full_pull "$registry_address" python:latest "$dir"
    output=$(chroot "$dir/rootfs" python3 -c "$workload")
    seconds=$(seconds_since "$started")
    check_output full "$output"
    record "$network" full "$n" "$seconds" $(registry_served_since "$offset") ""
    log "$network full run $n: $seconds s"
    rm -rf "$dir"
}

# Runs one cold lazy start of image $2 (REPOSITORY:TAG) as variant $1.
run_lazy() {
    local variant=$1 image=$2 n=$3
    local dir=$work/run-$network-$variant-$n
    mkdir -p "$dir/rootfs"
    local insecure=()
    [ "$network" = shaped ] && insecure=(--insecure)
    drop_page_cache
    local offset started output seconds
    offset=$(log_size)
    started=$EPOCHREALTIME
    in_client "$lazypull" mount "${insecure[@]}" "${mount_args[@]}" --state-dir "$dir/state" --cache-dir "$dir/cache" \
        "$registry_address/$image" "$dir/rootfs" 2>"$dir/mount.log"
    mounts+=("$dir/rootfs")
    output=$(chroot "$dir/rootfs" python3 -c "$workload")
    seconds=$(seconds_since "$started")
    check_output "$variant" "$output"
    fresh_status "$dir" "$(now_ms)" "$dir/status.json"
    record "$network" "$variant" "$n" "$seconds" $(registry_served_since "$offset") "$dir/status.json"
    "$lazypull" unmount --state-dir "$dir/state" "$dir/rootfs" >/dev/null
    unset 'mounts[-1]'
    log "$network $variant run $n: $seconds s"
    rm -rf "$dir"
}

# ---------------------------------------------------------------- images and the trace

load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$work/images"
log "copying $source_layout"
skopeo --insecure-policy copy --quiet --preserve-digests "oci:$source_layout:latest" "oci:$work/images/python:latest"
log "converting to eStargz"
"$lazypull" convert --progress none "oci:$work/images/python:latest" "oci:$work/images/python-esgz:latest" >&2

log "recording the workload's trace from a lazy mount of the local layout"
trace_dir=$work/trace
mkdir -p "$trace_dir/rootfs"
"$lazypull" mount --state-dir "$trace_dir/state" --cache-dir "$trace_dir/cache" \
    --record-trace "$work/trace.txt" "oci:$work/images/python-esgz:latest" "$trace_dir/rootfs"
mounts+=("$trace_dir/rootfs")
check_output trace "$(chroot "$trace_dir/rootfs" python3 -c "$workload")"
"$lazypull" unmount --state-dir "$trace_dir/state" "$trace_dir/rootfs" >/dev/null
unset 'mounts[-1]'
log "converting again with --prioritize ($(wc -l <"$work/trace.txt") paths)"
"$lazypull" convert --progress none --prioritize "$work/trace.txt" \
    "oci:$work/images/python:latest" "oci:$work/images/python-esgz-prioritized:latest" >&2

# What the workload reads, measured once on a full root filesystem unpacked from the layout.
log "measuring what the workload reads"
reference=$work/reference
mkdir -p "$reference/rootfs"
manifest_digest=$(jq -r '.manifests[0].digest' "$work/images/python/index.json")
for digest in $(jq -r '.layers[].digest' "$work/images/python/blobs/sha256/${manifest_digest#sha256:}"); do
    unpack_layer "$work/images/python/blobs/sha256/${digest#sha256:}" "$reference/rootfs"
done
strace -f -qq -e trace=read,pread64,readv,preadv,preadv2 -e signal=none -o "$reference/strace.txt" \
    chroot "$reference/rootfs" python3 -c "$workload" >/dev/null
python3 - "$reference/rootfs" "$work/trace.txt" "$reference/strace.txt" >"$work/reads" <<'EOF'
import os, re, stat, sys
root, trace, strace = sys.argv[1:4]
files = size = 0
for line in open(trace):
    path = line.strip()
    if not path or path.startswith("#"):
        continue
    try:
        info = os.lstat(os.path.join(root, path))
    except FileNotFoundError:
        continue
    if stat.S_ISREG(info.st_mode):
        files += 1
        size += info.st_size
calls = returned = 0
for line in open(strace):
    match = re.search(r"\b(read|pread64|readv|preadv|preadv2)\(.*\)\s+=\s+(\d+)$", line)
    if match:
        calls += 1
        returned += int(match.group(2))
print(files, size, calls, returned)
EOF
read -r opened_files opened_bytes read_calls read_bytes <"$work/reads"
rm -rf "$reference"

image_bytes() {
    local layout=$1 digest
    digest=$(jq -r '.manifests[0].digest' "$layout/index.json")
    jq '[.layers[].size] | add' "$layout/blobs/sha256/${digest#sha256:}"
}
plain_bytes=$(image_bytes "$work/images/python")
esgz_bytes=$(image_bytes "$work/images/python-esgz")
prioritized_bytes=$(image_bytes "$work/images/python-esgz-prioritized")

# ---------------------------------------------------------------- the runs

loads_during=

for network in $networks; do
    log "network $network"
    [ "$network" = shaped ] && create_namespaces
    start_registry
    wait_for_quiet
    loads_during+="$(cut -d' ' -f1-3 /proc/loadavg) when the $network runs started, "
    for n in $(seq 1 "$runs"); do
        run_full "$n"
        run_lazy lazy python-esgz:latest "$n"
        run_lazy lazy-optimized python-esgz-prioritized:latest "$n"
    done
    # Stop this network's registry and proxy before the next network starts.
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    done
    pids=()
    delete_namespaces
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report

export runs networks delay_ms load_at_start loads_during load_after opened_files opened_bytes read_calls read_bytes \
    plain_bytes esgz_bytes prioritized_bytes
export cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
export cores=$(nproc) kernel=$(uname -r)
export memory=$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
python3 - "$results" <<'EOF'
import json, os, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
env = os.environ
MB = 1e6
names = {
    "full": "full pull: curl + unpigz/tar + whiteouts, then chroot",
    "lazy": "lazy: `lazypull mount`, then chroot",
    "lazy-optimized": "lazy, prioritized: converted with `--prioritize`, prefetched at mount",
}
links = {"loopback": "Loopback (registry on 127.0.0.1)",
         "shaped": f"Shaped link: 100 Mbit/s (tbf), RTT 20 ms (proxy delay {env['delay_ms']} ms each way)"}

def mb(name):
    return f"{int(env[name]) / MB:.1f}"

command = f"sudo benches/cold_start.sh {env['runs']}"
if env.get("MOUNT_ARGS"):
    command = f"sudo MOUNT_ARGS='{env['MOUNT_ARGS']}' benches/cold_start.sh {env['runs']}"
print(f"Command: `{command}`.")
print()
print(f"Machine: {env['cores']} cores ({env['cpu']}), {env['memory']} RAM, Linux {env['kernel']}. "
      f"Load average (1, 5, 15 min): {env['load_at_start']} when the script started, "
      f"{env['loads_during']}{env['load_after']} at the end.")
print()
print(f"Images: plain {mb('plain_bytes')} MB of gzip layers, eStargz {mb('esgz_bytes')} MB, "
      f"eStargz with prioritized files {mb('prioritized_bytes')} MB. "
      f"The workload opens {env['opened_files']} regular files totalling {mb('opened_bytes')} MB "
      "(paths from the recorded trace, sizes on the unpacked root filesystem). "
      f"Its {env['read_calls']} read calls return {mb('read_bytes')} MB "
      "(strace; pages of shared libraries that are mapped, not read, are not counted).")
print()
for network in env["networks"].split():
    print(f"{links[network]}, median of {env['runs']} runs:")
    print()
    print("| variant | runs (s) | median (s) | registry requests | registry MB served | lazypull requests | lazypull MB fetched |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    medians = {}
    for variant in ["full", "lazy", "lazy-optimized"]:
        mine = [r for r in rows if r["network"] == network and r["variant"] == variant]
        if not mine:
            continue
        seconds = [r["seconds"] for r in mine]
        medians[variant] = statistics.median(seconds)
        requests = statistics.median(r["registry_requests"] for r in mine)
        served = statistics.median(r["registry_bytes"] for r in mine) / MB
        if "lazypull_requests" in mine[0]:
            lazy_requests = f'{statistics.median(r["lazypull_requests"] for r in mine):.0f}'
            lazy_bytes = f'{statistics.median(r["lazypull_bytes"] for r in mine) / MB:.1f}'
        else:
            lazy_requests = lazy_bytes = "-"
        listed = " ".join(f"{s:.2f}" for s in seconds)
        print(f"| {names[variant]} | {listed} | {medians[variant]:.2f} | {requests:.0f} | {served:.1f} "
              f"| {lazy_requests} | {lazy_bytes} |")
    print()
    if "full" in medians:
        ratios = [f"{v} / full = {medians[v] / medians['full']:.2f}" for v in ["lazy", "lazy-optimized"] if v in medians]
        print(f"Ratios of medians, {network}: " + ", ".join(ratios) + ".")
        print()
EOF
