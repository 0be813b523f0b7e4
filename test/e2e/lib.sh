# End-to-end harness for kdp: shared by test/e2e/*_test.sh and config/demo.sh. Source it.
#
# Everything a run creates carries a short run id (KDP_RUN_ID, 4 hex digits by default): network
# namespaces "kdp<id>-NAME", links "k<id>NAME" (<= 15 chars), DPDK file prefixes
# "kdp<id>-NODE", API sockets /run/kdp/<id>-NODE.sock and the work dir /tmp/kdp-e2e-<id>. The
# cleanup trap (EXIT/INT/TERM) undoes only what this run recorded: it stops the PIDs it started,
# deletes the namespaces and links it created, removes its hugepage files and sockets. Parallel or
# leftover runs never collide with it, and it never touches theirs.
#
# Topology (build with underlay_create, node_uplink, kdp_node_config, start_dataplane, pod_attach):
#
#   netns kdp<id>-ul: bridge "ul" ─┬─ veth ─ k<id>N1 (root netns) ─ net_af_packet ─ kdp-dataplane node1
#                                  ├─ veth ─ k<id>N2 (root netns) ─ net_af_packet ─ kdp-dataplane node2
#                                  └─ veth ─ ... (e.g. a plain-kernel node in its own netns)
#   kdp-dataplane nodeN ── net_tap ── TAP moved into netns kdp<id>-POD (pod IP/24, default via .1)
#
# Underlay addresses: 198.51.100.0/24 (RFC 5737 documentation range); pod CIDRs 10.244.N.0/24.
# The dataplanes stay in the root netns: net_af_packet binds its interface by name there.

set -euo pipefail

