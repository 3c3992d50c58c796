# Network profiles for the benchmark scripts: loopback, or a shaped link between two network
# namespaces that the script creates. Source this file from bash. It defines functions and
# NET_* variables, and starts nothing until net_up is called.
#
# A shaped profile is a veth pair between a server namespace and a client namespace. When the
# kernel has `tc netem`, netem on both ends sets rate and delay (half the RTT each way).
# Otherwise `tc tbf` on both ends limits the rate and benches/rtt_proxy.py, in the server
# namespace, delays every chunk by half the RTT each way. Clients reach the registry through
# NET_REGISTRY (the proxy) in both cases. Every client must run inside the client namespace
# (net_client). It is started with nsenter rather than `ip netns exec`, because the latter
# remounts /sys (runc then finds no cgroup mount) and keeps FUSE mounts out of the root mount
# namespace. While the namespaces exist, the root namespace has an `unreachable` route for
# their subnet. A client started in the wrong namespace then fails at once instead of sending
# the request out through the default route.
#
# The caller must call net_down on every exit path (from its EXIT trap).

NET_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NET_SERVER_NS=${NET_SERVER_NS:-lpsuite-srv}
NET_CLIENT_NS=${NET_CLIENT_NS:-lpsuite-cli}
NET_SUBNET=${NET_SUBNET:-10.204.0.0/24}
NET_SERVER_ADDRESS=${NET_SERVER_ADDRESS:-10.204.0.1}
NET_CLIENT_ADDRESS=${NET_CLIENT_ADDRESS:-10.204.0.2}
NET_PROXY_PORT=${NET_PROXY_PORT:-5000}

# State of the current profile.
NET_PROFILE=loopback
NET_SHAPED=0
NET_RATE=
NET_RTT_MS=0
NET_SHAPER=none
NET_REGISTRY=
NET_PIDS=()
NET_CREATED=0

# Prints "RATE RTT_MS" for a profile name (RATE in tc syntax, empty for loopback), or fails.
net_profile_parameters() {
    case $1 in
    loopback) echo " 0" ;;
    1gbit-2ms) echo "1gbit 2" ;;
    100mbit-20ms) echo "100mbit 20" ;;
    *) return 1 ;;
    esac
}

# Prints the nominal rate of a tc rate string in bits per second (100mbit -> 100000000).
net_rate_bits() {
    local rate=$1
    case $rate in
    *gbit) echo $((${rate%gbit} * 1000000000)) ;;
    *mbit) echo $((${rate%mbit} * 1000000)) ;;
    *kbit) echo $((${rate%kbit} * 1000)) ;;
    *) echo "$rate" ;;
    esac
}

# Runs a command in the client namespace of a shaped profile, directly on loopback.
net_client() {
    if [ "$NET_SHAPED" = 1 ]; then
        nsenter --net="/run/netns/$NET_CLIENT_NS" "$@"
    else
        "$@"
    fi
}

# Runs a command in the server namespace of a shaped profile, directly on loopback.
net_server() {
    if [ "$NET_SHAPED" = 1 ]; then
        nsenter --net="/run/netns/$NET_SERVER_NS" "$@"
    else
        "$@"
    fi
}

# Prints the nsenter prefix of the server namespace, one word a line (nothing on loopback), for
# background jobs: `"${prefix[@]}" daemon &` makes $! the daemon, while a function would run in
# a subshell of its own.
net_server_prefix() {
    [ "$NET_SHAPED" = 1 ] && echo "nsenter" && echo "--net=/run/netns/$NET_SERVER_NS"
    return 0
}

# Tries netem on a device of the server namespace; returns 0 when the kernel has it.
net_netem_works() {
    local device=$1
    if nsenter --net="/run/netns/$NET_SERVER_NS" tc qdisc replace dev "$device" root netem delay 1ms 2>/dev/null; then
        nsenter --net="/run/netns/$NET_SERVER_NS" tc qdisc del dev "$device" root 2>/dev/null
        return 0
    fi
    return 1
}

