#!/usr/bin/env bash
# Packet capture end to end, on running dataplanes, read back with tshark:
#   - dpdk-dumpcap attaches to node1 as a secondary process (same --file-prefix) and writes
#     pcapng: on the uplink the VXLAN frames of a ping across nodes (outer node addresses,
#     VNI, inner pod addresses, decoded by tshark), on a pod port the plain ICMP;
#   - dpdk-proc-info attaches too and reads the ports' counters;
#   - with dpdk.huge_unlink: true, capture is refused at once and the dataplane says why.
#
#   web-7d9f8c6b5-x2x7k 10.244.1.10 ─ node1 198.51.100.1 ═ ul ═ 198.51.100.2 node2 ─ api.v2-0 10.244.2.10
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
need_dataplane
for t in dpdk-dumpcap dpdk-proc-info tshark; do
    command -v "$t" >/dev/null || { echo "error: $t not installed (config/setup.sh installs it)" >&2; exit 1; }
done

step "topology (run $RUN_ID)"
underlay_create
node_uplink 1
node_uplink 2
A=web-7d9f8c6b5-x2x7k B=api.v2-0
c1=$(kdp_node_config node1 1 "$(uplink_if 1)" standard "$A:10.244.1.10:$(if_name a1)" "node2:2" "$STATIC_POLICY")
c2=$(kdp_node_config node2 2 "$(uplink_if 2)" standard "$B:10.244.2.10:$(if_name b1)" "node1:1" "$STATIC_POLICY")
start_dataplane node1 "$c1"
start_dataplane node2 "$c2"
pod_attach 1 a1 10.244.1.10 "$(if_name a1)"
pod_attach 2 b1 10.244.2.10 "$(if_name b1)"
A1=$(ns_name a1) B1=$(ns_name b1)
pass "node1 with pod default/$A, node2 with pod default/$B"
check_ping "$A1" 10.244.2.10 "default/$A -> default/$B (across nodes)"

# port_id NODE NAME: the DPDK port id of the port NAME ("uplink", "default/POD").
port_id() {
    dataplane_stats "$1" | python3 -c '
import json, sys
ids = [k for k, v in json.load(sys.stdin).items() if isinstance(v, dict) and v.get("name") == sys.argv[1]]
print(ids[0] if ids else "")' "$2"
}


# dumpcap NODE PORT_ID COUNT FILTER FILE: starts dpdk-dumpcap on the node's port and waits
# until it captures: its "Packets captured:" counter comes once the dataplane has said yes
# ("Capturing on" is on stdout, buffered until it exits). Sets DUMPCAP_PID.
dumpcap_start() {
    local node=$1 port=$2 count=$3 filter=$4 file=$5 log="$WORK_DIR/dumpcap-$RANDOM.log"
    spawn dpdk-dumpcap --file-prefix "${_DP_PREFIX[$node]}" -i "$port" -c "$count" -f "$filter" \
        -a duration:20 -w "$file" </dev/null >"$log" 2>&1
    DUMPCAP_PID=$BG_PID
    wait_for 30 "dpdk-dumpcap to attach to $node" grep -q 'Packets captured:' "$log" || {
        sed 's/^/    /' "$log" >&2
        fail "dpdk-dumpcap did not attach to $node port $port"
    }
}
# dumpcap_wait: waits for it to stop after its count (or its 20 s limit).
dumpcap_wait() {
    local i
    for i in $(seq 1 250); do
        kill -0 "$DUMPCAP_PID" 2>/dev/null || break
        sleep 0.1
    done
    stop_bg "$DUMPCAP_PID"
}

step "dpdk-dumpcap on the uplink: the overlay as it is on the wire"
uplink=$(port_id node1 uplink)
f="$WORK_DIR/uplink.pcapng"
dumpcap_start node1 "$uplink" 6 "udp port 4789" "$f"
in_ns "$A1" ping -n -c 3 -i 0.2 -w 5 10.244.2.10 >/dev/null || fail "ping during the capture failed"
dumpcap_wait
[ -s "$f" ] || fail "dpdk-dumpcap wrote nothing to $f"
got=$(tshark -r "$f" -Y 'vxlan && icmp' -T fields -E separator=' ' \
    -e ip.src -e ip.dst -e vxlan.vni -e icmp.type 2>/dev/null | sort | uniq -c)
