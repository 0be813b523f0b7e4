#!/usr/bin/env bash
# NetworkPolicy end to end: the demo cluster (two kdp nodes in network namespaces, pods a1
# app=client and a2 app=web on node1, b1 app=web on node2), policies compiled by the real
# control plane (kdpctl apply), real TCP and UDP between the pods' kernels:
#
# - before the first sync no pod traffic passes (network_policy.before_sync: deny, the default);
# - config/cluster/policy.yaml: web pods take http and UDP 5353 from the client only, across
#   nodes and on one node; replies flow; a2 (not a client) is dropped; other ports are dropped;
# - an egress lock-down of the client allowing DNS-like UDP 53 and the web pods' http only;
# - a policy applied while a TCP stream runs stops it; removing the policy lets the same
#   connection resume (established connections are judged again on their next packet);
# - kdpctl get policy and kdpctl trace name the rule that allows a flow.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_dataplane
KDPCTL="$KDP_BUILD_DIR/control/kdpctl"
DEMO="$KDP_ROOT/config/cluster/demo.yaml"
POLICY="$KDP_ROOT/config/cluster/policy.yaml"
mkdir -p "$WORK_DIR"

apply_all() {
    local n
    for n in node1 node2; do
        "$KDPCTL" --dataplane "$(api_socket $n)" apply --node $n "$@" >>"$WORK_DIR/apply.log" 2>&1 \
            || fail "kdpctl apply $* to $n: $(tail -n 3 "$WORK_DIR/apply.log")"
    done
}
# answered NS IP PORT [udp] / silent NS IP PORT [udp]
answered() {
    local out
    out=$(whoami "$@") || fail "$1 -> $2:$3/${4:-tcp}: no answer: $out"
    [[ $out == *" "* ]] || fail "$1 -> $2:$3/${4:-tcp}: unexpected answer '$out'"
    ANSWER=$out
}
silent() {
    local out
    if out=$(whoami "$@") && [ -n "$out" ]; then
        fail "$1 -> $2:$3/${4:-tcp} should be blocked but got '$out'"
    fi
}
drops() { # drops NODE REASON: the node's drop count for REASON over every port
    dataplane_stats "$1" | python3 -c '
import json, sys
reason = sys.argv[1]
s = json.load(sys.stdin)
total = 0
def walk(o):
    global total
    if isinstance(o, dict):
        for k, v in o.items():
            if k == "drop_" + reason and isinstance(v, int):
                total += v
            else:
                walk(v)
    elif isinstance(o, list):
        for v in o:
            walk(v)
walk(s)
print(total)' "$2"
}

step "two nodes, three pods (network_policy.before_sync: deny, the default)"
demo_cluster_create
pass "node1 (a1 client, a2 web), node2 (b1 web)"

step "before the first sync nothing passes"
serve_whoami "$A2" a2 80
silent "$A1" 10.244.1.11 80
n=$(drops node1 policy_not_synced)
[ "$n" -gt 0 ] || fail "no policy_not_synced drops counted on node1: $(dataplane_stats node1)"
pass "a1 -> a2:80 on one node dropped before any sync ($n packets counted as policy_not_synced)"

step "the cluster without policy: everything reachable"
apply_all -f "$DEMO"
serve_whoami "$B1" b1 80
serve_whoami "$B1" b1 5353 udp
serve_whoami "$B1" b1 5354 udp
serve_whoami "$A1" a1 8080
answered "$A1" 10.244.1.11 80
answered "$A2" 10.244.2.10 80
pass "a1 -> a2:80 and a2 -> b1:80 answered"

step "config/cluster/policy.yaml: web pods take http and UDP 5353 from the client only"
apply_all -f "$DEMO" -f "$POLICY"
answered "$A1" 10.244.2.10 80
pass "a1 -> b1:80 across nodes: '$ANSWER' (b1 sees the client's own address)"
answered "$A1" 10.244.1.11 80
pass "a1 -> a2:80 on node1: '$ANSWER'"
answered "$A1" 10.244.2.10 5353 udp
pass "a1 -> b1:5353/udp: '$ANSWER'"
before=$(drops node2 policy_denied)
silent "$A2" 10.244.2.10 80
silent "$A1" 10.244.2.10 5354 udp
after=$(drops node2 policy_denied)
[ "$after" -gt "$before" ] || fail "node2 counted no policy_denied drops ($before -> $after)"
pass "a2 (app=web) -> b1:80 and a1 -> b1:5354/udp blocked; node2 counted $((after - before)) policy_denied drops"
answered "$B1" 10.244.1.10 8080
pass "b1 -> a1:8080: a1 is not selected, b1 is not isolated for egress: '$ANSWER'"
"$KDPCTL" --dataplane "$(api_socket node2)" get policy >"$WORK_DIR/policy.txt"
grep -q 'default/b1 .*ingress .*default {app=client} .*80/tcp .*default/web-from-client ingress\[0\]' \
    "$WORK_DIR/policy.txt" || fail "kdpctl get policy on node2: $(cat "$WORK_DIR/policy.txt")"
pass "kdpctl get policy on node2 lists b1's allowed peers and ports with their rule"
"$KDPCTL" --dataplane "$(api_socket node1)" trace --from default/a1 --to default/a2 --port 80 \
    >"$WORK_DIR/trace.txt"
