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

# The namespaces, subnet and addresses of the shaped network (benches/lib/net.sh), distinct
# from those of benches/suite.sh so that both can run at once.
NET_SERVER_NS=lpbench-srv
NET_CLIENT_NS=lpbench-cli
NET_SUBNET=10.203.0.0/24
NET_SERVER_ADDRESS=10.203.0.1
NET_CLIENT_ADDRESS=10.203.0.2
# The shaped network is benches/lib/net.sh's 100mbit-20ms profile: tc tbf at 100 Mbit/s and
# a proxy delay of 10 ms each way.
shaped_profile=100mbit-20ms
delay_ms=10
# shellcheck source=benches/lib/net.sh
source "$repo/benches/lib/net.sh"
# shellcheck source=benches/lib/registry.sh
source "$repo/benches/lib/registry.sh"
# shellcheck source=benches/lib/fullpull.sh
source "$repo/benches/lib/fullpull.sh"

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
export TMPDIR=$work
results=$work/results.jsonl
mounts=()

log() { echo "cold_start.sh: $*" >&2; }

# Stops what the script started: lazy mounts, processes, namespaces and the route, then the
# work directory. Runs on every exit, also after a failure.
cleanup() {
    set +e
    local point
    for point in "${mounts[@]}"; do
        "$lazypull" unmount --state-dir "${point%/rootfs}/state" "$point" >/dev/null 2>&1
    done
    registry_stop
    # Whatever is still mounted below the work directory, deepest first.
    grep -F " $work/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r point; do
        umount -l "$point"
    done
    net_down
    if [ "$keep_work" = 1 ]; then
        log "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# The current network: loopback or shaped.
network=loopback

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

# ---------------------------------------------------------------- registry

registry_address=

# Starts the current network's registry with the three images, and on the shaped network the
# delaying proxy in front of it. Sets registry_address to the address clients use.
start_registry() {
    registry_start "$work/registry-$network"
    local layout
    for layout in python:latest python-esgz:latest python-esgz-prioritized:latest; do
        registry_push "oci:$work/images/${layout%%:*}:latest" "$layout"
    done
    net_start_proxy "$REGISTRY_PORT" "$work/registry-$network/proxy.log"
    registry_address=$NET_REGISTRY
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
    offset=$(registry_log_offset)
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
    offset=$(registry_log_offset)
    started=$EPOCHREALTIME
    net_client "$lazypull" mount "${insecure[@]}" "${mount_args[@]}" --state-dir "$dir/state" --cache-dir "$dir/cache" \
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
unpack_layout "$work/images/python" latest "$reference/rootfs"
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
    if [ "$network" = shaped ]; then
        net_up "$shaped_profile"
    else
        net_up loopback
    fi
    start_registry
    wait_for_quiet
    loads_during+="$(cut -d' ' -f1-3 /proc/loadavg) when the $network runs started, "
    for n in $(seq 1 "$runs"); do
        run_full "$n"
        run_lazy lazy python-esgz:latest "$n"
        run_lazy lazy-optimized python-esgz-prioritized:latest "$n"
    done
    # Stop this network's registry and proxy before the next network starts.
    registry_stop
    net_down
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
