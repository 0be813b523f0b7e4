#!/usr/bin/env bash
# A DPDK pod on a vhost-user port, attached by kdp-cni, talking to a kernel pod on a TAP through
# the dataplane: dpdk-testpmd with virtio_user in server mode on the pod's socket, in icmpecho
# mode (it answers ARP and ping as a host would); the dataplane is the vhost-user client.
# Then either side restarts and traffic resumes: the DPDK pod (the dataplane reconnects to the
# new process's socket), and the dataplane, stopped or killed (it brings both ports back from
# its records: it connects to d1's socket again and takes k1's persistent TAP back in k1's
# namespace, so k1 keeps its interface, address and routes, and CNI CHECK passes).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_dataplane
CNI="$KDP_BUILD_DIR/cni-shim/kdp-cni"
TESTPMD=${TESTPMD:-dpdk-testpmd}
command -v "$TESTPMD" >/dev/null || fail "$TESTPMD not found"
mkdir -p "$WORK_DIR"
conf() {
    printf '{"cniVersion": "1.0.0", "name": "kdp", "type": "kdp-cni", "dataplane_socket": "%s", "data_dir": "%s", "vhost_dir": "%s"%s}' \
        "$(api_socket node1)" "$WORK_DIR/ipam" "$WORK_DIR/vhost" "${1:-}"
}
cni() { # cni COMMAND POD CONFIG
    printf '%s' "$3" | env -i PATH="$PATH" CNI_COMMAND="$1" CNI_CONTAINERID="ctr-$2" \
        CNI_NETNS="/var/run/netns/$(ns_name "$2")" CNI_IFNAME=eth0 \
        CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=$2" "$CNI"
}

step "a dataplane, a kernel pod on a TAP and a DPDK pod on vhost-user (both by kdp-cni)"
underlay_create
node_uplink 1
c1=$(kdp_node_config node1 1 "$(uplink_if 1)" standard "" "" "$STATIC_POLICY")
start_dataplane node1 "$c1"
netns_create k1
netns_create d1
out=$(cni ADD k1 "$(conf)") || fail "ADD k1: $out"
K1=$(ns_name k1)
out=$(cni ADD d1 "$(conf ', "port_type": "vhostuser", "vhost_queues": 2')") || fail "ADD d1: $out"
SOCK=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["interfaces"][0]["socketPath"])' <<<"$out")
DIP=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["ips"][0]["address"].split("/")[0])' <<<"$out")
pass "k1 on a TAP; d1 $DIP, socket path $SOCK"

# d1_queues: the RX queues the dataplane gave d1's port.
d1_queues() {
    "$KDP_BUILD_DIR/control/kdpctl" --dataplane "$(api_socket node1)" get ports -o json |
        python3 -c 'import json,sys; print([p["rx_queues"] for p in json.load(sys.stdin) if p["name"] == "default/d1"])'
}
info=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["queues"])' "${SOCK%.sock}.json")
[ "$info" = 2 ] || fail "d1's description next to its socket says $info queue pairs, not 2"
[ "$(d1_queues)" = "[2]" ] || fail "d1's port has RX queues $(d1_queues), not [2]"
pass "d1's port has the 2 queue pairs of vhost_queues, and its description says so"

# start_dpdk_pod N: dpdk-testpmd on d1's socket (its own file prefix, no hugepages); a stats
# period keeps it running without a terminal until it is signalled.
start_dpdk_pod() {
    local prefix="kdp${RUN_ID}-d1-$1"
    _PREFIXES+=("$prefix")
    spawn "$TESTPMD" --file-prefix "$prefix" --no-pci --no-huge -m 256 --lcores '0@(0-1),1@(0-1)' \
        --vdev "net_virtio_user0,path=$SOCK,queues=2,server=1" --log-level='*:warning' -- \
        --rxq=2 --txq=2 --forward-mode=icmpecho --auto-start --stats-period=60 --total-num-mbufs=2048 \
        >"$WORK_DIR/testpmd-$1.log" 2>&1
    DPDK_POD=$BG_PID
    wait_for 20 "testpmd forwarding" grep -q "Start automatic packet forwarding\|icmpecho packet forwarding" \
        "$WORK_DIR/testpmd-$1.log" || fail "testpmd did not start: $(tail -n 5 "$WORK_DIR/testpmd-$1.log")"
}

