#!/usr/bin/env bash
# The host interface end to end: each dataplane creates a TAP, moves it into a namespace that
# plays its node's host network (node config `host: {iface, netns, routes}`) and configures the
# kernel side there: the pod gateway address /32, MTU 1450, routes into the pod network for the
# pod CIDR, the cluster CIDR and the Service CIDR. The demo cluster's pods and Services
# (config/cluster/demo.yaml) come from the real control plane (kdpctl apply):
#
#   h1 10.244.1.1 (node1's host) ─ TAP ─ node1 198.51.100.1 (a1 client, a2 web)
#   h2 10.244.2.1 (node2's host) ─ TAP ─ node2 198.51.100.2 (b1 web)        both on the underlay
#
# Checks: the TAP's address, MTU and routes; host -> local pod (TCP, ping); host -> remote pod
# over the overlay; host -> ClusterIP with backends on both nodes; pod -> a server in the host
# on the gateway address, and pings to it answered by the host's kernel; a default-deny ingress
# policy leaves the pod's own node (h1) through but not node2's host (h2) nor other pods; the
# host port's counters; a dataplane restart brings the host TAP back configured. node2 has
# `node_address: true` (the exception path of a node whose NIC the dataplane owns): its kernel
# also holds 198.51.100.2 on the TAP, reaches an outside host on the underlay through the
# dataplane's uplink, and gets what arrives for that address (TCP, ping) while NodePorts stay
# the dataplane's.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_dataplane
KDPCTL="$KDP_BUILD_DIR/control/kdpctl"
DEMO="$KDP_ROOT/config/cluster/demo.yaml"
SERVICE_CIDR=10.96.0.0/12 # Kubernetes' default; the demo's ClusterIPs are 10.96.0.x
CLUSTER_CIDR=10.244.0.0/16
mkdir -p "$WORK_DIR"

kdpctl() { # kdpctl NODE ARGS...
    local n=$1
    shift
    "$KDPCTL" --dataplane "$(api_socket "$n")" "$@"
}
apply_to() { # apply_to NODE FILE...: kdpctl apply -f FILE... --node NODE
    local n=$1 f args=()
    shift
    for f in "$@"; do args+=(-f "$f"); done
    kdpctl "$n" apply "${args[@]}" --node "$n" >>"$WORK_DIR/apply.log" 2>&1 \
        || fail "kdpctl apply $* to $n: $(tail -n 3 "$WORK_DIR/apply.log")"
}

# host_tap_facts NS IFACE N [EXTRA_ADDR]: checks the kernel side of node N's host TAP in NS (address
# 10.244.N.1/32, MTU 1450, up, routes for the pod, cluster and Service CIDRs with that source)
# and prints a summary; prints what differs and returns 1 otherwise.
host_tap_facts() {
    local ns=$1 ifc=$2 n=$3 extra=${4:-} link routes
    link=$(ip -n "$ns" -j addr show dev "$ifc" 2>&1) || { echo "no $ifc in $ns: $link"; return 1; }
    routes=$(ip -n "$ns" -j route show dev "$ifc" 2>&1) || { echo "routes: $routes"; return 1; }
    python3 - "$n" "$link" "$routes" "$CLUSTER_CIDR" "$SERVICE_CIDR" "$extra" <<'PY'
import json, sys
n, link, routes, cluster, service = sys.argv[1], json.loads(sys.argv[2])[0], json.loads(sys.argv[3]), sys.argv[4], sys.argv[5]
extra = [sys.argv[6]] if sys.argv[6] else []
gw = f"10.244.{n}.1"
errs = []
addrs = [f'{a["local"]}/{a["prefixlen"]}' for a in link.get("addr_info", []) if a.get("family") == "inet"]
if addrs != [gw + "/32"] + extra:
    errs.append(f"addresses {addrs}, expected {[gw + '/32'] + extra}")
if link.get("mtu") != 1450:
    errs.append(f"mtu {link.get('mtu')}, expected 1450")
if "UP" not in link.get("flags", []):
    errs.append(f"not up (flags {link.get('flags')})")
got = {r["dst"]: r.get("prefsrc") for r in routes}
for d in (f"10.244.{n}.0/24", cluster, service):
    if got.get(d) != gw:
        errs.append(f"route {d}: " + ("missing" if d not in got else f"src {got[d]}, expected {gw}"))
if errs:
    print("; ".join(errs) + f" (routes: {routes})")
    sys.exit(1)
print(f"{addrs[0]}, mtu {link['mtu']}, {link.get('operstate')}; routes " +
      ", ".join(f"{d} src {s}" for d, s in got.items()))
PY
}

