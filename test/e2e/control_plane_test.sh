#!/usr/bin/env bash
# Control plane end to end, every process real:
#
#   fake API server (list+watch over TLS, test/k8s/fake_apiserver.py)
#        │  HTTPS, client certificate
#   kdp-control --kubeconfig ── gRPC (unix socket) ──> kdp-dataplane node1 (net_ring uplink)
#                                                        ▲
#   kdpctl get routes|pods ─────────── gRPC ─────────────┘   (tables read back)
#
# Checks that the dataplane's tables, read back with kdpctl, follow the cluster: the initial
# list, node and pod changes, a Service and its EndpointSlice (conditions changing), a 410 Gone
# relist that must discover an object whose event was lost, a dataplane restart (control
# notices and pushes full state), a control restart (the dataplane keeps forwarding with its
# tables), and an API server that stops answering (the last good state stays).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_dataplane
KDPCTL="$KDP_BUILD_DIR/control/kdpctl"
KDPCONTROL="$KDP_BUILD_DIR/control/kdp-control"
mkdir -p "$WORK_DIR"

step "dataplane node1 on a net_ring uplink (no network namespaces needed)"
SOCK=$(api_socket node1)
PREFIX=$(file_prefix node1)
cat >"$WORK_DIR/node1.yaml" <<CFG
node: {name: node1, ip: 198.51.100.1, pod_cidr: 10.244.1.0/24}
dpdk:
  file_prefix: $PREFIX
  lcores: "0@(0-1),1@(0-1)"
  eal_args: ["--no-pci", "--no-huge", "-m", "256", "--log-level=*:warning"]
workers: {lcores: [1], idle: {spin_polls: 64, sleep_us: 100, max_sleep_us: 2000}}
uplink: {devargs: "net_ring0"}
limits: {mbufs: 4095, conntrack: 4096}
api: {socket: $SOCK}
CFG
start_dataplane node1 "$WORK_DIR/node1.yaml"
pass "kdp-dataplane node1 up, API at $SOCK"

step "fake API server"
fake_apiserver_start
node_obj() { # NAME INTERNAL_IP POD_CIDR
    printf '{"apiVersion":"v1","kind":"Node","metadata":{"name":"%s","labels":{"kubernetes.io/hostname":"%s"}},"spec":{"podCIDR":"%s"},"status":{"addresses":[{"type":"InternalIP","address":"%s"}]}}' \
        "$1" "$1" "$3" "$2"
}
pod_obj() { # NAME NODE IP
    printf '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"%s","namespace":"default","labels":{"app":"web"}},"spec":{"nodeName":"%s","containers":[{"name":"c","image":"nginx","ports":[{"name":"http","containerPort":80}]}]},"status":{"phase":"Running","podIP":"%s"}}' \
        "$1" "$2" "$3"
}
api '{"op":"create","path":"/api/v1/namespaces","object":{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"default"}}}'
for n in 1 2 3; do
    api "{\"op\":\"create\",\"path\":\"/api/v1/nodes\",\"object\":$(node_obj node$n 198.51.100.$n 10.244.$n.0/24)}"
done
api "{\"op\":\"create\",\"path\":\"/api/v1/pods\",\"object\":$(pod_obj web-1 node1 10.244.1.10)}"
api "{\"op\":\"create\",\"path\":\"/api/v1/pods\",\"object\":$(pod_obj web-2 node2 10.244.2.10)}"
pass "API server on 127.0.0.1:$PORT with 3 nodes and 2 pods (TLS, client certificate)"