KDP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
KDP_BUILD_DIR="${KDP_BUILD_DIR:-build}"
case "$KDP_BUILD_DIR" in
/*) ;;
*) KDP_BUILD_DIR="$KDP_ROOT/$KDP_BUILD_DIR" ;;
esac
KDP_DATAPLANE="${KDP_DATAPLANE:-$KDP_BUILD_DIR/dataplane/kdp-dataplane}"
RUN_ID="${KDP_RUN_ID:-$(printf '%04x' $(((RANDOM << 1 ^ $$) & 0xffff)))}"
WORK_DIR="/tmp/kdp-e2e-$RUN_ID"
UNDERLAY_NS="kdp$RUN_ID-ul"
UNDERLAY_BR="ul"
UNDERLAY_NET="198.51.100"
UNDERLAY_PREFIX=24
# Seconds to wait for a dataplane to come up (EAL init with hugepages and ports).
DP_START_TIMEOUT="${KDP_DP_START_TIMEOUT:-60}"

# Colours only on a terminal.
if [ -t 1 ]; then
    C_OK=$'\e[32m' C_BAD=$'\e[31m' C_DIM=$'\e[2m' C_OFF=$'\e[0m'
else
    C_OK='' C_BAD='' C_DIM='' C_OFF=''
fi

_PIDS=()         # background processes we started (dataplanes, servers, captures)
_NETNS=()        # namespaces we created
_LINKS=()        # links we created in the root netns
_FILES=()        # sockets and other files to remove
_PREFIXES=()     # DPDK file prefixes (hugepage files, runtime dirs)
declare -A _DP_PID=() _DP_LOG=() _DP_SOCK=() _DP_PREFIX=()
_FAILED=0
_CHECKS=0

mkdir -p "$WORK_DIR"

log() { printf '%s\n' "$*"; }
step() { printf '\n%s== %s%s\n' "$C_DIM" "$*" "$C_OFF"; }
pass() {
    _CHECKS=$((_CHECKS + 1))
    printf '  %s✔%s %s\n' "$C_OK" "$C_OFF" "$*"
}
# fail MSG: reports the check as failed, dumps the dataplane logs, and exits (cleanup runs).
fail() {
    _FAILED=1
    printf '  %s✘ %s%s\n' "$C_BAD" "$*" "$C_OFF" >&2
    dump_logs >&2
    exit 1
}

dump_logs() {
    local n
    for n in "${!_DP_LOG[@]}"; do
        printf '\n--- kdp-dataplane %s: last 40 lines of %s ---\n' "$n" "${_DP_LOG[$n]}"
        tail -n 40 "${_DP_LOG[$n]}" 2>/dev/null || true
    done
}

# need_root [ARGS...]: as root, or re-run the script ($0, with ARGS) under sudo
# (config/as_root.sh). A script with arguments passes "$@".
need_root() {
    source "$KDP_ROOT/config/as_root.sh"
    as_root "$0" "$@"
}

need_dataplane() {
    [ -x "$KDP_DATAPLANE" ] || {
        echo "error: $KDP_DATAPLANE not built (run: bash config/setup.sh as root)" >&2
        exit 1
    }
}

# wait_for TIMEOUT_S DESCRIPTION CMD...: polls CMD every 0.1 s until it succeeds; returns 1 on
# timeout (the caller decides whether that is a failure).
wait_for() {
    local timeout=$1 what=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            printf '  timed out after %ss waiting for %s\n' "$timeout" "$what" >&2
            return 1
        fi
        sleep 0.1
    done
}

# ---------------------------------------------------------------- cleanup

# stop_bg PID [SIGNAL]: signals the process group PID leads (see spawn), or PID alone; waits up
# to 5 s, then SIGKILL.
stop_bg() {
    local pid=$1 sig=${2:-TERM} i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -"$sig" -- "-$pid" 2>/dev/null || kill -"$sig" "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null
    return 0
}

cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    set +e
    if [ "${#_PIDS[@]}" -gt 0 ]; then
        for p in "${_PIDS[@]}"; do stop_bg "$p"; done
        wait 2>/dev/null
    fi
    for p in "${_NETNS[@]}"; do ip netns del "$p" 2>/dev/null; done
    for p in "${_LINKS[@]}"; do ip link del "$p" 2>/dev/null; done
    for p in "${_PREFIXES[@]}"; do
        rm -f /dev/hugepages/"$p"* 2>/dev/null
        rm -rf "/var/run/dpdk/$p" 2>/dev/null
    done
    for p in "${_FILES[@]}"; do rm -f "$p"; done
    if [ $rc -eq 0 ] && [ "${KDP_KEEP:-0}" != 1 ]; then
        rm -rf "$WORK_DIR"
    else
        printf '%s(logs and configs kept in %s)%s\n' "$C_DIM" "$WORK_DIR" "$C_OFF" >&2
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# track_pid PID: stop PID at cleanup.
track_pid() { _PIDS+=("$1"); }

# spawn CMD...: runs the executable CMD in the background as the leader of its own process group
# (setsid does not fork here: a background job of a script is never a group leader), so that
# stop_bg and the cleanup reach every process under it. Sets BG_PID. Redirect as needed:
# `spawn ip netns exec NS tshark ... 2>FILE`. Never spawn a shell function: it would run in a
# subshell that signals do not reach through.
spawn() {
    setsid "$@" &
    BG_PID=$!
    track_pid "$BG_PID"
}

# ---------------------------------------------------------------- names and namespaces

ns_name() { printf 'kdp%s-%s' "$RUN_ID" "$1"; }
if_name() {
    local n="k$RUN_ID$1"
    [ ${#n} -le 15 ] || { echo "interface name $n is longer than 15 characters" >&2; exit 1; }
    printf '%s' "$n"
}

# netns_create NAME: creates netns "kdp<id>-NAME" with lo up and IPv6 off (quiet links).
netns_create() {
    local ns
    ns=$(ns_name "$1")
    ip netns add "$ns"
    _NETNS+=("$ns")
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# in_ns NS CMD...: runs CMD in namespace NS (full name).
in_ns() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

# ---------------------------------------------------------------- underlay

# underlay_create: the underlay netns with one bridge; nodes hang off it by veth.
underlay_create() {
    netns_create ul
    ip -n "$UNDERLAY_NS" link add "$UNDERLAY_BR" type bridge
    ip -n "$UNDERLAY_NS" link set "$UNDERLAY_BR" type bridge stp_state 0 forward_delay 0
    ip -n "$UNDERLAY_NS" link set "$UNDERLAY_BR" up
}

node_ip() { printf '%s.%s' "$UNDERLAY_NET" "$1"; }

# Functions that record what they create (for cleanup) must not run in a $(...) subshell, so
# they print nothing; the names are derived: uplink_if N, ns_name NAME, if_name NAME.

uplink_if() { if_name "u$1"; }

# node_uplink N: a veth "k<id>uN" in the root netns (for net_af_packet), its peer on the bridge.
# No IP on it: the dataplane owns the node address.
node_uplink() {
    local n=$1 ifc peer
    ifc=$(if_name "u$n")
    peer=$(if_name "b$n")
    ip link add "$ifc" type veth peer name "$peer"
    _LINKS+=("$ifc")
    ip link set "$peer" netns "$UNDERLAY_NS"
    ip -n "$UNDERLAY_NS" link set "$peer" master "$UNDERLAY_BR" up
    sysctl -qw "net.ipv6.conf.$ifc.disable_ipv6=1" 2>/dev/null || true
    ip link set "$ifc" up
}

# kernel_node_create N: a plain-kernel node: netns "kdp<id>-nodeN" with underlay interface
# "eth0" addressed NODE_IP/24 on the bridge and forwarding on.
kernel_node_create() {
    local n=$1
    _bridge_host "node$n" "$(if_name "b$n")" "$(node_ip "$n")"
    in_ns "$(ns_name "node$n")" sysctl -qw net.ipv4.ip_forward=1
}

# _bridge_host NAME PEER_IF IP: netns "kdp<id>-NAME" whose eth0 (IP/24) is a veth to the
# underlay bridge (the bridge side named PEER_IF).
_bridge_host() {
    local name=$1 peer=$2 ip=$3 ns
    netns_create "$name"
    ns=$(ns_name "$name")
    ip -n "$ns" link add eth0 type veth peer name "$peer"
    ip -n "$ns" link set "$peer" netns "$UNDERLAY_NS"
    ip -n "$UNDERLAY_NS" link set "$peer" master "$UNDERLAY_BR" up
    ip -n "$ns" addr add "$ip/$UNDERLAY_PREFIX" dev eth0
    ip -n "$ns" link set eth0 up
    # A veth hands its peer frames whose checksums are still to be filled in (CHECKSUM_PARTIAL,
    # including the inner TCP checksum of VXLAN frames); net_af_packet passes them on as they
    # are. A real NIC finishes them on the wire, so make this "NIC" do it too.
    in_ns "$ns" ethtool -K eth0 tx off >/dev/null
}

# ---------------------------------------------------------------- dataplane

file_prefix() { printf 'kdp%s-%s' "$RUN_ID" "$1"; }
api_socket() { printf '/run/kdp/%s-%s.sock' "$RUN_ID" "$1"; }

# kdp_node_config NAME N UPLINK_IF MODE PODS REMOTES [EXTRA_YAML]: writes a node config to
# $WORK_DIR/NAME.yaml and prints its path.
#   MODE: standard | flannel
#   PODS: "pod-name:ip:tap-if ..." (namespace default/), REMOTES: "name:N[:vtep_mac] ..."
# Node N gets underlay IP 198.51.100.N, pod CIDR 10.244.N.0/24 and VTEP MAC 02:kd:..:N.
kdp_node_config() {
    local name=$1 n=$2 uplink=$3 mode=$4 pods=$5 remotes=$6 extra=${7:-}
    local f="$WORK_DIR/$name.yaml" p r pname pip pif rname rn rmac
    {
        echo "# kdp node config written by test/e2e/lib.sh, run $RUN_ID"
        echo "node: {name: $name, ip: $(node_ip "$n"), pod_cidr: 10.244.$n.0/24, mtu: 1500}"
        echo "vxlan: {mode: $mode, vtep_mac: \"$(vtep_mac "$n")\"}"
        echo "dpdk:"
        echo "  file_prefix: $(file_prefix "$name")"
        echo "  lcores: \"(0,1)@(0,1)\""
        echo "  eal_args: [\"--no-pci\", \"-m\", \"${KDP_E2E_MEM_MB:-128}\"]"
        echo "workers: {lcores: [1], idle: {spin_polls: 64, sleep_us: 50, max_sleep_us: 500}}"
        echo "uplink: {devargs: \"net_af_packet0,iface=$uplink\"}"
        echo "limits: {mbufs: ${KDP_E2E_MBUFS:-8191}}"
        echo "pods:"
        for p in $pods; do
            IFS=: read -r pname pip pif <<<"$p"
            echo "  - {name: default/$pname, ip: $pip, type: tap, iface: $pif}"
        done
        echo "remote_nodes:"
        for r in $remotes; do
            IFS=: read -r rname rn rmac <<<"$r"
            rmac=${rmac:-$(vtep_mac "$rn")}
            echo "  - {name: $rname, ip: $(node_ip "$rn"), pod_cidr: 10.244.$rn.0/24, vtep_mac: \"$rmac\"}"
        done
        echo "api: {socket: $(api_socket "$name")}"
        [ -z "$extra" ] || echo "$extra"
    } >"$f"
    # An empty YAML list needs "[]".
    [ -n "$pods" ] || sed -i 's/^pods:$/pods: []/' "$f"
    [ -n "$remotes" ] || sed -i 's/^remote_nodes:$/remote_nodes: []/' "$f"
    printf '%s' "$f"
}

# Extra YAML for a node that runs on its static tables, with no control plane to send
# NetworkPolicy: without it the node keeps pod traffic waiting for the first sync.
STATIC_POLICY="network_policy: {before_sync: allow}"

# vtep_mac N: the VTEP MAC used for node N (locally administered, unicast).
vtep_mac() { printf '02:00:c6:33:64:%02x' "$1"; }

_dp_file_prefix_of() { sed -n 's/^  file_prefix: *//p' "$1" | head -n 1; }
_dp_socket_of() { sed -n 's/^api: {socket: *\([^}]*\)}.*/\1/p' "$1" | head -n 1; }

