#!/usr/bin/env bash
# Services end to end: two kdp nodes in network namespaces, pods on both, Services from
# config/cluster/demo.yaml compiled by the real control plane (kdpctl apply), real TCP and UDP:
#
#   ext 198.51.100.200 ─┐                                  ┌─ srv 198.51.100.201
#                       └── underlay bridge 198.51.100.0/24 ┘
#          node1 198.51.100.1 (a1 client, a2 web)   node2 198.51.100.2 (b1 web)
#
# Checks: ClusterIP balanced over backends on both nodes with the client address kept; UDP;
# hairpin; NodePort from an outside client on either node; externalTrafficPolicy Local keeps
# the client IP and stays on the node; a Service without endpoints refuses; egress to outside
# the cluster is masqueraded to the node IP; an endpoint removed by an update stops getting
# new connections.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_dataplane
KDPCTL="$KDP_BUILD_DIR/control/kdpctl"
MANIFESTS="$KDP_ROOT/config/cluster/demo.yaml"
mkdir -p "$WORK_DIR"

step "two nodes, three pods, two outside hosts"
underlay_create
node_uplink 1
node_uplink 2
CONFIG1=$(kdp_node_config node1 1 "$(uplink_if 1)" standard \
    "a1:10.244.1.10:$(if_name a1) a2:10.244.1.11:$(if_name a2)" "")
CONFIG2=$(kdp_node_config node2 2 "$(uplink_if 2)" standard "b1:10.244.2.10:$(if_name b1)" "")
start_dataplane node1 "$CONFIG1"
start_dataplane node2 "$CONFIG2"
pod_attach 1 a1 10.244.1.10 "$(if_name a1)"
pod_attach 1 a2 10.244.1.11 "$(if_name a2)"
pod_attach 2 b1 10.244.2.10 "$(if_name b1)"
A1=$(ns_name a1) A2=$(ns_name a2) B1=$(ns_name b1)
outside_host_create ext 198.51.100.200
outside_host_create srv 198.51.100.201
EXT=$(ns_name ext) SRV=$(ns_name srv)
pass "node1 (a1, a2), node2 (b1), ext 198.51.100.200, srv 198.51.100.201"

step "Services compiled from $MANIFESTS"
for n in node1 node2; do
    "$KDPCTL" --dataplane "$(api_socket $n)" apply -f "$MANIFESTS" --node $n >/dev/null \
        || fail "kdpctl apply to $n failed"
