#!/usr/bin/env bash
# Sequential read throughput of one large file through `lazypull mount`, against the same file
# on local disk. The image has one layer holding one file of base64 text made from random
# bytes (1 GiB by default), so gzip has real work to do (it compresses to about 76 %).
#   - cold: a fresh mount with an empty chunk cache and an empty page cache; every byte comes
#     from a docker-registry on 127.0.0.1 (range requests, sha256 check, gunzip);
#   - warm: a mount whose chunk cache already contains the whole file (one full read first),
#     with the page cache dropped before each read, against the file extracted from the same
#     layer onto local disk with the page cache dropped the same way;
#   - remounted: the first read by a new mount process over that filled chunk cache, which
#     checks each chunk file's SHA-256 once (files the process wrote itself it trusts).
# Reads are `dd bs=1M` to /dev/null; throughput is the file size over dd's elapsed time.
# Prints a Markdown report to stdout; progress goes to stderr.
#
# Usage: sudo benches/read_throughput.sh [RUNS]     (default 5 runs of each measurement)
# Environment:
#   LAZYPULL   the binary (default: target/release/lazypull; build it with
#              `cargo build --release -p lazypull`)
#   SIZE_MIB   size of the file in MiB (default 1024)
#   MOUNT_ARGS extra options for every `lazypull mount`, e.g. "--memory-cache-mib 64"
#   KEEP_WORK  1 keeps the work directory for inspection
#   QUIET_LOAD 1-minute load average to wait for before the reads (default 2)
#   QUIET_WAIT longest wait for it, in seconds (default 300)
# Needs root, docker-registry, skopeo, curl, jq, pigz, python3 and GNU tar. Sends nothing
# outside 127.0.0.1.

set -euo pipefail

runs=${1:-5}
repo=$(cd "$(dirname "$0")/.." && pwd)
lazypull=${LAZYPULL:-$repo/target/release/lazypull}
size_mib=${SIZE_MIB:-1024}
keep_work=${KEEP_WORK:-0}
read -r -a mount_args <<<"${MOUNT_ARGS:-}"
quiet_load=${QUIET_LOAD:-2}
quiet_wait=${QUIET_WAIT:-300}
file_in_image=data/big.b64

for program in docker-registry skopeo curl jq pigz python3 tar dd; do
    command -v "$program" >/dev/null || { echo "missing $program; run scripts/setup.sh" >&2; exit 1; }
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a positive integer, got '$runs'" >&2; exit 2; }
[[ $quiet_load =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "QUIET_LOAD must be a number, got '$quiet_load'" >&2; exit 2; }
[[ $quiet_wait =~ ^[0-9]+$ ]] || { echo "QUIET_WAIT must be a whole number of seconds, got '$quiet_wait'" >&2; exit 2; }
[[ $size_mib =~ ^[1-9][0-9]*$ ]] || { echo "SIZE_MIB must be a positive integer, got '$size_mib'" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root: sudo $0" >&2; exit 1; }
[ -x "$lazypull" ] || { echo "missing $lazypull; run cargo build --release -p lazypull" >&2; exit 1; }

work=$(mktemp -d /tmp/lazypull-read-bench-XXXXXX)
pids=()
mounts=()

log() { echo "read_throughput.sh: $*" >&2; }

cleanup() {
    set +e
    local point pid
    for point in "${mounts[@]}"; do
        "$lazypull" unmount --state-dir "${point%/rootfs}/state" "$point" >/dev/null 2>&1
    done
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    done
    grep -F " $work/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r point; do
        umount -l "$point"
    done
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

# Reads file $1 with dd and prints the elapsed seconds dd reports.
timed_read() {
    local report
    report=$(LC_ALL=C dd if="$1" of=/dev/null bs=1M 2>&1 | tail -n 1)
    # "1073741824 bytes (1.1 GB, 1.0 GiB) copied, 2.31 s, 465 MB/s"
    python3 -c 'import re, sys; print(re.search(r"copied, ([0-9.e+-]+) s", sys.argv[1]).group(1))' "$report"
}

# ---------------------------------------------------------------- the image

load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
log "writing ${size_mib} MiB of base64 text"
mkdir -p "$work/source/$(dirname "$file_in_image")"
head -c $((size_mib * 1048576 / 4 * 3)) /dev/urandom | base64 -w 0 >"$work/source/$file_in_image"
file_bytes=$(stat -c %s "$work/source/$file_in_image")

log "building the one-layer OCI layout"
tar --create --file "$work/layer.tar" --directory "$work/source" --numeric-owner --owner=0 --group=0 "$file_in_image"
rm -rf "$work/source"
pigz -p 2 -6 --stdout "$work/layer.tar" >"$work/layer.tar.gz"
python3 - "$work/plain" "$work/layer.tar" "$work/layer.tar.gz" <<'EOF'
import hashlib, json, os, shutil, sys
layout, tar, gzip_layer = sys.argv[1:4]
os.makedirs(os.path.join(layout, "blobs", "sha256"))

def file_digest(path):
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            hasher.update(block)
    return "sha256:" + hasher.hexdigest()

def store(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest[7:]), "wb") as f:
        f.write(data)
    return {"digest": digest, "size": len(data)}

layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
         "digest": file_digest(gzip_layer), "size": os.path.getsize(gzip_layer)}
shutil.move(gzip_layer, os.path.join(layout, "blobs", "sha256", layer["digest"][7:]))
config = {"architecture": "amd64", "os": "linux", "config": {},
          "rootfs": {"type": "layers", "diff_ids": [file_digest(tar)]}}
config_descriptor = {"mediaType": "application/vnd.oci.image.config.v1+json", **store(json.dumps(config).encode())}
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_descriptor, "layers": [layer]}
manifest_descriptor = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       **store(json.dumps(manifest).encode()),
                       "annotations": {"org.opencontainers.image.ref.name": "latest"}}