# start_dataplane NAME CONFIG: starts kdp-dataplane in the background (log in
# $WORK_DIR/NAME.log) and waits until it says ready and its API socket exists. Fails with the
# log tail if the process dies or does not come up in DP_START_TIMEOUT seconds.
start_dataplane() {
    local name=$1 config=$2 log="$WORK_DIR/$1.log" sock prefix pid
    need_dataplane
    sock=$(_dp_socket_of "$config")
    prefix=$(_dp_file_prefix_of "$config")
    mkdir -p "$(dirname "${sock:-/run/kdp/x}")"
    [ -z "$prefix" ] || _PREFIXES+=("$prefix")
    [ -z "$sock" ] || _FILES+=("$sock" "$sock.ports.json")
    spawn "$KDP_DATAPLANE" --config "$config" </dev/null >"$log" 2>&1
    pid=$BG_PID
    _DP_PID[$name]=$pid _DP_LOG[$name]=$log _DP_SOCK[$name]=$sock _DP_PREFIX[$name]=$prefix
    local deadline=$((SECONDS + DP_START_TIMEOUT))
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null && rc=0 || rc=$?
            fail "kdp-dataplane $name exited (status $rc) during start-up; expected it to run and report ready"
        fi
        if grep -q ' ready' "$log" && { [ -z "$sock" ] || [ -S "$sock" ]; }; then
            break
        fi
        [ $SECONDS -lt $deadline ] \
            || fail "kdp-dataplane $name not ready after ${DP_START_TIMEOUT}s (no 'ready' line / socket $sock)"
        sleep 0.2
    done
}

