#!/usr/bin/env bash
# Install the Debian packages that lazypull's build and tests need. Run as root.
#
# Idempotent: when every package is already installed it prints that and exits, without
# touching the network. Otherwise it runs `apt-get update` once and installs the missing ones.
set -euo pipefail

PACKAGES=(
    # FUSE mounts (fusermount3) and the kernel overlay stacking tests.
    fuse3
    # Real components the tests start: registry, containerd with runc, ctr-remote.
    docker-registry containerd runc stargz-snapshotter
    # Building the test image without a Docker engine, and pushing it.
    mmdebstrap umoci skopeo
    # The Go checker built against the upstream estargz package in GOPATH mode.
    golang-go golang-github-containerd-stargz-snapshotter-dev
    # containerd's protobuf definitions are compiled by the snapshotter's build script.
    protobuf-compiler
    # Archive tools: GNU tar is the reference extractor, pigz writes multi-member gzip.
    tar gzip pigz zstd xz-utils
    # Network namespaces and shaped links for the cold-start benchmarks.
    iproute2
    # Inspection helpers used by tests and scripts.
    attr xxd jq curl python3 e2fsprogs util-linux procps psmisc inotify-tools
    # Benchmark timing.
    hyperfine
    # Benchmark images (scripts/build-bench-images.sh): pip for the ml image's wheels, node
    # for the node image's node_modules (npm is added below when nodejs does not ship it),
    # openssl for the synthetic data, strace to count what each workload reads.
    python3-pip python3-venv nodejs openssl strace
    # mmdebstrap verifies Debian's release signatures with these keys.
    debian-archive-keyring ca-certificates
)

if [[ $(id -u) -ne 0 ]]; then
    echo "setup.sh: must run as root (try: sudo $0)" >&2
    exit 1
fi

missing=()
for package in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
    if [[ $status != installed ]]; then
        missing+=("$package")
    fi
done

# Debian ships npm as a package of its own. Other builds of nodejs (NodeSource's, for one)
# include npm and conflict with Debian's npm package, so npm is added only when missing.
if ! command -v npm >/dev/null 2>&1; then
    status=$(dpkg-query -W -f='${db:Status-Status}' npm 2>/dev/null || true)
    [[ $status == installed ]] || missing+=(npm)
fi

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "setup.sh: all ${#PACKAGES[@]} packages are installed; nothing to do"
else
    echo "setup.sh: installing ${#missing[@]} missing packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
    echo "setup.sh: installed ${missing[*]}"
fi

# overlayfs may be a module that is not loaded yet; FUSE needs its device node.
if ! grep -qw overlay /proc/filesystems; then
    echo "setup.sh: loading the overlay kernel module"
    modprobe overlay || echo "setup.sh: modprobe overlay failed; overlay tests will fail" >&2
fi
if [[ ! -c /dev/fuse ]]; then
    echo "setup.sh: /dev/fuse is missing; FUSE tests will fail" >&2
fi

# lazypull needs a recent stable Rust (edition 2024, 1.91 or later); Debian's rustc is older.
# Install one with rustup when no cargo is found.
if ! command -v cargo >/dev/null 2>&1 && [[ ! -x $HOME/.cargo/bin/cargo ]]; then
    echo "setup.sh: cargo not found; installing the stable Rust toolchain with rustup into $HOME/.cargo"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
