#!/usr/bin/env bash
# The DaemonSet's containers, run as the kubelet would run them, but as plain processes:
#
#   netns kdp<id>-ctl (the "host network" of one node, private to this run)
#     fake API server (test/k8s/fake_apiserver.py) ── Node node1: InternalIP 198.51.100.1,
#                                                     podCIDR 10.244.1.0/24, zone zone-a
#     veth k<id>u (the uplink: 198.51.100.1/24, MTU 1450) ── k<id>p (a neighbour on the underlay)
#     scripts/dataplane.sh ── kdp-control node-config, then kdp-dataplane (the ConfigMap's
#                             node.yaml, uplink.interface k<id>u)
#     scripts/control.sh ──── kdp-control ── :10256 /healthz, 127.0.0.1:10249 /metrics /readyz
#   scripts/install-cni.sh ── kdp-cni into a CNI bin dir of this run
#
# Same entrypoints, environment and node config as config/deploy/ (the uplink, EAL memory and
# socket paths changed to this run's); the node's name comes from NODE_NAME, its address, pod
# CIDR and zone from its Node object, the uplink's MAC, MTU and subnet from the kernel; the
# kubeconfig names a dead address and KDP_API_SERVER the real one, which both containers must
# use. Checks: a conflict between an explicit value and the Node refused, naming both, --version of every binary, the conflist absent until the
# dataplane has its first tables and present once /readyz says ready, kube-proxy's node health
# JSON on port 10256 (the real default: the namespace is private), /healthz, /metrics parsed
# and checked against kdpctl and against packets sent into the uplink, and, when the dataplane
# stops, the conflist removed, /readyz 503 naming the dataplane and kdp_dataplane_up 0; then a
# dataplane reporting another API revision refused by kdp-control and kdp-cni, with both
# versions in the message.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_dataplane
KDPCTL="$KDP_BUILD_DIR/control/kdpctl"
KDPCONTROL="$KDP_BUILD_DIR/control/kdp-control"
KDPCNI="$KDP_BUILD_DIR/cni-shim/kdp-cni"
SCRIPTS="$KDP_ROOT/config/deploy/scripts"
DEPLOY="$KDP_ROOT/config/deploy"

step "--version everywhere"
for b in "$KDP_DATAPLANE" "$KDPCONTROL" "$KDPCTL" "$KDPCNI"; do
    v=$("$b" --version) || fail "$(basename "$b") --version exited with $?"
    [[ "$v" =~ ^$(basename "$b")\ [0-9]+\.[0-9]+\.[0-9]+.*,\ kdp\.v1\ API\ revision\ [0-9]+$ ]] \
        || fail "$(basename "$b") --version printed '$v'"
    pass "$v"