# stop_dataplane NAME: SIGTERM, wait up to 10 s (it prints its final counters), then SIGKILL.
stop_dataplane() {
    local name=$1 pid=${_DP_PID[$1]:-}
    [ -n "$pid" ] || return 0
    stop_bg "$pid"
    unset "_DP_PID[$name]"
}

# dataplane_running NAME: true while the process is alive.
dataplane_running() { [ -n "${_DP_PID[$1]:-}" ] && kill -0 "${_DP_PID[$1]}" 2>/dev/null; }

# dataplane_stats NAME: the dataplane's counters (DPDK telemetry command /kdp/stats) as JSON:
# {"PORT_ID": {"name": "default/a1", "rx_packets": ..., "drop_REASON": ...}, ...}, every page
# (a test node's ports fit one; "next" names the next page's first port id).
dataplane_stats() {
    python3 - "${_DP_PREFIX[$1]}" <<'EOF' 2>/dev/null || echo '{}'
import json, subprocess, sys
ports, cmd = {}, "/kdp/stats"
while cmd:
    out = subprocess.run(["dpdk-telemetry.py", "-f", sys.argv[1]], input=cmd + "\n",
                         capture_output=True, text=True).stdout.strip()
    page = json.loads(out or "{}").get("/kdp/stats") or {}
    cmd = "/kdp/stats,%d" % page.pop("next") if "next" in page else ""
    ports.update(page)
print(json.dumps(ports))
EOF
}

