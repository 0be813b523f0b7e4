#!/usr/bin/env bash
# Service semantics beyond load balancing, end to end: two kdp nodes, the pods and Services of
# config/cluster/demo.yaml plus a LoadBalancer Service with externalTrafficPolicy: Local and a
# ClientIP-affinity Service (written below), compiled by the real control plane:
#
#   ext 198.51.100.200 ─┐                                  ┌─ srv 198.51.100.201
#                       └── underlay bridge 198.51.100.0/24 ┘
#          node1 198.51.100.1 (a1 client, a2 web)   node2 198.51.100.2 (b1 web)
#
# Checks: the healthCheckNodePort answered by each dataplane with curl's view of it (200 and
# kube-proxy's JSON with a local endpoint, 503 without); sessionAffinity: ClientIP keeps a
# client on one backend; ping from a pod to outside the cluster is masqueraded and answered;
# a UDP datagram to a Service whose backends do not listen is refused (the backend's ICMP port
# unreachable translated back to the VIP, across the overlay too); `kdpctl get conntrack`
# shows the connections.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_dataplane
KDPCTL="$KDP_BUILD_DIR/control/kdpctl"
MANIFESTS="$KDP_ROOT/config/cluster/demo.yaml"
mkdir -p "$WORK_DIR"
EXTRA="$WORK_DIR/extra.yaml"
cat >"$EXTRA" <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: lb-local, namespace: default}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.12
  selector: {app: web}
  externalTrafficPolicy: Local
  healthCheckNodePort: 32100
  ports:
    - {name: http, port: 80, targetPort: http, nodePort: 30082}
---
apiVersion: v1
kind: Service
metadata: {name: sticky, namespace: default}
spec:
  clusterIP: 10.96.0.13
  selector: {app: web}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
  ports:
    - {name: http, port: 80, targetPort: http}
YAML

step "two nodes, three pods, two outside hosts"
demo_cluster_create
pass "node1 (a1, a2), node2 (b1), ext 198.51.100.200, srv 198.51.100.201"

step "Services compiled from demo.yaml and the extra manifest"
for n in node1 node2; do
    "$KDPCTL" --dataplane "$(api_socket $n)" apply -f "$MANIFESTS" -f "$EXTRA" --node $n >/dev/null \
        || fail "kdpctl apply to $n failed"
done
"$KDPCTL" --dataplane "$(api_socket node1)" get services | sed 's/^/    /'
serve_whoami "$A2" a2 80
serve_whoami "$B1" b1 80
pass "applied on both nodes"

# health NODE_N: curl's status code and body for the health check port of node N.
health() {
    in_ns "$EXT" curl -s -m 5 -o "$WORK_DIR/hc-body" -w '%{http_code}' \
        "http://$(node_ip "$1"):32100/healthz" || true
}
local_endpoints() {
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["service"]=={"namespace":"default","name":"lb-local"}, j; print(j["localEndpoints"])' \
        "$WORK_DIR/hc-body"
}

step "healthCheckNodePort 32100 answered on each node IP (curl from ext)"
for n in 1 2; do
    code=$(health $n)
    [ "$code" = 200 ] || fail "node$n:32100 answered HTTP '$code', expected 200: $(cat "$WORK_DIR/hc-body" 2>/dev/null)"
    le=$(local_endpoints) || fail "node$n:32100 body is not kube-proxy's JSON: $(cat "$WORK_DIR/hc-body")"
    [ "$le" = 1 ] || fail "node$n:32100 reports $le local endpoints, expected 1"
    pass "node$n:32100 -> 200 $(cat "$WORK_DIR/hc-body")"
done
spread "$EXT" "$(node_ip 2)" 30082 4
[ "$SPREAD" = "b1:4 " ] || fail "node2:30082 (Local) reached $SPREAD, expected b1 only"
pass "and its NodePort 30082 on node2 serves from b1 only"

step "b1 leaves the Service: node2's health check turns 503"
sed 's/name: b1, namespace: default, labels: {app: web}/name: b1, namespace: default, labels: {app: gone}/' \
    "$MANIFESTS" >"$WORK_DIR/update.yaml"
grep -q 'app: gone' "$WORK_DIR/update.yaml" || fail "could not rewrite b1's labels in the manifest"
for n in node1 node2; do
    "$KDPCTL" --dataplane "$(api_socket $n)" apply -f "$WORK_DIR/update.yaml" -f "$EXTRA" --node $n \
        >/dev/null || fail "kdpctl apply of the update to $n failed"
