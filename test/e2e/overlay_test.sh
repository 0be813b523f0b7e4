#!/usr/bin/env bash
# Overlay end to end: two kdp nodes on one underlay bridge, two TAP pods each.
#   - ping pod <-> pod on one node, and across nodes in both directions;
#   - 8 MB TCP across nodes and on one node, SHA-256 equal at both ends;
#   - path MTU: a pod at MTU 1500 behind the 1450-byte overlay gets "frag needed, mtu 1450"
#     for a 1500-byte DF packet, 1450-byte packets pass, and TCP from it still works.
#
#   a1 10.244.1.10 ─┐                         ┌─ b1 10.244.2.10
#   a2 10.244.1.11 ─┴ node1 198.51.100.1 ═ ul ═ 198.51.100.2 node2 ┴─ b2 10.244.2.11
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
need_dataplane

step "topology (run $RUN_ID)"
underlay_create
node_uplink 1
node_uplink 2
c1=$(kdp_node_config node1 1 "$(uplink_if 1)" standard \
    "a1:10.244.1.10:$(if_name a1) a2:10.244.1.11:$(if_name a2)" "node2:2" "$STATIC_POLICY")
c2=$(kdp_node_config node2 2 "$(uplink_if 2)" standard \
    "b1:10.244.2.10:$(if_name b1) b2:10.244.2.11:$(if_name b2)" "node1:1" "$STATIC_POLICY")
start_dataplane node1 "$c1"
start_dataplane node2 "$c2"
pass "node1 198.51.100.1 (uplink $(uplink_if 1)) and node2 198.51.100.2 (uplink $(uplink_if 2)) ready"
pod_attach 1 a1 10.244.1.10 "$(if_name a1)"
pod_attach 1 a2 10.244.1.11 "$(if_name a2)"
pod_attach 2 b1 10.244.2.10 "$(if_name b1)"
pod_attach 2 b2 10.244.2.11 "$(if_name b2)"
A1=$(ns_name a1) A2=$(ns_name a2) B1=$(ns_name b1) B2=$(ns_name b2)
pass "pods a1 a2 on node1, b1 b2 on node2 (TAP in their netns, MTU 1450)"

step "ping"
check_ping "$A1" 10.244.1.11 "a1 -> a2 (same node)"
check_ping "$A2" 10.244.1.10 "a2 -> a1 (same node)"
check_ping "$A1" 10.244.2.10 "a1 -> b1 (node1 -> node2)"
check_ping "$B1" 10.244.1.10 "b1 -> a1 (node2 -> node1)"
check_ping "$B2" 10.244.1.11 "b2 -> a2 (node2 -> node1)"
check_ping "$A1" 10.244.1.1 "a1 -> its gateway 10.244.1.1"

step "TCP"
check_tcp "$A1" "$B1" 10.244.2.10 8 "a1 -> b1 across nodes"
check_tcp "$B2" "$A2" 10.244.1.11 8 "b2 -> a2 across nodes"
check_tcp "$A1" "$A2" 10.244.1.11 8 "a1 -> a2 same node"

step "path MTU"
ip -n "$A2" link set "$(if_name a2)" mtu 1500
in_ns "$A2" ip route flush cache
out=$(in_ns "$A2" ping -n -M do -s 1472 -c 2 -i 0.3 -W 1 10.244.2.11 2>&1 || true)
if grep -Eqi 'frag(mentation)? needed.*mtu ?= ?1450|message too long, mtu ?= ?1450' <<<"$out"; then
    pass "a2 (MTU 1500) -> b2 with 1500-byte DF packets: $(grep -Eio 'frag(mentation)? needed[^)]*\)|message too long, mtu ?= ?1450' <<<"$out" | head -n 1)"
else
    printf '%s\n' "$out" | sed 's/^/    /' >&2
    fail "a2 (MTU 1500) -> b2, ping -M do -s 1472: expected 'Frag needed ... mtu = 1450' or 'message too long, mtu=1450'"
fi
check_ping_df() {
    local o
    if o=$(in_ns "$A2" ping -n -M do -s 1422 -c 3 -i 0.2 -w 5 10.244.2.11 2>&1); then
        pass "a2 -> b2 with 1450-byte DF packets (ping -M do -s 1422): $(grep -o '[0-9]* received' <<<"$o")"
    else
        printf '%s\n' "$o" | sed 's/^/    /' >&2
        fail "a2 -> b2, ping -M do -s 1422: expected 3 replies (1450 bytes fits the overlay)"
    fi
}
check_ping_df
check_tcp "$A2" "$B2" 10.244.2.11 8 "a2 (MTU 1500) -> b2 across nodes"
check_tcp "$B2" "$A2" 10.244.1.11 8 "b2 -> a2 (MTU 1500) across nodes"

step "counters"
print_nodes_stats node1 node2
finish
