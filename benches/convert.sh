#!/usr/bin/env bash
# Conversion speed: `lazypull convert` against `ctr-remote image convert --estargz --oci`
# (stargz-snapshotter's converter, run against a containerd started here with its own root)
# and against `pigz -p 2` compressing the same uncompressed layer tars, all at one gzip
# level, on two images:
#   - python: the test image built by scripts/build-test-image.sh (2 layers);
#   - big: one synthetic 1 GiB layer, half random bytes and half base64 text.
# Each tool runs once per image. Prints a Markdown section with the figures and their
# ratios to stdout; progress goes to stderr.
#
# Usage: sudo benches/convert.sh
# Environment:
#   LAZYPULL       the binary (default: target/release/lazypull; build it with
#                  `cargo build --release -p lazypull`)
#   SOURCE_LAYOUT  OCI layout of the python image, tag `latest` (default: the cached test image)
#   LEVEL          gzip level for every tool (default 6, lazypull's default)
#   BIG_MIB        size of the synthetic layer in MiB (default 1024)
# Needs root, containerd, ctr-remote, docker-registry, skopeo, pigz, python3, GNU tar and GNU
# time. Runs nothing outside 127.0.0.1.

set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${LAZYPULL_CACHE_DIR:-/var/cache/lazypull}
lazypull=${LAZYPULL:-$repo/target/release/lazypull}
source_layout=${SOURCE_LAYOUT:-$cache/images/python}
level=${LEVEL:-6}
big_mib=${BIG_MIB:-1024}

for program in containerd ctr-remote docker-registry skopeo pigz python3 tar curl; do
    command -v "$program" >/dev/null || { echo "missing $program; run scripts/setup.sh" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "missing GNU time (/usr/bin/time)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
[ -x "$lazypull" ] || { echo "missing $lazypull; run cargo build --release -p lazypull" >&2; exit 1; }
[ -f "$source_layout/index.json" ] || { echo "missing $source_layout; run scripts/build-test-image.sh" >&2; exit 1; }

work=$(mktemp -d /tmp/lazypull-convert-bench-XXXXXX)
pids=()

cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    done
    rm -rf "$work"
}
trap cleanup EXIT

log() { echo "convert.sh: $*" >&2; }

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

# Runs a command under GNU time; prints "<seconds> <max RSS KiB>" to stdout, the command's
# output goes to the file $1.
timed() {
    local out=$1
    shift
    /usr/bin/time -f '%e %M' -o "$work/time" "$@" >"$out"
    cat "$work/time"
}

# ---------------------------------------------------------------- registry and containerd
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

mkdir -p "$work/containerd"
cat >"$work/containerd/config.toml" <<EOF
version = 2
root = "$work/containerd/root"
state = "$work/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/containerd/containerd.sock"
[ttrpc]
  address = "$work/containerd/containerd.sock.ttrpc"
EOF
containerd --config "$work/containerd/config.toml" >"$work/containerd/log" 2>&1 &
pids+=($!)
ctr_remote=(ctr-remote --address "$work/containerd/containerd.sock" --namespace convert-bench)
wait_for containerd "${ctr_remote[@]}" version

# ---------------------------------------------------------------- the synthetic layer
# Writes an OCI layout at $1 (tag latest) whose single gzip layer is the tar $2.
write_layout() {
    local layout=$1 tar=$2
    mkdir -p "$layout/blobs/sha256"
    pigz -p 2 -6 -c "$tar" >"$layout/layer.gz"
    python3 - "$layout" "$tar" <<'EOF'
import hashlib, json, os, sys
layout, tar = sys.argv[1], sys.argv[2]
def digest_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()
def put(data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs/sha256", d[7:]), "wb") as f:
        f.write(data)
    return d, len(data)
layer = os.path.join(layout, "layer.gz")
layer_digest, layer_size = digest_of(layer), os.path.getsize(layer)
os.rename(layer, os.path.join(layout, "blobs/sha256", layer_digest[7:]))
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                     "rootfs": {"type": "layers", "diff_ids": [digest_of(tar)]}}).encode()
config_digest, config_size = put(config)
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size}]}).encode()
manifest_digest, manifest_size = put(manifest)
with open(os.path.join(layout, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest, "size": manifest_size,
        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}, f)
