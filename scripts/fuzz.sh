#!/usr/bin/env bash
# Runs every fuzz target of the format crate for a while (default 60 s each).
#
#   scripts/fuzz.sh [SECONDS]
#
# Installs cargo-fuzz with `cargo install cargo-fuzz --locked` when it is missing. Uses a nightly
# toolchain when one is installed; with only a stable toolchain, RUSTC_BOOTSTRAP=1 lets cargo
# fuzz use its nightly flags. Crashes are kept under format/fuzz/artifacts/<target>/ and
# reproduce with `cargo fuzz run <target> <file>`.
set -euo pipefail
seconds=${1:-60}
cd "$(dirname "$0")/../format"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing; installing it from crates.io"
  cargo install cargo-fuzz --locked
fi
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi
for target in footer toc tar_scan blob range_plan; do
  echo "fuzzing $target for ${seconds}s"
  cargo "${toolchain[@]}" fuzz run "$target" -s none -- -max_total_time="$seconds" -rss_limit_mb=2048
done