# print_stats NAME: one line per port: rx/tx packets and drops.
print_stats() {
    dataplane_stats "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
if not d:
    print("    (no counters: telemetry not reachable)")
for port, c in d.items():
    port = c.get("name", port)
    drops = " ".join("%s=%s" % (k[5:], v) for k, v in c.items() if k.startswith("drop_"))
    print("    %-22s rx %8d pkts %11d B   tx %8d pkts %11d B%s" % (
        port, c.get("rx_packets", 0), c.get("rx_bytes", 0), c.get("tx_packets", 0),
        c.get("tx_bytes", 0), "   drops: " + drops if drops else ""))
'
}

# ---------------------------------------------------------------- pods

# pod_attach NODE_N POD_NAME IP TAP_IF: moves the dataplane's TAP into a new netns
# "kdp<id>-POD_NAME", addresses it IP/24 with default via 10.244.N.1, MTU = 1500 - 50.
# The netns is $(ns_name POD_NAME).
pod_attach() {
    local n=$1 pod=$2 ip=$3 tap=$4 ns
    ns=$(ns_name "$pod")
    wait_for 10 "TAP $tap from the dataplane" ip link show "$tap" \
        || fail "TAP $tap for pod $pod: the dataplane did not create it"
    netns_create "$pod"
    ip link set "$tap" netns "$ns"
    ip -n "$ns" link set "$tap" mtu "${POD_MTU:-1450}" up
    ip -n "$ns" addr add "$ip/24" dev "$tap"
    ip -n "$ns" route add default via "10.244.$n.1" dev "$tap"
}

# ---------------------------------------------------------------- Kubernetes API

# fake_apiserver_start [NETNS [TOKEN]]: test/k8s/fake_apiserver.py (the real list+watch
# protocol over TLS with a client certificate) as coprocess API, in netns NETNS if given;
# writes $WORK_DIR/kubeconfig for it (with TOKEN: the server requires that bearer token and the
# kubeconfig uses it). Sets PORT and API_CA (the server's CA file). Then `api CMD_JSON` sends
# it one command (see the script's header) and checks the reply.
fake_apiserver_start() {
    local ns=${1:-} token=${2:-} hello port ca cert key user
    mkdir -p "$WORK_DIR/api"
    coproc API { exec ${ns:+ip netns exec "$ns"} python3 "$KDP_ROOT/test/k8s/fake_apiserver.py" --dir "$WORK_DIR/api" ${token:+--token "$token"} 2>"$WORK_DIR/apiserver.log"; }
    track_pid "$API_PID"
    read -r -t 30 hello <&"${API[0]}" || fail "the fake API server did not start"
    read -r port ca cert key < <(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["port"], d["ca"], d["client_cert"], d["client_key"])' "$hello")
    user="{client-certificate: \"$cert\", client-key: \"$key\"}"
    [ -z "$token" ] || user="{token: \"$token\"}"
    cat >"$WORK_DIR/kubeconfig" <<KC
apiVersion: v1
kind: Config
current-context: test
clusters:
- name: test
  cluster: {server: "https://127.0.0.1:$port", certificate-authority: "$ca"}
users:
- name: kdp
  user: $user
contexts:
- name: test
  context: {cluster: test, user: kdp}
KC
    PORT=$port API_CA=$ca
}

