#!/usr/bin/env python3
"""Sum what a workload read from an unpacked image, from `strace -ff -y` output files.

    count_reads.py ROOTFS TRACE_FILE...

Prints one JSON object with these fields:
- `files`: regular files of ROOTFS the workload read or mapped;
- `read_syscall_bytes`: bytes returned by read, pread64, readv, preadv and preadv2;
- `mapped_bytes`: the union of file ranges passed to mmap, cut to each file's size;
- `bytes`: per file, read bytes plus mapped bytes, at most the file's size;
- `opened_file_bytes`: the sizes of those files summed.
Mapped ranges are an upper bound of what the workload touches, because a mapping's pages
are read only when touched.
"""

import json
import os
import re
import sys

READ = re.compile(r"^(?:read|pread64|readv|preadv|preadv2)\(\d+<([^>]*)>.*\)\s+=\s+(\d+)")
MMAP = re.compile(r"^mmap\([^,]*, (\d+), [^,]*, [^,]*, \d+<([^>]*)>, (0x[0-9a-f]+|\d+)\)\s+=\s+0x")


def merged_length(intervals: list[tuple[int, int]]) -> int:
    total = 0
    end = -1
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    rootfs = os.path.join(os.path.realpath(sys.argv[1]), "")
    read_bytes: dict[str, int] = {}
    mapped: dict[str, list[tuple[int, int]]] = {}
    for trace in sys.argv[2:]:
        with open(trace, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if match := READ.match(line):
                    path, count = match.group(1), int(match.group(2))
                    if path.startswith(rootfs):
                        read_bytes[path] = read_bytes.get(path, 0) + count
                elif match := MMAP.match(line):
                    length, path, offset = int(match.group(1)), match.group(2), int(match.group(3), 0)
                    if path.startswith(rootfs):
                        mapped.setdefault(path, []).append((offset, offset + length))

    result = {"files": 0, "read_syscall_bytes": 0, "mapped_bytes": 0, "bytes": 0, "opened_file_bytes": 0}
    for path in set(read_bytes) | set(mapped):
        if not os.path.isfile(path):
            continue
        size = os.path.getsize(path)
        read = read_bytes.get(path, 0)
        mapped_length = merged_length([(start, min(stop, size)) for start, stop in mapped.get(path, []) if start < size])
        result["files"] += 1
        result["read_syscall_bytes"] += read
        result["mapped_bytes"] += mapped_length
        result["bytes"] += min(size, read + mapped_length)
        result["opened_file_bytes"] += size
    print(json.dumps(result))


if __name__ == "__main__":
    main()
