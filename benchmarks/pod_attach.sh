#!/usr/bin/env bash
# Pod attach latency through kdp-cni, on a real kdp-dataplane:
#
#   sudo bash benchmarks/pod_attach.sh [PODS]          (default 20)
#
# A dataplane starts with no pods; a reference pod is attached; then PODS pods are attached
# one after the other, each with a CNI ADD run as a runtime runs it (CNI_* environment, the
# network configuration on stdin, a fresh kdp-cni process). For each pod it measures
#   add      CNI ADD alone: plugin start, NodeInfo, address lease, AddPort (net_tap hotplug,
#            queues, RCU publish), the TAP moved into the pod's netns and configured;
#   first    from the start of the ADD to the first ping reply from the new pod to the
#            reference pod (ping every 2 ms), i.e. until the pod's packets are forwarded;
#   del      CNI DEL;
# and prints min / median / p90 / max of each. TAP pods; a vhost-user pod's first packet waits
# for its own application, which is not the plugin's to measure.
# Uses test/e2e/lib.sh for the namespaces, the dataplane and the cleanup.
# Each TAP pod's receive ring holds 512 mbufs of the dataplane's pool: room for 40 pods.
export KDP_E2E_MBUFS=${KDP_E2E_MBUFS:-32767} KDP_E2E_MEM_MB=${KDP_E2E_MEM_MB:-256}
source "$(dirname "${BASH_SOURCE[0]}")/../test/e2e/lib.sh"
need_root "$@"
need_dataplane
PODS=${1:-20}
CNI="$KDP_BUILD_DIR/cni-shim/kdp-cni"
[ -x "$CNI" ] || fail "$CNI is not built"

conf=$(printf '{"cniVersion": "1.0.0", "name": "kdp", "type": "kdp-cni", "dataplane_socket": "%s", "data_dir": "%s"}' \
    "$(api_socket node1)" "$WORK_DIR/ipam")
cni() { # cni COMMAND POD
    printf '%s' "$conf" | env -i PATH="$PATH" CNI_COMMAND="$1" CNI_CONTAINERID="ctr-$2" \
        CNI_NETNS="/var/run/netns/$(ns_name "$2")" CNI_IFNAME=eth0 \
        CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=$2" "$CNI"
}
now_us() { echo $(($(date +%s%N) / 1000)); }

step "a dataplane with no pods, and a reference pod"
underlay_create
node_uplink 1
start_dataplane node1 "$(kdp_node_config node1 1 "$(uplink_if 1)" standard "" "" "$STATIC_POLICY")"
netns_create ref
cni ADD ref >"$WORK_DIR/ref.json" || fail "ADD ref: $(cat "$WORK_DIR/ref.json")"
REF=$(ns_name ref)
pass "node1 up; reference pod $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ips"][0]["address"])' "$WORK_DIR/ref.json")"

step "$PODS pods attached one after the other"
: >"$WORK_DIR/times"
for i in $(seq "$PODS"); do
    p=p$i
    netns_create "$p"
    t0=$(now_us)
    out=$(cni ADD "$p") || fail "ADD $p: $out"
    t1=$(now_us)
    # The address from the result without starting an interpreter: on a loaded 2-core machine
    # python3's start-up alone took longer than the pod took to be forwarded.
    [[ $out =~ \"address\":\ *\"([0-9.]+)/ ]] || fail "ADD $p: no address in $out"
    ip=${BASH_REMATCH[1]}
    in_ns "$REF" ping -n -q -i 0.002 -c 1 -w 5 "$ip" >/dev/null || fail "$p ($ip) never answered"
    t2=$(now_us)
    echo "$((t1 - t0)) $((t2 - t0))" >>"$WORK_DIR/times"
done
for i in $(seq "$PODS"); do
    t0=$(now_us)
    cni DEL "p$i" >/dev/null || fail "DEL p$i"
    t1=$(now_us)
    sed -i "${i}s/\$/ $((t1 - t0))/" "$WORK_DIR/times"
done
python3 - "$WORK_DIR/times" <<'PY'
import statistics, sys
rows = [list(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
print(f"  {'ms':<32}{'min':>8}{'median':>8}{'p90':>8}{'max':>8}")
for col, name in ((0, "add (CNI ADD returns)"), (1, "first (ADD start -> first reply)"),
                  (2, "del (CNI DEL returns)")):
    v = sorted(r[col] / 1000 for r in rows)
    p90 = v[min(len(v) - 1, int(round(0.9 * (len(v) - 1))))]
    print(f"  {name:<32}{v[0]:>8.1f}{statistics.median(v):>8.1f}{p90:>8.1f}{v[-1]:>8.1f}")
PY
pass "$PODS pods attached, reached and detached"
finish
