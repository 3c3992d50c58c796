#!/usr/bin/env bash
# The main job end to end, on a fresh Debian machine, as root:
#
#   1. install the Debian packages (scripts/setup.sh) and build lazypull in release mode;
#   2. build the real test image from Debian packages (bookworm + python3, cached);
#   3. start Debian's docker-registry on 127.0.0.1 and push the image to it;
#   4. convert it to eStargz, registry to registry, with `lazypull convert`;
#   5. mount the converted image lazily with `lazypull mount` and run a python workload in it
#      with chroot, then print how many bytes were fetched against the image size;
#   6. for comparison, time a full pull of the original image (download, gunzip, untar, run).
#
# Everything the demo starts is stopped and removed on exit. Set LAZYPULL_DEMO_KEEP=1 to keep
# the work directory for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

if [[ $(id -u) -ne 0 ]]; then
    echo "demo.sh: must run as root (mounts, chroot): sudo $0" >&2
    exit 1
fi

say() { printf '\n== %s\n' "$*"; }

say "installing system packages"
scripts/setup.sh

if ! command -v cargo >/dev/null; then
    [[ -x $HOME/.cargo/bin/cargo ]] && export PATH=$HOME/.cargo/bin:$PATH
fi
if ! command -v cargo >/dev/null; then
    echo "demo.sh: cargo not found; scripts/setup.sh installs Rust with rustup when it is missing" >&2
    exit 1
fi

say "building lazypull (release)"
cargo build --release --bin lazypull
lazypull=$repo/target/release/lazypull

say "building the test image (Debian bookworm + python3; cached after the first run)"
scripts/build-test-image.sh
layout=${LAZYPULL_CACHE_DIR:-/var/cache/lazypull}/images/python

work=$(mktemp -d /tmp/lazypull-demo.XXXXXX)
registry_pid=
mounted=
cleanup() {
    set +e
    [[ -n $mounted ]] && "$lazypull" unmount --state-dir "$work/state" "$work/rootfs" >/dev/null 2>&1
    [[ -n $registry_pid ]] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
    if [[ -z ${LAZYPULL_DEMO_KEEP:-} ]]; then
        rm -rf "$work"
    else
        echo "demo.sh: kept $work"
    fi
}
trap cleanup EXIT

say "starting docker-registry on 127.0.0.1"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
    sleep 0.1
done
registry=127.0.0.1:$port

skopeo copy --quiet --dest-tls-verify=false --preserve-digests "oci:$layout:latest" "docker://$registry/python:latest"
echo "pushed $registry/python:latest"

say "converting to eStargz: lazypull convert $registry/python:latest $registry/python:esgz"
"$lazypull" convert "$registry/python:latest" "$registry/python:esgz"

workload='import json, sqlite3, ssl, email.mime.text, http.client, asyncio
c = sqlite3.connect(":memory:")
c.execute("create table t(x)")
c.execute("insert into t values (42)")
print("python says", c.execute("select x from t").fetchone()[0])'

say "lazy start: mount the eStargz image and run python in it"
mkdir -p "$work/rootfs"
start=$(date +%s.%N)
"$lazypull" mount --state-dir "$work/state" --cache-dir "$work/cache" "$registry/python:esgz" "$work/rootfs"
mounted=1
chroot "$work/rootfs" python3 -c "$workload"
lazy_seconds=$(python3 -c "import time; print(f'{time.time() - $start:.2f}')")
"$lazypull" status --state-dir "$work/state" "$work/rootfs" >"$work/status.json"
python3 - "$work/status.json" "$lazy_seconds" <<'PY'
import json, sys
total = json.load(open(sys.argv[1]))["total"]
fetched, size = total["bytes_fetched"], total["blob_size"]
print(f"lazy start: {sys.argv[2]} s to the workload's output; fetched {fetched / 1e6:.1f} MB "
      f"of {size / 1e6:.1f} MB ({100 * fetched / size:.1f}%) in {total['http_requests']} range requests")
PY
"$lazypull" unmount --state-dir "$work/state" "$work/rootfs"
mounted=

say "full pull for comparison: download, gunzip, untar every layer, then run"
start=$(date +%s.%N)
skopeo copy --quiet --src-tls-verify=false "docker://$registry/python:latest" "oci:$work/full:latest"
mkdir -p "$work/full-rootfs"
python3 - "$work/full" "$work/full-rootfs" <<'PY'
import json, os, subprocess, sys
layout, root = sys.argv[1], sys.argv[2]
index = json.load(open(os.path.join(layout, "index.json")))
manifest_digest = index["manifests"][0]["digest"].split(":", 1)[1]
manifest = json.load(open(os.path.join(layout, "blobs/sha256", manifest_digest)))
for layer in manifest["layers"]:
    blob = os.path.join(layout, "blobs/sha256", layer["digest"].split(":", 1)[1])
    # Whiteouts are applied the way a runtime would: delete the named path, then skip the marker.
    listing = subprocess.run(["tar", "-tzf", blob], check=True, capture_output=True, text=True).stdout.split("\n")
    for name in listing:
        base = os.path.basename(name.rstrip("/"))
        if base.startswith(".wh.") and base != ".wh..wh..opq":
            target = os.path.join(root, os.path.dirname(name), base[len(".wh."):])
            subprocess.run(["rm", "-rf", target], check=True)
    subprocess.run(["tar", "-xzpf", blob, "-C", root, "--exclude=*/.wh.*", "--exclude=.wh.*"], check=True)
PY
chroot "$work/full-rootfs" python3 -c "$workload"
full_seconds=$(python3 -c "import time; print(f'{time.time() - $start:.2f}')")
echo "full pull: $full_seconds s to the workload's output"
python3 -c "print(f'lazy start took {$lazy_seconds / $full_seconds:.2f} of the full pull time on loopback')"