done
VERSION_LINE=$("$KDPCONTROL" --version)
BUILD_VERSION=${VERSION_LINE#kdp-control }
BUILD_VERSION=${BUILD_VERSION%, kdp.v1 API revision*}

step "install-cni.sh: kdp-cni into the CNI bin directory"
KDP_CNI="$KDPCNI" KDP_CNI_BIN_DIR="$WORK_DIR/cni-bin" sh "$SCRIPTS/install-cni.sh" >"$WORK_DIR/install-cni.log" 2>&1 \
    || fail "install-cni.sh: $(cat "$WORK_DIR/install-cni.log")"
[ -x "$WORK_DIR/cni-bin/kdp-cni" ] && cmp -s "$KDPCNI" "$WORK_DIR/cni-bin/kdp-cni" \
    || fail "install-cni.sh did not leave an executable copy of kdp-cni in $WORK_DIR/cni-bin"
pass "$(cat "$WORK_DIR/install-cni.log")"

step "the node's host network: a private namespace with the fake API server"
netns_create ctl
CTL=$(ns_name ctl)
TOKEN="kdp-e2e-$RUN_ID"
fake_apiserver_start "$CTL" "$TOKEN"
node_obj() { # NAME INTERNAL_IP POD_CIDR ZONE
    printf '{"apiVersion":"v1","kind":"Node","metadata":{"name":"%s","labels":{"topology.kubernetes.io/zone":"%s"}},"spec":{"podCIDR":"%s","podCIDRs":["%s","fd00:10:244:1::/64"]},"status":{"addresses":[{"type":"InternalIP","address":"%s"},{"type":"InternalIP","address":"fd00::1"}]}}' "$1" "$4" "$3" "$3" "$2"
}
api '{"op":"create","path":"/api/v1/namespaces","object":{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"default"}}}'
api "{\"op\":\"create\",\"path\":\"/api/v1/nodes\",\"object\":$(node_obj node1 198.51.100.1 10.244.1.0/24 zone-a)}"
api "{\"op\":\"create\",\"path\":\"/api/v1/nodes\",\"object\":$(node_obj node2 198.51.100.2 10.244.2.0/24 zone-b)}"
pass "API server on 127.0.0.1:$PORT in $CTL (bearer token), nodes node1 and node2"
# The kubeconfig the containers get points at a port nothing listens on: only KDP_API_SERVER
# (--api-server) leads to the API server, as kdp must not depend on the `kubernetes` Service.
sed "s|server: \"https://127.0.0.1:$PORT\"|server: \"https://127.0.0.1:1\"|" "$WORK_DIR/kubeconfig" >"$WORK_DIR/kubeconfig.stale"
grep -q '127.0.0.1:1"' "$WORK_DIR/kubeconfig.stale" || fail "could not point the kubeconfig elsewhere: $(cat "$WORK_DIR/kubeconfig.stale")"
API_SERVER="127.0.0.1:$PORT"

step "the uplink: a veth the kernel holds, with the Node's address"
UPLINK=$(if_name u)
PEER=$(if_name p)
netns_create peer
PEERNS=$(ns_name peer)
ip -n "$CTL" link add "$UPLINK" type veth peer name "$PEER" netns "$PEERNS"
ip netns exec "$CTL" sysctl -qw "net.ipv6.conf.$UPLINK.disable_ipv6=1"
ip netns exec "$PEERNS" sysctl -qw "net.ipv6.conf.$PEER.disable_ipv6=1"
ip -n "$CTL" link set "$UPLINK" address 02:00:00:00:d0:01 mtu 1450 up
ip -n "$PEERNS" link set "$PEER" mtu 1450 up
ip -n "$CTL" addr add 198.51.100.1/24 dev "$UPLINK"
ip -n "$PEERNS" addr add 198.51.100.9/24 dev "$PEER"
pass "$UPLINK in $CTL (02:00:00:00:d0:01, MTU 1450, 198.51.100.1/24) <-> $PEER in $PEERNS (198.51.100.9/24)"

step "the ConfigMap's node config and conflist, with this run's devices and paths"
SOCK=$(api_socket node1)
PREFIX=$(file_prefix node1)
_PREFIXES+=("$PREFIX")
_FILES+=("$SOCK" "$SOCK.ports.json")
mkdir -p "$(dirname "$SOCK")"
python3 - "$DEPLOY/20-configmap.yaml" "$WORK_DIR" "$PREFIX" "$UPLINK" "$SOCK" <<'PY' || fail "cannot derive the test config from the ConfigMap"
import json, sys, yaml
cm = next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d["metadata"]["name"] == "kdp-config")
work, prefix, uplink, sock = sys.argv[2:6]
node = yaml.safe_load(cm["data"]["node.yaml"])
assert not {"name", "ip", "pod_cidr", "mac", "mtu"} & set(node["node"]), node["node"]
assert set(node["uplink"]) == {"interface"}, node["uplink"]
node["dpdk"] = {"file_prefix": prefix, "lcores": "0@(0-1),1@(0-1)",
                "eal_args": ["--no-pci", "--no-huge", "-m", "256", "--log-level=*:warning"]}
