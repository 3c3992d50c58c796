#!/usr/bin/env python3
"""Print the file plan of a synthetic benchmark image.

    plan.py files IMAGE TOTAL_MIB LAYERS   -> "LAYER<TAB>PATH<TAB>SIZE_MIB<TAB>KEY" per file
    plan.py reads                          -> "PATH<TAB>SKIP_MIB<TAB>COUNT_MIB" per read range

Every image has the same read set under data/hot/: one group centred on the middle of the
data and one group at its end, so two images of different sizes differ only in their
filler files. Layers are equal in size and no file spans two layers. Filler sizes cycle
through a fixed list of 1 to 256 MiB. KEY is the AES-128 key (hex) of the file's content:
the first 16 bytes of sha256 over a label, which names the image for fillers and not for
the read set.
"""

import hashlib
import sys

# (path, size in MiB, ranges read as (skip MiB, count MiB)). A range covering the whole
# file reads it whole.
MIDDLE_SET = [
    ("data/hot/mid-00.bin", 1, [(0, 1)]),
    ("data/hot/mid-01.bin", 2, [(0, 2)]),
    ("data/hot/mid-02.bin", 4, [(0, 4)]),
    ("data/hot/mid-03.bin", 8, [(0, 8)]),
    ("data/hot/mid-big.bin", 64, [(24, 8)]),
]
END_SET = [
    ("data/hot/end-00.bin", 1, [(0, 1)]),
    ("data/hot/end-01.bin", 3, [(0, 3)]),
    ("data/hot/end-02.bin", 6, [(0, 6)]),
    ("data/hot/end-03.bin", 12, [(0, 12)]),
    ("data/hot/end-big.bin", 128, [(100, 5)]),
]
FILLER_SIZES_MIB = [64, 3, 256, 16, 1, 128, 8, 32, 2, 48, 4, 192, 12, 24, 96, 6]


def key(label: str) -> str:
    return hashlib.sha256(("lazypull-synthetic-v1/" + label).encode()).hexdigest()[:32]


def plan_files(image: str, total_mib: int, layers: int) -> list[tuple[int, str, int, str]]:
    if total_mib % layers != 0:
        raise SystemExit(f"plan.py: {total_mib} MiB does not split into {layers} equal layers")
    layer_mib = total_mib // layers
    middle_mib = sum(size for _, size, _ in MIDDLE_SET)
    end_mib = sum(size for _, size, _ in END_SET)
    middle_start = total_mib // 2 - middle_mib // 2
    if middle_start // layer_mib != (middle_start + middle_mib - 1) // layer_mib:
        raise SystemExit("plan.py: the middle read set would span two layers")

    files: list[tuple[int, str, int, str]] = []
    offset = 0
    filler_index = 0

    def fill(until_mib: int) -> None:
        nonlocal offset, filler_index
        while offset < until_mib:
            layer_end = (offset // layer_mib + 1) * layer_mib
            preferred = FILLER_SIZES_MIB[filler_index % len(FILLER_SIZES_MIB)]
            size = min(preferred, until_mib - offset, layer_end - offset)
            layer = offset // layer_mib
            path = f"data/part-{layer:02d}/file-{filler_index:04d}.bin"
            files.append((layer, path, size, key(f"{image}/{path}")))
            offset += size
            filler_index += 1

    def place(group: list[tuple[str, int, list[tuple[int, int]]]]) -> None:
        nonlocal offset
        for path, size, _ in group:
            files.append((offset // layer_mib, path, size, key(path)))
            offset += size

    fill(middle_start)
    place(MIDDLE_SET)
    fill(total_mib - end_mib)
    place(END_SET)
    assert offset == total_mib
    return files


def main() -> None:
    if sys.argv[1:2] == ["files"] and len(sys.argv) == 5:
        for layer, path, size, content_key in plan_files(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])):
            print(f"{layer}\t{path}\t{size}\t{content_key}")
    elif sys.argv[1:] == ["reads"]:
        for path, _, ranges in MIDDLE_SET + END_SET:
            for skip, count in ranges:
                print(f"{path}\t{skip}\t{count}")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