api() {
    printf '%s\n' "$1" >&"${API[1]}"
    local reply
    read -r -t 10 reply <&"${API[0]}" || fail "no reply from the fake API server to $1"
    case "$reply" in *'"error"'*) fail "fake API server refused $1: $reply" ;; esac
}

# ---------------------------------------------------------------- kdp-cni

# cni_client_build: builds test/cni/libcni_client.go, a runtime's network side on libcni (the
# library containerd and CRI-O call plugins with), against Debian's golang-github-appc-cni-dev
# in GOPATH mode, offline, in a few seconds. Sets CNI_CLIENT.
cni_client_build() {
    command -v go >/dev/null || fail "go missing (golang-go)"
    mkdir -p "$WORK_DIR/go"
    cp "$KDP_ROOT/test/cni/libcni_client.go" "$WORK_DIR/go/main.go"
    CNI_CLIENT="$WORK_DIR/libcni_client"
    (cd "$WORK_DIR/go" && GOPATH=/usr/share/gocode GO111MODULE=off GOCACHE="$WORK_DIR/gocache" \
        GOFLAGS= go build -o "$CNI_CLIENT" main.go) 2>"$WORK_DIR/go.err" \
        || fail "go build of the libcni client: $(cat "$WORK_DIR/go.err")"
}

# cni_conflist NODE: writes node NODE's copy of config/cni/10-kdp.conflist (the shipped file),
# pointed at that node's dataplane socket and IPAM/vhost-user directories in $WORK_DIR; prints
# its path.
cni_conflist() {
    local node=$1 f="$WORK_DIR/cni-$1.conflist"
    python3 - "$KDP_ROOT/config/cni/10-kdp.conflist" "$(api_socket "$node")" \
        "$WORK_DIR/ipam-$node" "$WORK_DIR/vhost-$node" >"$f" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
p = next(p for p in c["plugins"] if p["type"] == "kdp-cni")
p["dataplane_socket"], p["data_dir"], p["vhost_dir"] = sys.argv[2:5]
json.dump(c, sys.stdout, indent=2)
PY
    printf '%s' "$f"
}

# cni_pod_add NODE POD [IP]: a CNI ADD through libcni, as the kubelet's runtime makes it, for pod
# default/POD (container id "ctr-POD") into a new netns $(ns_name POD) as eth0; IP, if given,
# is requested with CNI_ARGS IP= (the pod's address in the manifests). The result JSON is left
# in $WORK_DIR/cni-POD.json. Needs cni_client_build.
cni_pod_add() {
    local node=$1 pod=$2 ip=${3:-} list
    netns_create "$pod"
    list=$(cni_conflist "$node")
    CNI_PATH="$KDP_BUILD_DIR/cni-shim:/usr/lib/cni" CNI_CACHE_DIR="$WORK_DIR/cni-cache" \
        "$CNI_CLIENT" add "$list" "/var/run/netns/$(ns_name "$pod")" "ctr-$pod" eth0 \
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$pod${ip:+;IP=$ip}" \
        >"$WORK_DIR/cni-$pod.json" 2>&1 \
        || fail "CNI ADD of $pod on $node: $(cat "$WORK_DIR/cni-$pod.json")"
}

# kernel_pod_attach NODE_NS N POD_NAME IP: a pod behind a plain-kernel node, the way a
# bridge CNI does it: a veth whose node end holds 10.244.N.1/24. The netns is $(ns_name POD).
kernel_pod_attach() {
    local node_ns=$1 n=$2 pod=$3 ip=$4 ns
    ns=$(ns_name "$pod")
    netns_create "$pod"
    ip -n "$node_ns" link add "cni0" type veth peer name eth0 netns "$ns"
    ip -n "$node_ns" addr add "10.244.$n.1/24" dev cni0
    ip -n "$node_ns" link set cni0 mtu 1450 up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 mtu 1450 up
    ip -n "$ns" route add default via "10.244.$n.1" dev eth0
}

# ---------------------------------------------------------------- traffic checks

