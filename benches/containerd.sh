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
# Usage: sudo benches/containerd.sh [RUNS]          (default 3 runs per variant)
# Environment:
#   LAZYPULL        the binary (default: target/release/lazypull; build it with
#                   `cargo build --release -p lazypull`)
#   SOURCE_LAYOUT   OCI layout of the plain image, tag `latest` (default: the test image
#                   built by scripts/build-test-image.sh)
#   ESGZ_LAYOUT     OCI layout of the converted image; converted from SOURCE_LAYOUT when missing
#   WORKLOAD        the python program the container runs
# Needs root, containerd, ctr, ctr-remote, runc, docker-registry, skopeo and python3. Runs
# nothing outside 127.0.0.1.

set -euo pipefail

runs=${1:-3}
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${LAZYPULL_CACHE_DIR:-/var/cache/lazypull}
lazypull=${LAZYPULL:-$repo/target/release/lazypull}
source_layout=${SOURCE_LAYOUT:-$cache/images/python}
esgz_layout=${ESGZ_LAYOUT:-$cache/images/python-esgz-bench}
workload=${WORKLOAD:-"import json, sqlite3, ssl, email.mime.text, http.client, asyncio; print(42)"}

for program in containerd ctr ctr-remote runc docker-registry skopeo python3; do
    command -v "$program" >/dev/null || { echo "missing $program; run scripts/setup.sh" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
[ -x "$lazypull" ] || { echo "missing $lazypull; run cargo build --release -p lazypull" >&2; exit 1; }
[ -f "$source_layout/index.json" ] || { echo "missing $source_layout; run scripts/build-test-image.sh" >&2; exit 1; }

work=$(mktemp -d /tmp/lazypull-bench-XXXXXX)
pids=()

cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    sleep 1
    for pid in "${pids[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
    done
    # Deepest mounts first.
    grep -F " $work/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r point; do
        umount -l "$point" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
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

if [ ! -f "$esgz_layout/index.json" ]; then
    echo "converting $source_layout to $esgz_layout" >&2
    "$lazypull" convert "oci:$source_layout:latest" "oci:$esgz_layout:latest" >&2
fi

# One registry for every run.
port=$(free_port)
mkdir -p "$work/registry"
cat >"$work/registry/config.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry/storage
http:
  addr: 127.0.0.1:$port
  secret: benchmark-only
EOF
docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
pids+=($!)
wait_for registry curl -sf "http://127.0.0.1:$port/v2/"
plain_ref=127.0.0.1:$port/python:latest
esgz_ref=127.0.0.1:$port/python-esgz:latest
skopeo --insecure-policy copy --quiet --preserve-digests --dest-tls-verify=false \
    "oci:$source_layout:latest" "docker://$plain_ref"
skopeo --insecure-policy copy --quiet --preserve-digests --dest-tls-verify=false \
    "oci:$esgz_layout:latest" "docker://$esgz_ref"

# Starts containerd (with lazypull declared) in $1; prints nothing.
start_containerd() {
    local dir=$1
    mkdir -p "$dir/containerd"
    cat >"$dir/containerd/config.toml" <<EOF
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
EOF
    containerd --config "$dir/containerd/config.toml" >"$dir/containerd/log" 2>&1 &
    pids+=($!)
    wait_for containerd ctr --address "$dir/containerd/containerd.sock" version
}

start_lazypull() {
    local dir=$1
    cat >"$dir/lazypull.toml" <<EOF
socket = "$dir/lazypull.sock"
root = "$dir/lazypull"
EOF
    "$lazypull" serve --config "$dir/lazypull.toml" >"$dir/lazypull.log" 2>&1 &
    pids+=($!)
    wait_for "lazypull serve" test -S "$dir/lazypull.sock"
}

stop_started() {
    for pid in "${pids[@]:1}"; do
        kill "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    done
    pids=("${pids[0]}")
}

# Runs one cold start of variant $1 (lazypull or overlayfs); prints the seconds.
run_once() {
    local variant=$1 n=$2
    local dir=$work/run-$variant-$n
    mkdir -p "$dir"
    [ "$variant" = lazypull ] && start_lazypull "$dir"
    start_containerd "$dir"
    local ctr=(ctr --address "$dir/containerd/containerd.sock" --namespace bench)
    local started pulled ended output
    started=$(date +%s.%N)
    if [ "$variant" = lazypull ]; then
        ctr-remote --address "$dir/containerd/containerd.sock" --namespace bench \
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
    stop_started
    echo "$variant run $n: pull $(python3 -c "print(f'{$pulled - $started:.2f}')") s, run $(python3 -c "print(f'{$ended - $pulled:.2f}')") s" >&2
    python3 -c "print(f'{$ended - $started:.2f}')"
}

median() {
    python3 -c 'import statistics, sys; print(f"{statistics.median(float(a) for a in sys.argv[1:]):.2f}")' "$@"
}

declare -A times
for variant in overlayfs lazypull; do
    values=()
    for n in $(seq 1 "$runs"); do
        seconds=$(run_once "$variant" "$n")
        echo "$variant run $n: $seconds s to first output" >&2
        values+=("$seconds")
    done
    times[$variant]="${values[*]}"
done

overlay_median=$(median ${times[overlayfs]})
lazy_median=$(median ${times[lazypull]})
ratio=$(python3 -c "print(f'{$lazy_median / $overlay_median:.2f}')")
speedup=$(python3 -c "print(f'{$overlay_median / $lazy_median:.1f}')")

cat <<EOF
| variant | runs (s) | median (s) |
| --- | --- | --- |
| containerd overlayfs, plain image, \`ctr images pull\` + \`ctr run\` | ${times[overlayfs]} | $overlay_median |
| lazypull, eStargz image, \`ctr-remote image rpull\` + \`ctr run\` | ${times[lazypull]} | $lazy_median |

lazypull / overlayfs: $ratio (${speedup}x faster to first output).
EOF
