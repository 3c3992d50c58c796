#!/bin/sh
# Workload of the synthetic benchmark images: read each range listed in /app/readset.sha256
# ("SHA256 PATH SKIP_MIB COUNT_MIB" per line) and check its digest, then print `ready`.
set -eu
ranges=0
while read -r expected path skip count; do
    actual=$(dd if="$path" bs=1048576 skip="$skip" count="$count" 2>/dev/null | sha256sum | cut -d' ' -f1)
    if [ "$actual" != "$expected" ]; then
        echo "workload.sh: digest mismatch for $path (skip $skip MiB, count $count MiB): $actual" >&2
        exit 1
    fi
    ranges=$((ranges + 1))
done </app/readset.sha256
echo "result ranges=$ranges"
echo ready
