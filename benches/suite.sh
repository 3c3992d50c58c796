#!/usr/bin/env bash
# Cold-start benchmark suite. For each image and network profile, side by side in one run, it
# measures the time from the start of a pull (or mount) until the image's workload is ready.
# It also records the bytes and requests the registry served and the peak RSS and CPU time of
# the lazypull serving process.
#
# Modes, run in rounds that interleave them:
#   full                 every blob fetched with curl (in parallel, digests checked), layers
#                        decompressed and unpacked with tar, whiteouts applied, then the workload
#                        chrooted in the result;
#   lazy                 `lazypull mount` of the `lazypull convert` output, workload chrooted;
#   lazy-optimized       the same with an image whose files the workload reads come first
#                        (`lazypull optimize` when the binary has it, otherwise a trace from
#                        `lazypull mount --record-trace` and `lazypull convert --prioritize`);
#   warm                 the workload on a local unpacked copy whose pages are cached (the floor);
#   ctr-remote-estargz   `ctr-remote image convert --estargz --oci` output mounted by lazypull,
#                        when ctr-remote and containerd are installed;
#   lazy-zstd, lazy-optimized-zstd
#                        the lazy modes with `--compression zstd` images, when COMPRESSIONS
#                        contains zstd.
# Every cold run starts with an empty page cache (`echo 3 > /proc/sys/vm/drop_caches`), a fresh
# lazypull cache and state directory, and a fresh root file system for full pulls.
#
# Network profiles: loopback (registry on 127.0.0.1), 1gbit-2ms and 100mbit-20ms. A shaped
# profile puts the registry in a network namespace of its own behind a veth pair (see
# benches/lib/net.sh: netem when the kernel has it, otherwise tc tbf plus a delaying proxy).
# Before measuring, each profile is checked with a timed 1-byte range request (RTT) and a
# timed 100 MB download (rate); a profile more than 30% off its nominal values is skipped.
#
# Images come from ${LAZYPULL_CACHE_DIR:-/var/cache/lazypull}/images/NAME (OCI layout, tag
# latest): python from scripts/build-test-image.sh, the others from
# scripts/build-bench-images.sh, each with a bench.json giving the workload's argv, the
# readiness string it prints and the bytes it reads. python has a built-in workload when its
# bench.json is missing.
#
# Usage: sudo benches/suite.sh [--quick] [--images "A B"] [--profiles "P Q"] [--runs N]
#                              [--all] [--no-peers] [--no-docs] [--keep]
#   --quick      python image, loopback and 100mbit-20ms, 3 runs
#   (default)    python node ml synthetic-500m synthetic-5g on every profile, 5 runs, except
#                the full pull of the synthetic images on 100mbit-20ms (minutes per run)
#   --all        also run those full pulls
#   --no-peers   leave out the ctr-remote mode
#   --no-docs    write the report only to the work directory, not to docs/
#   --keep       keep the work directory (registry storage with every image, traces, logs)
# Environment:
#   LAZYPULL        the binary (default target/release/lazypull; cargo build --release -p lazypull)
#   COMPRESSIONS    "gzip" (default) or "gzip zstd"
#   MOUNT_ARGS      extra options for every timed `lazypull mount`
#   WORKLOAD_TIMEOUT  seconds a workload may take to become ready (default 600)
#   OPTIMIZER       how lazy-optimized images are made: auto (default: `lazypull optimize` when
#                   the binary has it), optimize, or trace (mount --record-trace + convert)
# Raw results (one JSON object per run) go to benches/results/suite-TIMESTAMP.jsonl, the
# report to docs/benchmarks.md between the suite's marker comments and charts to docs/img/.
# Needs root, docker-registry, skopeo, curl, jq, unpigz, zstd, python3, GNU tar, and for
# shaped profiles ip, tc and nsenter. Sends nothing outside 127.0.0.1 and the namespaces it
# creates.

set -euo pipefail

started_epoch=$EPOCHREALTIME
# The command as the report prints it: the settings from the environment, then the arguments,
# quoted so that the line can be pasted back into a shell.
command_line=sudo
for setting in COMPRESSIONS MOUNT_ARGS OPTIMIZER WORKLOAD_TIMEOUT LAZYPULL; do
    if [ -n "${!setting:-}" ]; then
        command_line+=" $setting=$(printf '%q' "${!setting}")"
    fi
done
command_line+=" benches/suite.sh"
for argument in "$@"; do
    command_line+=" $(printf '%q' "$argument")"
