#!/usr/bin/env bash
# Flannel wire compatibility: two kdp nodes in flannel mode (VNI 1, UDP 8472) and a third node
# that is plain Linux with the vxlan device configured exactly as Flannel's vxlan backend does.
#
#   a1 10.244.1.10 ─ node1 (kdp) 198.51.100.1 ─┐
#   b1 10.244.2.10 ─ node2 (kdp) 198.51.100.2 ─┼─ ul bridge (tshark here)
#   c1 10.244.3.10 ─ cni0 ─ node3 (kernel, flannel.1) 198.51.100.3 ─┘
#
# Checks ping and 8 MB TCP (SHA-256 at both ends) kdp pod <-> node3 pod both ways, and that
# every VXLAN packet on the underlay decodes cleanly: UDP port 8472, VNI 1, nothing malformed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
need_dataplane
command -v tshark >/dev/null || { echo "error: tshark missing (sudo bash config/setup.sh)" >&2; exit 1; }

FLANNEL_MAC="0e:6c:3a:5f:00:03"  # node3's flannel.1 MAC (Flannel picks one per node)

step "topology (run $RUN_ID)"
underlay_create
node_uplink 1
node_uplink 2
c1=$(kdp_node_config node1 1 "$(uplink_if 1)" flannel "a1:10.244.1.10:$(if_name a1)" \
    "node2:2 node3:3:$FLANNEL_MAC" "$STATIC_POLICY")
c2=$(kdp_node_config node2 2 "$(uplink_if 2)" flannel "b1:10.244.2.10:$(if_name b1)" \
    "node1:1 node3:3:$FLANNEL_MAC" "$STATIC_POLICY")

# node3, as Flannel sets up a node: flannel.1 holds the node's pod network address .0/32; each
# remote pod CIDR is routed onlink via the remote's .0 address, whose neighbour entry is the
# remote VTEP MAC, and the FDB maps that MAC to the remote node IP.
kernel_node_create 3
N3=$(ns_name node3)
ip -n "$N3" link add flannel.1 type vxlan id 1 local "$(node_ip 3)" dev eth0 dstport 8472 nolearning
ip -n "$N3" link set flannel.1 address "$FLANNEL_MAC"
ip -n "$N3" addr add 10.244.3.0/32 dev flannel.1
ip -n "$N3" link set flannel.1 up
for n in 1 2; do
    ip -n "$N3" route add "10.244.$n.0/24" via "10.244.$n.0" dev flannel.1 onlink
    ip -n "$N3" neigh add "10.244.$n.0" lladdr "$(vtep_mac $n)" dev flannel.1 nud permanent
    in_ns "$N3" bridge fdb append "$(vtep_mac $n)" dev flannel.1 dst "$(node_ip $n)"
done
kernel_pod_attach "$N3" 3 c1 10.244.3.10
pass "node3 198.51.100.3: kernel flannel.1 (VNI 1, port 8472, MAC $FLANNEL_MAC, $(ip -n "$N3" -o link show flannel.1 | grep -o 'mtu [0-9]*')), pod c1 10.244.3.10 behind cni0"

# Capture the underlay from before the first packet.
PCAP="$WORK_DIR/underlay.pcap"
spawn ip netns exec "$UNDERLAY_NS" tshark -q -i "$UNDERLAY_BR" -f "udp" -w "$PCAP" \
    2>"$WORK_DIR/tshark.err"
TSHARK_PID=$BG_PID
wait_for 20 "tshark to start capturing" grep -q "Capturing on" "$WORK_DIR/tshark.err" \
    || fail "tshark did not start: $(cat "$WORK_DIR/tshark.err")"