log "$(sed 's/^/    /' <<<"$got")"
grep -Eq '^ *3 198\.51\.100\.1,10\.244\.1\.10 198\.51\.100\.2,10\.244\.2\.10 1 8$' <<<"$got" \
    || fail "expected 3 echo requests in VXLAN (VNI 1) from node1 to node2, pod to pod"
grep -Eq '^ *3 198\.51\.100\.2,10\.244\.2\.10 198\.51\.100\.1,10\.244\.1\.10 1 0$' <<<"$got" \
    || fail "expected 3 echo replies in VXLAN (VNI 1) from node2 to node1, pod to pod"
pass "pcapng read by tshark: 3 requests out and 3 replies in, VXLAN VNI 1, outer node and inner pod addresses"

step "dpdk-dumpcap on a pod port"
pod=$(port_id node1 "default/$A")
f="$WORK_DIR/pod.pcapng"
dumpcap_start node1 "$pod" 4 icmp "$f"
in_ns "$A1" ping -n -c 2 -i 0.2 -w 5 10.244.2.10 >/dev/null || fail "ping during the capture failed"
dumpcap_wait
got=$(tshark -r "$f" -T fields -E separator=' ' -e ip.src -e ip.dst -e icmp.type -e vxlan.vni 2>/dev/null | sort | uniq -c)
log "$(sed 's/^/    /' <<<"$got")"
grep -Eq '^ *2 10\.244\.1\.10 10\.244\.2\.10 8 $' <<<"$got" && grep -Eq '^ *2 10\.244\.2\.10 10\.244\.1\.10 0 $' <<<"$got" \
    || fail "expected 2 plain echo requests from the pod and 2 replies to it, no VXLAN"
pass "the pod's port: 2 requests received, 2 replies sent, as the pod sees them"

step "dpdk-proc-info"
out=$(dpdk-proc-info --file-prefix "${_DP_PREFIX[node1]}" --log-level='*:error' -- --stats 2>&1) \
    || { sed 's/^/    /' <<<"$out" >&2; fail "dpdk-proc-info could not attach to node1"; }
grep -q "NIC statistics for port $uplink" <<<"$out" || fail "dpdk-proc-info shows no statistics of port $uplink: $out"
pass "dpdk-proc-info reads node1's port statistics ($(grep -c 'NIC statistics for port' <<<"$out") ports)"
dataplane_running node1 || fail "node1 died after the secondary processes left"
check_ping "$A1" 10.244.2.10 "default/$A -> default/$B after the captures"

step "dpdk.huge_unlink: true"
stop_dataplane node1
leftover=$(ls /dev/hugepages/ 2>/dev/null | grep -c "^${_DP_PREFIX[node1]}map_" || true)
[ "$leftover" = 0 ] || fail "node1's clean stop left $leftover hugepage files in /dev/hugepages"
pass "node1's clean stop removed its hugepage files"
sed -i 's/^dpdk:$/dpdk:\n  huge_unlink: true/' "$c1"
start_dataplane node1 "$c1"
grep -q 'packet capture unavailable' "${_DP_LOG[node1]}" || fail "node1 did not say that capture is unavailable"
pass "node1 says: $(grep -o 'packet capture unavailable.*' "${_DP_LOG[node1]}")"
if timeout 30 dpdk-dumpcap --file-prefix "${_DP_PREFIX[node1]}" -i 0 -c 1 -w "$WORK_DIR/none.pcapng" \
    </dev/null >"$WORK_DIR/refused.log" 2>&1; then
    fail "dpdk-dumpcap attached to a dataplane whose hugepages are unlinked"
fi
pass "dpdk-dumpcap refused: $(grep -m1 -iE 'error|cannot|fail' "$WORK_DIR/refused.log" || tail -n 1 "$WORK_DIR/refused.log")"

finish
