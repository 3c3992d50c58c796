#!/usr/bin/env python3
"""Evict the regular files under a directory from the page cache, or count their resident bytes.

    page_cache.py evict ROOTFS     -> drops clean cached pages of every regular file
    page_cache.py resident ROOTFS  -> {"files": N, "bytes": B} of the files with resident pages

Run `sync` before `evict`: dirty pages stay cached. Evicting, running a workload and then
counting gives the bytes the kernel read from the image for that run, counting files that
were executed or mapped as well as read, and including the kernel's read-ahead.
"""

import ctypes
import ctypes.util
import json
import mmap
import os
import stat
import sys

PAGE = os.sysconf("SC_PAGE_SIZE")
libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
MAP_FAILED = ctypes.c_void_p(-1).value


def regular_files(root: str):
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode) and info.st_size > 0:
                yield path, info.st_size


def resident_bytes(path: str, size: int) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, MAP_FAILED):
            raise OSError(ctypes.get_errno(), f"mmap of {path} failed")
        try:
            pages = (size + PAGE - 1) // PAGE
            vector = (ctypes.c_ubyte * pages)()
            if libc.mincore(address, size, vector) != 0:
                raise OSError(ctypes.get_errno(), f"mincore of {path} failed")
            resident = sum(1 for page in vector if page & 1)
        finally:
            libc.munmap(address, size)
    finally:
        os.close(fd)
    # The last page of a file may be partial.
    return min(resident * PAGE, size)


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("evict", "resident"):
        raise SystemExit(__doc__)
    command, root = sys.argv[1], sys.argv[2]
    if command == "evict":
        for path, _ in regular_files(root):
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        return
    files = 0
    total = 0
    for path, size in regular_files(root):
        resident = resident_bytes(path, size)
        if resident:
            files += 1
            total += resident
    print(json.dumps({"files": files, "bytes": total}))


if __name__ == "__main__":
    main()
