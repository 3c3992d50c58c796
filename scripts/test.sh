#!/usr/bin/env bash
# Build lazypull and run the whole test suite. Run as root on a machine prepared by
# scripts/setup.sh; CI runs it through .ci/run with CI=true.
#
# Tests that need root, FUSE, a registry or containerd skip with a printed "SKIPPED:"
# line when a prerequisite is missing, but fail when CI=true. This script never sets CI.
#
# Environment:
#   LAZYPULL_TEST_PROFILE         cargo profile, `release` (default) or `dev`
#   LAZYPULL_TEST_BUDGET_SECONDS  time allowed for everything, default 5100 (CI stops a
#                                 run at 5400 s; the rest is left for setup and cleanup)
#   LAZYPULL_TEST_PACKAGES        space-separated packages to test instead of the workspace
#   LAZYPULL_CACHE_DIR            where the test image is cached (default /var/cache/lazypull)
#   extra arguments               passed to the `cargo test` run, such as `-- NAME_FILTER`
#
# Every temporary file of the run lives in one directory ($TMPDIR is pointed at it). On
# exit the script detaches any mount left below it, kills any process still naming it
# (daemons, containerd shims) or running in a containerd namespace of this run, and
# deletes it, so no process or mount outlives the run. Leftovers are reported as "LEAK:" lines.
set -euo pipefail

cd "$(dirname "$0")/.."
SECONDS=0
# rustup installs cargo here; sudo and CI shells may not have it on PATH.
if ! command -v cargo >/dev/null 2>&1 && [[ -x $HOME/.cargo/bin/cargo ]]; then
    export PATH=$HOME/.cargo/bin:$PATH
fi
profile=${LAZYPULL_TEST_PROFILE:-release}
budget=${LAZYPULL_TEST_BUDGET_SECONDS:-5100}

log() { echo "test.sh: $*"; }

run_dir=$(mktemp -d /tmp/lazypull-test-run.XXXXXX)
export TMPDIR=$run_dir
# Test containerd namespaces include this id, so cleanup finds only this run's containers.
export LAZYPULL_TEST_RUN_ID=${run_dir##*.}
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}

# Prints the pids of leftover processes, other than this shell. A process is left over when
# its command line names the run directory or it runs in a cgroup of a containerd
# namespace of this run. Their descendants count too, because children of a leaked daemon need not
# name the directory.
leftover_pids() {
    local proc pid parent
    local -A found=()
    for proc in /proc/[0-9]*; do
        pid=${proc#/proc/}
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        if { tr '\0' ' ' <"$proc/cmdline"; } 2>/dev/null | grep -qF -- "$run_dir"; then
            found[$pid]=1
        elif grep -qF "/lazypull-test-$LAZYPULL_TEST_RUN_ID-" "$proc/cgroup" 2>/dev/null; then
            found[$pid]=1
        fi
    done
    local grew=1
    while [[ $grew -eq 1 && ${#found[@]} -gt 0 ]]; do
        grew=0
        while read -r pid parent; do
            if [[ -n ${found[$parent]:-} && -z ${found[$pid]:-} ]]; then
                found[$pid]=1
                grew=1
            fi
        done < <(ps -e -o pid=,ppid=)
    done
    for pid in "${!found[@]}"; do
        [[ $pid == "$$" || $pid == "$BASHPID" ]] || echo "$pid"
    done
}

cleanup() {
    local status=$? leaks=0 pid mount_point
    for pid in $(leftover_pids); do
        echo "LEAK: process $pid: $({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | cut -c1-200)"
        kill -KILL "$pid" 2>/dev/null || true
        leaks=$((leaks + 1))
    done
    # Deepest mount points first, so stacked mounts come apart.
    while read -r mount_point; do
        [[ -n $mount_point ]] || continue
        echo "LEAK: mount $mount_point"
        umount -l "$mount_point" 2>/dev/null || echo "test.sh: failed to detach $mount_point" >&2
        leaks=$((leaks + 1))
    done < <(awk -v dir="$run_dir" 'index($5, dir) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    if awk -v dir="$run_dir" 'index($5, dir) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
        echo "test.sh: mounts remain under $run_dir; not deleting it" >&2
    else
        rm -rf --one-file-system "$run_dir"
    fi
    if [[ $leaks -gt 0 ]]; then
        echo "test.sh: cleaned up $leaks leaked processes and mounts (see LEAK: lines)" >&2
    fi
    log "finished in ${SECONDS} s with status $status"
    exit "$status"
}
trap cleanup EXIT

scope=(--workspace)
if [[ -n ${LAZYPULL_TEST_PACKAGES:-} ]]; then
    scope=()
    for package in $LAZYPULL_TEST_PACKAGES; do
        scope+=(-p "$package")
    done
fi

case $profile in
    release) profile_args=(--release) ;;
    dev) profile_args=() ;;
    *) profile_args=(--profile "$profile") ;;
esac

if [[ $(id -u) -eq 0 ]]; then
    log "preparing the python test image"
    scripts/build-test-image.sh
else
    log "not root: the test image is built on demand, and root-only tests skip"
fi

log "building tests (profile $profile)"
build_started=$SECONDS
cargo test "${scope[@]}" "${profile_args[@]}" --no-run
log "build took $((SECONDS - build_started)) s"

remaining=$((budget - SECONDS))
if [[ $remaining -le 60 ]]; then
    echo "test.sh: only ${remaining} s of the ${budget} s budget left after building" >&2
    exit 1
fi
log "running tests with a limit of ${remaining} s"
test_started=$SECONDS
status=0
timeout --signal=TERM --kill-after=30 "$remaining" \
    cargo test "${scope[@]}" "${profile_args[@]}" --no-fail-fast "$@" || status=$?
if [[ $status -eq 124 ]]; then
    echo "test.sh: tests timed out after ${remaining} s" >&2
fi
log "tests took $((SECONDS - test_started)) s"
exit "$status"
