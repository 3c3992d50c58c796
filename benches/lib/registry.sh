# A docker-registry for the benchmark scripts, started in the server side of the current
# network profile (benches/lib/net.sh must be sourced first). Its access log records every
# request with status and body bytes, which is how the scripts count what was served.
#
# Sets REGISTRY_PORT (on 127.0.0.1 of the server side), REGISTRY_LOG and REGISTRY_PID.

REGISTRY_PORT=
REGISTRY_LOG=
REGISTRY_PID=

# Starts a registry storing its data under directory $1 and waits until it responds.
registry_start() {
    local dir=$1
    mkdir -p "$dir"
    REGISTRY_PORT=$(net_server python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    cat >"$dir/config.yml" <<CONFIG
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/storage
http:
  addr: 127.0.0.1:$REGISTRY_PORT
  secret: benchmark-only
CONFIG
    REGISTRY_LOG=$dir/log
    local prefix
    mapfile -t prefix < <(net_server_prefix)
    "${prefix[@]}" docker-registry serve "$dir/config.yml" >"$REGISTRY_LOG" 2>&1 &
    REGISTRY_PID=$!
    local tries=300
    until net_server curl -sf -o /dev/null "http://127.0.0.1:$REGISTRY_PORT/v2/"; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || { echo "the registry in $dir did not start; see $REGISTRY_LOG" >&2; return 1; }
        sleep 0.1
    done
}

# Stops the registry started by registry_start, if any.
registry_stop() {
    [ -n "$REGISTRY_PID" ] || return 0
    kill "$REGISTRY_PID" 2>/dev/null
    while kill -0 "$REGISTRY_PID" 2>/dev/null; do sleep 0.1; done
    REGISTRY_PID=
}

# Pushes the OCI layout image $1 (oci:DIR:TAG) to repository:tag $2 of the registry, blobs
# unchanged.
registry_push() {
    net_server skopeo --insecure-policy copy --quiet --preserve-digests --dest-tls-verify=false \
        "$1" "docker://127.0.0.1:$REGISTRY_PORT/$2"
}

# Uploads the file $1 as a blob of repository $2 and prints its digest.
registry_put_blob() {
    local file=$1 repository=$2 digest location
    digest=sha256:$(sha256sum "$file" | awk '{print $1}')
    location=$(net_server curl -fsS -D - -o /dev/null -X POST \
        "http://127.0.0.1:$REGISTRY_PORT/v2/$repository/blobs/uploads/" |
        awk 'tolower($1) == "location:" { sub(/\r$/, "", $2); print $2 }')
    case $location in
    http*) ;;
    *) location=http://127.0.0.1:$REGISTRY_PORT$location ;;
    esac
    case $location in
    *\?*) location="$location&digest=$digest" ;;
    *) location="$location?digest=$digest" ;;
    esac
    net_server curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' \
        --data-binary "@$file" "$location"
    echo "$digest"
}

# Prints the current size of the access log, the offset to pass to registry_served_since.
registry_log_offset() {
    stat -c %s "$REGISTRY_LOG"
}

# Prints "REQUESTS BYTES": the GET and HEAD requests the registry logged after byte offset $1
# of its log, and the body bytes it sent for them. Waits 0.2 s first, because the registry
# writes a line when the response ends.
registry_served_since() {
    sleep 0.2
    tail -c +"$(($1 + 1))" "$REGISTRY_LOG" | python3 -c '
import re, sys
requests = sent = 0
for line in sys.stdin:
    match = re.search(r"\"(GET|HEAD) /v2/\S+ HTTP/[0-9.]+\" \d{3} (\d+)", line)
    if match:
        requests += 1
        sent += int(match.group(2))
print(requests, sent)'
}
