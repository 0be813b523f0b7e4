#!/usr/bin/env bash
# The kdp demo (the README's main command): bash config/demo.sh (re-runs under sudo)
#
# Sets up the machine (config/setup.sh), then builds a two-node cluster out of network
# namespaces on this one host and shows pod traffic going through two kdp-dataplane processes:
#
#   pod a1 10.244.1.10 ─┐  TAP                      TAP  ┌─ pod b1 10.244.2.10
#   pod a2 10.244.1.11 ─┴─ kdp-dataplane node1       kdp-dataplane node2 ─┘
#                          198.51.100.1  ── VXLAN over an underlay bridge ──  198.51.100.2
#
# The dataplanes start with no pod ports; kdp-cni attaches the pods while they run, called
# through libcni (the library containerd and CRI-O call CNI plugins with) with the shipped
# config/cni/10-kdp.conflist, as the kubelet's runtime would for each pod sandbox.
#
# Every step prints ✔ or ✘; everything it creates is removed on exit (also on Ctrl-C).
# Steps are functions: add new ones (policies, ...) to STEPS at the bottom.
# Environment: KDP_BUILD_DIR, KDP_KEEP=1 (keep the work dir with configs and logs).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

source "$ROOT/config/as_root.sh"
as_root "$ROOT/config/demo.sh" "$@"

echo "== set-up (packages, hugepages, build)"
bash "$ROOT/config/setup.sh"

source "$ROOT/test/e2e/lib.sh"

step_cluster() {
    step "a two-node cluster in network namespaces (run $RUN_ID)"
    underlay_create
    node_uplink 1
    node_uplink 2
    log "  underlay: bridge '$UNDERLAY_BR' in netns $UNDERLAY_NS; node uplinks $(uplink_if 1), $(uplink_if 2) (net_af_packet)"
    # A node's config names no pods (kdp-cni attaches them, step_pods) and no other nodes (the
    # control plane tells, step_control).
    # Each node's own network (where the kubelet runs) is a namespace too, reaching the pod
    # network through the dataplane's host interface; the routes name the other nodes' pod CIDRs
    # (there is no node.cluster_cidr here) and the Services.
    netns_create h1
    netns_create h2
    H1=$(ns_name h1) H2=$(ns_name h2)
    CONFIG1=$(kdp_node_config node1 1 "$(uplink_if 1)" standard "" "" \
        "host: {iface: $(if_name h1), netns: $H1, routes: [10.244.0.0/16, 10.96.0.0/12]}")
    CONFIG2=$(kdp_node_config node2 2 "$(uplink_if 2)" standard "" "" \
        "host: {iface: $(if_name h2), netns: $H2, routes: [10.244.0.0/16, 10.96.0.0/12]}")
    start_dataplane node1 "$CONFIG1"
    pass "kdp-dataplane node1: $(node_ip 1), pods 10.244.1.0/24, config $CONFIG1"
    start_dataplane node2 "$CONFIG2"
    pass "kdp-dataplane node2: $(node_ip 2), pods 10.244.2.0/24, config $CONFIG2"
}

step_pods() {
    step "pods attached by kdp-cni (CNI ADD through libcni, config/cni/10-kdp.conflist)"
    cni_client_build
    local pod node ip res
    for pod in a1:node1:10.244.1.10 a2:node1:10.244.1.11 b1:node2:10.244.2.10; do
        IFS=: read -r pod node ip <<<"$pod"
        cni_pod_add "$node" "$pod" "$ip"
        res=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); i=r["interfaces"][0]
print(i["name"], i["mac"], r["ips"][0]["address"], "via", r["routes"][0]["gw"])' \
            "$WORK_DIR/cni-$pod.json") || fail "CNI ADD of $pod: no result: $(cat "$WORK_DIR/cni-$pod.json")"
        [[ $res == *" $ip/24 "* ]] || fail "CNI ADD of $pod: asked for $ip, got $res"
        pass "CNI ADD default/$pod on $node: $res, MTU $(ip -n "$(ns_name "$pod")" -o link show eth0 | grep -o 'mtu [0-9]*' | cut -d' ' -f2)"
    done
    A1=$(ns_name a1) A2=$(ns_name a2) B1=$(ns_name b1)
    log "  node1's ports (kdpctl get ports):"
    "$KDP_BUILD_DIR/control/kdpctl" --dataplane "$(api_socket node1)" get ports | sed 's/^/    /'
}