node["uplink"] = {"interface": uplink}
node.pop("host", None)  # its TAP and routes would be in the root namespace, shared with others
node["api"] = {"socket": sock}
node["limits"] = {"mbufs": 4095, "conntrack": 4096}
node["workers"] = {"lcores": [1], "idle": {"spin_polls": 64, "sleep_us": 100, "max_sleep_us": 2000}}
open(work + "/node.yaml.tmpl", "w").write(yaml.safe_dump(node, sort_keys=False))
conflist = json.loads(cm["data"]["10-kdp.conflist"])
assert conflist["cniVersion"] == "1.1.0", conflist  # runtimes then call STATUS and GC
plugin = next(p for p in conflist["plugins"] if p["type"] == "kdp-cni")
plugin.update(dataplane_socket=sock, data_dir=work + "/ipam")
open(work + "/10-kdp.conflist", "w").write(json.dumps(conflist, indent=2) + "\n")
PY
pass "template $WORK_DIR/node.yaml.tmpl (uplink.interface $UPLINK), conflist from the ConfigMap (cniVersion 1.1.0, this run's socket)"

step "kdp-control node-config: an explicit value that contradicts the Node is refused"
out=$(ip netns exec "$CTL" env NODE_NAME=node1 KDP_API_SERVER="$API_SERVER" "$KDPCONTROL" node-config \
    --template "$WORK_DIR/node.yaml.tmpl" --kubeconfig "$WORK_DIR/kubeconfig.stale" \
    --pod-cidr 10.244.9.0/24 --wait-seconds 0 2>&1) && fail "node-config accepted --pod-cidr 10.244.9.0/24 against the Node's 10.244.1.0/24: $out"
[[ "$out" == *"--pod-cidr says 10.244.9.0/24, Node node1 has spec.podCIDRs 10.244.1.0/24"* ]] \
    || fail "the conflict is not named: $out"
pass "$(tail -n 1 <<<"$out")"
out=$(ip netns exec "$CTL" env NODE_NAME=node1 "$KDPCONTROL" node-config --template "$WORK_DIR/node.yaml.tmpl" \
    --kubeconfig "$WORK_DIR/kubeconfig.stale" --wait-seconds 0 2>&1) \
    && fail "node-config reached an API server through the stale kubeconfig: $out"
pass "without KDP_API_SERVER the stale kubeconfig's address fails: $(tail -n 1 <<<"$out" | cut -c1-120)"

step "scripts/dataplane.sh: config from the template, the Node and the kernel, then kdp-dataplane"
NETD="$WORK_DIR/net.d"
CONFLIST="$NETD/10-kdp.conflist"
dp_env=(NODE_NAME=node1
    KDP_KUBECONFIG="$WORK_DIR/kubeconfig.stale" KDP_API_SERVER="$API_SERVER"
    KDP_CONFIG_TEMPLATE="$WORK_DIR/node.yaml.tmpl" KDP_CNI_CONFLIST="$WORK_DIR/10-kdp.conflist"
    KDP_CNI_CONF_DIR="$NETD" KDP_STATE_DIR="$WORK_DIR/state" KDP_DATAPLANE_SOCKET="$SOCK"
    KDP_DATAPLANE="$KDP_DATAPLANE" KDP_CONTROL="$KDPCONTROL" KDPCTL="$KDPCTL")
spawn ip netns exec "$CTL" env "${dp_env[@]}" "$SCRIPTS/dataplane.sh" </dev/null >"$WORK_DIR/node1.log" 2>&1
DP_ENTRY=$BG_PID
_DP_LOG[node1]="$WORK_DIR/node1.log" _DP_PREFIX[node1]=$PREFIX
info() { "$KDPCTL" --dataplane "$SOCK" info -o json 2>/dev/null; }
wait_for "$DP_START_TIMEOUT" "the dataplane's API" info || fail "kdp-dataplane did not answer on $SOCK"
python3 - "$WORK_DIR/state/node.yaml" "$UPLINK" <<'PY' || fail "the rendered config: $(cat "$WORK_DIR/state/node.yaml")"
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
want = {"name": "node1", "ip": "198.51.100.1", "pod_cidr": "10.244.1.0/24",
        "mac": "02:00:00:00:d0:01", "mtu": 1450, "cluster_cidr": "10.244.0.0/16"}
assert c["node"] == want, c["node"]
assert c["uplink"] == {"devargs": "net_af_packet0,iface=" + sys.argv[2], "prefix_len": 24}, c["uplink"]
PY
grep -q 'zone zone-a (Node node1 label topology.kubernetes.io/zone)' "$WORK_DIR/node1.log" \
    || fail "the entrypoint does not report the Node's zone: $(grep node-config "$WORK_DIR/node1.log")"
