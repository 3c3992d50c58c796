"""Run a benchmark workload chrooted in a root file system and report when it became ready.

Usage: python3 workload.py ROOT READY TIMEOUT_S OUTPUT_FILE [NAME=VALUE...] -- ARGV...

Runs `chroot ROOT ARGV...` in a process group of its own with exactly the environment given
(NAME=VALUE arguments, or a standard PATH, HOME=/root and LANG=C.UTF-8 when there are none,
so the host's environment never leaks in), copies its stdout and stderr to
OUTPUT_FILE, and prints the wall-clock time (seconds since the epoch) at which it became ready:
the first output line containing READY, or its exit when READY is empty. A workload that
prints READY and keeps running (a server) is stopped with SIGTERM, then SIGKILL after 2 s.
Exits 1, with the reason on stderr, when the workload exits with a non-zero status, exits
before printing READY, or is not ready within TIMEOUT_S seconds.
"""

import os
import signal
import subprocess
import sys
import threading
import time

DEFAULT_ENVIRONMENT = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}


def stop(process):
    """Stop the workload's process group: SIGTERM, then SIGKILL after 2 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main(arguments):
    if "--" not in arguments[4:] or len(arguments) < 6:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    root, ready, timeout_text, output_file = arguments[:4]
    separator = arguments.index("--", 4)
    assignments = arguments[4:separator]
    argv = arguments[separator + 1:]
    if not argv:
        print("workload: no command after --", file=sys.stderr)
        return 2
    environment = dict(DEFAULT_ENVIRONMENT)
    if assignments:
        environment = dict(assignment.split("=", 1) for assignment in assignments if "=" in assignment)
    timeout = float(timeout_text)
    process = subprocess.Popen(
        ["chroot", root, *argv],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    ready_at = []
    seen = threading.Event()

    def read_output():
        with open(output_file, "wb") as output:
            for line in process.stdout:
                output.write(line)
                if ready and not ready_at and ready.encode() in line:
                    ready_at.append(time.time())
                    seen.set()
        seen.set()

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    if ready:
        seen.wait(timeout)
        if not ready_at:
            status = process.poll()
            stop(process)
            if status is None:
                print(f"workload: not ready within {timeout} s (no line with {ready!r})", file=sys.stderr)
            else:
                print(f"workload: exited with status {status} before printing {ready!r}", file=sys.stderr)
            return 1
        # A workload that exits right after its readiness line must exit cleanly; one that
        # keeps running is stopped.
        try:
            status = process.wait(timeout=max(0.0, min(2.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            stop(process)
            status = 0
    else:
        try:
            status = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(process)
            print(f"workload: did not exit within {timeout} s", file=sys.stderr)
            return 1
        ready_at.append(time.time())
    reader.join(timeout=2)
    if status != 0:
        print(f"workload: exited with status {status}; output in {output_file}", file=sys.stderr)
        return 1
    print(f"{ready_at[0]:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
