#!/usr/bin/env bash
# Cold start under containerd: the time from the start of the pull to the first output of a
# python container, for
#   - lazypull: the image converted by `lazypull convert`, pulled with
#     `ctr-remote image rpull --snapshotter lazypull`, run with `--snapshotter lazypull`;
#   - overlayfs: the original image, pulled with `ctr images pull` into containerd's own
#     overlayfs snapshotter and run from it.
# Every run starts a fresh containerd (and lazypull daemon) with empty state, against one
# docker-registry on 127.0.0.1. Prints each run, the medians and their ratio as Markdown.
#
# With SHAPED=1 the registry sits in a network namespace of its own, behind a veth pair shaped
# to 100 Mbit/s each way (tc tbf) and a proxy that delays every byte toward the client by
# 20 ms (benches/delay_proxy.py). containerd, ctr and lazypull run in a second namespace. The
# script creates and deletes both namespaces, and while they exist a route in the root
# namespace makes their subnet unreachable from anywhere else.
#
# Usage: sudo benches/containerd.sh [RUNS]          (default 3 runs per variant)
# Environment:
#   LAZYPULL        the binary (default: target/release/lazypull; build it with
#                   `cargo build --release -p lazypull`)
#   SOURCE_LAYOUT   OCI layout of the plain image, tag `latest` (default: the test image
#                   built by scripts/build-test-image.sh)
#   ESGZ_LAYOUT     OCI layout of the converted image; converted from SOURCE_LAYOUT when missing
#   WORKLOAD        the python program the container runs
#   SHAPED          1 for the shaped link (needs ip, tc and nsenter)
#   LAZYPULL_CONFIG TOML appended to the daemon's config, such as
#                   $'[prefetch]\nbackground = false'  (background fetch off)
# Needs root, containerd, ctr, ctr-remote, runc, docker-registry, skopeo, curl and python3.
# Sends nothing outside 127.0.0.1 and the namespaces it creates.

set -euo pipefail

runs=${1:-3}
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${LAZYPULL_CACHE_DIR:-/var/cache/lazypull}
lazypull=${LAZYPULL:-$repo/target/release/lazypull}
source_layout=${SOURCE_LAYOUT:-$cache/images/python}
esgz_layout=${ESGZ_LAYOUT:-$cache/images/python-esgz-bench}
workload=${WORKLOAD:-"import json, sqlite3, ssl, email.mime.text, http.client, asyncio; print(42)"}
shaped=${SHAPED:-0}
extra_config=${LAZYPULL_CONFIG:-}

subnet=10.201.0.0/24
server_address=10.201.0.1
client_address=10.201.0.2
server_ns=lazypull-bench-server
client_ns=lazypull-bench-client