pass "rendered: name from NODE_NAME, address, pod CIDR and zone from the Node, MAC, MTU and subnet from the kernel"
dpver=$(info | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["version"], d["api_revision"], d["pod_cidr"])')
[ "$dpver" = "$BUILD_VERSION 1 10.244.1.0/24" ] \
    || fail "kdpctl info: version, API revision, pod CIDR are '$dpver', expected '$BUILD_VERSION 1 10.244.1.0/24'"
pass "kdp-dataplane up with the Node's pod CIDR 10.244.1.0/24; NodeInfo reports version $BUILD_VERSION, API revision 1"
synced() { "$KDPCTL" --dataplane "$SOCK" get policy -o json | python3 -c 'import json,sys; print(str(json.load(sys.stdin)["synced"]).lower())'; }
sleep 2
[ "$(synced)" = false ] || fail "the dataplane says a control plane synced it before kdp-control ran"
[ ! -e "$CONFLIST" ] || fail "the conflist was written before a control plane synced the dataplane"
pass "no conflist in $NETD while no control plane has synced the dataplane (its static tables only)"

step "scripts/control.sh: kdp-control with the DaemonSet's addresses"
http() { # URL: prints "CODE BODY"
    ip netns exec "$CTL" curl -s -m 3 -o "$WORK_DIR/http.body" -w '%{http_code}' "$1" 2>/dev/null || true
}
[ "$(http http://127.0.0.1:10249/readyz)" = 000 ] || fail "something answers on 10249 before kdp-control runs"
spawn ip netns exec "$CTL" env NODE_NAME=node1 KDP_KUBECONFIG="$WORK_DIR/kubeconfig.stale" \
    KDP_API_SERVER="$API_SERVER" \
    KDP_DATAPLANE_SOCKET="$SOCK" KDP_CONTROL="$KDPCONTROL" \
    KDP_HEALTHZ_BIND_ADDRESS=0.0.0.0:10256 KDP_METRICS_BIND_ADDRESS=127.0.0.1:10249 \
    "$SCRIPTS/control.sh" </dev/null >"$WORK_DIR/control.log" 2>&1
CONTROL_PID=$BG_PID
readyz_ok() { [ "$(http http://127.0.0.1:10249/readyz)" = 200 ]; }
wait_for 30 "/readyz 200" readyz_ok || fail "/readyz never answered 200: $(http http://127.0.0.1:10249/readyz) $(cat "$WORK_DIR/http.body" 2>/dev/null); control log: $(tail -5 "$WORK_DIR/control.log")"
grep -q '^\[+\]workers ok$' "$WORK_DIR/http.body" || fail "/readyz does not check the workers: $(cat "$WORK_DIR/http.body")"
pass "/readyz: $(tr '\n' ' ' <"$WORK_DIR/http.body")"
wait_for 10 "the conflist" test -e "$CONFLIST" || fail "no conflist in $NETD after the first sync"
gen=$(info | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])')
[ "$(synced)" = true ] || fail "conflist present, but the dataplane says it has not been synced"
cmp -s "$CONFLIST" "$WORK_DIR/10-kdp.conflist" || fail "the conflist written is not the ConfigMap's"
pass "conflist written once synced and ready (generation $gen): $CONFLIST"