step "kernel pod <-> DPDK pod"
start_dpdk_pod 1
wait_for 20 "d1 answering" in_ns "$K1" ping -n -c 1 -W 1 "$DIP" \
    || fail "the DPDK pod does not answer: $(tail -n 5 "$WORK_DIR/testpmd-1.log")"
check_ping "$K1" "$DIP" "k1 (kernel, TAP) -> d1 (dpdk-testpmd, vhost-user)"

step "the DPDK pod restarts"
stop_bg "$DPDK_POD" INT
if in_ns "$K1" ping -n -c 2 -i 0.2 -w 2 "$DIP" >/dev/null 2>&1; then
    fail "d1 answered while its process was down"
fi
pass "d1 down: no answer"
start_dpdk_pod 2
wait_for 20 "d1 answering again" in_ns "$K1" ping -n -c 1 -W 1 "$DIP" \
    || fail "traffic did not resume after the DPDK pod restarted"
check_ping "$K1" "$DIP" "k1 -> d1 after its restart (the dataplane reconnected)"

# tap_facts NS: eth0's index, MAC and the default route in a pod's namespace, on one line
# (the route is marked linkdown while no process holds the TAP's queues: that is not a change).
tap_facts() {
    in_ns "$1" cat /sys/class/net/eth0/ifindex /sys/class/net/eth0/address 2>/dev/null | tr '\n' ' '
    in_ns "$1" ip -4 route show default 2>/dev/null | sed 's/ linkdown//; s/ *$//'
}
before=$(tap_facts "$K1")
for how in TERM KILL; do
    step "the dataplane restarts (SIG$how)"
    if [ "$how" = KILL ]; then
        kill -KILL "${_DP_PID[node1]}"
        wait "${_DP_PID[node1]}" 2>/dev/null || true
        unset "_DP_PID[node1]"
    else
        stop_dataplane node1
    fi
    [ "$(tap_facts "$K1")" = "$before" ] \
        || fail "k1's eth0 changed while the dataplane was down: $(tap_facts "$K1") (was $before)"
    pass "dataplane down: k1 keeps its eth0, MAC and default route ($before)"
    start_dataplane node1 "$c1"
    for pod in d1 k1; do
        grep -q "port default/$pod restored" "$WORK_DIR/node1.log" \
            || fail "$pod's port was not restored: $(grep -ai port "$WORK_DIR/node1.log" | tail -n 5)"
    done
    [ "$(tap_facts "$K1")" = "$before" ] || fail "k1's eth0 is not the one it had: $(tap_facts "$K1")"
    [ "$(d1_queues)" = "[2]" ] || fail "d1's port came back with RX queues $(d1_queues), not [2]"
    pass "node1 restarted: d1's vhost-user port (2 queue pairs) and k1's TAP taken back from their records"
    cni CHECK k1 "$(conf)" >/dev/null || fail "CHECK k1 failed after the restart"
    pass "CHECK k1 passes: the runtime has nothing to redo"
    wait_for 20 "d1 answering through the restarted dataplane" in_ns "$K1" ping -n -c 1 -W 1 "$DIP" \
        || fail "d1 unreachable after the dataplane restart: $(tail -n 5 "$WORK_DIR/node1.log")"
    check_ping "$K1" "$DIP" "k1 -> d1 through the restarted dataplane (neither pod restarted)"
done
stop_bg "$DPDK_POD" INT

step "DEL"
cni DEL d1 "$(conf ', "port_type": "vhostuser"')" >/dev/null || fail "DEL d1"
cni DEL k1 "$(conf)" >/dev/null || fail "DEL k1"
[ ! -e "$(dirname "$SOCK")" ] || fail "$(dirname "$SOCK") left after DEL"
if in_ns "$K1" ip link show eth0 >/dev/null 2>&1; then
    fail "k1's persistent TAP is still in its namespace after DEL"
fi
pass "both pods deleted, k1's TAP gone with its port"

finish
