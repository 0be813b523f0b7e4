#!/usr/bin/env bash
# kdp-cni end to end, driven as a container runtime drives a CNI plugin (CNI_* environment,
# network configuration on stdin, result JSON on stdout), against a real kdp-dataplane:
#
# - VERSION; ADD of two pods: addresses from the node's pod CIDR, eth0 in each pod's network
#   namespace with its address, MTU and default route; ping and TCP between them;
# - CHECK; concurrent ADDs get distinct addresses; DEL, repeated DEL; the address is freed;
# - addresses delegated to Debian's host-local IPAM plugin (ipam.type), as the spec runs it;
# - a vhost-user pod: its socket and the file next to it, CHECK, DEL;
# - error paths with the spec's codes: no CNI_COMMAND (4), bad JSON (6), unsupported version
#   (1), an IPAM plugin not in CNI_PATH (7), the dataplane unreachable (11, nothing left).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
need_dataplane
CNI="$KDP_BUILD_DIR/cni-shim/kdp-cni"
[ -x "$CNI" ] || fail "$CNI is not built"
mkdir -p "$WORK_DIR"
IPAM_DIR="$WORK_DIR/ipam"
conf() { # conf [SOCKET] [EXTRA_JSON]
    printf '{"cniVersion": "1.0.0", "name": "kdp", "type": "kdp-cni", "dataplane_socket": "%s", "data_dir": "%s"%s}' \
        "${1:-$(api_socket node1)}" "$IPAM_DIR" "${2:-}"
}
# cni COMMAND POD [CONFIG]: runs the plugin for pod POD (container id "ctr-POD", netns of POD).
cni() {
    local cmd=$1 pod=$2 config=${3:-$(conf)}
    printf '%s' "$config" | env -i PATH="$PATH" CNI_COMMAND="$cmd" CNI_CONTAINERID="ctr-$pod" \
        CNI_NETNS="/var/run/netns/$(ns_name "$pod")" CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni \
        CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$pod" "$CNI"
}
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

step "a dataplane with no pod ports"
underlay_create
node_uplink 1
c1=$(kdp_node_config node1 1 "$(uplink_if 1)" standard "" "" "$STATIC_POLICY")
start_dataplane node1 "$c1"
pass "node1 up"

step "VERSION"
out=$(env -i CNI_COMMAND=VERSION "$CNI" </dev/null) || fail "VERSION: $out"
[ "$(field 'd["cniVersion"]' <<<"$out")" = 1.0.0 ] || fail "VERSION: $out"
pass "VERSION: $out"

step "ADD two pods"
netns_create p1
netns_create p2
out=$(cni ADD p1) || fail "ADD p1: $out"
IP1=$(field 'd["ips"][0]["address"].split("/")[0]' <<<"$out")
[[ $IP1 == 10.244.1.* ]] || fail "ADD p1: address $IP1 outside the pod CIDR: $out"
[ "$(field 'd["interfaces"][0]["name"]' <<<"$out")" = eth0 ] || fail "ADD p1: $out"
[ "$(field 'd["routes"][0]["gw"]' <<<"$out")" = 10.244.1.1 ] || fail "ADD p1: $out"
pass "ADD p1: $out"
out=$(cni ADD p2) || fail "ADD p2: $out"
IP2=$(field 'd["ips"][0]["address"].split("/")[0]' <<<"$out")
[ "$IP1" != "$IP2" ] || fail "both pods got $IP1"
P1=$(ns_name p1) P2=$(ns_name p2)
ip -n "$P1" -4 addr show dev eth0 | grep -q "inet $IP1/24" || fail "p1's eth0: $(ip -n "$P1" addr)"
ip -n "$P1" route | grep -q "default via 10.244.1.1 dev eth0" || fail "p1's routes: $(ip -n "$P1" route)"
mtu=$(ip -n "$P1" -o link show eth0 | grep -o 'mtu [0-9]*')
pass "p1 $IP1 and p2 $IP2: eth0 up with its address and default route ($mtu)"
check_ping "$P1" "$IP2" "p1 -> p2"
check_tcp "$P2" "$P1" "$IP1" 2 "p2 -> p1"

step "CHECK, concurrent ADDs"
cni CHECK p1 >/dev/null || fail "CHECK p1 failed"
pass "CHECK p1"
for p in q1 q2 q3 q4; do netns_create $p; done
adds=()
for p in q1 q2 q3 q4; do
    cni ADD $p >"$WORK_DIR/$p.out" &
    adds+=($!)
done
for pid in "${adds[@]}"; do wait "$pid" || fail "a concurrent ADD failed: $(cat "$WORK_DIR"/q?.out)"; done
ips=$(for p in q1 q2 q3 q4; do field 'd["ips"][0]["address"]' <"$WORK_DIR/$p.out" || cat "$WORK_DIR/$p.out"; done | sort -u | wc -l)
[ "$ips" -eq 4 ] || fail "4 concurrent ADDs got $ips distinct addresses: $(cat "$WORK_DIR"/q?.out)"
pass "4 concurrent ADDs: 4 distinct addresses"
for p in q1 q2 q3 q4; do cni DEL $p >/dev/null || fail "DEL $p"; done