step "health endpoints"
[ "$(http http://127.0.0.1:10249/healthz)" = 200 ] || fail "liveness /healthz: $(cat "$WORK_DIR/http.body")"
pass "127.0.0.1:10249/healthz: $(cat "$WORK_DIR/http.body")"
code=$(http http://127.0.0.1:10256/healthz)
[ "$code" = 200 ] || fail "port 10256 /healthz answered $code: $(cat "$WORK_DIR/http.body")"
python3 - "$WORK_DIR/http.body" <<'PY' || fail "port 10256 /healthz JSON: $(cat "$WORK_DIR/http.body")"
import datetime, json, sys
d = json.load(open(sys.argv[1]))
assert d["nodeHealthy"] is True, d
parse = lambda s: datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")
last, now = parse(d["lastUpdated"]), parse(d["currentTime"])
assert last <= now and (now - last).total_seconds() < 30, d
PY
pass "port 10256 /healthz (kube-proxy's): $(cat "$WORK_DIR/http.body")"
[ "$(http http://127.0.0.1:10256/metrics)" = 404 ] || fail "port 10256 serves more than /healthz"
pass "port 10256 serves /healthz only"

step "/metrics against kdpctl and packets sent into the uplink"
metrics() { # prints the page as JSON {"name{labels}": value}
    http http://127.0.0.1:10249/metrics >/dev/null
    python3 - "$WORK_DIR/http.body" <<'PY'
import json, re, sys
out, types = {}, {}
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if line.startswith("# TYPE "):
        _, _, name, typ = line.split(" ", 3)
        types[name] = typ
        continue
    if not line or line.startswith("#"):
        continue
    m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$', line)
    assert m, "not a sample line: %r" % line
    name = m.group(1)
    base = re.sub(r'_(bucket|sum|count)$', '', name)
    assert name in types or base in types, "sample %s without a TYPE" % name
    if types.get(name) == "counter" or types.get(base) == "counter":
        assert name.endswith("_total"), "counter %s does not end in _total" % name
    out[name + (m.group(2) or "")] = float(m.group(3))
print(json.dumps(out))
PY
}
m1=$(metrics) || fail "/metrics is not valid text format: $(head -c 600 "$WORK_DIR/http.body")"
get() { python3 -c 'import json,sys; print(int(json.loads(sys.argv[1]).get(sys.argv[2], -1)))' "$1" "$2"; }
[ "$(get "$m1" kdp_dataplane_up)" = 1 ] || fail "kdp_dataplane_up is not 1"
[ "$(get "$m1" kdp_table_generation)" = "$(info | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])')" ] \
    || fail "kdp_table_generation $(get "$m1" kdp_table_generation) is not the dataplane's generation"
[ "$(get "$m1" kdp_api_lists_complete)" = 1 ] || fail "kdp_api_lists_complete is not 1"
[ "$(get "$m1" kubeproxy_sync_proxy_rules_duration_seconds_count)" -ge 1 ] \
    || fail "kubeproxy_sync_proxy_rules_duration_seconds_count is not >= 1"
[ "$(get "$m1" kubeproxy_sync_proxy_rules_last_timestamp_seconds)" -ge $(($(date +%s) - 60)) ] \
    || fail "kubeproxy_sync_proxy_rules_last_timestamp_seconds is not recent"
[ "$(get "$m1" "kdp_build_info{component=\"kdp-control\",version=\"$BUILD_VERSION\",api_revision=\"1\"}")" = 1 ] \
    || fail "kdp_build_info does not name version $BUILD_VERSION"
[ "$(get "$m1" kdp_conntrack_capacity)" = 4096 ] || fail "kdp_conntrack_capacity is not the config's 4096"
pass "kdp_dataplane_up 1, generation $(get "$m1" kdp_table_generation), lists complete, syncs $(get "$m1" kubeproxy_sync_proxy_rules_duration_seconds_count), build info, conntrack capacity 4096"
# Packets into the uplink: its neighbour on the underlay sends UDP to an address no node owns;
# the dataplane counts them as received on the uplink (and drops them).
ip -n "$PEERNS" neigh replace 198.51.100.77 lladdr 02:00:00:00:00:77 dev "$PEER"
rx_before=$(get "$m1" 'kdp_port_receive_packets_total{port="uplink"}')
SENT=50
for _ in $(seq 1 $SENT); do
    echo x | ip netns exec "$PEERNS" socat -u - UDP4-SENDTO:198.51.100.77:9 2>/dev/null || true
done
sleep 1
m2=$(metrics) || fail "/metrics: $(head -c 600 "$WORK_DIR/http.body")"
rx_after=$(get "$m2" 'kdp_port_receive_packets_total{port="uplink"}')
[ "$rx_after" -ge $((rx_before + SENT)) ] \
    || fail "kdp_port_receive_packets_total{port=\"uplink\"} went from $rx_before to $rx_after after $SENT packets"
ctl_rx=$("$KDPCTL" --dataplane "$SOCK" stats --interval-ms 100 -o json | python3 -c '
import json, sys
print(next(p for p in json.load(sys.stdin)["ports"] if p["name"] == "uplink")["rx_packets"])')
[ "$ctl_rx" -ge "$rx_after" ] || fail "kdpctl stats says $ctl_rx received on the uplink, /metrics said $rx_after before"
bytes=$(get "$m2" 'kdp_port_receive_bytes_total{port="uplink"}')
[ "$bytes" -ge $((rx_after * 42)) ] || fail "kdp_port_receive_bytes_total $bytes is less than 42 B per packet"
drops=$(python3 -c 'import json,sys; print(int(sum(v for k, v in json.loads(sys.argv[1]).items() if k.startswith("kdp_port_drops_total{port=\"uplink\""))))' "$m2")
[ "$drops" -ge "$SENT" ] || fail "$SENT packets for nobody, but only $drops uplink drops in /metrics"
pass "uplink: $SENT UDP packets sent, kdp_port_receive_packets_total $rx_before -> $rx_after (kdpctl stats: $ctl_rx), $bytes bytes, $drops drops by reason"

step "kdpctl status: one screen for the node, under traffic"
status() { # ARGS...: kdpctl status with this run's addresses
    ip netns exec "$CTL" "$KDPCTL" --dataplane "$SOCK" status --control 127.0.0.1:10249 \
        --cni-conf-dir "$NETD" --cni-bin-dir "$WORK_DIR/cni-bin" "$@"
}
( for _ in $(seq 1 40); do
    echo x | ip netns exec "$PEERNS" socat -u - UDP4-SENDTO:198.51.100.77:9 2>/dev/null || true
    sleep 0.05
done ) &
SENDER=$!
track_pid "$SENDER"
st=$(status --interval-ms 1500 --node node1 -o json) || fail "kdpctl status says not healthy: $st"
wait "$SENDER" || true
python3 - "$st" "$BUILD_VERSION" "$NETD" <<'PY' || fail "kdpctl status -o json: $st"
import json, sys
s, version, netd = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
assert s["healthy"] is True and s["problems"] == [], s["problems"]
assert s["dataplane"]["node"] == "node1" and s["dataplane"]["api_revision"] == 1, s["dataplane"]
assert s["ports"] == {"up": 1, "down": 0, "down_names": []}, s["ports"]
assert s["policy"]["synced"] is True and s["policy"]["generation"] == s["dataplane"]["generation"], s["policy"]
t = s["traffic"]
assert t["rx_packets_per_second"] > 0 and t["drops_per_second"] > 0, t
assert t["top_drop_reasons"] and t["top_drop_reasons"][0]["per_second"] > 0, t
c = s["control"]
assert c["ready"] is True and c["api_lists_complete"] is True, c
assert c["generation"] == s["dataplane"]["generation"] and 0 <= c["last_sync_ago_s"] < 120, c
n = s["cni"]
assert n["conflist"] == netd + "/10-kdp.conflist" and n["kdp"] and n["cni_version"] == "1.1.0", n
assert n["status"] == "ready", n
v = s["versions"]
assert v["dataplane"] == v["kdp-control"] == v["kdp-cni"] == version, v
PY
pass "healthy: $(python3 -c 'import json,sys; s=json.loads(sys.argv[1]); t=s["traffic"]; print("uplink up, policy synced at", s["policy"]["generation"], "|", t["rx_packets_per_second"], "pkt/s,", t["drops_per_second"], "drops/s", t["top_drop_reasons"][0]["reason"], "| CNI STATUS", s["cni"]["status"])' "$st")"
status --interval-ms 200 >"$WORK_DIR/status.txt" || fail "kdpctl status (text) exited $?: $(cat "$WORK_DIR/status.txt")"
grep -q '^Status: *HEALTHY$' "$WORK_DIR/status.txt" || fail "kdpctl status text: $(cat "$WORK_DIR/status.txt")"
sed 's/^/    /' "$WORK_DIR/status.txt"
pass "kdpctl status (text): HEALTHY"

step "network programming latency: an EndpointSlice's last-change-trigger-time"
trigger=$(date -u -d '-1 second' +%Y-%m-%dT%H:%M:%S.%3NZ)
api '{"op":"create","path":"/api/v1/services","object":{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"default"},"spec":{"clusterIP":"10.96.0.10","selector":{"app":"web"},"ports":[{"name":"http","port":80}]}}}'
api "{\"op\":\"create\",\"path\":\"/apis/discovery.k8s.io/v1/endpointslices\",\"object\":{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":\"web-1\",\"namespace\":\"default\",\"labels\":{\"kubernetes.io/service-name\":\"web\"},\"annotations\":{\"endpoints.kubernetes.io/last-change-trigger-time\":\"$trigger\"}},\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\",\"port\":80,\"protocol\":\"TCP\"}],\"endpoints\":[{\"addresses\":[\"10.244.2.10\"],\"conditions\":{\"ready\":true},\"nodeName\":\"node2\"}]}}"
programmed() { [ "$(get "$(metrics)" kubeproxy_network_programming_duration_seconds_count)" -ge 1 ]; }
wait_for 15 "the slice programmed" programmed \
    || fail "kubeproxy_network_programming_duration_seconds_count stayed 0 after an EndpointSlice change"
m4=$(metrics)
sum=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["kubeproxy_network_programming_duration_seconds_sum"])' "$m4")
python3 -c 'import sys; s = float(sys.argv[1]); sys.exit(0 if 1.0 <= s < 20 else 1)' "$sum" \
    || fail "kubeproxy_network_programming_duration_seconds_sum is $sum for a change made 1 s before it was sent"
"$KDPCTL" --dataplane "$SOCK" get endpoints -o json | grep -q 10.244.2.10 || fail "the slice's endpoint is not in the dataplane"
pass "kubeproxy_network_programming_duration_seconds: count $(get "$m4" kubeproxy_network_programming_duration_seconds_count), sum ${sum} s for a change triggered at $trigger"

step "an object kdp cannot honour: counted in /metrics, with a Warning Event"
api '{"op":"create","path":"/api/v1/services","object":{"apiVersion":"v1","kind":"Service","metadata":{"name":"bad","namespace":"default"},"spec":{"type":"Bogus","clusterIP":"10.96.0.11","ports":[{"port":80}]}}}'
unhonoured() { [ "$(get "$(metrics)" 'kdp_objects_not_honoured_total{kind="Service"}')" = 1 ]; }
wait_for 15 "the bad Service counted" unhonoured \
    || fail "kdp_objects_not_honoured_total{kind=\"Service\"} is $(get "$(metrics)" 'kdp_objects_not_honoured_total{kind="Service"}'), expected 1"
posted() { [ "$(get "$(metrics)" 'kdp_events_total{result="posted"}')" -ge 1 ]; }
wait_for 15 "the Warning Event posted" posted || fail "kdp_events_total{result=\"posted\"} stayed 0"
pass "kdp_objects_not_honoured_total{kind=\"Service\"} 1, kdp_events_total{result=\"posted\"} $(get "$(metrics)" 'kdp_events_total{result="posted"}')"

step "stopping the dataplane: the conflist goes, kdp-control turns unready"
kill -TERM "$DP_ENTRY"
wait "$DP_ENTRY" && rc=0 || rc=$?
[ "$rc" = 0 ] || fail "dataplane.sh exited with $rc on SIGTERM: $(tail -5 "$WORK_DIR/node1.log")"
[ ! -e "$CONFLIST" ] || fail "the conflist is still in $NETD after the dataplane stopped"
pass "dataplane.sh exited 0 on SIGTERM and removed $CONFLIST"
readyz_503() { [ "$(http http://127.0.0.1:10249/readyz)" = 503 ]; }
wait_for 15 "/readyz 503" readyz_503 || fail "/readyz still answers $(http http://127.0.0.1:10249/readyz) with the dataplane gone"
grep -q '^\[-\]dataplane failed' "$WORK_DIR/http.body" || fail "/readyz does not name the dataplane: $(cat "$WORK_DIR/http.body")"
pass "/readyz 503: $(grep dataplane "$WORK_DIR/http.body" | cut -c1-100)"
m3=$(metrics) || fail "/metrics without a dataplane: $(head -c 600 "$WORK_DIR/http.body")"
[ "$(get "$m3" kdp_dataplane_up)" = 0 ] || fail "kdp_dataplane_up is not 0 with the dataplane gone"
[ "$(get "$m3" 'kdp_port_receive_packets_total{port="uplink"}')" = -1 ] || fail "port counters reported with the dataplane gone"
[ "$(get "$m3" kdp_table_push_errors_total)" -ge 1 ] || fail "kdp_table_push_errors_total did not count the failed pushes"
pass "/metrics: kdp_dataplane_up 0, no port families, kdp_table_push_errors_total $(get "$m3" kdp_table_push_errors_total)"
[ "$(http http://127.0.0.1:10249/healthz)" = 200 ] || fail "liveness failed while only the dataplane is down"
pass "liveness still 200: kdp-control itself is fine"
st=$(status --interval-ms 100 -o json) && fail "kdpctl status says healthy with the dataplane gone: $st"
python3 - "$st" <<'PY' || fail "kdpctl status without a dataplane: $st"
import json, sys
s = json.loads(sys.argv[1])
assert s["healthy"] is False and s["dataplane"]["reachable"] is False, s
p = " | ".join(s["problems"])
assert "dataplane at" in p and "no CNI network" in p and "kdp-control not ready" in p, p
PY
pass "kdpctl status exits 1: $(python3 -c 'import json,sys; print(" | ".join(json.loads(sys.argv[1])["problems"]))' "$st" | cut -c1-200)"

step "a dataplane of another API revision: kdp-control and kdp-cni refuse it, naming both"
# The same node config, the dataplane's hidden --api-revision-for-test making its NodeInfo
# report revision 999: a real dataplane answering over the real API, not a fabricated reply.
spawn ip netns exec "$CTL" "$KDP_DATAPLANE" --config "$WORK_DIR/state/node.yaml" --api-revision-for-test 999 \
    </dev/null >"$WORK_DIR/node1-rev999.log" 2>&1
DP999=$BG_PID
wait_for "$DP_START_TIMEOUT" "the dataplane's API" info || fail "kdp-dataplane (revision 999) did not answer: $(tail -5 "$WORK_DIR/node1-rev999.log")"
[ "$(info | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_revision"])')" = 999 ] \
    || fail "NodeInfo does not report revision 999: $(info)"
refused() { # TEXT: both programs' versions and revisions named
    [[ "$1" == *"speaks kdp.v1 API revision 999"* && "$1" == *"version $BUILD_VERSION) speaks revision 1"* ]]
}
said() { grep -q 'API revision 999' "$WORK_DIR/control.log"; }
wait_for 15 "kdp-control to refuse the dataplane" said \
    || fail "kdp-control still runs against a dataplane of API revision 999: $(tail -3 "$WORK_DIR/control.log")"
rc=0
wait "$CONTROL_PID" || rc=$?
line=$(grep 'API revision 999' "$WORK_DIR/control.log" | tail -n 1)
[ "$rc" != 0 ] && refused "$line" || fail "kdp-control exited $rc; its log: $(tail -3 "$WORK_DIR/control.log")"
pass "kdp-control exited $rc: ${line#kdp-control: }"
conf11='{"cniVersion":"1.1.0","name":"kdp","type":"kdp-cni","dataplane_socket":"'"$SOCK"'","data_dir":"'"$WORK_DIR/ipam"'"}'
out=$(printf '%s' "$conf11" | env -i CNI_COMMAND=STATUS "$WORK_DIR/cni-bin/kdp-cni") \
    && fail "kdp-cni STATUS accepted a dataplane of API revision 999: $out"
refused "$out" || fail "kdp-cni STATUS does not name both revisions: $out"
pass "kdp-cni STATUS: $(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["code"], d["details"])' "$out" | cut -c1-160)"
stop_bg "$DP999"

finish