step_control() {
    step "control plane: the cluster's manifests compiled into each node's tables"
    local n kdpctl="$KDP_BUILD_DIR/control/kdpctl" manifests="$ROOT/config/cluster/demo.yaml"
    for n in node1 node2; do
        "$kdpctl" --dataplane "$(api_socket "$n")" apply -f "$manifests" --node "$n" \
            || fail "kdpctl apply to $n failed"
        pass "kdpctl apply -f config/cluster/demo.yaml --node $n"
    done
    log "  node1's tables, read back (kdpctl get routes / get pods):"
    "$kdpctl" --dataplane "$(api_socket node1)" get routes | sed 's/^/    /'
    "$kdpctl" --dataplane "$(api_socket node1)" get pods | sed 's/^/    /'
}

step_ping() {
    step "ping"
    check_ping "$A1" 10.244.1.11 "a1 -> a2, same node"
    check_ping "$A1" 10.244.2.10 "a1 -> b1, node1 -> node2 over VXLAN"
    check_ping "$B1" 10.244.1.11 "b1 -> a2, node2 -> node1 over VXLAN"
    check_ping "$H1" 10.244.1.10 "node1 itself -> a1, through its host interface (10.244.1.1)"
    check_ping "$H1" 10.244.2.10 "node1 itself -> b1 on node2"
}

step_tcp() {
    step "TCP transfer with a checksum compare"
    check_tcp "$A1" "$B1" 10.244.2.10 8 "a1 -> b1 across nodes"
    check_tcp "$A2" "$A1" 10.244.1.10 8 "a2 -> a1 on node1"
}

step_services() {
    step "Services (kube-proxy's job, done in the dataplane)"
    local kdpctl="$KDP_BUILD_DIR/control/kdpctl"
    log "  node1's service ports (kdpctl get services):"
    "$kdpctl" --dataplane "$(api_socket node1)" get services | sed 's/^/    /'
    serve_whoami "$A2" a2 80
    serve_whoami "$B1" b1 80
    spread "$A1" 10.96.0.10 80 20
    [[ $SPREAD == *a2:* && $SPREAD == *b1:* ]] || fail "ClusterIP: 20 connections reached only $SPREAD"
    pass "a1 -> ClusterIP 10.96.0.10:80, 20 connections balanced over both nodes' pods: $SPREAD"
    log "  kdpctl trace --from default/a1 --to service:default/web --port 80 (the real pipeline, no side effects):"
    "$kdpctl" --dataplane "$(api_socket node1)" trace --from default/a1 --to service:default/web --port 80 \
        | sed 's/^/    /' || fail "kdpctl trace failed"
    outside_host_create ext 198.51.100.200
    spread "$(ns_name ext)" "$(node_ip 2)" 30080 10
    pass "outside client 198.51.100.200 -> NodePort $(node_ip 2):30080: $SPREAD"
    spread "$(ns_name ext)" "$(node_ip 1)" 30081 5
    [ "$SPREAD" = "a2:5 " ] && [ "$SEEN" = 198.51.100.200 ] \
        || fail "externalTrafficPolicy Local: got $SPREAD seen as $SEEN"
    pass "externalTrafficPolicy: Local on node1:30081: only a2 answers, and it sees the client as $SEEN"
    local out
    out=$(whoami "$A1" 10.96.0.99 80) && fail "a Service without endpoints answered: $out"
    [[ $out == *refused* ]] || fail "a Service without endpoints: expected a refusal, got $out"
    pass "a1 -> 10.96.0.99:80 (no endpoints): connection refused at once, not a timeout"
    out=$(whoami "$H1" 10.96.0.10 80) || fail "node1 itself -> ClusterIP 10.96.0.10:80: $out"
    pass "node1 itself -> ClusterIP 10.96.0.10:80 through its host interface: $out"
}