needed=(containerd ctr ctr-remote runc docker-registry skopeo curl python3)
[ "$shaped" = 1 ] && needed+=(ip tc nsenter)
for program in "${needed[@]}"; do
    command -v "$program" >/dev/null || { echo "missing $program; run scripts/setup.sh" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
[ -x "$lazypull" ] || { echo "missing $lazypull; run cargo build --release -p lazypull" >&2; exit 1; }
[ -f "$source_layout/index.json" ] || { echo "missing $source_layout; run scripts/build-test-image.sh" >&2; exit 1; }

work=$(mktemp -d /tmp/lazypull-bench-XXXXXX)
pids=()

cleanup() {
    # Every step runs even when an earlier one fails.
    set +e
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    sleep 1
    for pid in "${pids[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
    done
    # Deepest mounts first.
    { grep -F " $work/" /proc/self/mountinfo || true; } | awk '{print $5}' | sort -r | while read -r point; do
        umount -l "$point" 2>/dev/null
    done
    rm -rf "$work"
    if [ "$shaped" = 1 ]; then
        ip netns delete "$server_ns" 2>/dev/null || true
        ip netns delete "$client_ns" 2>/dev/null || true
        ip route del unreachable "$subnet" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# Runs a command on the client side: in the client namespace on the shaped link.
in_client() {
    if [ "$shaped" = 1 ]; then
        # nsenter, not `ip netns exec`: the latter remounts /sys, which hides the cgroup mounts
        # runc needs, and hides FUSE mounts from the root mount namespace.
        nsenter --net="/run/netns/$client_ns" "$@"
    else
        "$@"
    fi
}

# Runs a command on the registry side: in the server namespace on the shaped link.
in_server() {
    if [ "$shaped" = 1 ]; then
        nsenter --net="/run/netns/$server_ns" "$@"
    else
        "$@"
    fi
}

# Starts a daemon in the background on side $1 (client or server) with stdout and stderr to $2,
# and records its pid. The subshell execs the daemon, so the recorded pid is the daemon's own
# and stopping it stops the daemon.
spawn() {
    local side=$1 log=$2
    shift 2
    (
        if [ "$shaped" = 1 ]; then
            ns=$server_ns
            [ "$side" = client ] && ns=$client_ns
            exec nsenter --net="/run/netns/$ns" "$@"
        else
            exec "$@"
        fi
    ) >"$log" 2>&1 &
    pids+=($!)
}

free_port() {
    in_server python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() {
    local what=$1 tries=300
    shift
    until "$@" >/dev/null 2>&1; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || { echo "timed out waiting for $what" >&2; return 1; }
        sleep 0.1
    done
}

# Creates both namespaces and the veth pair between them, shaped at both ends.
create_namespaces() {
    ip route replace unreachable "$subnet"
    ip netns add "$server_ns"
    ip netns add "$client_ns"
    ip link add lpb-server netns "$server_ns" type veth peer name lpb-client netns "$client_ns"
    ip -n "$server_ns" addr add "$server_address/24" dev lpb-server
    ip -n "$client_ns" addr add "$client_address/24" dev lpb-client
    local ns device
    for pair in "$server_ns:lpb-server" "$client_ns:lpb-client"; do
        ns=${pair%%:*}
        device=${pair#*:}
        ip -n "$ns" link set lo up
        ip -n "$ns" link set "$device" up
        nsenter --net="/run/netns/$ns" tc qdisc replace dev "$device" root tbf rate 100mbit burst 64kb limit 4mb
    done
}

if [ ! -f "$esgz_layout/index.json" ]; then
    echo "converting $source_layout to $esgz_layout" >&2
    "$lazypull" convert "oci:$source_layout:latest" "oci:$esgz_layout:latest" >&2
fi

[ "$shaped" = 1 ] && create_namespaces

# One registry for every run, on the loopback of the registry side.
port=$(free_port)
mkdir -p "$work/registry"
cat >"$work/registry/config.yml" <<CONFIG
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry/storage
http:
  addr: 127.0.0.1:$port
  secret: benchmark-only
CONFIG
spawn server "$work/registry/log" docker-registry serve "$work/registry/config.yml"
wait_for registry in_server curl -sf "http://127.0.0.1:$port/v2/"
in_server skopeo --insecure-policy copy --quiet --preserve-digests --dest-tls-verify=false \
    "oci:$source_layout:latest" "docker://127.0.0.1:$port/python:latest"
in_server skopeo --insecure-policy copy --quiet --preserve-digests --dest-tls-verify=false \
    "oci:$esgz_layout:latest" "docker://127.0.0.1:$port/python-esgz:latest"

registry_address=127.0.0.1:$port
if [ "$shaped" = 1 ]; then
    spawn server "$work/proxy.log" python3 "$repo/benches/delay_proxy.py" "$server_address" 5000 "$port" 0.020
    registry_address=$server_address:5000
    wait_for "the delaying proxy" in_client curl -sf "http://$registry_address/v2/"
fi
plain_ref=$registry_address/python:latest
esgz_ref=$registry_address/python-esgz:latest
# Processes started after this index belong to one run.
first_run_pid=${#pids[@]}

start_containerd() {
    local dir=$1
    mkdir -p "$dir/containerd"
    cat >"$dir/containerd/config.toml" <<CONFIG
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$dir/containerd/containerd.sock"
[ttrpc]
  address = "$dir/containerd/containerd.sock.ttrpc"
[proxy_plugins.lazypull]
  type = "snapshot"
  address = "$dir/lazypull.sock"
CONFIG
    spawn client "$dir/containerd/log" containerd --config "$dir/containerd/config.toml"
    wait_for containerd ctr --address "$dir/containerd/containerd.sock" version
}

start_lazypull() {
    local dir=$1
    cat >"$dir/lazypull.toml" <<CONFIG
socket = "$dir/lazypull.sock"
root = "$dir/lazypull"
$extra_config
[registry.hosts."$server_address:5000"]
insecure = true
CONFIG
    spawn client "$dir/lazypull.log" "$lazypull" serve --config "$dir/lazypull.toml"
    wait_for "lazypull serve" test -S "$dir/lazypull.sock"
}

stop_run_processes() {
    local pid
    for pid in "${pids[@]:$first_run_pid}"; do
        kill "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    done
    pids=("${pids[@]:0:$first_run_pid}")
}

seconds_between() {
    python3 -c "print(f'{$2 - $1:.2f}')"
}

# Runs one cold start of variant $1 (lazypull or overlayfs) and sets `seconds`. Called
# directly, never in a command substitution, so the daemons it starts stay in `pids` for the
# exit trap when it fails.
run_once() {
    local variant=$1 n=$2
    local dir=$work/run-$variant-$n
    mkdir -p "$dir"
    if [ "$variant" = lazypull ]; then
        start_lazypull "$dir"
    fi
    start_containerd "$dir"
    local ctr=(in_client ctr --address "$dir/containerd/containerd.sock" --namespace bench)
    local started pulled ended output
    started=$(date +%s.%N)
    if [ "$variant" = lazypull ]; then
        in_client ctr-remote --address "$dir/containerd/containerd.sock" --namespace bench \
            image rpull --plain-http --snapshotter lazypull "$esgz_ref" >/dev/null
        pulled=$(date +%s.%N)
        output=$("${ctr[@]}" run --rm --snapshotter lazypull "$esgz_ref" "bench-$n" python3 -c "$workload" | head -n 1)
    else
        "${ctr[@]}" images pull --plain-http "$plain_ref" >/dev/null
        pulled=$(date +%s.%N)
        output=$("${ctr[@]}" run --rm "$plain_ref" "bench-$n" python3 -c "$workload" | head -n 1)
    fi
    ended=$(date +%s.%N)
    [ "$output" = 42 ] || { echo "$variant run $n printed '$output'" >&2; exit 1; }
    stop_run_processes
    echo "$variant run $n: pull $(seconds_between "$started" "$pulled") s, run $(seconds_between "$pulled" "$ended") s" >&2
    seconds=$(seconds_between "$started" "$ended")
}

median() {
    python3 -c 'import statistics, sys; print(f"{statistics.median(float(a) for a in sys.argv[1:]):.2f}")' "$@"
}

declare -A times
for variant in overlayfs lazypull; do
    values=()
    for n in $(seq 1 "$runs"); do
        run_once "$variant" "$n"
        echo "$variant run $n: $seconds s to first output" >&2
        values+=("$seconds")
    done
    times[$variant]="${values[*]}"
done

overlay_median=$(median ${times[overlayfs]})
lazy_median=$(median ${times[lazypull]})
ratio=$(python3 -c "print(f'{$lazy_median / $overlay_median:.2f}')")
speedup=$(python3 -c "print(f'{$overlay_median / $lazy_median:.1f}')")
link="loopback"
[ "$shaped" = 1 ] && link="100 Mbit/s, +20 ms"

cat <<REPORT
Link: $link.

| variant | runs (s) | median (s) |
| --- | --- | --- |
| containerd overlayfs, plain image, \`ctr images pull\` + \`ctr run\` | ${times[overlayfs]} | $overlay_median |
| lazypull, eStargz image, \`ctr-remote image rpull\` + \`ctr run\` | ${times[lazypull]} | $lazy_median |

lazypull / overlayfs: $ratio (${speedup}x faster to first output).
REPORT
