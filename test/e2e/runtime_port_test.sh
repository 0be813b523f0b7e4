#!/usr/bin/env bash
# Pod ports created and removed at run time over the dataplane API (AddPort / RemovePort, as
# kdp-cni will call them), through `kdpctl port add|remove`, on a real kdp-dataplane:
#
# - a dataplane started with no pod ports gets two TAP pods while it runs; each TAP is moved
#   into its pod's network namespace; ping and TCP flow between them;
# - a port removed stops its pod's traffic and its TAP disappears; the pod comes back under the
#   same address on a new port, and traffic resumes; the other pod never stopped;
# - a vhost-user port (client mode: it connects to the pod's socket) is listed and recorded
#   for a restart, and forgotten on removal;
# - bad requests are refused with the field named, and change nothing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_dataplane
KDPCTL="$KDP_BUILD_DIR/control/kdpctl"
mkdir -p "$WORK_DIR"
kdpctl() { "$KDPCTL" --dataplane "$(api_socket node1)" "$@"; }

step "a dataplane with no pod ports"
underlay_create
node_uplink 1
c1=$(kdp_node_config node1 1 "$(uplink_if 1)" standard "" "" "$STATIC_POLICY")
start_dataplane node1 "$c1"
n=$(kdpctl get ports -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" -eq 1 ] || fail "expected the uplink alone, got $n ports"
pass "node1 up with its uplink only"

step "two TAP pods added while it runs"
out=$(kdpctl port add default/p1 --type tap --iface "$(if_name p1)" --ip 10.244.1.20) \
    || fail "port add p1: $out"
pass "$out"
out=$(kdpctl port add default/p2 --type tap --iface "$(if_name p2)" --ip 10.244.1.21) \
    || fail "port add p2: $out"
pass "$out"
pod_attach 1 p1 10.244.1.20 "$(if_name p1)"
pod_attach 1 p2 10.244.1.21 "$(if_name p2)"
P1=$(ns_name p1) P2=$(ns_name p2)
check_ping "$P1" 10.244.1.21 "p1 -> p2"
check_tcp "$P1" "$P2" 10.244.1.21 4 "p1 -> p2"
kdpctl get ports | grep -q "default/p2 .*tap" || fail "get ports: $(kdpctl get ports)"
pass "kdpctl get ports lists the run-time ports"

step "bad requests are refused and change nothing"
expect_refused() { # expect_refused NEEDLE ARGS...
    local needle=$1 out
    shift
    if out=$(kdpctl port "$@" 2>&1); then
        fail "port $* was accepted: $out"
    fi
    [[ $out == *"$needle"* ]] || fail "port $*: expected '$needle' in: $out"
}
expect_refused "exists" add default/p1 --type tap --iface "$(if_name p9)"
expect_refused "belongs to another pod" add default/p9 --type tap --iface "$(if_name p9)" --ip 10.244.1.20
expect_refused "is not a pod address" add default/p9 --type tap --iface "$(if_name p9)" --ip 10.244.2.5
expect_refused "is not an interface name" add default/p9 --type tap --iface "bad/name"
expect_refused "is not \"namespace/pod\"" add p9 --type tap --iface "$(if_name p9)"
expect_refused "no port" remove default/nothing
n=$(kdpctl get ports -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" -eq 3 ] || fail "refused requests changed the ports: $n"
pass "duplicate name, taken address, foreign address, bad interface and pod names refused; unknown port not found"

step "a port removed and its pod back on a new one"
kdpctl port remove default/p2 >/dev/null || fail "port remove p2"
wait_for 5 "p2's TAP gone" sh -c "! ip -n '$P2' link show '$(if_name p2)'" \
    || fail "p2's TAP still exists after its port was removed"
if in_ns "$P1" ping -n -c 2 -i 0.2 -w 2 10.244.1.21 >/dev/null 2>&1; then
    fail "p2 answered after its port was removed"
fi
pass "p2 removed: its TAP is gone and p1's pings get no answer"
kdpctl port add default/p2 --type tap --iface "$(if_name p2b)" --ip 10.244.1.21 >/dev/null \
    || fail "port add p2 again"
pod_attach 1 p2b 10.244.1.21 "$(if_name p2b)"
check_ping "$P1" 10.244.1.21 "p1 -> p2 on its new port"
check_tcp "$(ns_name p2b)" "$P1" 10.244.1.20 2 "p2 (new port) -> p1"

step "attach latency: AddPort to the first packet forwarded"
# The port is added, its TAP moved into a fresh namespace and configured, and p1 pings it at
# once: the time until the first echo reply crosses the new port (kernel set-up included).
netns_create p3
t0=$EPOCHREALTIME
kdpctl port add default/p3 --type tap --iface "$(if_name p3)" --ip 10.244.1.23 >/dev/null \
    || fail "port add p3"
t1=$EPOCHREALTIME
ip link set "$(if_name p3)" netns "$(ns_name p3)"
ip -n "$(ns_name p3)" link set "$(if_name p3)" mtu 1450 up
ip -n "$(ns_name p3)" addr add 10.244.1.23/24 dev "$(if_name p3)"
ip -n "$(ns_name p3)" route add default via 10.244.1.1
until in_ns "$P1" ping -n -c 1 -W 0.1 10.244.1.23 >/dev/null 2>&1; do
    [ $(((${EPOCHREALTIME/./} - ${t0/./}) / 1000)) -lt 10000 ] || fail "p3 unreachable after 10 s"
done
t2=$EPOCHREALTIME
pass "AddPort (kdpctl, gRPC, hotplug, RCU publish) $(((${t1/./} - ${t0/./}) / 1000)) ms; to the first ping answered through the new port $(((${t2/./} - ${t0/./}) / 1000)) ms"

step "a vhost-user port (the dataplane connects to the pod's socket)"
SOCK="$WORK_DIR/v1.sock"
out=$(kdpctl port add default/v1 --type vhostuser --socket "$SOCK" --ip 10.244.1.30 --queues 4) \
    || fail "port add v1: $out"
kdpctl get ports | grep -q "default/v1 .*vhostuser" || fail "get ports: $(kdpctl get ports)"
q=$(kdpctl get ports -o json | python3 -c 'import json,sys; print([p["rx_queues"] for p in json.load(sys.stdin) if p["name"] == "default/v1"])')
[ "$q" = "[4]" ] || fail "v1 has RX queues $q, not the 4 asked for"
out2=$(kdpctl port add default/t9 --type tap --iface "$(if_name t9)" --queues 2 2>&1) \
    && fail "a TAP with 2 queue pairs was created: $out2"
[[ $out2 == *"only a vhostuser port has several queue pairs"* ]] || fail "tap --queues 2: $out2"
pass "$out, 4 queue pairs (nothing listens at $SOCK yet: the dataplane keeps trying); a TAP with --queues 2 refused"
grep -q '"default/v1"' "$(api_socket node1).ports.json" \
    || fail "v1 not recorded in $(api_socket node1).ports.json"
kdpctl port remove default/v1 >/dev/null || fail "port remove v1"
kdpctl get ports | grep -q "default/v1" && fail "v1 still listed after removal"
grep -q '"default/v1"' "$(api_socket node1).ports.json" && fail "v1 still recorded after removal"
pass "v1 recorded for a restart while it exists, removed from the ports and the record"
check_ping "$P1" 10.244.1.21 "p1 -> p2 still"

finish