with open(os.path.join(layout, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
EOF
}

log "generating the ${big_mib} MiB synthetic layer"
mkdir -p "$work/big-files/data"
half=$((big_mib / 2))
head -c "$((half << 20))" /dev/urandom >"$work/big-files/data/random.bin"
# base64 is cut short by head on purpose, so its SIGPIPE must not fail the pipeline.
(set +o pipefail; head -c "$(((big_mib - half) << 20))" /dev/urandom | base64 -w 76 | head -c "$(((big_mib - half) << 20))") \
    >"$work/big-files/data/text.txt"
tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -C "$work/big-files" -cf "$work/big.tar" data
rm -rf "$work/big-files"
write_layout "$work/big-layout" "$work/big.tar"

# ---------------------------------------------------------------- one image
declare -A result

# Benchmarks the image in layout $2 under the name $1. $3... are its uncompressed layer tars.
bench_image() {
    local name=$1 layout=$2
    shift 2
    local tars=("$@")
    local ref=127.0.0.1:$port/$name:latest
    skopeo --insecure-policy copy --quiet --preserve-digests --dest-tls-verify=false \
        "oci:$layout:latest" "docker://$ref"

    log "$name: lazypull convert, OCI layout to OCI layout"
    read -r seconds rss < <(timed "$work/$name-lazypull.json" \
        "$lazypull" convert "oci:$layout:latest" "oci:$work/$name-out:esgz" \
        --compression-level "$level" --progress none --json --tmpdir "$work")
    result[$name.lazypull.s]=$seconds
    result[$name.lazypull.rss]=$((rss / 1024))
    result[$name.lazypull.bytes]=$(python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(open(sys.argv[1]))["layers"]))' "$work/$name-lazypull.json")
    result[$name.source.bytes]=$(python3 -c 'import json,sys; print(sum(l["source_size"] for l in json.load(open(sys.argv[1]))["layers"]))' "$work/$name-lazypull.json")

    log "$name: lazypull convert, registry to registry"
    read -r seconds rss < <(timed "$work/$name-lazypull-registry.json" \
        "$lazypull" convert "$ref" "127.0.0.1:$port/$name:esgz" \
        --compression-level "$level" --progress none --json --tmpdir "$work")
    result[$name.lazypull-registry.s]=$seconds

    log "$name: ctr-remote image convert (after pulling into containerd)"
    "${ctr_remote[@]}" images pull --plain-http "$ref" >/dev/null
    read -r seconds rss < <(timed "$work/$name-ctr-remote.log" \
        "${ctr_remote[@]}" images convert --oci --estargz --estargz-compression-level "$level" \
        "$ref" "$ref-ctr-esgz")
    result[$name.ctr.s]=$seconds
    result[$name.ctr.rss]=$((rss / 1024))
    local manifest
    manifest=$("${ctr_remote[@]}" images ls "name==$ref-ctr-esgz" | awk 'NR == 2 { print $3 }')
    result[$name.ctr.bytes]=$("${ctr_remote[@]}" content get "$manifest" |
        python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')

    log "$name: pigz -p 2 -$level of the uncompressed layers"
    local total=0 tar
    for tar in "${tars[@]}"; do
        read -r seconds rss < <(timed /dev/null pigz -p 2 "-$level" -c "$tar")
        total=$(python3 -c "print(round($total + $seconds, 2))")
    done
    result[$name.pigz.s]=$total
    result[$name.raw.bytes]=$(du -cb "${tars[@]}" | tail -n 1 | cut -f 1)
}

# The python image's layers, decompressed for pigz.
python_tars=()
manifest_digest=$(python3 -c 'import json,sys; print([m["digest"] for m in json.load(open(sys.argv[1]))["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "latest"][0])' "$source_layout/index.json")
n=0
for layer in $(python3 -c 'import json,sys; print(" ".join(l["digest"] for l in json.load(open(sys.argv[1]))["layers"]))' "$source_layout/blobs/sha256/${manifest_digest#sha256:}"); do
    gzip -dc "$source_layout/blobs/sha256/${layer#sha256:}" >"$work/python-$n.tar"
    python_tars+=("$work/python-$n.tar")
    n=$((n + 1))
done

bench_image python "$source_layout" "${python_tars[@]}"
bench_image big "$work/big-layout" "$work/big.tar"

# ---------------------------------------------------------------- report
mib() { python3 -c "print(f'{$1 / 1048576:.1f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
cat <<EOF
## Conversion

Produced by \`sudo benches/convert.sh\` (one run per tool, gzip level $level for every tool) on
$(nproc) cores ($cpu), $(free -g | awk '/Mem:/ { print $2 }') GiB RAM, $(uname -sr), with
lazypull built by \`cargo build --release\`. lazypull ran with its defaults (\`--jobs 2\`,
one compression thread per core, 4 MiB chunks). \`ctr-remote\` is Debian's stargz-snapshotter
$(dpkg-query -W -f '${Version}' stargz-snapshotter 2>/dev/null || echo "(unknown version)") against containerd $(containerd --version | awk '{ print $3 }'), timed after
the image was pulled into its content store. \`pigz -p 2\` only compresses the uncompressed
layer tars, which makes it a floor for any gzip converter on this machine.

| image | uncompressed | source gzip | tool | time (s) | peak RSS (MiB) | output |
| --- | --- | --- | --- | --- | --- | --- |
| python | $(mib ${result[python.raw.bytes]}) MiB | $(mib ${result[python.source.bytes]}) MiB | lazypull, OCI layout to layout | ${result[python.lazypull.s]} | ${result[python.lazypull.rss]} | $(mib ${result[python.lazypull.bytes]}) MiB |
| python | | | lazypull, registry to registry | ${result[python.lazypull-registry.s]} | | |
| python | | | ctr-remote image convert --estargz --oci | ${result[python.ctr.s]} | ${result[python.ctr.rss]} | $(mib ${result[python.ctr.bytes]}) MiB |
| python | | | pigz -p 2 -$level (compression only) | ${result[python.pigz.s]} | | |
| big | $(mib ${result[big.raw.bytes]}) MiB | $(mib ${result[big.source.bytes]}) MiB | lazypull, OCI layout to layout | ${result[big.lazypull.s]} | ${result[big.lazypull.rss]} | $(mib ${result[big.lazypull.bytes]}) MiB |
| big | | | lazypull, registry to registry | ${result[big.lazypull-registry.s]} | | |
| big | | | ctr-remote image convert --estargz --oci | ${result[big.ctr.s]} | ${result[big.ctr.rss]} | $(mib ${result[big.ctr.bytes]}) MiB |
| big | | | pigz -p 2 -$level (compression only) | ${result[big.pigz.s]} | | |

Ratios of times (lower is faster for lazypull):

| image | lazypull / ctr-remote | lazypull / pigz | lazypull output / ctr-remote output |
| --- | --- | --- | --- |
| python | $(ratio ${result[python.lazypull.s]} ${result[python.ctr.s]}) | $(ratio ${result[python.lazypull.s]} ${result[python.pigz.s]}) | $(ratio ${result[python.lazypull.bytes]} ${result[python.ctr.bytes]}) |
| big | $(ratio ${result[big.lazypull.s]} ${result[big.ctr.s]}) | $(ratio ${result[big.lazypull.s]} ${result[big.pigz.s]}) | $(ratio ${result[big.lazypull.bytes]} ${result[big.ctr.bytes]}) |
EOF
