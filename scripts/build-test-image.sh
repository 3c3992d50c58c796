#!/usr/bin/env bash
# Build lazypull's Debian-based python test image as an OCI layout, without a Docker engine.
#
#   scripts/build-test-image.sh [--force] [--push HOST:PORT/REPO:TAG]
#
# Layer 1 is a `mmdebstrap --variant=minbase bookworm` root filesystem. Layer 2 is the same
# system plus python3, produced by umoci as a real diff layer against layer 1: it holds only
# changed paths (often without entries for their parent directories) and `.wh.` whiteouts
# for the man pages and changelogs this recipe deletes. Layers are gzip-compressed with OCI
# media types, and the config runs `python3` with a standard PATH.
#
# Output: ${LAZYPULL_CACHE_DIR:-/var/cache/lazypull}/images/python, tag `latest`. The image
# is rebuilt only when it is missing, when RECIPE_VERSION below differs from the stamp
# file, or with --force. Needs root (mmdebstrap in root mode, umoci keeping owners) and
# network access to the Debian archive. --push copies the layout to a plain-HTTP registry.
set -euo pipefail

# Bump when anything below changes what the image contains.
RECIPE_VERSION=1
SUITE=bookworm
MIRROR=${LAZYPULL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# mmdebstrap clamps file times to this, so two builds from the same archive state match.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
IMAGE_PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

CACHE_DIR=${LAZYPULL_CACHE_DIR:-/var/cache/lazypull}
IMAGES_DIR="$CACHE_DIR/images"
OUT="$IMAGES_DIR/python"
STAMP="$OUT/.lazypull-recipe"
DEB_CACHE="$CACHE_DIR/debs/$SUITE"

force=0
push_ref=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --force) force=1 ;;
        --push)
            [[ $# -ge 2 ]] || { echo "build-test-image.sh: --push needs HOST:PORT/REPO:TAG" >&2; exit 2; }
            push_ref=$2
            shift
            ;;
        -h | --help)
            sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *) echo "build-test-image.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "build-test-image.sh: $*"; }

print_sizes() {
    local manifest_digest manifest
    manifest_digest=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "latest") | .digest' "$OUT/index.json")
    manifest="$OUT/blobs/sha256/${manifest_digest#sha256:}"
    log "image $OUT:latest manifest $manifest_digest"
    jq -r '.layers[] | "  layer \(.digest) \(.size) bytes \(.mediaType)"' "$manifest"
    log "layout size on disk: $(du -sh "$OUT" | cut -f1)"
}

push_layout() {
    log "pushing $OUT:latest to $push_ref"
    skopeo --insecure-policy copy --quiet --preserve-digests --dest-tls-verify=false \
        "oci:$OUT:latest" "docker://$push_ref"
    log "pushed $push_ref"
}

if [[ $(id -u) -ne 0 ]]; then
    echo "build-test-image.sh: must run as root (mmdebstrap root mode, umoci keeping owners)" >&2
    exit 1
fi
for tool in mmdebstrap umoci jq tar; do
    command -v "$tool" >/dev/null || { echo "build-test-image.sh: $tool is missing; run scripts/setup.sh" >&2; exit 1; }
done

mkdir -p "$IMAGES_DIR" "$DEB_CACHE"
# One build at a time: parallel test binaries may all ask for the image at once.
exec 9>"$IMAGES_DIR/.python.lock"
flock 9

if [[ $force -eq 0 && -f "$STAMP" && $(cat "$STAMP") == "$RECIPE_VERSION" && -f "$OUT/index.json" ]]; then
    log "up to date (recipe $RECIPE_VERSION)"
    print_sizes
    [[ -z $push_ref ]] || push_layout
    exit 0
fi

SECONDS=0
work=$(mktemp -d "$IMAGES_DIR/.python-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
layout="$work/oci"
bundle="$work/bundle"

# mmdebstrap writes a tarball; the .deb files are kept between runs in $DEB_CACHE (the
# setup/customize hook pair is the package cache recipe from mmdebstrap(1)).
debootstrap_tar() {
    local output=$1 include=$2
    local args=(--variant=minbase --mode=root --format=tar --skip=download/empty
        --setup-hook="mkdir -p \"\$1\"/var/cache/apt/archives/"
        --setup-hook="sync-in $DEB_CACHE /var/cache/apt/archives/"
        --customize-hook="sync-out /var/cache/apt/archives $DEB_CACHE"
        # Keep the image moderate, as Dockerfiles do: no apt lists or package cache.
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/archives/*.deb "$1"/var/cache/apt/*.bin')
    [[ -z $include ]] || args+=(--include="$include")
    mmdebstrap "${args[@]}" "$SUITE" "$output" "$MIRROR"
}

# Replace the bundle's rootfs content with a tarball, keeping owners, modes and xattrs.
load_rootfs() {
    find "$bundle/rootfs" -mindepth 1 -delete
    tar --numeric-owner --xattrs --xattrs-include='*' -xpf "$1" -C "$bundle/rootfs"
}

log "layer 1: mmdebstrap --variant=minbase $SUITE"
debootstrap_tar "$work/base.tar" ""
log "layer 2 input: the same plus python3"
debootstrap_tar "$work/python.tar" "python3,python3-minimal"

umoci init --layout "$layout"
umoci new --image "$layout:python"
umoci unpack --image "$layout:python" "$bundle"

load_rootfs "$work/base.tar"
umoci repack --refresh-bundle --history.created_by "mmdebstrap --variant=minbase $SUITE" \
    --image "$layout:python" "$bundle"

load_rootfs "$work/python.tar"
# Deleting files that layer 1 has makes umoci write whiteouts into layer 2.
rm -rf "$bundle"/rootfs/usr/share/man/* "$bundle"/rootfs/usr/share/info/*
find "$bundle/rootfs/usr/share/doc" -name 'changelog*' -delete
umoci repack --history.created_by "apt-get install python3 python3-minimal" \
    --image "$layout:python" "$bundle"

umoci config --image "$layout:python" --tag latest \
    --config.cmd python3 --config.env "PATH=$IMAGE_PATH" \
    --architecture amd64 --os linux
umoci rm --image "$layout:python"
umoci gc --layout "$layout"
echo "$RECIPE_VERSION" >"$layout/.lazypull-recipe"

rm -rf "$OUT"
mv "$layout" "$OUT"
log "built in ${SECONDS} s"
print_sizes
[[ -z $push_ref ]] || push_layout