# check_host_tap NS IFACE N WHAT [EXTRA_ADDR]: waits up to 10 s for host_tap_facts to hold, passes or fails.
check_host_tap() {
    local ns=$1 ifc=$2 n=$3 what=$4 extra=${5:-} out
    wait_for 10 "$ifc configured in $ns" host_tap_facts "$ns" "$ifc" "$n" "$extra" || true
    out=$(host_tap_facts "$ns" "$ifc" "$n" "$extra") || fail "$what: $ifc in $ns: $out"
    pass "$what: $ifc in $ns: $out"
}

# answered NS IP PORT: a who-am-I answer "NAME PEER" (left in ANSWER) or a failure.
answered() {
    local out
    out=$(whoami "$1" "$2" "$3") || fail "$1 -> $2:$3: no answer: $out"
    [[ $out == *" "* ]] || fail "$1 -> $2:$3: unexpected answer '$out'"
    ANSWER=$out
}
# blocked NS IP PORT: no answer within about 2 s (dropped or refused).
blocked() {
    local out
    if out=$(in_ns "$1" timeout 3 socat -T 2 -u "TCP4:$2:$3,connect-timeout=1" - 2>&1) \
        && [ -n "$out" ]; then
        fail "$1 -> $2:$3 should be blocked but got '$out'"
    fi
    out=${out##* E } # socat's error without its time stamp
    BLOCKED=${out:-no answer}
}

# drops NODE REASON: the node's drop count for REASON summed over its ports and workers.
drops() {
    dataplane_stats "$1" | python3 -c '
import json, sys
def walk(o):
    if isinstance(o, dict):
        return sum(v if k == "drop_" + sys.argv[1] and isinstance(v, int) else walk(v)
                   for k, v in o.items())
    if isinstance(o, list):
        return sum(walk(v) for v in o)
    return 0
print(walk(json.load(sys.stdin)))' "$2"
}

# icmp NS FIELD: a counter of the Icmp line of NS's /proc/net/snmp (InEchos, OutEchoReps, ...).
icmp() {
    in_ns "$1" awk -v f="$2" '/^Icmp:/ { if (!h) { for (i = 1; i <= NF; i++) k[i] = $i; h = 1 }
        else { for (i = 1; i <= NF; i++) if (k[i] == f) print $i } }' /proc/net/snmp
}

# host_port NODE: "PORT_ID NAME" of the node's port of kind host (kdpctl get ports).
host_port() {
    kdpctl "$1" get ports -o json | python3 -c '
import json, sys
p = [p for p in json.load(sys.stdin) if p["kind"] == "host"]
print(p[0]["port_id"], p[0]["name"]) if p else sys.exit(1)'
}

# pod_reattach N POD IP TAP: like pod_attach, into the pod's existing namespace, for the TAP a
# restarted dataplane created anew (the old one went with the old process).
pod_reattach() {
    local n=$1 pod=$2 ip=$3 tap=$4 ns
    ns=$(ns_name "$pod")
    wait_for 10 "the old $tap gone from $ns" sh -c "! ip -n '$ns' link show '$tap'" \
        || fail "$pod: the old TAP $tap is still in $ns after the dataplane stopped"
    wait_for 10 "TAP $tap from the restarted dataplane" ip link show "$tap" \
        || fail "TAP $tap for pod $pod: the restarted dataplane did not create it"
    ip link set "$tap" netns "$ns"
    ip -n "$ns" link set "$tap" mtu 1450 up
    ip -n "$ns" addr add "$ip/24" dev "$tap"
    ip -n "$ns" route add default via "10.244.$n.1" dev "$tap"
}

step "two nodes with a host interface each, three pods (run $RUN_ID)"
underlay_create
node_uplink 1
node_uplink 2
netns_create h1
netns_create h2
H1=$(ns_name h1) H2=$(ns_name h2) HIF1=$(if_name h1) HIF2=$(if_name h2)
C1=$(kdp_node_config node1 1 "$(uplink_if 1)" standard \
    "a1:10.244.1.10:$(if_name a1) a2:10.244.1.11:$(if_name a2)" "" \
    "host: {iface: $HIF1, netns: $H1, routes: [$SERVICE_CIDR]}")
C2=$(kdp_node_config node2 2 "$(uplink_if 2)" standard "b1:10.244.2.10:$(if_name b1)" "" \
    "host: {iface: $HIF2, netns: $H2, routes: [$SERVICE_CIDR], node_address: true}")