# check_ping FROM_NS DST DESCRIPTION: 3 echo replies within 5 s (the first request may wait for
# ARP resolution).
check_ping() {
    local ns=$1 dst=$2 what=$3 out
    if out=$(in_ns "$ns" ping -n -c 3 -i 0.2 -w 5 "$dst" 2>&1); then
        pass "$what: ping $dst: $(grep -o '[0-9]* received' <<<"$out") of 3"
    else
        printf '%s\n' "$out" | sed 's/^/    /' >&2
        fail "$what: ping $dst: expected 3 echo replies within 5 s, got: $(grep -o '[0-9]* received.*' <<<"$out" || echo none)"
    fi
}

# A TCP port no other run uses at the same time (no fixed ports).
# TCP_PORTS lists the ports check_tcp used (a capture can decode them as plain data).
TCP_PORTS=()
# check_tcp takes the next one each time (not in a subshell, so the counter advances).
_next_port=$((20000 + $(printf '%s' "$RUN_ID" | cksum | cut -d' ' -f1) % 20000))

# check_tcp FROM_NS TO_NS TO_IP SIZE_MB DESCRIPTION: sends SIZE_MB of random bytes with socat
# from FROM_NS to a listener at TO_IP in TO_NS and compares the SHA-256 of both ends.
check_tcp() {
    local from=$1 to=$2 ip=$3 mb=$4 what=$5 port src dst spid rc
    _next_port=$((_next_port + 1))
    port=$_next_port
    TCP_PORTS+=("$port")
    src="$WORK_DIR/tcp-$port.in" dst="$WORK_DIR/tcp-$port.out"
    head -c "$((mb * 1024 * 1024))" /dev/urandom >"$src"
    spawn ip netns exec "$to" timeout 60 socat -u "TCP-LISTEN:$port,bind=$ip,reuseaddr" \
        "OPEN:$dst,creat,trunc" 2>"$dst.err"
    spid=$BG_PID
    wait_for 5 "listener $ip:$port" in_ns "$to" sh -c "ss -Hltn 'sport = :$port' | grep -q ." \
        || fail "$what: the TCP listener on $ip:$port did not start: $(cat "$dst.err")"
    local t0=$EPOCHREALTIME
    if ! in_ns "$from" timeout 60 socat -u "OPEN:$src" "TCP:$ip:$port,connect-timeout=5" 2>"$src.err"; then
        fail "$what: TCP transfer of ${mb} MB to $ip:$port failed: $(cat "$src.err")"
    fi
    wait "$spid" && rc=0 || rc=$?
    [ $rc -eq 0 ] || fail "$what: receiver on $ip:$port exited with $rc: $(cat "$dst.err")"
    local a b
    a=$(sha256sum <"$src" | cut -c1-16)
    b=$(sha256sum <"$dst" | cut -c1-16)
    [ "$a" = "$b" ] || fail "$what: sha256 differs: sent $a ($(stat -c %s "$src") B), received $b ($(stat -c %s "$dst") B)"
    local ms=$(((${EPOCHREALTIME/./} - ${t0/./}) / 1000))
    pass "$what: TCP ${mb} MB to $ip:$port in ${ms} ms, sha256 $a… equal at both ends"
    rm -f "$src" "$dst" "$src.err" "$dst.err"
}

# finish: the last line of a test.
finish() {
    printf '\n%sPASS%s %s (%d checks, run %s)\n' "$C_OK" "$C_OFF" "$(basename "$0")" "$_CHECKS" "$RUN_ID"
}

# print_nodes_stats NODE...: each dataplane's counters; fails if one of them has died.
print_nodes_stats() {
    local n
    for n in "$@"; do
        dataplane_running "$n" || fail "kdp-dataplane $n is no longer running"
        log "  $n:"
        print_stats "$n"
    done
}

# ---------------------------------------------------------------- hosts outside the cluster

# outside_host_create NAME IP: a host outside the cluster on the underlay bridge (netns
# "kdp<id>-NAME", eth0 IP/24): an external client of NodePorts, or a server that pods reach
# through egress masquerade.
outside_host_create() {
    _bridge_host "$1" "$(if_name "x$1")" "$2"
}

