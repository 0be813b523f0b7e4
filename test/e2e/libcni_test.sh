#!/usr/bin/env bash
# kdp-cni driven by libcni, the library containerd and CRI-O call CNI plugins with (Debian's
# golang-github-appc-cni-dev, in a small Go client built here in GOPATH mode, offline), in a
# conflist where Debian's `tuning` plugin runs after kdp-cni on its result (prevResult):
#
# - ADD of two pods through the list: addresses, eth0, and the sysctl tuning set in each pod's
#   namespace from kdp-cni's result; ping between them;
# - CHECK through the list (libcni passes the cached result to every plugin);
# - DEL, and DEL again; concurrent ADDs get distinct addresses.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_dataplane
CNI_BIN_DIR="$KDP_BUILD_DIR/cni-shim"
[ -x "$CNI_BIN_DIR/kdp-cni" ] || fail "$CNI_BIN_DIR/kdp-cni is not built"
[ -x /usr/lib/cni/tuning ] || fail "/usr/lib/cni/tuning missing (containernetworking-plugins)"
mkdir -p "$WORK_DIR"

step "the libcni client, built from test/cni/libcni_client.go"
cni_client_build
CLIENT=$CNI_CLIENT
pass "built against /usr/share/gocode's libcni"

step "a dataplane with no pod ports"
underlay_create
node_uplink 1
c1=$(kdp_node_config node1 1 "$(uplink_if 1)" standard "" "" "$STATIC_POLICY")
start_dataplane node1 "$c1"
pass "node1 up"

LIST="$WORK_DIR/10-kdp.conflist"
cat >"$LIST" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "kdp",
  "plugins": [
    {"type": "kdp-cni", "dataplane_socket": "$(api_socket node1)", "data_dir": "$WORK_DIR/ipam"},
    {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.accept_local": "1"}}
  ]
}
JSON
export CNI_PATH="$CNI_BIN_DIR:/usr/lib/cni" CNI_CACHE_DIR="$WORK_DIR/cache"
run_client() { # run_client add|check|del POD
    "$CLIENT" "$1" "$LIST" "/var/run/netns/$(ns_name "$2")" "ctr-$2" eth0 \
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$2"
}
ip_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["ips"][0]["address"].split("/")[0])'; }

step "ADD through the conflist"
netns_create l1
netns_create l2
out=$(run_client add l1 2>&1) || fail "add l1: $out"
IP1=$(ip_of <<<"$out")
pass "l1: $out"
out=$(run_client add l2 2>&1) || fail "add l2: $out"
IP2=$(ip_of <<<"$out")
L1=$(ns_name l1) L2=$(ns_name l2)
for ns in "$L1" "$L2"; do
    v=$(ip netns exec "$ns" sysctl -n net.ipv4.conf.eth0.accept_local)
    [ "$v" = 1 ] || fail "tuning did not run on kdp-cni's result in $ns (accept_local=$v)"
done
pass "l2 $IP2; tuning set accept_local on eth0 in both pods from kdp-cni's prevResult"
check_ping "$L1" "$IP2" "l1 -> l2"

step "CHECK, concurrent ADDs, DEL twice"
run_client check l1 >/dev/null 2>"$WORK_DIR/check.err" || fail "check l1: $(cat "$WORK_DIR/check.err")"
pass "CHECK through the list"
pids=()
for p in m1 m2 m3; do
    netns_create $p
    run_client add $p >"$WORK_DIR/$p.out" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || fail "a concurrent add failed: $(cat "$WORK_DIR"/m?.out)"; done
n=$(for p in m1 m2 m3; do ip_of <"$WORK_DIR/$p.out"; done | sort -u | wc -l)
[ "$n" -eq 3 ] || fail "3 concurrent adds got $n distinct addresses"
pass "3 concurrent ADDs through libcni: distinct addresses"
for p in m1 m2 m3 l2; do run_client del $p 2>/dev/null || fail "del $p"; done
run_client del l2 2>/dev/null || fail "a second del of l2 must succeed"
if in_ns "$L1" ping -n -c 2 -i 0.2 -w 2 "$IP2" >/dev/null 2>&1; then fail "l2 answered after del"; fi
pass "DEL through the list (twice for l2); l2 unreachable"
run_client del l1 2>/dev/null || fail "del l1"

finish