sed -i "s|^node: {\(.*\), mtu: 1500}|node: {\1, cluster_cidr: $CLUSTER_CIDR, mtu: 1500}|" "$C1" "$C2"
grep -q "cluster_cidr: $CLUSTER_CIDR" "$C1" || fail "could not add node.cluster_cidr to $C1"
start_dataplane node1 "$C1"
start_dataplane node2 "$C2"
pod_attach 1 a1 10.244.1.10 "$(if_name a1)"
pod_attach 1 a2 10.244.1.11 "$(if_name a2)"
pod_attach 2 b1 10.244.2.10 "$(if_name b1)"
A1=$(ns_name a1) A2=$(ns_name a2) B1=$(ns_name b1)
apply_to node1 "$DEMO"
apply_to node2 "$DEMO"
pass "node1 (a1, a2, host h1), node2 (b1, host h2); demo.yaml applied to both"

step "the host TAP's kernel side, configured by the dataplane"
check_host_tap "$H1" "$HIF1" 1 "node1's host"
check_host_tap "$H2" "$HIF2" 2 "node2's host (node_address: its underlay address too)" \
    "$(node_ip 2)/$UNDERLAY_PREFIX"
kdpctl node1 get ports | sed 's/^/    /'
read -r HPORT1 HNAME1 < <(host_port node1) || fail "node1's kdpctl get ports lists no port of kind host"
pass "kdpctl get ports on node1: host port $HPORT1 ($HNAME1)"

step "host -> pods"
check_ping "$H1" 10.244.1.10 "h1 -> a1 on its node"
check_tcp "$H1" "$A1" 10.244.1.10 1 "h1 -> a1 on its node"
serve_whoami "$A1" a1 8080
answered "$H1" 10.244.1.10 8080
[ "$ANSWER" = "a1 10.244.1.1" ] || fail "a1 answered '$ANSWER', expected to see h1 as 10.244.1.1"
pass "h1 -> a1:8080 answered '$ANSWER' (a1 sees the host as 10.244.1.1)"
check_tcp "$H1" "$B1" 10.244.2.10 1 "h1 -> b1 on node2 over the overlay"
check_ping "$H1" 10.244.2.10 "h1 -> b1 on node2"

step "host -> ClusterIP 10.96.0.10:80 (web: a2 on node1, b1 on node2)"
serve_whoami "$A2" a2 80
serve_whoami "$B1" b1 80
spread "$H1" 10.96.0.10 80 16
[[ $SPREAD == *a2:* && $SPREAD == *b1:* ]] || fail "16 connections from h1 did not reach both backends: $SPREAD"
[ "$SEEN" = 10.244.1.1 ] || fail "the backends saw h1 as '$SEEN', expected 10.244.1.1"
pass "16 connections from h1: $SPREAD; both backends saw the host as $SEEN"

step "pod -> a server in the host on the gateway address 10.244.1.1"
PORT=$((_next_port + 100))
spawn ip netns exec "$H1" socat "TCP4-LISTEN:$PORT,bind=10.244.1.1,reuseaddr,fork" \
    "SYSTEM:read l; echo \$l back from h1 to \$SOCAT_PEERADDR" 2>>"$WORK_DIR/echo.err"
wait_for 5 "h1 listening on $PORT" in_ns "$H1" sh -c "ss -Hltn 'sport = :$PORT' | grep -q ." \
    || fail "the echo server in h1 did not start: $(cat "$WORK_DIR/echo.err")"
token="hello-$RUN_ID-$RANDOM"
out=$(echo "$token" | in_ns "$A1" timeout 5 socat -t 3 - "TCP4:10.244.1.1:$PORT,connect-timeout=3" 2>&1) \
    || fail "a1 -> h1 10.244.1.1:$PORT: $out"
[ "$out" = "$token back from h1 to 10.244.1.10" ] \
    || fail "a1 -> h1 10.244.1.1:$PORT answered '$out', expected '$token back from h1 to 10.244.1.10'"
pass "a1 -> h1 10.244.1.1:$PORT: sent '$token', got '$out' (h1 saw a1's own address)"
check_tcp "$A1" "$H1" 10.244.1.1 1 "a1 -> h1's server on 10.244.1.1"
in0=$(icmp "$H1" InEchos) rep0=$(icmp "$H1" OutEchoReps)
check_ping "$A1" 10.244.1.1 "a1 -> 10.244.1.1"
in1=$(icmp "$H1" InEchos) rep1=$(icmp "$H1" OutEchoReps)
[ $((in1 - in0)) -ge 3 ] && [ $((rep1 - rep0)) -ge 3 ] \
    || fail "h1's kernel counted $((in1 - in0)) echo requests and $((rep1 - rep0)) replies during a1's 3 pings"