with open(os.path.join(layout, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [manifest_descriptor]}, f)
with open(os.path.join(layout, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
EOF

log "extracting the layer to local disk"
mkdir -p "$work/local"
tar --extract --file "$work/layer.tar" --directory "$work/local"
rm -f "$work/layer.tar"
local_file=$work/local/$file_in_image
local_sha256=$(sha256sum "$local_file" | awk '{print $1}')

log "converting with lazypull"
"$lazypull" convert --progress none "oci:$work/plain:latest" "oci:$work/esgz:latest" >&2
esgz_manifest=$(jq -r '.manifests[0].digest' "$work/esgz/index.json")
esgz_blob_bytes=$(jq '.layers[0].size' "$work/esgz/blobs/sha256/${esgz_manifest#sha256:}")

# ---------------------------------------------------------------- registry

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/registry"
cat >"$work/registry/config.yml" <<CONFIG
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry/storage
http:
  addr: 127.0.0.1:$port
  secret: benchmark-only
CONFIG
docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
pids+=($!)
wait_for registry curl -sf "http://127.0.0.1:$port/v2/"
skopeo --insecure-policy copy --quiet --preserve-digests --dest-tls-verify=false \
    "oci:$work/esgz:latest" "docker://127.0.0.1:$port/big:esgz"
image=127.0.0.1:$port/big:esgz

# Mounts the image in $1/rootfs with the chunk cache in $1/cache (empty unless a mount
# before filled it).
mount_fresh() {
    local dir=$1
    mkdir -p "$dir/rootfs"
    "$lazypull" mount "${mount_args[@]}" --state-dir "$dir/state" --cache-dir "$dir/cache" "$image" "$dir/rootfs" 2>"$dir/mount.log"
    mounts+=("$dir/rootfs")
}

unmount() {
    local dir=$1
    "$lazypull" unmount --state-dir "$dir/state" "$dir/rootfs" >/dev/null
    unset 'mounts[-1]'
}

# Prints the FUSE mounts' read_ahead_kb and max_read for the lazy mount in $1, as
# "READ_AHEAD_KB MAX_READ".
fuse_settings() {
    local dir=$1 device options
    # mountinfo: ID PARENT MAJOR:MINOR ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER_OPTIONS
    read -r device options < <(grep -F " $dir/state/" /proc/self/mountinfo |
        awk '{ for (i = 7; i <= NF; i++) if ($i == "-") break; if ($(i + 1) == "fuse") { print $3, $(i + 3); exit } }')
    echo "$(cat "/sys/class/bdi/$device/read_ahead_kb") $(tr ',' '\n' <<<"$options" | sed -n 's/^max_read=//p')"
}

# ---------------------------------------------------------------- cold reads

wait_for_quiet
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
cold_seconds=()
cold_requests=()
cold_fetched=()
for n in $(seq 1 "$runs"); do
    dir=$work/cold-$n
    drop_page_cache
    mount_fresh "$dir"
    seconds=$(timed_read "$dir/rootfs/$file_in_image")
    fresh_status "$dir" "$(now_ms)" "$dir/status.json"
    cold_seconds+=("$seconds")
    cold_requests+=("$(jq '.total.http_requests' "$dir/status.json")")
    cold_fetched+=("$(jq '.total.bytes_fetched' "$dir/status.json")")
    read -r read_ahead_kb max_read <<<"$(fuse_settings "$dir")"
    unmount "$dir"
    rm -rf "$dir"
    log "cold read $n: $seconds s"
done

# ---------------------------------------------------------------- warm reads

dir=$work/warm
mount_fresh "$dir"
log "filling the chunk cache with one full read (and checking the bytes)"
mounted_sha256=$(sha256sum "$dir/rootfs/$file_in_image" | awk '{print $1}')
[ "$mounted_sha256" = "$local_sha256" ] || { echo "the mounted file differs from the local one" >&2; exit 1; }
fresh_status "$dir" "$(now_ms)" "$dir/status-filled.json"
cache_bytes=$(du -sb "$dir/cache" | awk '{print $1}')
warm_seconds=()
local_seconds=()
for n in $(seq 1 "$runs"); do
    drop_page_cache
    warm_seconds+=("$(timed_read "$dir/rootfs/$file_in_image")")
    drop_page_cache
    local_seconds+=("$(timed_read "$local_file")")
    log "warm read $n: mount ${warm_seconds[-1]} s, local disk ${local_seconds[-1]} s"
done
fresh_status "$dir" "$(now_ms)" "$dir/status-after.json"
extra_requests=$(($(jq '.total.http_requests' "$dir/status-after.json") - $(jq '.total.http_requests' "$dir/status-filled.json")))
unmount "$dir"

# A new mount process over the same chunk cache checks each chunk file's SHA-256 on its
# first read, as after a restart of the daemon.
remount_seconds=()
for n in $(seq 1 "$runs"); do
    mount_fresh "$dir"
    drop_page_cache
    remount_seconds+=("$(timed_read "$dir/rootfs/$file_in_image")")
    unmount "$dir"
    log "first read after remount $n: ${remount_seconds[-1]} s"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
memory=$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
cores=$(nproc)
kernel=$(uname -r)
export runs file_bytes esgz_blob_bytes cache_bytes read_ahead_kb max_read extra_requests cpu memory \
    cores kernel load_at_start load_before load_after
export cold_seconds_list="${cold_seconds[*]}" cold_requests_list="${cold_requests[*]}" \
    cold_fetched_list="${cold_fetched[*]}" warm_seconds_list="${warm_seconds[*]}" \
    local_seconds_list="${local_seconds[*]}" remount_seconds_list="${remount_seconds[*]}"
python3 <<'EOF'
import os, statistics
env = os.environ
MIB = 1 << 20
size = int(env["file_bytes"])

def floats(name):
    return [float(value) for value in env[name].split()]

def rate(seconds):
    return size / MIB / seconds

cold, warm, local = floats("cold_seconds_list"), floats("warm_seconds_list"), floats("local_seconds_list")
remount = floats("remount_seconds_list")
requests = [int(value) for value in env["cold_requests_list"].split()]
fetched = [int(value) for value in env["cold_fetched_list"].split()]

command = f"sudo benches/read_throughput.sh {env['runs']}"
if env.get("MOUNT_ARGS"):
    command = f"sudo MOUNT_ARGS='{env['MOUNT_ARGS']}' benches/read_throughput.sh {env['runs']}"
print(f"Command: `{command}`.")
print()
print(f"Machine: {env['cores']} cores ({env['cpu']}), {env['memory']} RAM, Linux {env['kernel']}, "
      "one virtio disk for the registry, the chunk cache and the local copy. "
      f"Load average (1, 5, 15 min): {env['load_at_start']} when the script started, "
      f"{env['load_before']} when the reads started, {env['load_after']} at the end.")
print()
print(f"File: {size / MIB:.0f} MiB of base64 text; eStargz blob {int(env['esgz_blob_bytes']) / MIB:.1f} MiB "
      f"(4 MiB chunks, gzip level 6). FUSE: read_ahead_kb {env['read_ahead_kb']}, max_read {env['max_read']}. "
      f"Chunk cache after the filling read: {int(env['cache_bytes']) / MIB:.1f} MiB on disk; "
      f"registry requests during the warm reads: {env['extra_requests']}.")
print()
print("| read | runs (s) | median (s) | median MiB/s |")
print("| --- | --- | --- | --- |")
for name, values in [("cold, through the mount, from the registry on 127.0.0.1", cold),
                     ("warm, through the mount, chunk cache filled, page cache dropped", warm),
                     ("first read by a new mount over the filled chunk cache (files hashed once)", remount),
                     ("local disk, page cache dropped", local)]:
    listed = " ".join(f"{v:.2f}" for v in values)
    median = statistics.median(values)
    print(f"| {name} | {listed} | {median:.2f} | {rate(median):.0f} |")
print()
median_requests = statistics.median(requests)
print(f"Cold reads: median {median_requests:.0f} range requests, "
      f"{statistics.median(fetched) / MIB:.1f} MiB fetched, "
      f"{statistics.median(fetched) / median_requests / MIB:.2f} MiB per request.")
print()
ratio = statistics.median(local) / statistics.median(warm)
cold_ratio = statistics.median(local) / statistics.median(cold)
remount_ratio = statistics.median(local) / statistics.median(remount)
print(f"Warm mount / local disk throughput: {ratio:.2f}. First read after a remount / local disk: "
      f"{remount_ratio:.2f}. Cold mount / local disk: {cold_ratio:.2f}.")
EOF
