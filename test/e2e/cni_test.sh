#!/usr/bin/env bash
# kdp-cni end to end, driven as a container runtime drives a CNI plugin (CNI_* environment,
# network configuration on stdin, result JSON on stdout), against a real kdp-dataplane:
#
# - VERSION; ADD of two pods: addresses from the node's pod CIDR, eth0 in each pod's network
#   namespace with its address, MTU, MAC (as in the result) and default route; ping and TCP;
# - a requested address (CNI_ARGS IP=) given; taken or foreign ones refused (101), nothing left;
# - CHECK; concurrent ADDs get distinct addresses; DEL, repeated DEL; the address is freed;
# - STATUS (50 without a dataplane) and GC (CNI 1.1): stale attachments and orphaned leases go,
#   valid ones stay;
# - addresses delegated to Debian's host-local IPAM plugin (ipam.type), as the spec runs it;
# - a vhost-user pod: its socket and the file next to it, CHECK, DEL;
# - the port type per pod from its annotation kdp.io/port-type, read from a (fake) Kubernetes API
#   over TLS; a bad value (7), a pod the API does not know (3), the API down (11);
# - error paths with the spec's codes: no CNI_COMMAND (4), bad JSON (6), a container id that
#   is not one (4), unsupported version
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
# cni COMMAND POD [CONFIG [MORE_ARGS]]: MORE_ARGS are appended to CNI_ARGS ("K=V;K=V").
cni() {
    local cmd=$1 pod=$2 config=${3:-$(conf)} more=${4:+;$4}
    printf '%s' "$config" | env -i PATH="$PATH" CNI_COMMAND="$cmd" CNI_CONTAINERID="ctr-$pod" \
        CNI_NETNS="/var/run/netns/$(ns_name "$pod")" CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni \
        CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$pod$more" "$CNI"
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
[ "$(field 'd["cniVersion"]' <<<"$out")" = 1.1.0 ] || fail "VERSION: $out"
[ "$(field '",".join(d["supportedVersions"])' <<<"$out")" = 0.3.0,0.3.1,0.4.0,1.0.0,1.1.0 ] || fail "VERSION: $out"
pass "VERSION: $out"

step "ADD two pods"
netns_create p1
netns_create p2
out=$(cni ADD p1) || fail "ADD p1: $out"
ADD1=$out
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
mac=$(ip -n "$P1" -o link show eth0 | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
[ "$(field 'd["interfaces"][0]["mac"]' <<<"$ADD1")" = "$mac" ] \
    || fail "the result's MAC is not p1's eth0 ($mac): $ADD1"

pass "p1 $IP1 and p2 $IP2: eth0 up with its address and default route ($mtu)"
check_ping "$P1" "$IP2" "p1 -> p2"
check_tcp "$P2" "$P1" "$IP1" 2 "p2 -> p1"

step "a requested address (CNI_ARGS IP=), and one already taken"
netns_create r1
out=$(cni ADD r1 "$(conf)" "IP=10.244.1.77") || fail "ADD r1 with IP=10.244.1.77: $out"
[ "$(field 'd["ips"][0]["address"]' <<<"$out")" = 10.244.1.77/24 ] || fail "ADD r1: $out"
ip -n "$(ns_name r1)" -4 addr show dev eth0 | grep -q "inet 10.244.1.77/24" || fail "r1's eth0"
pass "ADD r1 with IP=10.244.1.77: got it"
netns_create r2
out=$(cni ADD r2 "$(conf)" "IP=10.244.1.77") && fail "a second pod got 10.244.1.77: $out"
[ "$(field 'd["code"]' <<<"$out")" = 101 ] || fail "expected code 101: $out"
[[ $(field 'd["msg"]' <<<"$out") == *"held by container ctr-r1"* ]] || fail "msg: $out"
out=$(cni ADD r2 "$(conf)" "IP=10.244.2.5") && fail "r2 got an address of another node: $out"
[ "$(field 'd["code"]' <<<"$out")" = 101 ] || fail "expected code 101: $out"
ip -n "$(ns_name r2)" link show eth0 >/dev/null 2>&1 && fail "a refused ADD left eth0 in r2"
kdpctl_ports=$("$KDP_BUILD_DIR/control/kdpctl" --dataplane "$(api_socket node1)" get ports)
[[ $kdpctl_ports != *default/r2* ]] || fail "a refused ADD left a port: $kdpctl_ports"
pass "IP=10.244.1.77 again and IP=10.244.2.5 refused with code 101, nothing left behind"

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
[ "$(field 'd["queues"]' <"${SOCK%.sock}.json")" = 1 ] || fail "the description does not say 1 queue pair"
out=$(cni ADD v2 "$(conf "" ", \"port_type\": \"vhostuser\", \"vhost_dir\": \"$VH\", \"vhost_queues\": 65")") \
    && fail "vhost_queues 65 attached: $out"
[[ $out == *'vhost_queues must be a number in 1..64'* ]] || fail "vhost_queues 65: $out"
cni CHECK v1 "$vh_conf" >/dev/null || fail "CHECK v1"
cni DEL v1 "$vh_conf" >/dev/null || fail "DEL v1"
[ ! -e "$(dirname "$SOCK")" ] || fail "$(dirname "$SOCK") left after DEL"
pass "v1: socket path $SOCK (the pod's application listens there) described next to it; CHECK; DEL"

step "the port type from the pod's annotation kdp.io/port-type (Kubernetes API)"
fake_apiserver_start
annotated_pod() { # NAME [PORT_TYPE [VHOST_QUEUES]]
    local anno=""
    [ -n "${2:-}" ] && anno=",\"annotations\":{\"kdp.io/port-type\":\"$2\"${3:+,\"kdp.io/vhost-queues\":\"$3\"}}"
    api "{\"op\":\"create\",\"path\":\"/api/v1/pods\",\"object\":{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"$1\",\"namespace\":\"default\"$anno},\"spec\":{\"nodeName\":\"node1\",\"containers\":[{\"name\":\"c\",\"image\":\"x\"}]}}}"
}
annotated_pod k1 vhostuser 3
annotated_pod k2
annotated_pod k3 bogus
annotated_pod k5 vhostuser many
k_conf=$(conf "" ", \"vhost_dir\": \"$VH\", \"kubernetes\": {\"kubeconfig\": \"$WORK_DIR/kubeconfig\"}")
for p in k1 k2 k3 k4 k5; do netns_create $p; done
out=$(cni ADD k1 "$k_conf") || fail "ADD k1: $out"
KSOCK=$(field 'd["interfaces"][0]["socketPath"]' <<<"$out") || fail "k1 (annotated vhostuser) got no socket: $out"
[ "$(field 'd["queues"]' <"${KSOCK%.sock}.json")" = 3 ] || fail "k1's description: $(cat "${KSOCK%.sock}.json")"
kq=$("$KDP_BUILD_DIR/control/kdpctl" --dataplane "$(api_socket node1)" get ports -o json |
    field '[p["rx_queues"] for p in d if p["name"] == "default/k1"]')
[ "$kq" = "[3]" ] || fail "k1's port has RX queues $kq, not the annotation's 3"
out=$(cni ADD k2 "$k_conf") || fail "ADD k2: $out"
[ "$(field 'd["interfaces"][0]["sandbox"]' <<<"$out")" = "/var/run/netns/$(ns_name k2)" ] || fail "k2: $out"
ip -n "$(ns_name k2)" link show eth0 >/dev/null || fail "k2 (no annotation) has no eth0"
pass "k1 annotated vhostuser with 3 queue pairs got $KSOCK; k2 without the annotation got the network's TAP"
cni CHECK k1 "$(conf)" >/dev/null || fail "CHECK k1 (type from what ADD made, not the config)"
cni DEL k1 "$(conf)" >/dev/null || fail "DEL k1"
[ ! -e "$(dirname "$KSOCK")" ] || fail "DEL k1 left $(dirname "$KSOCK")"
cni DEL k2 "$k_conf" >/dev/null || fail "DEL k2"
out=$(cni ADD k3 "$k_conf") && fail "k3 with port-type bogus attached: $out"
[ "$(field 'd["code"]' <<<"$out")" = 7 ] && [[ $out == *'"bogus\" is not tap or vhostuser'* ]] || fail "k3: $out"
out=$(cni ADD k5 "$k_conf") && fail "k5 with vhost-queues many attached: $out"
[ "$(field 'd["code"]' <<<"$out")" = 7 ] && [[ $out == *'"many\" is not a number in 1..64'* ]] || fail "k5: $out"
out=$(cni ADD k4 "$k_conf") && fail "k4 (not in the API) attached: $out"
[ "$(field 'd["code"]' <<<"$out")" = 3 ] || fail "k4: $out"
api '{"op":"fail","count":1,"status":0}'
out=$(cni ADD k2 "$k_conf") && fail "ADD k2 with the API server hanging up succeeded: $out"
[ "$(field 'd["code"]' <<<"$out")" = 11 ] || fail "API server gone: $out"
ports=$("$KDP_BUILD_DIR/control/kdpctl" --dataplane "$(api_socket node1)" get ports)
[[ $ports != *default/k* ]] || fail "refused ADDs left ports: $ports"
pass "CHECK/DEL of k1 follow what ADD made; bad annotations 7, pod not in the API 3, API down 11; nothing left"

step "STATUS and GC (CNI 1.1)"
conf11() { conf "${1:-}" "${2:-}" | sed 's/"cniVersion": "1.0.0"/"cniVersion": "1.1.0"/'; }
out=$(conf11 | env -i CNI_COMMAND=STATUS "$CNI") || fail "STATUS with the dataplane up: $out"
out=$(conf11 /run/kdp/nothing-here.sock | env -i CNI_COMMAND=STATUS "$CNI") \
    && fail "STATUS with no dataplane succeeded"
[ "$(field 'd["code"]' <<<"$out")" = 50 ] || fail "STATUS without a dataplane: $out"
pass "STATUS: ready with the dataplane, code 50 without it"
for p in g1 g2; do netns_create $p; cni ADD $p >/dev/null || fail "ADD $p"; done
IPG2=$(cat "$IPAM_DIR/kdp/attachments/ctr-g2.eth0" | field 'd["ip"]')
# A lease without an attachment: an ADD cut short before it recorded anything.
printf 'ctr-crashed\neth0\n' >"$IPAM_DIR/kdp/10.244.1.250"
valid=$(for p in p1 r1 g1; do printf '{"containerID": "ctr-%s", "ifname": "eth0"},' $p; done)
gc_conf=$(conf11 | sed "s/}\$/, \"cni.dev\/valid-attachments\": [${valid%,}]}/")
out=$(printf '%s' "$gc_conf" | env -i CNI_COMMAND=GC "$CNI") || fail "GC: $out"
ports=$("$KDP_BUILD_DIR/control/kdpctl" --dataplane "$(api_socket node1)" get ports)
[[ $ports != *default/g2* && $ports == *default/g1* && $ports == *default/p1* ]] \
    || fail "after GC the ports are: $ports"
[ ! -e "$IPAM_DIR/kdp/$IPG2" ] || fail "GC left g2's address $IPG2 leased"
[ ! -e "$IPAM_DIR/kdp/10.244.1.250" ] || fail "GC left the orphaned lease 10.244.1.250"
[ -e "$IPAM_DIR/kdp/$IP1" ] || fail "GC freed p1's address"
ip -n "$(ns_name g2)" link show eth0 >/dev/null 2>&1 && fail "GC left eth0 in g2"
check_ping "$(ns_name g1)" "$IP1" "g1 -> p1 after GC (kept attachments untouched)"
out=$(conf11 | env -i CNI_COMMAND=GC "$CNI") && fail "GC without valid-attachments succeeded"
[ "$(field 'd["code"]' <<<"$out")" = 7 ] || fail "GC without valid-attachments: $out"
[ -e "$IPAM_DIR/kdp/$IP1" ] || fail "a refused GC freed p1's address"
pass "GC removed g2's port, address and interface and an orphaned lease, kept p1/r1/g1; refuses without cni.dev/valid-attachments"
cni DEL g1 >/dev/null || fail "DEL g1"
cni DEL r1 >/dev/null || fail "DEL r1"

step "errors carry the spec's codes"
expect_code() { # expect_code CODE OUT
    [ "$(field 'd["code"]' <<<"$2")" = "$1" ] || fail "expected error code $1, got: $2"
}
out=$(printf '%s' "$(conf)" | env -i CNI_CONTAINERID=x "$CNI") && fail "no CNI_COMMAND accepted"
expect_code 4 "$out"
out=$(printf '{not json' | env -i CNI_COMMAND=ADD CNI_CONTAINERID=x CNI_NETNS=/x CNI_IFNAME=eth0 "$CNI") && fail "bad JSON accepted"
expect_code 6 "$out"
out=$(printf '%s' "$(conf)" | env -i CNI_COMMAND=ADD CNI_CONTAINERID=../x CNI_NETNS=/x CNI_IFNAME=eth0 "$CNI") \
    && fail "container id ../x accepted"
expect_code 4 "$out"
out=$(cni ADD p2 '{"cniVersion": "9.9.9", "name": "kdp", "type": "kdp-cni"}') && fail "version 9.9.9 accepted"
expect_code 1 "$out"
out=$(cni ADD p2 "$(conf "" ', "ipam": {"type": "no-such-ipam"}')") && fail "a missing IPAM plugin accepted"
expect_code 7 "$out"
out=$(cni ADD p2 "$(conf /run/kdp/nothing-here.sock)") && fail "ADD with no dataplane succeeded"
expect_code 11 "$out"
[ -z "$(ls "$IPAM_DIR/kdp" | grep '^10\.' | grep -v "^$IP1\$")" ] || fail "a failed ADD left a lease: $(ls "$IPAM_DIR/kdp")"
pass "missing CNI_COMMAND 4, bad JSON 6, container id ../x 4, version 1, IPAM plugin not found 7, dataplane down 11 (no lease left)"

cni DEL p1 >/dev/null || fail "DEL p1"
finish
