#!/usr/bin/env bash
# A DPDK pod on a vhost-user port, attached by kdp-cni, talking to a kernel pod on a TAP through
# the dataplane: dpdk-testpmd with virtio_user in server mode on the pod's socket, in icmpecho
# mode (it answers ARP and ping as a host would); the dataplane is the vhost-user client.
# Then either side restarts and traffic resumes: the DPDK pod (the dataplane reconnects to the
# new process's socket), and the dataplane (it brings the port back from its record and
# connects again; the kernel pod's TAP went with it and is attached again, as a runtime does
# after a failed CNI CHECK).
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
out=$(cni ADD d1 "$(conf ', "port_type": "vhostuser"')") || fail "ADD d1: $out"
SOCK=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["interfaces"][0]["socketPath"])' <<<"$out")
DIP=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["ips"][0]["address"].split("/")[0])' <<<"$out")
pass "k1 on a TAP; d1 $DIP, socket path $SOCK"

# start_dpdk_pod N: dpdk-testpmd on d1's socket (its own file prefix, no hugepages); a stats
# period keeps it running without a terminal until it is signalled.
start_dpdk_pod() {
    local prefix="kdp${RUN_ID}-d1-$1"
    _PREFIXES+=("$prefix")
    spawn "$TESTPMD" --file-prefix "$prefix" --no-pci --no-huge -m 256 --lcores '0@(0-1),1@(0-1)' \
        --vdev "net_virtio_user0,path=$SOCK,queues=1,server=1" --log-level='*:warning' -- \
        --forward-mode=icmpecho --auto-start --stats-period=60 --total-num-mbufs=2048 \
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

step "the dataplane restarts"
stop_dataplane node1
start_dataplane node1 "$c1"
grep -q "port default/d1 restored" "$WORK_DIR/node1.log" \
    || fail "d1's port was not restored: $(grep -i port "$WORK_DIR/node1.log" | tail -n 5)"
grep -q "port default/k1 (tap) not restored" "$WORK_DIR/node1.log" \
    || fail "the log does not say k1's TAP is gone"
pass "node1 restarted: d1's vhost-user port restored from its record; k1's TAP went with the old process"
cni CHECK k1 "$(conf)" >/dev/null 2>&1 && fail "CHECK k1 passed although its TAP is gone"
cni DEL k1 "$(conf)" >/dev/null || fail "DEL k1"
out=$(cni ADD k1 "$(conf)") || fail "ADD k1 again: $out"
pass "k1: CHECK failed, DEL and ADD attached it again"
wait_for 20 "d1 answering through the restarted dataplane" in_ns "$K1" ping -n -c 1 -W 1 "$DIP" \
    || fail "d1 unreachable after the dataplane restart: $(tail -n 5 "$WORK_DIR/node1.log")"
check_ping "$K1" "$DIP" "k1 -> d1 through the restarted dataplane (d1 never restarted)"
stop_bg "$DPDK_POD" INT

step "DEL"
cni DEL d1 "$(conf ', "port_type": "vhostuser"')" >/dev/null || fail "DEL d1"
cni DEL k1 "$(conf)" >/dev/null || fail "DEL k1"
[ ! -e "$(dirname "$SOCK")" ] || fail "$(dirname "$SOCK") left after DEL"
pass "both pods deleted"

finish