grep -q 'ingress of default/a2: allowed by default/web-from-client ingress\[0\]' "$WORK_DIR/trace.txt" \
    || fail "kdpctl trace a1 -> a2:80: $(cat "$WORK_DIR/trace.txt")"
"$KDPCTL" --dataplane "$(api_socket node1)" trace --from default/a1 --to default/a2 --port 81 \
    >"$WORK_DIR/trace.txt"
grep -q 'ingress of default/a2: no rule allows it' "$WORK_DIR/trace.txt" \
    && grep -q 'verdict: deny' "$WORK_DIR/trace.txt" \
    || fail "kdpctl trace a1 -> a2:81: $(cat "$WORK_DIR/trace.txt")"
pass "kdpctl trace names the rule that allows a1 -> a2:80 and says none allows a1 -> a2:81"
# Across nodes: node1 lets a2 -> b1:80 leave (a2 is not isolated for egress); node2's dataplane,
# asked for the rest of the path (--peer), drops it, as it dropped the real connection above.
"$KDPCTL" --dataplane "$(api_socket node1)" trace --from default/a2 --to 10.244.2.10 --port 80 \
    >"$WORK_DIR/trace.txt"
grep -q 'next_node .*the rest of the path is on node node2: give --peer node2=SOCKET' \
    "$WORK_DIR/trace.txt" || fail "kdpctl trace a2 -> b1:80 without --peer: $(cat "$WORK_DIR/trace.txt")"
"$KDPCTL" --dataplane "$(api_socket node1)" trace --peer "node2=$(api_socket node2)" \
    --from default/a2 --to default/b1 --port 80 >"$WORK_DIR/trace.txt"
grep -q '^node1 .*vxlan_encap' "$WORK_DIR/trace.txt" \
    && grep -q '^node2 .*policy .*ingress of default/b1: no rule allows it' "$WORK_DIR/trace.txt" \
    && grep -q 'verdict: deny' "$WORK_DIR/trace.txt" \
    || fail "kdpctl trace --peer a2 -> b1:80: $(cat "$WORK_DIR/trace.txt")"
tj=$("$KDPCTL" --dataplane "$(api_socket node1)" trace --peer "node2=$(api_socket node2)" \
    --from default/a1 --to default/b1 --port 80 -o json) || fail "kdpctl trace a1 -> b1: $tj"
python3 - "$tj" <<'PY' || fail "kdpctl trace --peer a1 -> b1:80: $tj"
import json, sys
j = json.loads(sys.argv[1])
assert j["verdict"] == "allow" and j["seen_src"] == "10.244.1.10", j
assert (j["hops"][-1]["node"], j["hops"][-1]["stage"]) == ("node2", "output"), j["hops"][-1]
assert any(h["node"] == "node2" and h["stage"] == "policy"
           and "allowed by default/web-from-client ingress[0]" in h["detail"] for h in j["hops"])
PY
pass "trace across nodes (--peer): a2 -> b1:80 denied by node2's ingress, a1 -> b1:80 allowed there by web-from-client"

step "egress lock-down of the client: DNS-like UDP 53 anywhere, http to web pods only"
cat >"$WORK_DIR/egress.yaml" <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-egress, namespace: default}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]
  - to: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 80}]
YAML
serve_whoami "$B1" b1 53 udp
apply_all -f "$DEMO" -f "$WORK_DIR/egress.yaml"
answered "$A1" 10.244.2.10 80
answered "$A1" 10.244.2.10 53 udp
silent "$A1" 10.244.2.10 5353 udp
answered "$A2" 10.244.2.10 5353 udp
pass "a1 -> b1: 80/tcp and 53/udp allowed, 5353/udp blocked; a2 (not locked down) -> b1:5353/udp answered"

step "a policy applied while a TCP stream runs stops it; removing it lets the stream resume"
apply_all -f "$DEMO"
STREAM="$WORK_DIR/stream.txt"
spawn ip netns exec "$B1" socat -u TCP4-LISTEN:9000,reuseaddr "OPEN:$STREAM,creat,append"
wait_for 5 "b1 listening on 9000" in_ns "$B1" sh -c "ss -Hltn 'sport = :9000' | grep -q ." \
    || fail "stream listener did not start"
spawn ip netns exec "$A2" sh -c \
    'i=0; while :; do echo "line $i"; i=$((i + 1)); sleep 0.1; done | socat -u - TCP4:10.244.2.10:9000'
lines() { wc -l <"$STREAM" 2>/dev/null || echo 0; }
wait_for 10 "the stream flowing" sh -c "[ \$(wc -l <'$STREAM' 2>/dev/null || echo 0) -ge 10 ]" \
    || fail "the a2 -> b1:9000 stream did not start"
pass "a2 -> b1:9000 stream flowing ($(lines) lines)"
apply_all -f "$DEMO" -f "$POLICY"
sleep 1
l1=$(lines)
sleep 3
l2=$(lines)
[ "$l1" -eq "$l2" ] || fail "the established stream went on under the policy: $l1 -> $l2 lines"
pass "policy applied: the established stream stopped at $l2 lines (no line in 3 s)"
apply_all -f "$DEMO"
wait_for 20 "the stream resuming" sh -c "[ \$(wc -l <'$STREAM') -gt $l2 ]" \
    || fail "the stream did not resume after the policy was removed"
pass "policy removed: the same TCP connection resumed ($(lines) lines), its data retransmitted"

finish