pass "h1's kernel answered them: its Icmp InEchos +$((in1 - in0)), OutEchoReps +$((rep1 - rep0))"

step "a default-deny ingress policy on a1: its own node still reaches it, nobody else"
answered "$H2" 10.244.1.10 8080
[ "$ANSWER" = "a1 10.244.2.1" ] || fail "a1 answered '$ANSWER' to h2, expected to see 10.244.2.1"
answered "$A2" 10.244.1.10 8080
pass "before: h2 (node2's host) and a2 reach a1:8080 ('a1 10.244.2.1', '$ANSWER')"
cat >"$WORK_DIR/deny.yaml" <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-deny-ingress, namespace: default}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Ingress]
YAML
apply_to node1 "$DEMO" "$WORK_DIR/deny.yaml"
apply_to node2 "$DEMO" "$WORK_DIR/deny.yaml"
before=$(drops node1 policy_denied)
blocked "$A2" 10.244.1.10 8080
pass "a2 -> a1:8080 blocked ($BLOCKED)"
blocked "$B1" 10.244.1.10 8080
pass "b1 -> a1:8080 blocked across nodes ($BLOCKED)"
blocked "$H2" 10.244.1.10 8080
pass "h2 (10.244.2.1, another node's host) -> a1:8080 blocked ($BLOCKED)"
after=$(drops node1 policy_denied)
[ "$after" -gt "$before" ] || fail "node1 counted no policy_denied drops ($before -> $after)"
pass "node1 counted $((after - before)) policy_denied drops"
answered "$H1" 10.244.1.10 8080
[ "$ANSWER" = "a1 10.244.1.1" ] || fail "a1 answered '$ANSWER' to h1, expected 'a1 10.244.1.1'"
pass "h1 (own node) -> a1:8080 still answered: '$ANSWER'"
check_ping "$H1" 10.244.1.10 "h1 (own node) -> a1 under the policy"

step "node2's kernel keeps its own network through the dataplane's uplink (node_address)"
outside_host_create srv 198.51.100.201
SRV=$(ns_name srv)
check_ping "$H2" 198.51.100.201 "h2 (node2's kernel, $(node_ip 2)) -> srv on the underlay"
check_tcp "$H2" "$SRV" 198.51.100.201 1 "h2 -> srv, from the node address"
check_tcp "$SRV" "$H2" "$(node_ip 2)" 1 "srv -> node2's own address, handed to its kernel"
check_ping "$SRV" "$(node_ip 2)" "srv -> node2's address, answered by its kernel"
ANSWER=$(whoami "$SRV" "$(node_ip 2)" 30080) || fail "srv -> NodePort $(node_ip 2):30080: $ANSWER"
pass "srv -> NodePort $(node_ip 2):30080 still served by the dataplane first: '$ANSWER'"

step "the host port's counters"
read -r rx tx < <(kdpctl node1 stats -o json --interval-ms 100 | python3 -c '
import json, sys
p = [p for p in json.load(sys.stdin)["ports"] if p["port_id"] == int(sys.argv[1])]
print(p[0]["rx_packets"], p[0]["tx_packets"]) if p else print(0, 0)' "$HPORT1")
[ "$rx" -gt 0 ] && [ "$tx" -gt 0 ] || fail "node1's host port $HPORT1 counts rx $rx, tx $tx packets"
pass "node1's host port $HPORT1 ($HNAME1): rx $rx, tx $tx packets"
print_nodes_stats node1 node2

step "node1's dataplane restarts: the host TAP comes back configured"
stop_dataplane node1
start_dataplane node1 "$C1"
pod_reattach 1 a1 10.244.1.10 "$(if_name a1)"
pod_reattach 1 a2 10.244.1.11 "$(if_name a2)"
apply_to node1 "$DEMO" "$WORK_DIR/deny.yaml"
check_host_tap "$H1" "$HIF1" 1 "node1's host after the restart"
host_port node1 >/dev/null || fail "the restarted node1 lists no port of kind host"
answered "$H1" 10.244.1.10 8080
[ "$ANSWER" = "a1 10.244.1.1" ] || fail "a1 answered '$ANSWER' to h1 after the restart"
pass "h1 -> a1:8080 after the restart: '$ANSWER' (policy still applied)"
check_tcp "$H1" "$A2" 10.244.1.11 1 "h1 -> a2 after the restart"

finish