done
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${LAZYPULL_CACHE_DIR:-/var/cache/lazypull}
lazypull=${LAZYPULL:-$repo/target/release/lazypull}
compressions=${COMPRESSIONS:-gzip}
read -r -a mount_args <<<"${MOUNT_ARGS:-}"
workload_timeout=${WORKLOAD_TIMEOUT:-600}

images="python node ml synthetic-500m synthetic-5g"
profiles="loopback 1gbit-2ms 100mbit-20ms"
runs=5
quick=0
all=0
peers=1
write_docs=1
keep=0
while [ $# -gt 0 ]; do
    case $1 in
    --quick)
        quick=1
        images=python
        profiles="loopback 100mbit-20ms"
        runs=3
        ;;
    --images) images=${2:?--images needs a list}; shift ;;
    --profiles) profiles=${2:?--profiles needs a list}; shift ;;
    --runs) runs=${2:?--runs needs a number}; shift ;;
    --all) all=1 ;;
    --no-peers) peers=0 ;;
    --no-docs) write_docs=0 ;;
    --keep) keep=1 ;;
    -h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option '$1'; see $0 --help" >&2; exit 2 ;;
    esac
    shift
done

# shellcheck source=benches/lib/net.sh
source "$repo/benches/lib/net.sh"
# shellcheck source=benches/lib/registry.sh
source "$repo/benches/lib/registry.sh"
# shellcheck source=benches/lib/fullpull.sh
source "$repo/benches/lib/fullpull.sh"

log() { echo "suite.sh: $*" >&2; }
fail() { echo "suite.sh: $*" >&2; exit 1; }

[[ $runs =~ ^[1-9][0-9]*$ ]] || fail "--runs must be a positive integer, got '$runs'"
[[ $workload_timeout =~ ^[1-9][0-9]*$ ]] || fail "WORKLOAD_TIMEOUT must be whole seconds, got '$workload_timeout'"
for profile in $profiles; do
    net_profile_parameters "$profile" >/dev/null || fail "unknown profile '$profile' (loopback, 1gbit-2ms, 100mbit-20ms)"
done
for compression in $compressions; do
    [[ $compression == gzip || $compression == zstd ]] || fail "COMPRESSIONS may hold gzip and zstd, got '$compression'"
done
[ "$(id -u)" = 0 ] || fail "run as root: sudo $0"
needed=(docker-registry skopeo curl jq unpigz zstd python3 tar sha256sum)
[ "$profiles" != loopback ] && needed+=(ip tc nsenter)
for program in "${needed[@]}"; do
    command -v "$program" >/dev/null || fail "missing $program; run scripts/setup.sh"
done
[ -x "$lazypull" ] || fail "missing $lazypull; run cargo build --release -p lazypull"
for image in $images; do
    [ -f "$cache/images/$image/index.json" ] || {
        [ "$image" = python ] && fail "missing image $cache/images/python; run scripts/build-test-image.sh"
        fail "missing image $cache/images/$image; run scripts/build-bench-images.sh"
    }
done
if [ "$peers" = 1 ] && ! { command -v ctr-remote && command -v containerd; } >/dev/null; then
    log "ctr-remote or containerd not installed: no ctr-remote-estargz mode"
    peers=0
fi
has_optimize=0
"$lazypull" optimize --help >/dev/null 2>&1 && has_optimize=1
case ${OPTIMIZER:-auto} in
auto) ;;
trace) has_optimize=0 ;;
optimize) [ "$has_optimize" = 1 ] || fail "OPTIMIZER=optimize, but $lazypull has no optimize command" ;;
*) fail "OPTIMIZER must be auto, optimize or trace, got '$OPTIMIZER'" ;;
esac

work=$(mktemp -d /tmp/lazypull-suite-XXXXXX)
export TMPDIR=$work/tmp
mkdir -p "$TMPDIR" "$work/images" "$work/runs"
results_dir=$repo/benches/results
mkdir -p "$results_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
results=$results_dir/suite-$stamp.jsonl
: >"$results"
meta=$work/meta.jsonl
: >"$meta"
mounts=()
daemon_pids=()