routes() { "$KDPCTL" --dataplane "$SOCK" get routes -o json 2>/dev/null | python3 -c '
import json, sys
print(" ".join(sorted("%s=%s@%s" % (r["node"], r["pod_cidr"], r["node_ip"]) for r in json.load(sys.stdin))))'; }
pods() { "$KDPCTL" --dataplane "$SOCK" get pods -o json 2>/dev/null | python3 -c '
import json, sys
print(" ".join(sorted("%s=%s" % (p["name"], p["ip"]) for p in json.load(sys.stdin))))'; }
generation() { "$KDPCTL" --dataplane "$SOCK" info -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])'; }
routes_are() { [ "$(routes)" = "$1" ]; }
pods_have() { pods | grep -q "$1"; }
generation_above() { [ "$(generation)" -gt "$1" ]; }
expect_routes() { # DESCRIPTION WANTED
    wait_for 20 "routes = $2" routes_are "$2" || fail "$1: routes are '$(routes)', expected '$2'"
    pass "$1: $2"
}

step "kdp-control watching the API"
start_control() {
    # Ephemeral health and metrics ports: the defaults (10256, 10249) are the host's to share;
    # deploy_test.sh checks those in a namespace of its own.
    spawn "$KDPCONTROL" --node node1 --kubeconfig "$WORK_DIR/kubeconfig" --dataplane "$SOCK" \
        --healthz-bind-address 127.0.0.1:0 --metrics-bind-address 127.0.0.1:0 \
        </dev/null >>"$WORK_DIR/control.log" 2>&1
    CONTROL_PID=$BG_PID
}
start_control
expect_routes "initial list" "node2=10.244.2.0/24@198.51.100.2 node3=10.244.3.0/24@198.51.100.3"
[ "$(pods)" = "default/web-1=10.244.1.10" ] || fail "pods are '$(pods)', expected only node1's web-1"
pass "pods on node1 only: $(pods)"

step "watch events"
api "{\"op\":\"create\",\"path\":\"/api/v1/nodes\",\"object\":$(node_obj node4 198.51.100.4 10.244.4.0/24)}"
api '{"op":"delete","path":"/api/v1/nodes","name":"node3"}'
expect_routes "node4 added, node3 deleted" "node2=10.244.2.0/24@198.51.100.2 node4=10.244.4.0/24@198.51.100.4"
api "{\"op\":\"create\",\"path\":\"/api/v1/pods\",\"object\":$(pod_obj web-3 node1 10.244.1.11)}"
wait_for 20 "pod web-3" pods_have web-3 \
    || fail "pod web-3 not in the tables: '$(pods)'"
pass "pod web-3 added: $(pods)"

step "Services and EndpointSlices from the API (the cluster's slices are the only endpoints)"
svc_obj='{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"default"},"spec":{"clusterIP":"10.96.0.10","selector":{"app":"web"},"ports":[{"name":"http","port":80,"targetPort":"http"}]}}'
slice_obj() { # READY_OF_WEB_2
    printf '{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"web-abc","namespace":"default","labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv4","ports":[{"name":"http","port":80,"protocol":"TCP"}],"endpoints":[{"addresses":["10.244.1.10"],"conditions":{"ready":true},"nodeName":"node1","targetRef":{"kind":"Pod","name":"web-1","namespace":"default"}},{"addresses":["10.244.2.10"],"conditions":{"ready":%s,"terminating":false},"nodeName":"node2","targetRef":{"kind":"Pod","name":"web-2","namespace":"default"}}]}' "$1"
}
endpoints() { "$KDPCTL" --dataplane "$SOCK" get endpoints -o json 2>/dev/null | python3 -c '
import json, sys
print(" ".join(sorted("%s=%s:%s" % (e["pod"], e["endpoint"], "ready" if e["ready"] else "notready") for e in json.load(sys.stdin))))'; }
services() { "$KDPCTL" --dataplane "$SOCK" get services -o json 2>/dev/null | python3 -c '
import json, sys
print(" ".join(sorted("%s@%s" % (s["name"], s["frontends"][0]["ip"]) for s in json.load(sys.stdin))))'; }
endpoints_are() { [ "$(endpoints)" = "$1" ]; }
services_are() { [ "$(services)" = "$1" ]; }
api "{\"op\":\"create\",\"path\":\"/api/v1/services\",\"object\":$svc_obj}"
wait_for 20 "service web" services_are "default/web:http@10.96.0.10" \
    || fail "service web not in the tables: '$(services)'"
[ -z "$(endpoints)" ] || fail "endpoints '$(endpoints)' before any EndpointSlice (none may be derived from pods in Kubernetes mode)"
pass "Service default/web:http at 10.96.0.10, no endpoints until its slice exists"
api "{\"op\":\"create\",\"path\":\"/apis/discovery.k8s.io/v1/endpointslices\",\"object\":$(slice_obj false)}"
want="default/web-1=10.244.1.10:80:ready default/web-2=10.244.2.10:80:notready"
wait_for 20 "endpoints" endpoints_are "$want" || fail "endpoints are '$(endpoints)', expected '$want'"
pass "EndpointSlice: $(endpoints)"
api "{\"op\":\"update\",\"path\":\"/apis/discovery.k8s.io/v1/endpointslices\",\"object\":$(slice_obj true)}"
want="default/web-1=10.244.1.10:80:ready default/web-2=10.244.2.10:80:ready"
wait_for 20 "web-2 ready" endpoints_are "$want" || fail "endpoints are '$(endpoints)', expected '$want'"
pass "web-2 turned ready: $(endpoints)"
api '{"op":"delete","path":"/api/v1/services","name":"web"}'
wait_for 20 "service gone" services_are "" || fail "service still in the tables: '$(services)'"
pass "Service deleted: no service ports left"

step "410 Gone: the relist finds what the lost event said"
api "{\"op\":\"create\",\"path\":\"/api/v1/nodes\",\"silent\":true,\"object\":$(node_obj node5 198.51.100.5 10.244.5.0/24)}"
api '{"op":"expire"}'
expect_routes "after relist" \
    "node2=10.244.2.0/24@198.51.100.2 node4=10.244.4.0/24@198.51.100.4 node5=10.244.5.0/24@198.51.100.5"

step "dataplane restart: control notices and pushes the full state"
stop_dataplane node1
start_dataplane node1 "$WORK_DIR/node1.yaml"
expect_routes "after the dataplane restarted" \
    "node2=10.244.2.0/24@198.51.100.2 node4=10.244.4.0/24@198.51.100.4 node5=10.244.5.0/24@198.51.100.5"

step "control restart: the dataplane keeps its tables, control resyncs"
before=$(generation)
stop_bg "$CONTROL_PID"
[ "$(routes)" = "node2=10.244.2.0/24@198.51.100.2 node4=10.244.4.0/24@198.51.100.4 node5=10.244.5.0/24@198.51.100.5" ] \
    || fail "tables changed while control was down: '$(routes)'"
pass "tables kept while control is down (generation $before)"
start_control
wait_for 20 "a new generation" generation_above "$before" \
    || fail "control did not resync after its restart (generation still $before)"
expect_routes "after control restarted" \
    "node2=10.244.2.0/24@198.51.100.2 node4=10.244.4.0/24@198.51.100.4 node5=10.244.5.0/24@198.51.100.5"

step "API server unreachable: the last good state stays"
api '{"op":"fail","count":100000,"status":0}'
api '{"op":"drop"}'
sleep 3
[ "$(routes)" = "node2=10.244.2.0/24@198.51.100.2 node4=10.244.4.0/24@198.51.100.4 node5=10.244.5.0/24@198.51.100.5" ] \
    || fail "tables changed while the API server was down: '$(routes)'"
grep -q "retrying" "$WORK_DIR/control.log" || fail "control did not log its retries"
pass "tables unchanged for 3 s without an API server; control retries with backoff"
api '{"op":"fail","count":0,"status":0}'
api "{\"op\":\"create\",\"path\":\"/api/v1/nodes\",\"object\":$(node_obj node6 198.51.100.6 10.244.6.0/24)}"
expect_routes "API server back" \
    "node2=10.244.2.0/24@198.51.100.2 node4=10.244.4.0/24@198.51.100.4 node5=10.244.5.0/24@198.51.100.5 node6=10.244.6.0/24@198.51.100.6"

step "result"
pass "control plane end to end"