step_policy() {
    step "NetworkPolicy: web pods take http only from the client"
    local n out kdpctl="$KDP_BUILD_DIR/control/kdpctl" manifests="$ROOT/config/cluster/demo.yaml"
    local policy="$ROOT/config/cluster/policy.yaml" probes="$ROOT/config/cluster/probes.yaml"
    log "  before applying it: which connections of config/cluster/probes.yaml would it break?"
    log "  kdpctl trace --manifests demo.yaml --probes probes.yaml --what-if policy.yaml (offline:"
    log "  every node's pipeline built in-process from the files, each probe and its reply followed):"
    out=$("$kdpctl" trace --manifests "$manifests" --probes "$probes" --what-if "$policy") \
        || fail "kdpctl trace --what-if failed: $out"
    sed 's/^/    /' <<<"$out"
    grep -q '^broken  default/a2  *default/b1  *80 ' <<<"$out" \
        && ! grep -q ' default/a1  *default/b1 ' <<<"$out" \
        || fail "the what-if should list a2 -> b1:80 as broken and not a1 -> b1:80"
    pass "what-if: a2 -> b1:80 would be broken, a1 -> b1:80 not (checked for real below)"
    for n in node1 node2; do
        "$kdpctl" --dataplane "$(api_socket "$n")" apply -f "$manifests" -f "$policy" --node "$n" \
            >/dev/null || fail "kdpctl apply with the policy to $n failed"
    done
    pass "kdpctl apply -f config/cluster/demo.yaml -f config/cluster/policy.yaml (both nodes)"
    log "  node2's policy (kdpctl get policy):"
    "$kdpctl" --dataplane "$(api_socket node2)" get policy | sed 's/^/    /'
    out=$(whoami "$A1" 10.244.2.10 80) || fail "a1 (app=client) -> b1:80 was refused: $out"
    pass "a1 (app=client) -> b1 10.244.2.10:80 allowed: $out"
    out=$(whoami "$A2" 10.244.2.10 80) && fail "a2 (app=web) -> b1:80 got through: $out"
    pass "a2 (app=web) -> b1 10.244.2.10:80 blocked: no answer, dropped by node2"
    out=$(whoami "$H2" 10.244.2.10 80) || fail "node2 itself -> b1:80 was refused: $out"
    pass "node2 itself -> b1:80 allowed (a pod's own node always is: kubelet probes): $out"
    out=$(whoami "$H1" 10.244.2.10 80) && fail "node1's host -> b1:80 got through: $out"
    pass "node1's host (10.244.1.1) -> b1:80 blocked: another node is judged like any address"
    log "  live kdpctl trace from node1, on through node2 (--peer), a2 (blocked) -> b1:80:"
    "$kdpctl" --dataplane "$(api_socket node1)" trace --peer "node2=$(api_socket node2)" \
        --from default/a2 --to default/b1 --port 80 | sed 's/^/    /'
    log "  and a1 (allowed) -> b1:80, the rule named on node2:"
    "$kdpctl" --dataplane "$(api_socket node1)" trace --peer "node2=$(api_socket node2)" \
        --from default/a1 --to default/b1 --port 80 | sed 's/^/    /'
    for n in node1 node2; do
        "$kdpctl" --dataplane "$(api_socket "$n")" apply -f "$manifests" --node "$n" >/dev/null \
            || fail "kdpctl apply without the policy to $n failed"
    done
    out=$(whoami "$A2" 10.244.2.10 80) || fail "a2 -> b1:80 still blocked after the policy went: $out"
    pass "policy removed: a2 -> b1:80 answered again: $out"
}

step_counters() {
    step "dataplane counters (DPDK telemetry /kdp/stats)"
    print_nodes_stats node1 node2
}

STEPS=(step_cluster step_pods step_control step_ping step_tcp step_services step_policy step_counters)
for s in "${STEPS[@]}"; do
    "$s"
done
printf '\n%s✔ demo complete%s (%d checks). Cleaning up.\n' "$C_OK" "$C_OFF" "$_CHECKS"