start_dataplane node1 "$c1"
start_dataplane node2 "$c2"
pass "node1 and node2 (kdp, vxlan mode flannel, VTEP MACs $(vtep_mac 1) $(vtep_mac 2)) ready"
pod_attach 1 a1 10.244.1.10 "$(if_name a1)"
pod_attach 2 b1 10.244.2.10 "$(if_name b1)"
A1=$(ns_name a1) B1=$(ns_name b1) C1=$(ns_name c1)
pass "pods a1 on node1, b1 on node2"

step "ping kdp <-> flannel"
check_ping "$A1" 10.244.3.10 "a1 (kdp node1) -> c1 (flannel node3)"
check_ping "$C1" 10.244.1.10 "c1 (flannel node3) -> a1 (kdp node1)"
check_ping "$C1" 10.244.2.10 "c1 (flannel node3) -> b1 (kdp node2)"
check_ping "$B1" 10.244.3.10 "b1 (kdp node2) -> c1 (flannel node3)"
check_ping "$A1" 10.244.2.10 "a1 -> b1 (kdp <-> kdp, flannel mode)"

step "TCP kdp <-> flannel"
check_tcp "$A1" "$C1" 10.244.3.10 8 "a1 (kdp) -> c1 (flannel)"
check_tcp "$C1" "$B1" 10.244.2.10 8 "c1 (flannel) -> b1 (kdp)"

step "the underlay capture"
sleep 0.5
stop_bg $TSHARK_PID INT
# The TCP payload is random bytes: decode it as plain data, or Wireshark's heuristic dissectors
# (Thrift, ...) take some segments for their protocol and call them malformed.
DECODE=(-r "$PCAP" -d udp.port==8472,vxlan)
for p in "${TCP_PORTS[@]}"; do
    DECODE+=(-d "tcp.port==$p,data")
done
total=$(tshark "${DECODE[@]}" -Y vxlan -T fields -e frame.number 2>/dev/null | wc -l)
[ "$total" -gt 0 ] || fail "no VXLAN packets captured on the underlay bridge (expected thousands)"
bad_port=$(tshark "${DECODE[@]}" -Y 'vxlan && udp.dstport != 8472' -T fields -e frame.number 2>/dev/null | wc -l)
bad_vni=$(tshark "${DECODE[@]}" -Y 'vxlan && vxlan.vni != 1' -T fields -e frame.number 2>/dev/null | wc -l)
[ "$bad_port" -eq 0 ] || fail "$bad_port of $total VXLAN packets not to UDP port 8472"
[ "$bad_vni" -eq 0 ] || fail "$bad_vni of $total VXLAN packets with a VNI other than 1"
pass "$total VXLAN packets on the underlay, all to UDP 8472 with VNI 1"
for n in 1 2 3; do
    c=$(tshark "${DECODE[@]}" -Y "vxlan && ip.src == $(node_ip $n)" -T fields -e frame.number 2>/dev/null | wc -l)
    [ "$c" -gt 0 ] || fail "no VXLAN packets from node$n $(node_ip $n) (expected its share of the traffic)"
    log "    from node$n $(node_ip $n): $c"
done
malformed=$(tshark "${DECODE[@]}" -V 2>/dev/null | grep -E -c 'Malformed|Expert Info \(Error' || true)
if [ "$malformed" -ne 0 ]; then
    tshark "${DECODE[@]}" -Y '_ws.malformed || _ws.expert.severity == error' 2>/dev/null | head -n 10 >&2
    fail "$malformed decode errors (Malformed / Expert Info (Error)) in the VXLAN capture; expected none"
fi
pass "no 'Malformed' and no 'Expert Info (Error' in the full decode of the capture"
inner=$(tshark "${DECODE[@]}" -Y 'vxlan && eth.dst == '"$FLANNEL_MAC" -T fields -e frame.number 2>/dev/null | wc -l)
[ "$inner" -gt 0 ] || fail "no inner frame addressed to node3's flannel.1 MAC $FLANNEL_MAC"
pass "$inner inner frames to node3's flannel.1 MAC $FLANNEL_MAC"

step "counters"
print_nodes_stats node1 node2
finish