done
"$KDPCTL" --dataplane "$(api_socket node1)" get services | sed 's/^/    /'
n=$("$KDPCTL" --dataplane "$(api_socket node1)" get endpoints -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" -eq 8 ] || fail "node1 lists $n endpoints, expected 8 (web:http, web:echo, web-local:http and web-lb:http, each on a2 and b1)"
pass "both nodes hold 5 service ports; node1 lists $n endpoints"
serve_whoami "$A2" a2 80
serve_whoami "$B1" b1 80
serve_whoami "$A2" a2 5353 udp
serve_whoami "$B1" b1 5353 udp

step "ClusterIP 10.96.0.10:80 from pod a1 (node1): backends on both nodes"
spread "$A1" 10.96.0.10 80 24
[[ $SPREAD == *a2:* && $SPREAD == *b1:* ]] || fail "24 connections did not reach both backends: $SPREAD"
[ "$SEEN" = 10.244.1.10 ] || fail "the backends saw the client as '$SEEN', expected a1's 10.244.1.10"
pass "24 connections: $SPREAD; every backend saw a1's own address 10.244.1.10"

step "kdpctl trace: the Service and backend a flow from a1 gets, live, without side effects"
before=$("$KDPCTL" --dataplane "$(api_socket node1)" stats -o json --interval-ms 100 | python3 -c 'import json,sys; print(sum(p["rx_packets"] for p in json.load(sys.stdin)["ports"]))')
"$KDPCTL" --dataplane "$(api_socket node1)" trace --from default/a1 --to service:default/web --port 80 | sed 's/^/    /'
tj=$("$KDPCTL" --dataplane "$(api_socket node1)" trace --from default/a1 --to service:default/web --port 80 -o json) \
    || fail "kdpctl trace failed: $tj"
read -r verdict backend bport seen < <(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["verdict"], j["backend"], j["backend_port"], j["seen_src"])' "$tj")
[ "$verdict" = allow ] || fail "trace verdict '$verdict', expected allow"
[[ $backend == default/a2 || $backend == default/b1 ]] || fail "trace backend '$backend', expected default/a2 or default/b1"
[ "$bport" = 80 ] && [ "$seen" = 10.244.1.10 ] || fail "trace: backend port $bport seen_src $seen"
after=$("$KDPCTL" --dataplane "$(api_socket node1)" stats -o json --interval-ms 100 | python3 -c 'import json,sys; print(sum(p["rx_packets"] for p in json.load(sys.stdin)["ports"]))')
[ "$before" = "$after" ] || fail "two traces moved node1's receive counters from $before to $after"
pass "trace: allow, backend $backend:$bport, client seen as $seen; node1's counters unchanged ($after packets)"
out=$("$KDPCTL" --dataplane "$(api_socket node1)" trace --from default/a1 --to service:default/nobody --port 80 -o json)
[[ $out == *'"verdict": "reject"'* ]] || fail "trace to a Service without endpoints: $out"
pass "trace to default/nobody: reject"

step "UDP: ClusterIP 10.96.0.10:53 -> targetPort 5353"
spread "$A1" 10.96.0.10 53 12 udp
[[ $SPREAD == *a2:* || $SPREAD == *b1:* ]] || fail "no UDP answer: $SPREAD"
pass "12 datagrams answered: $SPREAD (client seen as $SEEN)"

step "hairpin: b1 reaches the Service and may land on itself"
spread "$B1" 10.96.0.10 80 16
[[ $SPREAD == *b1:* ]] || fail "16 connections from b1 never came back to b1: $SPREAD"
[[ " $SEEN " == *" 10.244.2.1 "* ]] || fail "b1 reaching itself was not masqueraded (peers: $SEEN)"
pass "16 connections: $SPREAD; b1's own ones arrive from the node gateway 10.244.2.1 (peers: $SEEN)"

step "NodePort 30080 from the outside client ext (198.51.100.200)"
for n in 1 2; do
    spread "$EXT" "$(node_ip $n)" 30080 16
    [[ $SPREAD == *a2:* && $SPREAD == *b1:* ]] || fail "NodePort on node$n reached only $SPREAD"
    pass "node$n $(node_ip $n):30080, 16 connections: $SPREAD (peers seen: $SEEN)"
done
spread "$EXT" "$(node_ip 2)" 30053 6 udp
pass "node2 $(node_ip 2):30053/udp, 6 datagrams: $SPREAD"

step "externalTrafficPolicy: Local (NodePort 30081): client IP kept, node-local backends only"
spread "$EXT" "$(node_ip 1)" 30081 8
[ "$SPREAD" = "a2:8 " ] || fail "node1:30081 should reach only a2 (node1's pod), got $SPREAD"
[ "$SEEN" = 198.51.100.200 ] || fail "a2 saw '$SEEN', expected the client's own 198.51.100.200"
pass "node1:30081 -> a2 only, which saw the client as $SEEN"
spread "$EXT" "$(node_ip 2)" 30081 8
[ "$SPREAD" = "b1:8 " ] || fail "node2:30081 should reach only b1, got $SPREAD"
[ "$SEEN" = 198.51.100.200 ] || fail "b1 saw '$SEEN', expected 198.51.100.200"
pass "node2:30081 -> b1 only, which saw the client as $SEEN"

step "a Service without endpoints refuses"
if out=$(whoami "$A1" 10.96.0.99 80); then
    fail "10.96.0.99:80 answered '$out'; it has no endpoints"
fi
[[ $out == *"Connection refused"* ]] || fail "expected 'Connection refused' from 10.96.0.99:80, got: $out"
pass "a1 -> 10.96.0.99:80: $(grep -o 'Connection refused' <<<"$out") (TCP RST from the dataplane)"

step "egress to outside the cluster is masqueraded to the node IP"
serve_whoami "$SRV" srv 8000
out=$(whoami "$A1" 198.51.100.201 8000) || fail "a1 -> srv failed: $out"
[ "$out" = "srv $(node_ip 1)" ] || fail "srv answered '$out', expected to see node1's $(node_ip 1)"
pass "a1 -> 198.51.100.201:8000: srv saw the client as $(node_ip 1) (node1)"
out=$(whoami "$B1" 198.51.100.201 8000) || fail "b1 -> srv failed: $out"
[ "$out" = "srv $(node_ip 2)" ] || fail "srv answered '$out', expected node2's $(node_ip 2)"
pass "b1 -> 198.51.100.201:8000: srv saw the client as $(node_ip 2) (node2)"
check_ping "$A1" 198.51.100.201 "a1 -> srv, ICMP echo masqueraded (identifier as the port)"

step "an endpoint leaves: b1 loses its label, the update reaches node1, new connections avoid it"
sed 's/name: b1, namespace: default, labels: {app: web}/name: b1, namespace: default, labels: {app: gone}/' \
    "$MANIFESTS" >"$WORK_DIR/update.yaml"
grep -q 'app: gone' "$WORK_DIR/update.yaml" || fail "could not rewrite b1's labels in the manifest"
"$KDPCTL" --dataplane "$(api_socket node1)" apply -f "$WORK_DIR/update.yaml" --node node1 >/dev/null \
    || fail "kdpctl apply of the update failed"
spread "$A1" 10.96.0.10 80 12
[ "$SPREAD" = "a2:12 " ] || fail "after the update 12 connections went to $SPREAD, expected a2 only"
pass "12 connections after the update: $SPREAD"

step "healthCheckNodePort 32000 of the LoadBalancer web-lb (externalTrafficPolicy: Local)"
health() { # NODE_N: prints the status line and the localEndpoints count
    printf 'GET /healthz HTTP/1.1\r\nHost: lb\r\n\r\n' |
        in_ns "$EXT" timeout 5 socat -T 3 - "TCP4:$(node_ip "$1"):32000,connect-timeout=3" 2>&1 |
        python3 -c 'import sys,json; t=sys.stdin.read(); head,_,body=t.partition("\r\n\r\n"); print(head.splitlines()[0] if head else "none", json.loads(body).get("localEndpoints") if body.strip().startswith("{") else "-")'
}
out=$(health 1)
[[ $out == "HTTP/1.1 200 OK 1" ]] || fail "node1:32000 answered '$out', expected 200 with 1 local endpoint"
pass "node1 $(node_ip 1):32000: $out (a2 is local)"
"$KDPCTL" --dataplane "$(api_socket node2)" apply -f "$WORK_DIR/update.yaml" --node node2 >/dev/null \
    || fail "kdpctl apply of the update to node2 failed"
out=$(health 2)
[[ $out == "HTTP/1.1 503 Service Unavailable 0" ]] || fail "node2:32000 answered '$out', expected 503 with 0 local endpoints"
pass "node2 $(node_ip 2):32000 after b1 left: $out"

step "dataplane counters"
print_nodes_stats node1 node2
finish
