#!/usr/bin/env bash
# gzip against zstd output of `lazypull convert`: conversion time, peak memory and the total
# size of the converted layers, one run each, for the python test image and, when it exists,
# the ML benchmark image. Each output is then decompressed whole by the standard tool
# (`gzip -dc`, `zstd -dc`) to show the decompression time of the full layers on one core.
# Prints a Markdown table to stdout and progress to stderr.
#
# Usage: benches/zstd.sh
# Environment:
#   LAZYPULL    the binary (default: target/release/lazypull; build it with
#               `cargo build --release -p lazypull`)
#   IMAGES      space-separated image names under $LAZYPULL_CACHE_DIR/images (default:
#               "python ml"). scripts/build-test-image.sh builds python,
#               scripts/build-bench-images.sh builds ml. Missing images are skipped.
# Needs python3, gzip, zstd and GNU time. Reads and writes only local files.
#
# The per-core decompression throughput of one 4 MiB chunk is a criterion bench:
#   cargo bench -p lazypull-snapshotter --bench decompress

set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${LAZYPULL_CACHE_DIR:-/var/cache/lazypull}
lazypull=${LAZYPULL:-$repo/target/release/lazypull}
images=${IMAGES:-python ml}

for program in python3 gzip zstd; do
    command -v "$program" >/dev/null || { echo "missing $program; run scripts/setup.sh" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "missing GNU time (/usr/bin/time)" >&2; exit 1; }
[ -x "$lazypull" ] || { echo "missing $lazypull; run cargo build --release -p lazypull" >&2; exit 1; }

work=$(mktemp -d /tmp/lazypull-zstd-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT

log() { echo "zstd.sh: $*" >&2; }

# Prints the blob paths of the layers of the image tagged $2 in the OCI layout $1, one a line.
layer_blobs() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
layout, tag = sys.argv[1], sys.argv[2]
def blob(digest):
    return f"{layout}/blobs/{digest.replace(':', '/')}"
index = json.load(open(f"{layout}/index.json"))
for entry in index["manifests"]:
    if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
        manifest = json.load(open(blob(entry["digest"])))
        for layer in manifest["layers"]:
            print(blob(layer["digest"]))
        break
else:
    sys.exit(f"tag {tag} not found in {layout}")
EOF
}

total_size() {
    local sum=0 path
    while read -r path; do
        sum=$((sum + $(stat -c %s "$path")))
    done
    echo "$sum"
}

echo "Load before the run: $(uptime)"
echo
echo "| image | compression | convert s | peak RSS MiB | layers MiB | size vs gzip | full decompression s (1 core) |"
echo "|---|---|---|---|---|---|---|"
for image in $images; do
    source_layout=$cache/images/$image
    if [ ! -f "$source_layout/index.json" ]; then
        log "skipping $image: $source_layout does not exist"
        continue
    fi
    gzip_size=
    for compression in gzip zstd; do
        out=$work/$image-$compression
        log "converting $image to $compression"
        /usr/bin/time -f '%e %M' -o "$work/time" \
            "$lazypull" convert --compression "$compression" \
            "oci:$source_layout:latest" "oci:$out:latest" >/dev/null 2>"$work/convert.log" \
            || { cat "$work/convert.log" >&2; exit 1; }
        read -r seconds rss_kib <"$work/time"
        size=$(layer_blobs "$out" latest | total_size)
        [ "$compression" = gzip ] && gzip_size=$size
        decompressor=(gzip -dc)
        [ "$compression" = zstd ] && decompressor=(zstd -dcq)
        start=$(date +%s.%N)
        while read -r blob; do
            "${decompressor[@]}" "$blob" >/dev/null
        done < <(layer_blobs "$out" latest)
        end=$(date +%s.%N)
        python3 - "$image" "$compression" "$seconds" "$rss_kib" "$size" "$gzip_size" "$start" "$end" <<'EOF'
import sys
image, compression, seconds, rss, size, gzip_size, start, end = sys.argv[1:]
ratio = int(size) / int(gzip_size)
print(f"| {image} | {compression} | {float(seconds):.1f} | {int(rss) / 1024:.0f} | "
      f"{int(size) / 2**20:.1f} | {ratio:.3f} | {float(end) - float(start):.2f} |")
EOF
        rm -rf "$out"
    done
done
echo
echo "Load after the run: $(uptime)"