# Unmounts what is still mounted, stops the daemons, removes the namespaces and the route, and
# the work directory unless --keep. Runs on every exit path.
cleanup() {
    set +e
    local point pid
    for point in "${mounts[@]}"; do
        "$lazypull" unmount --state-dir "${point%/rootfs}/state" "$point" >/dev/null 2>&1
    done
    registry_stop
    for pid in "${daemon_pids[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${daemon_pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    done
    net_down
    grep -F " $work/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r point; do
        umount -l "$point"
    done
    if [ "$keep" = 1 ]; then
        log "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Appends one JSON object to the run metadata: key $1, JSON value $2.
note() {
    jq -cn --arg key "$1" --argjson value "$2" '{key: $key, value: $value}' >>"$meta"
}

drop_page_cache() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

# Writes the CPU times of the children this shell has waited for so far to file $1. Call it
# directly, never inside $(...): a subshell has counters of its own.
cpu_mark() {
    times >"$1"
}

# Prints the CPU seconds (user + system) that waited-for children used between the marks in
# files $1 and $2.
cpu_between() {
    python3 - "$1" "$2" <<'EOF'
import re, sys
def children(path):
    lines = open(path).read().split("\n")
    return sum(int(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", lines[1]))
print(f"{children(sys.argv[2]) - children(sys.argv[1]):.3f}")
EOF
}

# ---------------------------------------------------------------- images

# Writes the normalized workload description of image $1 to $work/images/$1.bench.json:
# argv, ready (empty: the exit), bytes_read (null when unknown), tag.
load_bench_config() {
    local image=$1 file=$cache/images/$1/bench.json out=$work/images/$1.bench.json
    if [ -f "$file" ]; then
        # Fields at the top level or under "workload", as scripts/build-bench-images.sh writes them.
        jq '(if (.workload | type) == "object" then .workload else {} end) as $w
            | {argv: (.argv // $w.argv // .workload),
               ready: (.ready // .ready_line // $w.ready // $w.ready_line // ""),
               bytes_read: (.read_bytes // .bytes_read // $w.read_bytes // null),
               env: (.env // $w.env // []),
               tag: (.tag // "latest")}' "$file" >"$out"
    elif [ "$image" = python ]; then
        jq -n '{argv: ["python3", "-c", "import json, sqlite3, ssl, email.mime.text, http.client, asyncio; c = sqlite3.connect(\":memory:\"); c.execute(\"create table t(x)\"); c.execute(\"insert into t values (42)\"); print(c.execute(\"select x from t\").fetchone()[0])"],
                ready: "42", bytes_read: null, env: [], tag: "latest"}' >"$out"
    else
        fail "missing $file (workload argv, readiness string and bytes read); run scripts/build-bench-images.sh"
    fi
    [ "$(jq '.argv | type' "$out")" = '"array"' ] || fail "$file has no workload argv (an array under \"argv\")"
}

# Runs the workload of image $1 chrooted in $2, output to $3; prints the epoch time it was ready.
run_workload() {
    local image=$1 root=$2 output=$3 ready
    local argv=() environment=()
    mapfile -t argv < <(jq -r '.argv[]' "$work/images/$image.bench.json")
    mapfile -t environment < <(jq -r '.env[]' "$work/images/$image.bench.json")
    ready=$(jq -r '.ready' "$work/images/$image.bench.json")
    python3 "$repo/benches/suite/workload.py" "$root" "$ready" "$workload_timeout" "$output" "${environment[@]}" \
        -- "${argv[@]}"
}

# Mounts oci layout image $1 at $2/rootfs with the trace written to $3, runs the workload of
# image $4 in it and unmounts.
record_trace() {
    local source=$1 dir=$2 trace=$3 image=$4
    mkdir -p "$dir/rootfs"
    "$lazypull" mount --state-dir "$dir/state" --cache-dir "$dir/cache" --record-trace "$trace" "$source" "$dir/rootfs" \
        2>"$dir/mount.log"
    mounts+=("$dir/rootfs")
    run_workload "$image" "$dir/rootfs" "$dir/workload.out" >/dev/null ||
        fail "the $image workload failed on a lazy mount of $source; output in $dir/workload.out"
    "$lazypull" unmount --state-dir "$dir/state" "$dir/rootfs" >/dev/null
    unset 'mounts[-1]'
}

# Builds the optimized image of $1 with compression $2 into oci layout $3 (tag latest) and
# prints how. `lazypull optimize` also writes the trace the report uses; without it, the trace
# comes from a lazy mount with --record-trace.
optimize_image() {
    local image=$1 compression=$2 destination=$3
    local source=oci:$cache/images/$image:$(jq -r .tag "$work/images/$image.bench.json")
    local trace=$work/images/$image.trace
    local log=$work/images/$image-optimize-$compression.log
    if [ "$has_optimize" = 1 ]; then
        local argv=() environment=() options=(--compression "$compression" --strict --record "$trace.$compression") ready entry
        mapfile -t argv < <(jq -r '.argv[]' "$work/images/$image.bench.json")
        mapfile -t environment < <(jq -r '.env[]' "$work/images/$image.bench.json")
        ready=$(jq -r '.ready' "$work/images/$image.bench.json")
        [ -n "$ready" ] && options+=(--wait-for "$ready")
        for entry in "${environment[@]}"; do
            options+=(--env "$entry")
        done
        # The optimize time limit has a maximum of 3600 s.
        local limit=$workload_timeout
        [ "$limit" -gt 3600 ] && limit=3600
        options+=(--timeout "$limit")
        "$lazypull" optimize "${options[@]}" "$source" "oci:$destination:latest" -- "${argv[@]}" >"$log" 2>&1 ||
            fail "lazypull optimize of $image failed; see $log"
        [ -f "$trace" ] || cp "$trace.$compression" "$trace"
        echo "lazypull optimize"
        return 0
    fi
    if [ ! -f "$trace" ]; then
        record_trace "oci:$work/images/$image-esgz-$first_compression:latest" "$work/images/$image-trace" "$trace" "$image"
    fi
    "$lazypull" convert --progress none --compression "$compression" --prioritize "$trace" \
        "$source" "oci:$destination:latest" >"$log" 2>&1 ||
        fail "lazypull convert --prioritize of $image failed; see $log"
    echo "lazypull mount --record-trace + lazypull convert --prioritize"
}

# Starts containerd (own root, state and socket) and a loopback registry for ctr-remote.
start_containerd() {
    local dir=$work/containerd
    mkdir -p "$dir"
    cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
EOF
    containerd --config "$dir/config.toml" >"$dir/log" 2>&1 &
    daemon_pids+=($!)
    ctr_remote=(ctr-remote --address "$dir/containerd.sock" --namespace suite)
    local tries=300
    until "${ctr_remote[@]}" version >/dev/null 2>&1; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || fail "containerd did not start; see $dir/log"
        sleep 0.1
    done
}

# Converts image $1, already in the registry as $1:full, with `ctr-remote image convert
# --estargz --oci` and pushes the result as $1:ctr-remote-estargz.
ctr_remote_convert() {
    local image=$1 registry=127.0.0.1:$REGISTRY_PORT
    "${ctr_remote[@]}" images pull --plain-http "$registry/$image:full" >/dev/null
    "${ctr_remote[@]}" images convert --oci --estargz "$registry/$image:full" "$registry/$image:ctr-remote-estargz" >/dev/null
    "${ctr_remote[@]}" images push --plain-http "$registry/$image:ctr-remote-estargz" >/dev/null
    "${ctr_remote[@]}" images rm "$registry/$image:full" "$registry/$image:ctr-remote-estargz" >/dev/null
}

# Prints the total compressed size of the layers of tag $1 (REPOSITORY:TAG) in the registry.
registry_layer_bytes() {
    curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://127.0.0.1:$REGISTRY_PORT/v2/${1%%:*}/manifests/${1#*:}" | jq '[.layers[].size] | add'
}

# Pushes the layout $3 (tag latest) as $1:$2 and removes it, because the registry's copy is all
# the runs need and the synthetic images take gigabytes each.
publish() {
    local image=$1 mode=$2 layout=$3
    registry_push "oci:$layout:latest" "$image:$mode"
    rm -rf "$layout"
}

# The trace comes from a lazy mount of the first compression's plain conversion.
read -r first_compression _ <<<"$compressions"

# The modes of an image, in the order a round runs them.
lazy_modes=()
for compression in $compressions; do
    if [ "$compression" = gzip ]; then
        lazy_modes+=(lazy lazy-optimized)
    else
        lazy_modes+=("lazy-$compression" "lazy-optimized-$compression")
    fi
done
modes=(full "${lazy_modes[@]}")
[ "$peers" = 1 ] && modes+=(ctr-remote-estargz)
modes+=(warm)

load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
log "work directory $work; modes: ${modes[*]}"
# One registry storage serves every profile: the images are pushed once, here, and each
# profile starts a registry process on it in its own server namespace.
[ "$peers" = 1 ] && start_containerd
registry_start "$work/registry"
probe_file=$work/probe.bin
head -c 100000000 /dev/urandom >"$probe_file"
probe_digest=$(registry_put_blob "$probe_file" probe)
rm -f "$probe_file"
for image in $images; do
    load_bench_config "$image"
    tag=$(jq -r .tag "$work/images/$image.bench.json")
    source_layout=$cache/images/$image
    log "$image: preparing images"
    registry_push "oci:$source_layout:$tag" "$image:full"
    optimized_by=
    for compression in $compressions; do
        "$lazypull" convert --progress none --compression "$compression" \
            "oci:$source_layout:$tag" "oci:$work/images/$image-esgz-$compression:latest" \
            >"$work/images/$image-convert-$compression.log" 2>&1 ||
            fail "lazypull convert of $image failed; see $work/images/$image-convert-$compression.log"
    done
    for compression in $compressions; do
        optimized_by=$(optimize_image "$image" "$compression" "$work/images/$image-opt-$compression")
    done
    if [ "$peers" = 1 ]; then
        log "$image: ctr-remote image convert --estargz --oci"
        ctr_remote_convert "$image"
    fi
    log "$image: unpacking the warm copy"
    unpack_layout "$source_layout" "$tag" "$work/images/$image-warm/rootfs"
    # Without a figure from bench.json, the bytes the workload reads are those of the unpacked
    # copy that are in the page cache after one run from an evicted cache, as
    # scripts/build-bench-images.sh measures them (kernel read-ahead included).
    page_cache=$repo/scripts/bench-images/page_cache.py
    read_by=bench.json
    if [ "$(jq .bytes_read "$work/images/$image.bench.json")" = null ] && [ -f "$page_cache" ]; then
        sync
        python3 "$page_cache" evict "$work/images/$image-warm/rootfs"
        read_by="page cache after one run"
    fi
    run_workload "$image" "$work/images/$image-warm/rootfs" "$work/images/$image-warm/workload.out" >/dev/null ||
        fail "the $image workload failed on the unpacked image; output in $work/images/$image-warm/workload.out"
    if [ "$read_by" != bench.json ]; then
        resident=$(python3 "$page_cache" resident "$work/images/$image-warm/rootfs" | jq .bytes)
        jq --argjson bytes "$resident" '.bytes_read = $bytes' "$work/images/$image.bench.json" >"$work/images/$image.bench.json.new"
        mv "$work/images/$image.bench.json.new" "$work/images/$image.bench.json"
    fi
    # The files the workload opened, from the trace of a lazy mount, and their sizes on the
    # unpacked copy: an upper bound of what it reads.
    trace=$work/images/$image.trace
    [ -f "$trace" ] || record_trace "oci:$work/images/$image-esgz-$first_compression:latest" "$work/images/$image-trace" "$trace" "$image"
    opened=$(python3 - "$work/images/$image-warm/rootfs" "$trace" <<'EOF'
import json, os, stat, sys
root, trace = sys.argv[1:3]
files = size = 0
for line in open(trace):
    path = line.strip()
    if not path or path.startswith("#"):
        continue
    try:
        info = os.lstat(os.path.join(root, path.lstrip("/")))
    except OSError:
        continue
    if stat.S_ISREG(info.st_mode):
        files += 1
        size += info.st_size
print(json.dumps({"files": files, "bytes": size}))
EOF
)
    for compression in $compressions; do
        if [ "$compression" = gzip ]; then
            publish "$image" lazy "$work/images/$image-esgz-gzip"
            publish "$image" lazy-optimized "$work/images/$image-opt-gzip"
        else
            publish "$image" "lazy-$compression" "$work/images/$image-esgz-$compression"
            publish "$image" "lazy-optimized-$compression" "$work/images/$image-opt-$compression"
        fi
    done
    sizes='{}'
    for mode in "${modes[@]}"; do
        [ "$mode" = warm ] && continue
        sizes=$(jq -c --arg mode "$mode" --argjson bytes "$(registry_layer_bytes "$image:$mode")" \
            '. + {($mode): $bytes}' <<<"$sizes")
    done
    unpacked=$(du -sb "$work/images/$image-warm/rootfs" | awk '{print $1}')
    note image "$(jq -c --arg name "$image" --argjson opened "$opened" --argjson sizes "$sizes" \
        --arg optimized_by "$optimized_by" --argjson unpacked "$unpacked" --arg read_by "$read_by" \
        '{name: $name, argv: .argv, ready: .ready, bytes_read: .bytes_read, read_by: $read_by, opened: $opened,
          layer_bytes: $sizes, unpacked_bytes: $unpacked, optimized_by: $optimized_by}' \
        "$work/images/$image.bench.json")"
done
registry_stop

# ---------------------------------------------------------------- profile check

# Measures the current profile and prints a JSON object. It times twenty 1-byte range requests
# (connect to first byte) through the link and twenty directly at the registry, and one 100 MB
# download through the link. The RTT is the difference of the two minimums, because the
# registry's own time varies by milliseconds on a busy machine. The minimum is the sample
# least disturbed by scheduling.
measure_profile() {
    local digest=$1 url_link=http://$NET_REGISTRY/v2/probe/blobs/$1
    local url_direct=http://127.0.0.1:$REGISTRY_PORT/v2/probe/blobs/$1 i
    local format='%{time_connect} %{time_starttransfer}\n'
    for i in $(seq 20); do
        net_client curl -fsS -r 0-0 -o /dev/null -w "$format" "$url_link"
    done >"$work/rtt-link"
    for i in $(seq 20); do
        net_server curl -fsS -r 0-0 -o /dev/null -w "$format" "$url_direct"
    done >"$work/rtt-direct"
    net_client curl -fsS -o /dev/null -w '%{size_download} %{time_total}\n' "$url_link" >"$work/rate"
    python3 - "$work/rtt-link" "$work/rtt-direct" "$work/rate" <<'EOF'
import json, statistics, sys
def ttfb(path):
    values = []
    for line in open(path):
        connect, first = map(float, line.split())
        values.append(first - connect)
    return values
link, direct = ttfb(sys.argv[1]), ttfb(sys.argv[2])
size, seconds = map(float, open(sys.argv[3]).read().split())
rtt = max(0.0, min(link) - min(direct))
print(json.dumps({"request_ms": round(statistics.median(link) * 1000, 3),
                  "registry_ms": round(statistics.median(direct) * 1000, 3),
                  "rtt_ms": round(rtt * 1000, 3), "rate_bits": round(size * 8 / seconds),
                  "transfer_bytes": int(size), "transfer_s": round(seconds, 3)}))
EOF
}

# Checks the measurement $1 against the nominal values of the current profile: prints the
# reason and fails when the RTT or the rate is more than 30% off.
profile_is_off() {
    [ "$NET_SHAPED" = 1 ] || return 1
    python3 - "$1" "$NET_RTT_MS" "$(net_rate_bits "$NET_RATE")" <<'EOF'
import json, sys
measured, rtt, rate = json.loads(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
problems = []
if abs(measured["rtt_ms"] - rtt) > 0.3 * rtt:
    problems.append(f"RTT {measured['rtt_ms']:.2f} ms, nominal {rtt:g} ms")
if abs(measured["rate_bits"] - rate) > 0.3 * rate:
    problems.append(f"rate {measured['rate_bits'] / 1e6:.1f} Mbit/s, nominal {rate / 1e6:g} Mbit/s")
print("; ".join(problems))
sys.exit(0 if problems else 1)
EOF
}

# ---------------------------------------------------------------- one run

# Appends one JSON line to the results.
record() {
    local profile=$1 image=$2 mode=$3 run=$4 seconds=$5 requests=$6 bytes=$7 client_cpu=$8 status=${9:-} process=${10:-}
    python3 - "$profile" "$image" "$mode" "$run" "$seconds" "$requests" "$bytes" "$client_cpu" "$status" "$process" \
        >>"$results" <<'EOF'
import json, sys
profile, image, mode, run, seconds, requests, sent, client_cpu, status, process = sys.argv[1:11]
row = {"profile": profile, "image": image, "mode": mode, "run": int(run), "seconds": round(float(seconds), 4),
       "registry_requests": int(requests), "registry_bytes": int(sent), "client_cpu_s": float(client_cpu)}
if status:
    total = json.load(open(status))["total"]
    row["lazypull_requests"] = total["http_requests"]
    row["lazypull_bytes"] = total["bytes_fetched"]
    row["prefetch_bytes"] = total["prefetch_bytes"]
if process:
    rss_kib, cpu = process.split()
    row["lazypull_rss_kib"] = int(rss_kib)
    row["lazypull_cpu_s"] = float(cpu)
print(json.dumps(row))
EOF
}

# Prints "PEAK_RSS_KIB CPU_SECONDS" of process $1 (VmHWM, and utime + stime from /proc).
process_cost() {
    python3 - "$1" <<'EOF'
import os, sys
pid = sys.argv[1]
rss = 0
for line in open(f"/proc/{pid}/status"):
    if line.startswith("VmHWM:"):
        rss = int(line.split()[1])
fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
ticks = os.sysconf("SC_CLK_TCK")
print(rss, (int(fields[11]) + int(fields[12])) / ticks)
EOF
}

# Prints seconds from epoch time $1 to epoch time $2.
seconds_between() {
    python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.4f}")' "$1" "$2"
}

run_full() {
    local image=$1 n=$2 dir=$work/runs/$NET_PROFILE-$1-full-$2
    drop_page_cache
    local offset started ready
    offset=$(registry_log_offset)
    cpu_mark "$work/cpu-before"
    started=$EPOCHREALTIME
    full_pull "$NET_REGISTRY" "$image:full" "$dir"
    ready=$(run_workload "$image" "$dir/rootfs" "$dir.out") || fail "$NET_PROFILE $image full: the workload failed; output in $dir.out"
    local seconds
    cpu_mark "$work/cpu-after"
    seconds=$(seconds_between "$started" "$ready")
    # shellcheck disable=SC2046
    record "$NET_PROFILE" "$image" full "$n" "$seconds" $(registry_served_since "$offset") \
        "$(cpu_between "$work/cpu-before" "$work/cpu-after")"
    log "$NET_PROFILE $image full run $n: $seconds s"
    rm -rf "$dir"
}

run_lazy() {
    local image=$1 mode=$2 n=$3 dir=$work/runs/$NET_PROFILE-$1-$2-$3
    mkdir -p "$dir/rootfs"
    local insecure=()
    [ "$NET_SHAPED" = 1 ] && insecure=(--insecure)
    drop_page_cache
    local offset started ready
    offset=$(registry_log_offset)
    cpu_mark "$work/cpu-before"
    started=$EPOCHREALTIME
    net_client "$lazypull" mount "${insecure[@]}" "${mount_args[@]}" --state-dir "$dir/state" --cache-dir "$dir/cache" \
        "$NET_REGISTRY/$image:$mode" "$dir/rootfs" 2>"$dir/mount.log" ||
        fail "$NET_PROFILE $image $mode: lazypull mount failed; see $dir/mount.log"
    mounts+=("$dir/rootfs")
    ready=$(run_workload "$image" "$dir/rootfs" "$dir/workload.out") ||
        fail "$NET_PROFILE $image $mode: the workload failed; output in $dir/workload.out"
    local seconds pid cost
    cpu_mark "$work/cpu-after"
    seconds=$(seconds_between "$started" "$ready")
    pid=$(jq -r .pid "$dir"/state/mounts/*.json)
    cost=$(process_cost "$pid")
    "$lazypull" status --state-dir "$dir/state" "$dir/rootfs" >"$dir/status.json"
    # shellcheck disable=SC2046
    record "$NET_PROFILE" "$image" "$mode" "$n" "$seconds" $(registry_served_since "$offset") \
        "$(cpu_between "$work/cpu-before" "$work/cpu-after")" "$dir/status.json" "$cost"
    "$lazypull" unmount --state-dir "$dir/state" "$dir/rootfs" >/dev/null
    unset 'mounts[-1]'
    log "$NET_PROFILE $image $mode run $n: $seconds s"
    rm -rf "$dir"
}

# The floor: the workload on the unpacked copy with a warm page cache. The cold runs of the
# round dropped the cache, so an untimed run loads it first.
run_warm() {
    local image=$1 n=$2 root=$work/images/$1-warm/rootfs
    local started ready seconds
    run_workload "$image" "$root" "$work/runs/warm.out" >/dev/null || fail "$image warm: the workload failed"
    cpu_mark "$work/cpu-before"
    started=$EPOCHREALTIME
    ready=$(run_workload "$image" "$root" "$work/runs/warm.out") || fail "$image warm: the workload failed"
    cpu_mark "$work/cpu-after"
    seconds=$(seconds_between "$started" "$ready")
    record "$NET_PROFILE" "$image" warm "$n" "$seconds" 0 0 "$(cpu_between "$work/cpu-before" "$work/cpu-after")"
    log "$NET_PROFILE $image warm run $n: $seconds s"
}

# ---------------------------------------------------------------- the runs

for profile in $profiles; do
    log "profile $profile"
    net_up "$profile"
    registry_start "$work/registry"
    net_start_proxy "$REGISTRY_PORT" "$work/proxy-$profile.log"
    measured=$(measure_profile "$probe_digest")
    log "profile $profile ($NET_SHAPER): $measured"
    if reason=$(profile_is_off "$measured"); then
        log "profile $profile skipped: $reason"
        note profile "$(jq -c --arg name "$profile" --arg shaper "$NET_SHAPER" --arg reason "$reason" \
            --argjson rtt "$NET_RTT_MS" --arg rate "$NET_RATE" \
            '{name: $name, shaper: $shaper, nominal_rtt_ms: $rtt, nominal_rate: $rate, measured: ., skipped: $reason}' <<<"$measured")"
        registry_stop
        net_down
        continue
    fi
    load_before=$(cut -d' ' -f1-3 /proc/loadavg)
    for image in $images; do
        for n in $(seq 1 "$runs"); do
            for mode in "${modes[@]}"; do
                case $mode in
                full)
                    if [[ $image == synthetic-* && $profile == 100mbit-20ms && $all == 0 ]]; then
                        continue
                    fi
                    run_full "$image" "$n"
                    ;;
                warm) run_warm "$image" "$n" ;;
                *) run_lazy "$image" "$mode" "$n" ;;
                esac
            done
        done
    done
    note profile "$(jq -c --arg name "$profile" --arg shaper "$NET_SHAPER" --argjson rtt "$NET_RTT_MS" \
        --arg rate "$NET_RATE" --arg load_before "$load_before" --arg load_after "$(cut -d' ' -f1-3 /proc/loadavg)" \
        '{name: $name, shaper: $shaper, nominal_rtt_ms: $rtt, nominal_rate: $rate, measured: .,
          load_before: $load_before, load_after: $load_after}' <<<"$measured")"
    registry_stop
    net_down
done

# ---------------------------------------------------------------- report

wall_s=$(seconds_between "$started_epoch" "$EPOCHREALTIME")
skipped_full='[]'
[ "$all" = 0 ] && skipped_full='["synthetic-500m", "synthetic-5g"]'
git_rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$repo" diff --quiet HEAD -- src format converter snapshotter 2>/dev/null || git_rev="$git_rev (with local changes)"
ctr_version=
[ "$peers" = 1 ] && ctr_version="$(dpkg-query -W -f '${Version}' stargz-snapshotter 2>/dev/null || echo unknown)"
note run "$(jq -cn \
    --arg command "$command_line" --arg quick "$quick" --argjson runs "$runs" --arg wall_s "$wall_s" \
    --arg stamp "$stamp" --arg cores "$(nproc)" --arg cpu "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" \
    --arg memory "$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)" \
    --arg kernel "$(uname -r)" --arg load_start "$load_at_start" --arg load_end "$(cut -d' ' -f1-3 /proc/loadavg)" \
    --arg lazypull "$("$lazypull" --version | awk '{print $NF}') at $git_rev" \
    --arg registry "$(docker-registry --version | awk '{print $NF}')" \
    --arg skopeo "$(skopeo --version | awk '{print $3}')" \
    --arg tar "$(tar --version | head -n 1 | awk '{print $NF}')" --arg curl "$(curl --version | head -n 1 | awk '{print $2}')" \
    --arg pigz "$(pigz --version 2>&1 | head -n 1 | awk '{print $NF}')" \
    --arg zstd "$(zstd --version | grep -o 'v[0-9][0-9.]*' | head -n 1)" \
    --arg python "$(python3 --version)" --arg ctr_remote "$ctr_version" \
    --argjson modes "$(printf '%s\n' "${modes[@]}" | jq -R . | jq -sc .)" --argjson skipped_full "$skipped_full" \
    --arg mount_args "${MOUNT_ARGS:-}" --arg results "${results#"$repo"/}" \
    '{command: $command, quick: ($quick == "1"), runs: $runs, wall_s: ($wall_s | tonumber), stamp: $stamp,
      machine: {cores: $cores, cpu: $cpu, memory: $memory, kernel: $kernel, load_start: $load_start, load_end: $load_end},
      versions: {lazypull: $lazypull, "docker-registry": $registry, skopeo: $skopeo, "GNU tar": $tar, curl: $curl,
                 pigz: $pigz, zstd: $zstd, python: $python, "ctr-remote (stargz-snapshotter)": $ctr_remote},
      modes: $modes, skipped_full_on_100mbit: $skipped_full, mount_args: $mount_args, results: $results}')"
cp "$meta" "$results_dir/suite-$stamp.meta.jsonl"

report_args=(--meta "$meta" --results "$results" --out "$work/report.md")
[ "$write_docs" = 1 ] && report_args+=(--docs "$repo/docs/benchmarks.md" --img-dir "$repo/docs/img")
python3 "$repo/benches/suite/report.py" "${report_args[@]}"
cat "$work/report.md"
log "done in $wall_s s; raw results in $results"
