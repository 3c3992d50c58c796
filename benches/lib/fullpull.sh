# A full pull as a runtime without lazy pulling does it: fetch the manifest and every blob,
# check each digest, decompress and unpack the layers in order, apply whiteouts. Source this
# file after benches/lib/net.sh; clients run in the client side of the current profile.

# Unpacks layer blob $1 of media type $2 over the root $3 as a runtime does. Entries replace
# what lower layers had. `.wh.NAME` deletes NAME from the lower layers, `.wh..wh..opq` empties
# its directory of lower-layer entries, and the markers themselves are removed.
unpack_layer() {
    local blob=$1 media_type=$2 root=$3 listing
    local decompress=()
    case $media_type in
    *zstd*) decompress=(--use-compress-program=zstd) ;;
    *gzip*) decompress=(--use-compress-program=unpigz) ;;
    esac
    listing=$(mktemp "${TMPDIR:-/tmp}/lazypull-listing-XXXXXX")
    tar --extract --verbose --file "$blob" --directory "$root" "${decompress[@]}" \
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

# Prints "DIGEST MEDIA_TYPE" for each layer of the manifest file $1, in order.
manifest_layers() {
    jq -r '.layers[] | "\(.digest) \(.mediaType)"' "$1"
}

# Fetches image $2 (REPOSITORY:TAG) from registry $1 into directory $3 and unpacks it to
# $3/rootfs. Blobs download in parallel, each digest checked as it streams in.
full_pull() {
    local registry=$1 image=$2 dir=$3
    local repository=${image%%:*} tag=${image#*:}
    mkdir -p "$dir/blobs" "$dir/rootfs"
    net_client curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        -o "$dir/manifest.json" "http://$registry/v2/$repository/manifests/$tag"
    local digest blob_pids=()
    for digest in $(jq -r '.config.digest, .layers[].digest' "$dir/manifest.json"); do
        (
            set -o pipefail
            net_client curl -fsS "http://$registry/v2/$repository/blobs/$digest" |
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
    local media_type
    while read -r digest media_type; do
        unpack_layer "$dir/blobs/${digest#sha256:}" "$media_type" "$dir/rootfs"
    done < <(manifest_layers "$dir/manifest.json")
}

# Unpacks every layer of the image at tag $2 of the OCI layout $1 into directory $3.
unpack_layout() {
    local layout=$1 tag=$2 root=$3 manifest digest media_type
    manifest=$(jq -r --arg tag "$tag" \
        '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $tag) | .digest' \
        "$layout/index.json" | head -n 1)
    [ -n "$manifest" ] || { echo "no tag $tag in $layout" >&2; return 1; }
    mkdir -p "$root"
    while read -r digest media_type; do
        unpack_layer "$layout/blobs/sha256/${digest#sha256:}" "$media_type" "$root"
    done < <(manifest_layers "$layout/blobs/sha256/${manifest#sha256:}")
}