done
code=$(health 2)
[ "$code" = 503 ] || fail "node2:32100 answered HTTP '$code' without a local endpoint, expected 503"
le=$(local_endpoints) || fail "node2:32100 503 body is not kube-proxy's JSON: $(cat "$WORK_DIR/hc-body")"
[ "$le" = 0 ] || fail "node2:32100 reports $le local endpoints, expected 0"
pass "node2:32100 -> 503 $(cat "$WORK_DIR/hc-body")"
code=$(health 1)
[ "$code" = 200 ] || fail "node1:32100 answered HTTP '$code', expected 200 (a2 is still there)"
pass "node1:32100 -> still 200"
# Back to both backends for what follows.
for n in node1 node2; do
    "$KDPCTL" --dataplane "$(api_socket $n)" apply -f "$MANIFESTS" -f "$EXTRA" --node $n >/dev/null \
        || fail "kdpctl apply to $n failed"
done

step "sessionAffinity: ClientIP (10.96.0.13): a client stays on one backend"
spread "$A1" 10.96.0.10 80 16
[[ $SPREAD == *a2:* && $SPREAD == *b1:* ]] || fail "without affinity 16 connections should reach both backends: $SPREAD"
pass "without affinity (10.96.0.10): $SPREAD"
spread "$A1" 10.96.0.13 80 16
[[ $SPREAD == "a2:16 " || $SPREAD == "b1:16 " ]] || fail "with affinity 16 connections spread: $SPREAD"
pass "with affinity (10.96.0.13): $SPREAD"

step "ping from a pod to outside the cluster is masqueraded"
out=$(in_ns "$A1" ping -c 3 -i 0.2 -W 2 198.51.100.201 2>&1) || fail "a1 cannot ping srv: $out"
pass "a1 -> 198.51.100.201: $(grep -o '[0-9]* received' <<<"$out")"
ct=$("$KDPCTL" --dataplane "$(api_socket node1)" get conntrack -o json)
python3 - "$ct" <<'PY' || fail "no masqueraded ICMP entry in node1's conntrack: $ct"
import json, sys
entries = json.loads(sys.argv[1])
ok = [e for e in entries if e["protocol"] == "icmp" and e["original"]["src"] == "10.244.1.10"
      and e["reply"]["dst"] == "198.51.100.1" and "egress" in e["nat"] and e["state"] == "established"]
sys.exit(0 if ok else 1)
PY
pass "node1 tracks it: icmp 10.244.1.10 -> 198.51.100.201, replies to 198.51.100.1"

step "UDP to a Service whose backends do not listen is refused (ICMP translated back)"
# Each datagram is a new flow (socat picks a new source port): send until both backends, a2 on
# node1 and b1 behind the overlay, have refused some, at most 20.
udp_backends() {
    "$KDPCTL" --dataplane "$(api_socket node1)" get conntrack -o json | python3 -c '
import json, sys
seen = {e["reply"]["src"] for e in json.load(sys.stdin)
        if e["protocol"] == "udp" and e["original"]["dport"] == 53}
print(" ".join(sorted(seen)))'
}
sent=0
while [ $sent -lt 20 ]; do
    out=$(whoami "$A1" 10.96.0.10 53 udp) && fail "10.96.0.10:53/udp answered '$out'; nothing listens on 5353"
    [[ $out == *"Connection refused"* ]] || fail "datagram $sent to 10.96.0.10:53 was not refused (port unreachable not translated back): $out"
    sent=$((sent + 1))
    seen=$(udp_backends)
    [ $sent -ge 6 ] && [ "$seen" = "10.244.1.11 10.244.2.10" ] && break
done
[ "$seen" = "10.244.1.11 10.244.2.10" ] || fail "$sent datagrams reached only backends '$seen'"
pass "$sent of $sent datagrams refused at once, by a2 (node1) and by b1 (node2, across the overlay)"

step "kdpctl get conntrack on node1"
"$KDPCTL" --dataplane "$(api_socket node1)" get conntrack --limit 12 | sed 's/^/    /'
n=$("$KDPCTL" --dataplane "$(api_socket node1)" get conntrack -o json |
    python3 -c 'import json,sys; print(sum(1 for e in json.load(sys.stdin) if e["affinity"]))')
[ "$n" -ge 1 ] || fail "no affinity record listed"
pass "listed, with $n affinity record(s)"

step "dataplane counters"
print_nodes_stats node1 node2
finish