# Sets up profile $1. For a shaped profile: the route, the namespaces, the veth pair and its
# shaping. The registry proxy starts later, with net_start_proxy.
net_up() {
    local profile=$1 parameters
    parameters=$(net_profile_parameters "$profile") || { echo "unknown network profile '$profile'" >&2; return 2; }
    read -r NET_RATE NET_RTT_MS <<<"$parameters"
    [ "$profile" = loopback ] && NET_RATE= && NET_RTT_MS=0
    NET_PROFILE=$profile
    NET_SHAPER=none
    NET_SHAPED=0
    [ "$profile" = loopback ] && return 0

    ip route replace unreachable "$NET_SUBNET"
    NET_CREATED=1
    ip netns add "$NET_SERVER_NS"
    ip netns add "$NET_CLIENT_NS"
    ip link add lpsuite-s0 netns "$NET_SERVER_NS" type veth peer name lpsuite-c0 netns "$NET_CLIENT_NS"
    ip -n "$NET_SERVER_NS" addr add "$NET_SERVER_ADDRESS/24" dev lpsuite-s0
    ip -n "$NET_CLIENT_NS" addr add "$NET_CLIENT_ADDRESS/24" dev lpsuite-c0
    local pair ns device
    for pair in "$NET_SERVER_NS:lpsuite-s0" "$NET_CLIENT_NS:lpsuite-c0"; do
        ns=${pair%%:*}
        device=${pair#*:}
        ip -n "$ns" link set lo up
        ip -n "$ns" link set "$device" up
    done
    NET_SHAPED=1

    # Half the RTT on each end, in microseconds so that odd RTTs stay exact.
    local half_us=$((NET_RTT_MS * 500))
    # A queue of about 50 ms at the nominal rate, at least 4 MB, so that TCP does not see
    # drops at the start of a transfer that a real link of this rate would buffer.
    local limit_bytes=$(($(net_rate_bits "$NET_RATE") / 8 / 20))
    [ "$limit_bytes" -lt 4000000 ] && limit_bytes=4000000
    # tbf needs a bucket of at least one timer tick's worth of bytes at the rate. With 64 kB at
    # 100 Mbit/s and 512 kB at 1 Gbit/s, the profile check of benches/suite.sh measured 94 and
    # 900 Mbit/s on the 2-core test VM.
    local burst=64kb
    [ "$(net_rate_bits "$NET_RATE")" -ge 1000000000 ] && burst=512kb
    if net_netem_works lpsuite-s0; then
        NET_SHAPER=netem
        for pair in "$NET_SERVER_NS:lpsuite-s0" "$NET_CLIENT_NS:lpsuite-c0"; do
            nsenter --net="/run/netns/${pair%%:*}" tc qdisc replace dev "${pair#*:}" root \
                netem delay "${half_us}us" rate "$NET_RATE" limit 100000
        done
    else
        NET_SHAPER=tbf+proxy
        for pair in "$NET_SERVER_NS:lpsuite-s0" "$NET_CLIENT_NS:lpsuite-c0"; do
            nsenter --net="/run/netns/${pair%%:*}" tc qdisc replace dev "${pair#*:}" root \
                tbf rate "$NET_RATE" burst "$burst" limit "$limit_bytes"
        done
    fi
}

# Starts the proxy in front of a registry listening on 127.0.0.1:$1 (in the server namespace
# of a shaped profile) and sets NET_REGISTRY to the address clients use. With netem the proxy
# adds no delay; with tbf it adds half the RTT each way. On loopback there is no proxy.
net_start_proxy() {
    local port=$1 log=$2
    if [ "$NET_SHAPED" = 0 ]; then
        NET_REGISTRY=127.0.0.1:$port
        return 0
    fi
    local delay_ms=0
    [ "$NET_SHAPER" = tbf+proxy ] && delay_ms=$(python3 -c "print($NET_RTT_MS / 2)")
    nsenter --net="/run/netns/$NET_SERVER_NS" python3 "$NET_LIB_DIR/../rtt_proxy.py" \
        "$NET_SERVER_ADDRESS" "$NET_PROXY_PORT" 127.0.0.1 "$port" "$delay_ms" >"$log" 2>&1 &
    NET_PIDS+=($!)
    NET_REGISTRY=$NET_SERVER_ADDRESS:$NET_PROXY_PORT
    local tries=100
    until net_client curl -sf -o /dev/null "http://$NET_REGISTRY/v2/"; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || { echo "the registry proxy at $NET_REGISTRY did not respond; see $log" >&2; return 1; }
        sleep 0.1
    done
}

# Stops the proxy and removes the namespaces and the route. Safe to call more than once and
# after a partial net_up.
net_down() {
    local pid
    for pid in "${NET_PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${NET_PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    done
    NET_PIDS=()
    if [ "$NET_CREATED" = 1 ]; then
        ip netns delete "$NET_SERVER_NS" 2>/dev/null
        ip netns delete "$NET_CLIENT_NS" 2>/dev/null
        ip route del unreachable "$NET_SUBNET" 2>/dev/null
        NET_CREATED=0
    fi
    NET_SHAPED=0
    NET_PROFILE=loopback
    return 0
}