# demo_cluster_create: the pods and hosts of config/cluster/demo.yaml on two kdp nodes, tables
# still empty: node1 (a1 10.244.1.10, a2 10.244.1.11), node2 (b1 10.244.2.10), outside hosts
# ext 198.51.100.200 and srv 198.51.100.201. Sets A1 A2 B1 EXT SRV to their namespaces.
demo_cluster_create() {
    underlay_create
    node_uplink 1
    node_uplink 2
    local c1 c2
    c1=$(kdp_node_config node1 1 "$(uplink_if 1)" standard \
        "a1:10.244.1.10:$(if_name a1) a2:10.244.1.11:$(if_name a2)" "")
    c2=$(kdp_node_config node2 2 "$(uplink_if 2)" standard "b1:10.244.2.10:$(if_name b1)" "")
    start_dataplane node1 "$c1"
    start_dataplane node2 "$c2"
    pod_attach 1 a1 10.244.1.10 "$(if_name a1)"
    pod_attach 1 a2 10.244.1.11 "$(if_name a2)"
    pod_attach 2 b1 10.244.2.10 "$(if_name b1)"
    A1=$(ns_name a1) A2=$(ns_name a2) B1=$(ns_name b1)
    outside_host_create ext 198.51.100.200
    outside_host_create srv 198.51.100.201
    EXT=$(ns_name ext) SRV=$(ns_name srv)
}

# ---------------------------------------------------------------- who-am-I servers

# serve_whoami NS NAME PORT [udp]: a server in NS that answers every TCP connection (or UDP
# datagram) on PORT with one line "NAME PEER_IP", the address it saw the client come from.
serve_whoami() {
    local ns=$1 name=$2 port=$3 proto=${4:-tcp} listen
    if [ "$proto" = udp ]; then
        listen="UDP4-RECVFROM:$port,fork,reuseaddr"
    else
        listen="TCP4-LISTEN:$port,fork,reuseaddr"
    fi
    spawn ip netns exec "$ns" socat "$listen" "SYSTEM:echo $name \$SOCAT_PEERADDR" \
        2>>"$WORK_DIR/whoami-$name-$port.err"
    if [ "$proto" = tcp ]; then
        wait_for 5 "$name listening on $port" in_ns "$ns" sh -c "ss -Hltn 'sport = :$port' | grep -q ." \
            || fail "who-am-I server $name on port $port did not start"
    fi
}

# whoami NS IP PORT [udp]: asks a who-am-I server (possibly behind a Service) and prints its
# answer "NAME PEER_IP"; prints socat's error and returns non-zero if there is none.
whoami() {
    local ns=$1 ip=$2 port=$3 proto=${4:-tcp}
    if [ "$proto" = udp ]; then
        echo q | in_ns "$ns" timeout 5 socat -t 3 - "UDP4:$ip:$port" 2>&1
    else
        in_ns "$ns" timeout 5 socat -T 4 -u "TCP4:$ip:$port,connect-timeout=3" - 2>&1
    fi
}

# spread NS IP PORT COUNT [udp]: COUNT who-am-I requests; sets SPREAD to "name:count ..." and
# SEEN to the peer addresses the servers reported (sorted, unique). Fails on any unanswered one.
spread() {
    local ns=$1 ip=$2 port=$3 count=$4 proto=${5:-tcp} i out name peer names=() peers=()
    for ((i = 0; i < count; i++)); do
        out=$(whoami "$ns" "$ip" "$port" "$proto") || fail "request $i to $ip:$port/$proto failed: $out"
        read -r name peer <<<"$out"
        [ -n "${peer:-}" ] || fail "request $i to $ip:$port/$proto: no answer (got '$out')"
        names+=("$name") peers+=("$peer")
    done
    SPREAD=$(printf '%s\n' "${names[@]}" | sort | uniq -c | awk '{printf "%s:%s ", $2, $1}')
    SEEN=$(printf '%s\n' "${peers[@]}" | sort -u | tr '\n' ' ')
    SEEN=${SEEN% }
}