step "DEL, and DEL again"
cni DEL p2 >/dev/null || fail "DEL p2"
cni DEL p2 >/dev/null || fail "a second DEL of p2 must succeed"
if in_ns "$P1" ping -n -c 2 -i 0.2 -w 2 "$IP2" >/dev/null 2>&1; then fail "p2 answered after DEL"; fi
[ ! -e "$IPAM_DIR/kdp/$IP2" ] || fail "p2's address $IP2 is still leased"
ip -n "$P2" link show eth0 >/dev/null 2>&1 && fail "p2 still has eth0 after DEL"
pass "DEL p2: port and interface gone, $IP2 released; repeated DEL succeeds"

step "addresses from Debian's host-local IPAM plugin"
[ -x /usr/lib/cni/host-local ] || fail "/usr/lib/cni/host-local missing (containernetworking-plugins)"
HL="$WORK_DIR/host-local"
hl_conf=$(conf "" ", \"ipam\": {\"type\": \"host-local\", \"dataDir\": \"$HL\", \"ranges\": [[{\"subnet\": \"10.244.1.0/24\", \"rangeStart\": \"10.244.1.200\", \"rangeEnd\": \"10.244.1.209\", \"gateway\": \"10.244.1.1\"}]]}")
netns_create h1
out=$(cni ADD h1 "$hl_conf") || fail "ADD h1 with host-local: $out"
IPH=$(field 'd["ips"][0]["address"].split("/")[0]' <<<"$out")
[[ $IPH =~ ^10\.244\.1\.20[0-9]$ ]] || fail "host-local gave $IPH, outside its range: $out"
[ -e "$HL/kdp/$IPH" ] || fail "host-local keeps no lease for $IPH in $HL/kdp: $(ls -R "$HL")"
check_ping "$P1" "$IPH" "p1 -> h1 (address from host-local)"
cni DEL h1 "$hl_conf" >/dev/null || fail "DEL h1"
[ ! -e "$HL/kdp/$IPH" ] || fail "host-local still holds $IPH after DEL"
pass "host-local gave h1 $IPH; DEL released it through host-local"

step "a vhost-user pod"
VH="$WORK_DIR/vhost"
vh_conf=$(conf "" ", \"port_type\": \"vhostuser\", \"vhost_dir\": \"$VH\"")
netns_create v1
out=$(cni ADD v1 "$vh_conf") || fail "ADD v1 (vhostuser): $out"
SOCK=$(field 'd["interfaces"][0]["socketPath"]' <<<"$out")
[ "$(field 'd["socket"]' <"${SOCK%.sock}.json")" = "$SOCK" ] || fail "no description next to $SOCK"
[ "$(field 'd["mode"]' <"${SOCK%.sock}.json")" = server ] || fail "the description does not say server"
cni CHECK v1 "$vh_conf" >/dev/null || fail "CHECK v1"
cni DEL v1 "$vh_conf" >/dev/null || fail "DEL v1"
[ ! -e "$(dirname "$SOCK")" ] || fail "$(dirname "$SOCK") left after DEL"
pass "v1: socket path $SOCK (the pod's application listens there) described next to it; CHECK; DEL"

step "errors carry the spec's codes"
expect_code() { # expect_code CODE OUT
    [ "$(field 'd["code"]' <<<"$2")" = "$1" ] || fail "expected error code $1, got: $2"
}
out=$(printf '%s' "$(conf)" | env -i CNI_CONTAINERID=x "$CNI") && fail "no CNI_COMMAND accepted"
expect_code 4 "$out"
out=$(printf '{not json' | env -i CNI_COMMAND=ADD CNI_CONTAINERID=x CNI_NETNS=/x CNI_IFNAME=eth0 "$CNI") && fail "bad JSON accepted"
expect_code 6 "$out"
out=$(cni ADD p2 '{"cniVersion": "9.9.9", "name": "kdp", "type": "kdp-cni"}') && fail "version 9.9.9 accepted"
expect_code 1 "$out"
out=$(cni ADD p2 "$(conf "" ', "ipam": {"type": "no-such-ipam"}')") && fail "a missing IPAM plugin accepted"
expect_code 7 "$out"
out=$(cni ADD p2 "$(conf /run/kdp/nothing-here.sock)") && fail "ADD with no dataplane succeeded"
expect_code 11 "$out"
[ -z "$(ls "$IPAM_DIR/kdp" | grep '^10\.' | grep -v "^$IP1\$")" ] || fail "a failed ADD left a lease: $(ls "$IPAM_DIR/kdp")"
pass "missing CNI_COMMAND 4, bad JSON 6, version 1, IPAM plugin not found 7, dataplane down 11 (no lease left)"

cni DEL p1 >/dev/null || fail "DEL p1"
finish
