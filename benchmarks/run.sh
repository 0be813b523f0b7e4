#!/usr/bin/env bash
# Runs the kdp benchmark matrix: for each workload x frame size, the port limit (dpdk-testpmd
# io-forwarding between the two vhost-user sockets), kdp-dataplane (one worker) and Open
# vSwitch with its DPDK datapath (one PMD, the equivalent OpenFlow pipeline) on the same
# sockets and CPUs, one after the other, all driven by kdp-pktgen over virtio_user. Prints a
# table, writes benchmarks/results/latest.json and plots it (results/latest.png). See
# benchmarks/README.md for the topology, the pipelines and the caveats.
set -euo pipefail

usage() {
    cat <<EOF
usage: $0 [options]
  --runs N            runs per cell; the table shows the median and min-max     [5]
  --seconds S         measurement window per run                                 [10]
  --warmup S          traffic before the window (syn: 1)                         [2]
  --workloads "W..."  from: l2 local encap decap service full syn
                                                [l2 local encap decap service full syn]
                      service: pod -> ClusterIP (conntrack hit + DNAT + policy)
                      full: VXLAN from the remote node -> ClusterIP (decap, conntrack,
                      DNAT, ingress policy, forward); syn: the same path, every packet a
                      new TCP connection (64-byte only), as an open-loop rate search per
                      system for the highest rate with at most --max-loss lost
  --sizes "S..."      frame sizes (64, 512, 1500, imix, ...)                     [64 512]
  --systems "S..."    from: testpmd kdp ovs kdp-cni                              [testpmd kdp ovs]
                      ovs: Debian's openvswitch-switch-dpdk (installed if missing),
                      private ovsdb-server + ovs-vswitchd in their own netns; EMC off,
                      SMC off, one backend without a group, conntrack capacity and
                      timeouts equal to kdp's. Variants, each a system of its own:
                      ovs+smc (SMC on), ovs+emc (EMC at OVS's default 1/100),
                      ovs+dp_hash / ovs+hash (a select group, dp_hash or the 5-tuple hash);
                      options combine: ovs+smc+dp_hash
                      kdp-cni: kdp started without pods, the generator's two ports
                      attached by kdp-cni as vhost-user DPDK pods (local workload only)
  --flows N           distinct 5-tuples per run (l2 local encap decap)           [1024]
  --service-flows N   distinct 5-tuples for service and full                     [100000]
  --gen-cpu C         CPU for kdp-pktgen (and the forwarders' idle main lcore)   [0]
  --fwd-cpu C         CPU for the forwarding lcore (testpmd core, kdp worker)    [1]
  --workers "N..."    forwarding cores per system, each count a row of its own: N queue
                      pairs on every port, the generator spreading the flows over them;
                      testpmd --nb-cores N, kdp N workers, OVS one PMD per distinct CPU
                      with n_rxq N                                               [1]
  --fwd-cpus "C..."   CPUs for those cores, worker i on the i-th (cycled: more workers
                      than CPUs share them)                                   [--fwd-cpu]
  --build DIR         meson build directory                                      [<repo>/build]
  --out FILE          JSON results                               [benchmarks/results/latest.json]
  --virtio-args A     virtio_user devargs for the generator's ports: the vring size every
                      system's vhost ports get (the front-end sets it)  [,queue_size=1024]
  --min-cpu-share F   a run whose forwarder or generator thread had its CPU less than F of
                      the window measured the other tenants: kept, but left out of the
                      medians                                                     [0.8]
  --max-loss F        syn: the loss a rate may have and pass                      [0.001]
  --syn-conntrack N   syn: connection table of kdp and OVS; the search stays below
                      N / (warm-up + window) so that nothing fills    [16777216]
  --syn-steps N       syn: bisection runs per system before the confirming runs   [5]
  --quiet-wait S      before each run, wait up to S seconds for a second in which the
                      other tenants left at least one CPU idle (the idle CPUs of the last
                      second before the run are recorded either way, host_idle_cpus) [0]
  --summarize FILE    only recompute the summary and table of an earlier results JSON
  --keep-logs         copy every process log to <out dir>/logs/ (failed runs always are)
  --no-plot           do not write the PNG
Environment: TESTPMD (default dpdk-testpmd).
EOF
}

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
RUNS=5
SECS=10
WARMUP=2
WORKLOADS="l2 local encap decap service full syn"
SIZES="64 512"
SYSTEMS="testpmd kdp ovs"
FLOWS=1024
SERVICE_FLOWS=100000
PLOT=1
GEN_CPU=0
FWD_CPU=1
WORKERS=1
FWD_CPUS=""
BUILD=$ROOT/build
OUT=$HERE/results/latest.json
KEEP_LOGS=0
VIRTIO_ARGS=",queue_size=1024"
SUMMARIZE=""
MIN_CPU_SHARE=0.8
MAX_LOSS=0.001
SYN_CT=16777216
SYN_STEPS=5
WARMUP_SET=0
QUIET_WAIT=0
source "$ROOT/config/as_root.sh"
as_root "$HERE/run.sh" "$@"   # hugepages, vhost-user
while [[ $# -gt 0 ]]; do
    case $1 in
        --runs) RUNS=$2; shift 2 ;;
        --seconds) SECS=$2; shift 2 ;;
        --warmup) WARMUP=$2; WARMUP_SET=1; shift 2 ;;
        --workloads) WORKLOADS=$2; shift 2 ;;
        --sizes) SIZES=$2; shift 2 ;;
        --systems) SYSTEMS=$2; shift 2 ;;
        --flows) FLOWS=$2; shift 2 ;;
        --service-flows) SERVICE_FLOWS=$2; shift 2 ;;
        --no-plot) PLOT=0; shift ;;
        --gen-cpu) GEN_CPU=$2; shift 2 ;;
        --fwd-cpu) FWD_CPU=$2; shift 2 ;;
        --workers) WORKERS=$2; shift 2 ;;
        --fwd-cpus) FWD_CPUS=$2; shift 2 ;;
        --build) BUILD=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --keep-logs) KEEP_LOGS=1; shift ;;
        --virtio-args) VIRTIO_ARGS=$2; shift 2 ;;
        --summarize) SUMMARIZE=$2; shift 2 ;;
        --min-cpu-share) MIN_CPU_SHARE=$2; shift 2 ;;
        --max-loss) MAX_LOSS=$2; shift 2 ;;
        --syn-conntrack) SYN_CT=$2; shift 2 ;;
        --syn-steps) SYN_STEPS=$2; shift 2 ;;
        --quiet-wait) QUIET_WAIT=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

summarize() {  # summarize RAW OUT PARAMS: RAW is a .jsonl of runs or an earlier results JSON
    python3 "$HERE/summarize.py" "$1" "$2" "$ROOT" "$3"
}

if [[ -n $SUMMARIZE ]]; then
    summarize "$SUMMARIZE" "$SUMMARIZE" "{}"
    exit 0
fi

TESTPMD=${TESTPMD:-dpdk-testpmd}
PKTGEN=$BUILD/benchmarks/kdp-pktgen
KDP=$BUILD/dataplane/kdp-dataplane
KDPCTL=$BUILD/control/kdpctl
CNI=$BUILD/cni-shim/kdp-cni
OVS_VSWITCHD=/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk

# Debian packages the harness needs beyond the build's (config/setup.sh): Open vSwitch built
# with DPDK (the third system) and matplotlib (the plot). Installed only when missing, and
# only apt-get update then, like config/setup.sh.
ensure_packages() {
    local want=() missing=() p
    [[ " $SYSTEMS " =~ \ ovs[\ +] ]] && want+=(openvswitch-switch-dpdk)
    [[ $PLOT -eq 1 ]] && want+=(python3-matplotlib)
    for p in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    echo "run.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        </dev/null >/dev/null || { echo "run.sh: apt-get install ${missing[*]} failed" >&2; exit 2; }
    # The package enables the system-wide Open vSwitch; the harness runs its own, privately.
    if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
        systemctl stop openvswitch-switch 2>/dev/null || true
    fi
}
[[ -x $PKTGEN ]] || { echo "run.sh: $PKTGEN not built (ninja -C $BUILD)" >&2; exit 2; }
command -v "$TESTPMD" >/dev/null || { echo "run.sh: $TESTPMD not found" >&2; exit 2; }
ensure_packages
if [[ " $SYSTEMS " =~ \ ovs[\ +] && ! -x $OVS_VSWITCHD ]]; then
    echo "run.sh: $OVS_VSWITCHD missing (openvswitch-switch-dpdk)" >&2
    exit 2
fi
free_pages=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
if [[ ${free_pages:-0} -lt 150 ]]; then
    echo "run.sh: only ${free_pages:-0} free hugepages; need ~150 x 2 MB" \
         "(dpdk-hugepages.py -p 2M --setup 1G)" >&2
    exit 2
fi

# Everything this run creates carries PREFIX: DPDK file prefixes, hugepage files, the temp dir.
PREFIX=kdpb$$
TMP=$(mktemp -d "/tmp/$PREFIX.XXXXXX")
SOCK_A=$TMP/a.sock
SOCK_B=$TMP/b.sock
RAW=$TMP/raw.jsonl
LOGDIR=$(dirname "$OUT")/logs
: > "$RAW"
FWD_PID=""
OVSDB_PID=""
OVS_NS=""

stop_pid() {  # stop_pid PID: SIGINT, then SIGKILL after 10 s
    local pid=$1 i
    kill -INT "$pid" 2>/dev/null || return 0
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    if [[ -n $FWD_PID ]]; then
        stop_pid "$FWD_PID"
    fi
    stop_ovsdb
    rm -f /dev/hugepages/"$PREFIX"-* 2>/dev/null || true
    rm -rf /var/run/dpdk/"$PREFIX"-* 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_sockets() {  # wait_sockets PID SOCK...: until every socket exists, or the PID died
    local pid=$1 i s ok
    shift
    for i in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || return 1
        ok=1
        for s in "$@"; do
            [[ -S $s ]] || ok=0
        done
        [[ $ok -eq 1 ]] && return 0
        sleep 0.1
    done
    return 1
}

# NW, the forwarding cores of the current row; worker i (1-based lcore i) runs on fwd_cpu i.
NW=1
fwd_cpu() {  # fwd_cpu I: the CPU of forwarding lcore I (1..NW), FWD_CPUS cycled
    local cpus=($FWD_CPUS)
    echo "${cpus[$(( ($1 - 1) % ${#cpus[@]} ))]}"
}
fwd_lcores() {  # "1@C1,2@C2,...": the EAL --lcores entries of the NW forwarding lcores
    local i out=""
    for i in $(seq "$NW"); do
        out+="${out:+,}$i@$(fwd_cpu "$i")"
    done
    echo "$out"
}

start_testpmd() {  # start_testpmd TAG
    "$TESTPMD" --file-prefix "$PREFIX-$1" --lcores "0@$GEN_CPU,$(fwd_lcores)" --no-pci \
        --vdev "net_vhost0,iface=$SOCK_A,queues=$NW" \
        --vdev "net_vhost1,iface=$SOCK_B,queues=$NW" \
        -- --forward-mode=io --nb-cores="$NW" --rxq="$NW" --txq="$NW" \
        --total-num-mbufs=$((16384 * NW)) --stats-period 60 \
        </dev/null >"$TMP/$1.log" 2>&1 &
    FWD_PID=$!
}

# kdp-dataplane's node: pod CIDR 10.244.1.0/24 (gateway 10.244.1.1, MAC 0a:58:0a:f4:01:01),
# node 198.51.100.1 with MAC 02:00:00:00:01:01, one remote node 198.51.100.2 / 10.244.2.0/24.
# The generator's port A and B always attach to SOCK_A and SOCK_B; which kdp port sits behind
# each depends on the path: local pod a -> pod b, encap pod a -> uplink, decap uplink -> pod b.
# Ports the path does not use get sockets nobody connects to.
# No control plane runs here, so the node forwards pod traffic before a policy sync
# (network_policy.before_sync: allow); without it every pod packet is policy_not_synced.
write_kdp_config() {  # write_kdp_config WORKLOAD TAG FILE
    local wl=$1 tag=$2 file=$3 pod_a pod_b uplink mtu=1500 extra=""
    case $wl in
        local|service) pod_a=$SOCK_A; pod_b=$SOCK_B; uplink=$TMP/$tag-uplink.sock ;;
        encap) pod_a=$SOCK_A; pod_b=$TMP/$tag-b.sock; uplink=$SOCK_B ;;
        decap|full|syn) pod_a=$TMP/$tag-a.sock; pod_b=$SOCK_B; uplink=$SOCK_A ;;
    esac
    # full and syn carry up to 1518-byte pod frames (IMIX) inside VXLAN: a 1600-byte underlay.
    [[ $wl == full || $wl == syn ]] && mtu=1600
    # syn: every packet is a new connection. The table (--syn-conntrack, 16M entries, ~1.5 GB
    # by default) holds every connection of the run, and half-open ones keep kdp's default
    # timeout (120 s, the kernel's): nothing fills or expires inside the window, so the rate
    # measures the CPU, not the table's turnover. OVS gets the same capacity and timeout.
    # The generator is one source (64,000 ports per address): the per-source share of
    # unreplied connections is lifted, as OVS has none; a share drop would reject the run.
    if [[ $wl == syn ]]; then
        extra="limits: {conntrack: $SYN_CT, conntrack_source_share: 100, mbufs: 32767}"
    fi
    # The plain paths have no control plane: this file's static tables, no policy, are the
    # whole cluster. The Service workloads get theirs (policy included) from kdpctl apply.
    case $wl in
        local|encap|decap) extra+=$'\nnetwork_policy: {before_sync: allow}' ;;
    esac
    cat >"$file" <<EOF
node: {name: bench, ip: 198.51.100.1, mac: "02:00:00:00:01:01", pod_cidr: 10.244.1.0/24, mtu: $mtu}
vxlan: {mode: standard, port: 4789, vni: 1}
dpdk: {file_prefix: $PREFIX-$tag, lcores: "0@$GEN_CPU,$(fwd_lcores)", eal_args: ["--no-pci"]}
workers: {lcores: [$(seq -s, 1 "$NW")], idle: {spin_polls: 1000000}}
uplink: {devargs: "net_vhost1,iface=$uplink,queues=$NW", rx_queues: $NW}
pods:
  - {name: default/a, ip: 10.244.1.10, type: vhostuser, socket: $pod_a, queues: $NW, mac: "02:00:00:00:00:0a"}
  - {name: default/b, ip: 10.244.1.11, type: vhostuser, socket: $pod_b, queues: $NW, mac: "02:00:00:00:00:0b"}
remote_nodes:
  - {name: node2, ip: 198.51.100.2, pod_cidr: 10.244.2.0/24}
api: {socket: $TMP/$tag-api.sock}
$extra
EOF
}

# The cluster the Service workloads need, as a user submits it: this node and the remote one,
# the client pod a (app: client) and the backend pod b (app: web), one ClusterIP Service per
# 50,000 flows (10.96.0.20 port 80 -> 8080, 10.96.0.21:80 -> 8081, ...; UDP and TCP: one
# client address, one backend address, so each Service needs its own target port for the
# reply tuples to stay distinct), and a NetworkPolicy selecting the backend that admits the
# local client and the remote node's pods on those ports. kdpctl compiles it with the real
# compiler and pushes it over gRPC.
write_manifest() {  # write_manifest WORKLOAD FILE
    local wl=$1 file=$2 nvip i
    nvip=$(( (SERVICE_FLOWS + 49999) / 50000 ))
    [[ $wl == service ]] || nvip=1
    cat >"$file" <<EOF
apiVersion: v1
kind: Node
metadata: {name: bench}
spec: {podCIDR: 10.244.1.0/24}
status: {addresses: [{type: InternalIP, address: 198.51.100.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: node2}
spec: {podCIDR: 10.244.2.0/24}
status: {addresses: [{type: InternalIP, address: 198.51.100.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: default, labels: {app: client}}
spec: {nodeName: bench, containers: [{name: c, image: client}]}
status: {phase: Running, podIP: 10.244.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: default, labels: {app: web}}
spec:
  nodeName: bench
  containers: [{name: c, image: web}]
status: {phase: Running, podIP: 10.244.1.11}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-ingress, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
    - from: [{podSelector: {matchLabels: {app: client}}}, {ipBlock: {cidr: 10.244.2.0/24}}]
      ports: [{protocol: UDP, port: 8080, endPort: $((8080 + nvip - 1))}, {protocol: TCP, port: 8080, endPort: $((8080 + nvip - 1))}]
EOF
    for i in $(seq 0 $((nvip - 1))); do
        cat >>"$file" <<EOF
---
apiVersion: v1
kind: Service
metadata: {name: web-$i, namespace: default}
spec:
  clusterIP: 10.96.0.$((20 + i))
  selector: {app: web}
  ports:
    - {name: udp, port: 80, protocol: UDP, targetPort: $((8080 + i))}
    - {name: tcp, port: 80, protocol: TCP, targetPort: $((8080 + i))}
EOF
    done
}

kdp_apply() {  # kdp_apply WORKLOAD TAG: the Service workloads' cluster state, through kdpctl
    local wl=$1 tag=$2 i
    write_manifest "$wl" "$TMP/$tag-cluster.yaml"
    for i in $(seq 300); do  # the API comes up after the ports (and the tables' memory)
        [[ -S $TMP/$tag-api.sock ]] && break
        kill -0 "$FWD_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    "$KDPCTL" --dataplane "$TMP/$tag-api.sock" apply -f "$TMP/$tag-cluster.yaml" --node bench \
        >>"$TMP/$tag.log" 2>&1 || return 1
    "$KDPCTL" --dataplane "$TMP/$tag-api.sock" get services >>"$TMP/$tag.log" 2>&1 || true
}

start_kdp() {  # start_kdp WORKLOAD TAG
    write_kdp_config "$1" "$2" "$TMP/$2.yaml"
    "$KDP" --config "$TMP/$2.yaml" </dev/null >"$TMP/$2.log" 2>&1 &
    FWD_PID=$!
}

# start_kdp_cni TAG: kdp with no pod ports; the generator's ports become two DPDK pods attached
# by kdp-cni (CNI ADD, port_type vhostuser) as the kubelet's runtime would attach them. The
# dataplane is the vhost-user client, so the generator listens (virtio_user server=1) on the
# sockets kdp-cni names; SOCK_A / SOCK_B are set to them. Returns non-zero if an ADD fails.
start_kdp_cni() {
    local tag=$1 pod ip out i
    sed '/^pods:/,/^remote_nodes:/{/^remote_nodes:/!d}' <(write_kdp_config local "$tag" /dev/stdout) \
        >"$TMP/$tag.yaml"
    "$KDP" --config "$TMP/$tag.yaml" </dev/null >"$TMP/$tag.log" 2>&1 &
    FWD_PID=$!
    for i in $(seq 300); do
        [[ -S $TMP/$tag-api.sock ]] && break
        kill -0 "$FWD_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    for pod in a:10.244.1.10 b:10.244.1.11; do
        ip=${pod#*:} pod=${pod%%:*}
        out=$(printf '{"cniVersion":"1.0.0","name":"bench","type":"kdp-cni","port_type":"vhostuser","vhost_queues":%s,"dataplane_socket":"%s","data_dir":"%s","vhost_dir":"%s"}' \
            "$NW" "$TMP/$tag-api.sock" "$TMP/$tag-ipam" "$TMP/$tag-vhost" |
            env -i CNI_COMMAND=ADD CNI_CONTAINERID="bench-$pod" CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni \
                CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=$pod;IP=$ip" "$CNI") || {
            echo "kdp-cni ADD $pod: $out" >>"$TMP/$tag.log"
            return 1
        }
        echo "kdp-cni ADD $pod: $out" >>"$TMP/$tag.log"
    done
    SOCK_A=$TMP/$tag-vhost/bench-a/eth0.sock
    SOCK_B=$TMP/$tag-vhost/bench-b/eth0.sock
}

# ----- Open vSwitch with its DPDK datapath -----------------------------------------------
# A private ovsdb-server and ovs-vswitchd per run: own run directory, database and DPDK
# --file-prefix, main thread on the generator's CPU, one PMD on the forwarding CPU. Both run
# in a network namespace of their own, so that the tunnel bridge's kernel-side interface and
# its address (what OVS's userspace tunnels route by) never touch the host's network. The
# vhost ports are dpdkvhostuserclient: the generator's virtio_user ports are the servers.
# Every name and MAC matches kdp's node (see write_kdp_config) so the generator sends the same
# frames to both.
GW_MAC=0a:58:0a:f4:01:01
POD_B_MAC=02:00:00:00:00:0b
NODE_MAC=02:00:00:00:01:01
REMOTE_MAC=02:00:00:00:02:02

ovs_ctl() {  # ovs_ctl DIR ARGS...: ovs-vsctl on the private database
    ovs-vsctl --db="unix:$1/db.sock" --timeout=20 "${@:2}"
}

stop_ovsdb() {
    if [[ -n $OVSDB_PID ]]; then
        stop_pid "$OVSDB_PID"
        OVSDB_PID=""
    fi
    if [[ -n $OVS_NS ]]; then
        ip netns delete "$OVS_NS" 2>/dev/null || true
        OVS_NS=""
    fi
}

# ovs_flows WORKLOAD DIR: the OpenFlow pipeline doing the job kdp does for the workload.
# br-int: pod ports a (ofport 1), b (2) and, for the overlay paths, vxlan0 (3). br-phy: the
# uplink, for the overlay paths (its LOCAL port is the tunnel endpoint 198.51.100.1).
ovs_flows() {  # ovs_flows WORKLOAD DIR SYSTEM
    local wl=$1 dir=$2 sys=$3 f=$2/br-int.flows g=$2/br-int.groups in=1 nvip i vip proto src
    local commit lb=none
    [[ $sys == *+dp_hash* ]] && lb=dp_hash
    [[ $sys == *+hash* ]] && lb=hash
    : >"$g"
    case $wl in
        l2) echo "in_port=1,actions=output:2" >"$f" ;;
        local) cat >"$f" <<EOF
priority=10,ip,in_port=1,nw_dst=10.244.1.11,actions=mod_dl_src:$GW_MAC,mod_dl_dst:$POD_B_MAC,dec_ttl,output:2
priority=0,actions=drop
EOF
            ;;
        encap) cat >"$f" <<EOF
priority=10,ip,in_port=1,nw_dst=10.244.2.0/24,actions=mod_dl_src:$GW_MAC,mod_dl_dst:$REMOTE_MAC,dec_ttl,output:3
priority=0,actions=drop
EOF
            ;;
        decap) cat >"$f" <<EOF
priority=10,ip,in_port=3,nw_dst=10.244.1.11,actions=mod_dl_src:$GW_MAC,mod_dl_dst:$POD_B_MAC,dec_ttl,output:2
priority=0,actions=drop
EOF
            ;;
        service|full|syn)
            # conntrack + DNAT as OVS users build a Service: every packet through ct(nat) in
            # zone 1; a new connection to a VIP is committed with nat(dst=backend); then the
            # policy table admits only tracked connections to the backend's port from the
            # allowed sources (the NetworkPolicy), and the packet is routed to pod b.
            # Each Service has one backend, so by default there is no group: the commit is
            # in the flow (as OVN writes a one-backend load balancer). ovs+dp_hash puts it
            # in a select group with selection_method=dp_hash (OVS's default since 2.10 and
            # what OVN uses: the datapath hashes, the megaflow does not match the 5-tuple);
            # ovs+hash hashes the 5-tuple fields in ovs-vswitchd, which ovs-ofctl(8) warns
            # makes every connection a megaflow of its own (the pre-issue-28 pipeline).
            [[ $wl == service ]] || in=3
            proto=udp
            [[ $wl == syn ]] && proto=tcp
            nvip=$(( (SERVICE_FLOWS + 49999) / 50000 ))
            [[ $wl == service ]] || nvip=1
            {
                echo "table=0,priority=10,$proto,in_port=$in,actions=ct(table=1,zone=1,nat)"
                echo "table=0,priority=0,actions=drop"
                for i in $(seq 0 $((nvip - 1))); do
                    vip=10.96.0.$((20 + i))
                    commit="ct(commit,zone=1,nat(dst=10.244.1.11:$((8080 + i))),table=2)"
                    case $lb in
                        none) echo "table=1,priority=20,ct_state=+new+trk,$proto,nw_dst=$vip,tp_dst=80,actions=$commit" ;;
                        dp_hash)
                            echo "table=1,priority=20,ct_state=+new+trk,$proto,nw_dst=$vip,tp_dst=80,actions=group:$((20 + i))"
                            echo "group_id=$((20 + i)),type=select,selection_method=dp_hash,bucket=bucket_id=1,weight=100,actions=$commit" >>"$g" ;;
                        hash)
                            echo "table=1,priority=20,ct_state=+new+trk,$proto,nw_dst=$vip,tp_dst=80,actions=group:$((20 + i))"
                            echo "group_id=$((20 + i)),type=select,selection_method=hash,fields(ip_src,ip_dst,udp_src,udp_dst,tcp_src,tcp_dst),bucket=bucket_id=1,weight=100,actions=$commit" >>"$g" ;;
                    esac
                    for src in 10.244.1.10 10.244.2.0/24; do
                        echo "table=2,priority=10,ct_state=+trk,$proto,nw_src=$src,nw_dst=10.244.1.11,tp_dst=$((8080 + i)),actions=mod_dl_src:$GW_MAC,mod_dl_dst:$POD_B_MAC,dec_ttl,output:2"
                    done
                done
                # A packet of a connection already committed with its DNAT: ct(nat) above has
                # rewritten it (an unreplied UDP flow stays +new, hence +dnat, not +est).
                echo "table=1,priority=30,ct_state=+trk+dnat,actions=resubmit(,2)"
                echo "table=1,priority=10,ct_state=-new+trk,actions=resubmit(,2)"
                echo "table=1,priority=15,ct_state=+inv+trk,actions=drop"
                echo "table=1,priority=0,actions=drop"
                echo "table=2,priority=0,actions=drop"
            } >"$f"
            ;;
    esac
}

# The connection capacity kdp has for a workload (write_kdp_config): OVS gets the same.
ct_capacity() {  # ct_capacity WORKLOAD
    if [[ $1 == syn ]]; then echo "$SYN_CT"; else echo 262144; fi
}

# ovs_appctl DIR ARGS...: ovs-appctl on the run's private vswitchd
ovs_appctl() {
    ovs-appctl -t "$1/vswitchd.ctl" "${@:2}"
}

# start_ovs WORKLOAD TAG SYSTEM: sets FWD_PID to ovs-vswitchd; non-zero on failure. SYSTEM is
# ovs with +options (see --systems).
start_ovs() {
    local wl=$1 tag=$2 sys=$3 dir=$TMP/$2-ovs pmd_mask lcore_mask uplink="" i emc=0 smc=false
    # The EMC holds 8,192 flows per PMD and is probed for every packet, recirculations
    # included: with 100,000 flows or a new connection per packet it nearly never hits, and
    # OVS's documentation (ovs-vswitchd.conf.db(5), emc-insert-inv-prob; topics/dpdk/bridge)
    # says to turn its insertion off for traffic with many parallel flows. The SMC (a
    # signature cache of up to 1M entries in front of the megaflow classifier) may help such
    # traffic; it is tried both ways (ovs+smc).
    [[ $sys == *+emc* ]] && emc=100
    [[ $sys == *+smc* ]] && smc=true
    mkdir -p "$dir"
    OVS_NS=$PREFIX-$tag
    ip netns add "$OVS_NS" || return 1
    ip -n "$OVS_NS" link set lo up
    ovsdb-tool create "$dir/conf.db" /usr/share/openvswitch/vswitch.ovsschema || return 1
    taskset -c "$GEN_CPU" ovsdb-server "$dir/conf.db" --remote="punix:$dir/db.sock" \
        --unixctl="$dir/ovsdb.ctl" --pidfile="$dir/ovsdb.pid" --log-file="$dir/ovsdb.log" \
        </dev/null >>"$TMP/$tag.log" 2>&1 &
    OVSDB_PID=$!
    for i in $(seq 100); do
        [[ -S $dir/db.sock ]] && break
        sleep 0.1
    done
    # One PMD per distinct CPU (OVS pins one per core); n_rxq NW queues on each port.
    local c mask=0
    for c in $(seq "$NW"); do
        mask=$(( mask | 1 << $(fwd_cpu "$c") ))
    done
    pmd_mask=$(printf '0x%x' "$mask")
    lcore_mask=$(printf '0x%x' $((1 << GEN_CPU)))
    ovs_ctl "$dir" --no-wait init || return 1
    ovs_ctl "$dir" --no-wait set Open_vSwitch . other_config:dpdk-init=true \
        other_config:dpdk-lcore-mask="$lcore_mask" other_config:pmd-cpu-mask="$pmd_mask" \
        other_config:dpdk-socket-mem=512 other_config:dpdk-socket-limit=512 \
        other_config:dpdk-extra="--file-prefix=$PREFIX-$tag --no-pci --single-file-segments" \
        other_config:emc-insert-inv-prob=$emc other_config:smc-enable=$smc \
        || return 1
    # Conntrack on equal terms: zone 1's timeouts are kdp's defaults (CtTimeouts: TCP SYN sent
    # 120 s as the kernel, established a day, UDP one-way 30 s, replied 120 s), where OVS's
    # userspace defaults differ (e.g. 30 s for a first TCP packet); a zone timeout policy
    # needs the netdev Datapath record (ovs-vsctl(8), add-zone-tp).
    ovs_ctl "$dir" --no-wait -- --id=@m create Datapath datapath_version=0 \
        -- set Open_vSwitch . datapaths:netdev=@m >/dev/null || return 1
    ovs_ctl "$dir" --no-wait add-zone-tp netdev zone=1 tcp_syn_sent=120 tcp_syn_recv=120 \
        tcp_established=86400 tcp_fin_wait=120 tcp_time_wait=120 tcp_close=10 \
        udp_first=30 udp_single=30 udp_multiple=120 icmp_first=30 icmp_reply=30 || return 1
    OVS_RUNDIR=$dir OVS_LOGDIR=$dir taskset -c "$GEN_CPU" ip netns exec "$OVS_NS" \
        "$OVS_VSWITCHD" "unix:$dir/db.sock" --unixctl="$dir/vswitchd.ctl" \
        --pidfile="$dir/vswitchd.pid" --log-file="$dir/vswitchd.log" \
        </dev/null >>"$TMP/$tag.log" 2>&1 &
    FWD_PID=$!
    ovs_ctl "$dir" add-br br-int -- set bridge br-int datapath_type=netdev \
        fail_mode=secure other_config:hwaddr="$GW_MAC" || return 1
    case $wl in
        l2|local|service) ;;
        encap) uplink=$SOCK_B ;;
        decap|full|syn) uplink=$SOCK_A ;;
    esac
    local a_sock=$SOCK_A b_sock=$SOCK_B
    [[ -n $uplink && $uplink == "$SOCK_A" ]] && a_sock=""
    [[ -n $uplink && $uplink == "$SOCK_B" ]] && b_sock=""
    if [[ -n $a_sock ]]; then
        ovs_ctl "$dir" add-port br-int pa -- set Interface pa type=dpdkvhostuserclient \
            options:vhost-server-path="$a_sock" options:n_rxq=$NW mtu_request=1600 ofport_request=1 || return 1
    fi
    if [[ -n $b_sock ]]; then
        ovs_ctl "$dir" add-port br-int pb -- set Interface pb type=dpdkvhostuserclient \
            options:vhost-server-path="$b_sock" options:n_rxq=$NW mtu_request=1600 ofport_request=2 || return 1
    fi
    if [[ -n $uplink ]]; then
        # Userspace VXLAN (OVS "userspace tunneling"): br-phy holds the uplink and the node
        # address; vxlan0 on br-int pushes/pops the headers; the remote VTEP's MAC is what
        # the generator answers ARP with.
        ovs_ctl "$dir" add-br br-phy -- set bridge br-phy datapath_type=netdev \
            other_config:hwaddr="$NODE_MAC" || return 1
        ovs_ctl "$dir" add-port br-phy up0 -- set Interface up0 type=dpdkvhostuserclient \
            options:vhost-server-path="$uplink" options:n_rxq=$NW mtu_request=1600 || return 1
        ovs_ctl "$dir" add-port br-int vxlan0 -- set Interface vxlan0 type=vxlan \
            options:remote_ip=198.51.100.2 options:local_ip=198.51.100.1 options:key=1 \
            options:dst_port=4789 ofport_request=3 || return 1
        ip -n "$OVS_NS" addr add 198.51.100.1/24 dev br-phy || return 1
        ip -n "$OVS_NS" link set br-phy mtu 1600 up || return 1
        ovs-appctl -t "$dir/vswitchd.ctl" tnl/arp/set br-phy 198.51.100.2 "$REMOTE_MAC" \
            >>"$TMP/$tag.log" 2>&1 || return 1
        ovs-appctl -t "$dir/vswitchd.ctl" ovs/route/add 198.51.100.2/32 br-phy \
            >>"$TMP/$tag.log" 2>&1 || true
    fi
    # The connection table as large as kdp's (OVS's default is 3,000,000 in all zones).
    ovs_appctl "$dir" dpctl/ct-set-maxconns "$(ct_capacity "$wl")" >>"$TMP/$tag.log" 2>&1 ||
        return 1
    ovs_flows "$wl" "$dir" "$sys"
    ovs-ofctl -O OpenFlow15 del-flows "unix:$dir/br-int.mgmt" 2>>"$TMP/$tag.log"
    [[ -s $dir/br-int.groups ]] &&
        { ovs-ofctl -O OpenFlow15 add-groups "unix:$dir/br-int.mgmt" "$dir/br-int.groups" \
              >>"$TMP/$tag.log" 2>&1 || return 1; }
    ovs-ofctl -O OpenFlow15 add-flows "unix:$dir/br-int.mgmt" "$dir/br-int.flows" \
        >>"$TMP/$tag.log" 2>&1 || return 1
    {
        ovs-ofctl -O OpenFlow15 dump-flows "unix:$dir/br-int.mgmt"
        ovs-ofctl -O OpenFlow15 dump-groups "unix:$dir/br-int.mgmt"
        ovs_ctl "$dir" show
        ovs_ctl "$dir" list-zone-tp netdev
        ovs_appctl "$dir" dpctl/ct-get-maxconns
        ovs_ctl "$dir" get Open_vSwitch . other_config
        # What OVS will do with the first packet, recorded with the run's logs.
        [[ $wl == service ]] && ovs-appctl -t "$dir/vswitchd.ctl" ofproto/trace br-int \
            "udp,in_port=1,dl_dst=$GW_MAC,nw_src=10.244.1.10,nw_dst=10.96.0.20,nw_ttl=64,udp_src=1024,udp_dst=80" \
            --ct-next "trk,new" --ct-next "trk,new"
    } >>"$TMP/$tag.log" 2>&1
    return 0
}

stop_ovs() {  # stop_ovs TAG: vswitchd (FWD_PID), then the database, the netns, the hugepages
    local dir=$TMP/$1-ovs
    {
        ovs-ofctl -O OpenFlow15 dump-flows "unix:$dir/br-int.mgmt"
        ovs-appctl -t "$dir/vswitchd.ctl" dpctl/ct-stats-show
        ovs-appctl -t "$dir/vswitchd.ctl" dpctl/dump-flows | head -n 40
        ovs-appctl -t "$dir/vswitchd.ctl" dpif-netdev/pmd-stats-show
        ovs-appctl -t "$dir/vswitchd.ctl" coverage/show
        cat "$dir/vswitchd.log"
    } >>"$TMP/$1.log" 2>&1 || true
    if [[ -n $FWD_PID ]]; then
        ovs-appctl -t "$dir/vswitchd.ctl" exit >/dev/null 2>&1 || true
        stop_pid "$FWD_PID"
        FWD_PID=""
    fi
    stop_ovsdb
}

gen_args() {  # gen_args WORKLOAD: the generator's per-path flags (defaults cover the rest)
    case $1 in
        encap) echo "--arp-reply-ip 198.51.100.2 --arp-reply-mac 02:00:00:00:02:02" ;;
        *) echo "" ;;
    esac
}

record_error() {  # record_error SYSTEM WORKLOAD SIZE RUN MESSAGE
    printf '{"system":"%s","workload":"%s","size":"%s","workers":%s,"run":%s,"error":"%s"}\n' \
        "$1" "$2" "$3" "$NW" "$4" "$5" >>"$RAW"
    echo "  $1 $2/$3 run $4: $5" >&2
}

save_logs() {  # save_logs TAG...
    local t
    mkdir -p "$LOGDIR"
    for t in "$@"; do
        [[ -f $TMP/$t.log ]] && cp "$TMP/$t.log" "$LOGDIR/$t.log"
        [[ -f $TMP/$t.yaml ]] && cp "$TMP/$t.yaml" "$LOGDIR/$t.yaml"
    done
    return 0
}

fwd_thread() {  # fwd_thread PID: the task ids of the forwarder's worker lcores (EAL names them)
    local t out=""
    for t in /proc/"$1"/task/*; do
        # EAL names lcore threads "...worker..."; OVS names its PMD threads "pmd-c<cpu>/...".
        if [[ $(cat "$t/comm" 2>/dev/null) == *worker* || $(cat "$t/comm" 2>/dev/null) == pmd* ]]; then
            out+="${out:+,}$(basename "$t")"
        fi
    done
    [[ -n $out ]] && echo "$out"
}

# sched_sample PID TIDS: "<wall ns> <on-cpu ns> <runnable-waiting ns> <ticks>", summed over
# the comma-separated threads (several workers: CPU-seconds of all of them).
sched_sample() {
    local cpu wait ticks tcpu=0 twait=0 tticks=0 t
    for t in ${2//,/ }; do
        cpu=0 wait=0 ticks=0
        read -r cpu wait _ <"/proc/$1/task/$t/schedstat" 2>/dev/null || true
        # utime + stime of the thread (fields 14 and 15 of stat, after the parenthesised name).
        ticks=$(sed -E 's/^.*\) //' "/proc/$1/task/$t/stat" 2>/dev/null | awk '{print $12 + $13}')
        tcpu=$((tcpu + ${cpu:-0})) twait=$((twait + ${wait:-0})) tticks=$((tticks + ${ticks:-0}))
    done
    echo "$(date +%s%N) $tcpu $twait $tticks"
}
CLK_TCK=$(getconf CLK_TCK)

wait_log() {  # wait_log PID FILE TEXT: until FILE holds TEXT (0), or PID has exited (1)
    while ! grep -q "$3" "$2" 2>/dev/null; do
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.01
    done
}

stop_forwarder() {  # stop_forwarder SYSTEM TAG
    if [[ $1 == ovs* ]]; then
        stop_ovs "$2"
    elif [[ -n $FWD_PID ]]; then
        stop_pid "$FWD_PID"
        FWD_PID=""
    fi
}

# ovs_window_stats DIR OUT: what OVS says about the window, as JSON: its PMD statistics
# (cleared at the window's start), the datapath flow count, upcalls, conntrack entries, and
# the coverage counters that mean a full table or a failed upcall.
ovs_window_stats() {
    {
        echo "### pmd-stats-show"
        ovs_appctl "$1" dpif-netdev/pmd-stats-show
        echo "### flows"
        ovs_appctl "$1" dpctl/dump-flows | grep -c . || true
        echo "### nconns"
        ovs_appctl "$1" dpctl/ct-get-nconns
        echo "### maxconns"
        ovs_appctl "$1" dpctl/ct-get-maxconns
        echo "### coverage"
        ovs_appctl "$1" coverage/show
    } >"$2.txt" 2>&1
    python3 - "$2.txt" >"$2" <<'PY' || echo null >"$2"
import json, re, sys
# pmd-stats-show: a section per PMD thread and one for the main thread (which sends the
# packets of non-PMD ports); the PMDs' counts are summed, their averages recomputed below.
sec, out, pmd, cov, in_pmd = None, {}, {}, {}, False
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if line.startswith("### "):
        sec = line[4:]
        continue
    if sec == "pmd-stats-show" and not line.startswith(" "):
        in_pmd = line.startswith("pmd thread")
    elif sec == "pmd-stats-show" and in_pmd and ":" in line:
        k, v = line.split(":", 1)
        m = re.match(r"\s*(-?[0-9.]+)", v)
        if m and not k.strip().startswith("avg"):
            pmd[k.strip()] = pmd.get(k.strip(), 0) + float(m.group(1))
    elif sec in ("flows", "nconns", "maxconns") and line.strip().isdigit():
        out[{"flows": "datapath_flows", "nconns": "ct_conns", "maxconns": "ct_maxconns"}[sec]] = \
            int(line.strip())
    elif sec == "coverage":
        m = re.match(r"(\S+)\s+.*total:\s*(\d+)", line)
        if m and m.group(1) in ("conntrack_full", "conntrack_long_cleanup", "upcall_flow_limit_hit",
                                "datapath_drop_upcall_error", "dpif_netdev_upcall_error"):
            cov[m.group(1)] = int(m.group(2))
rx = pmd.get("packets received", 0)
if rx:
    pmd["avg processing cycles per packet"] = pmd.get("processing cycles", 0) / rx
    pmd["avg datapath passes per packet"] = (rx + pmd.get("packet recirculations", 0)) / rx
    pmd["upcalls per packet"] = (pmd.get("miss with success upcall", 0) +
                                 pmd.get("miss with failed upcall", 0)) / rx
out["pmd"] = pmd
out["coverage"] = cov
print(json.dumps(out))
PY
}

# kdp_drops API OUT: kdp's drop counters by reason, summed over its workers, as JSON.
kdp_drops() {
    "$KDPCTL" --dataplane "$1" stats -o json --interval-ms 1 2>/dev/null | python3 -c '
import collections, json, sys
d = collections.Counter()
for w in json.load(sys.stdin)["workers"]:
    d.update(w.get("drops", {}))
print(json.dumps(dict(d)))' >"$2" 2>/dev/null || echo null >"$2"
}

# host_idle: CPUs idle over the next second (/proc/stat), e.g. 0.35: what the machine's other
# tenants leave to the run that is about to start.
host_idle() {
    local a b
    read -r -a a < /proc/stat
    sleep 1
    read -r -a b < /proc/stat
    awk -v a="${a[*]}" -v b="${b[*]}" -v n="$(nproc)" 'BEGIN {
        split(a, x); split(b, y); t = 0
        for (i = 2; i <= 9; i++) t += y[i] - x[i]
        printf "%.2f\n", (t > 0 ? (y[5] - x[5]) / t * n : 0) }'
}

# one_run SYSTEM WORKLOAD SIZE RUN [RATE]: RATE (Mpps) makes the generator open-loop at RATE.
one_run() {
    local sys=$1 wl=$2 size=$3 run=$4 rate=${5:-} tag gtag line rc load tid s0 s1 fwd_cpu fwd_wait fwd_stat
    local drops0_pid
    local rid=$run
    [[ $PHASE != run ]] && rid=$PHASE$run  # syn: probe1, search2, ..., confirm1, ...
    tag=$sys-$wl-$size-w$NW-$rid
    gtag=gen-$wl-$size-w$NW-$rid-$sys
    SOCK_A=$TMP/a.sock SOCK_B=$TMP/b.sock
    rm -f "$SOCK_A" "$SOCK_B"
    # What the other tenants leave us, measured before this run's processes start.
    local idle waited=0
    idle=$(host_idle)
    while [[ $waited -lt $QUIET_WAIT ]] && awk -v i="$idle" 'BEGIN { exit !(i < 1) }'; do
        idle=$(host_idle)
        waited=$((waited + 1))
    done
    local gen_mode=""
    case $sys in
        testpmd) start_testpmd "$tag" ;;
        kdp) start_kdp "$wl" "$tag" ;;
        ovs*)
            gen_mode=",server=1"
            if ! start_ovs "$wl" "$tag" "$sys"; then
                record_error "$sys" "$wl" "$size" "$run" "Open vSwitch did not start (log: logs/$tag.log)"
                stop_ovs "$tag"
                save_logs "$tag"
                return
            fi
            ;;
        kdp-cni)
            gen_mode=",server=1"
            if ! start_kdp_cni "$tag"; then
                record_error "$sys" "$wl" "$size" "$run" "kdp-cni could not attach the pods (log: logs/$tag.log)"
                stop_pid "$FWD_PID"; FWD_PID=""
                save_logs "$tag"
                return
            fi
            ;;
    esac
    if [[ -z $gen_mode ]] && ! wait_sockets "$FWD_PID" "$SOCK_A" "$SOCK_B"; then
        record_error "$sys" "$wl" "$size" "$run" "forwarder did not create its sockets (log: logs/$tag.log)"
        stop_pid "$FWD_PID"; FWD_PID=""
        save_logs "$tag"
        return
    fi
    if [[ $sys == kdp ]] && [[ $wl == service || $wl == full || $wl == syn ]] &&
        ! kdp_apply "$wl" "$tag"; then
        record_error "$sys" "$wl" "$size" "$run" "kdpctl apply failed (log: logs/$tag.log)"
        stop_pid "$FWD_PID"; FWD_PID=""
        save_logs "$tag"
        return
    fi
    load=$(cut -d' ' -f1 /proc/loadavg)  # other users of the machine: the noise to expect
    local flows=$FLOWS mq="" gen_pid
    # virtio_user turns on more than one queue pair only through its control queue.
    [[ $NW -gt 1 ]] && mq=",cq=1"
    [[ $wl == service || $wl == full ]] && flows=$SERVICE_FLOWS
    local rate_args="" warmup=$WARMUP
    [[ -n $rate ]] && rate_args="--rate-mpps $rate --open-loop"
    # syn: nothing to warm up (every connection is new), and each second of warm-up takes
    # table room the window needs.
    [[ $wl == syn && $WARMUP_SET -eq 0 ]] && warmup=1
    rm -f "$TMP/$tag-drops0.json" "$TMP/$tag-drops1.json" "$TMP/$tag-ovs.json"
    # shellcheck disable=SC2046
    taskset -c "$GEN_CPU" "$PKTGEN" --file-prefix "$PREFIX-$gtag" --lcores "0@$GEN_CPU" \
        --no-pci --single-file-segments \
        --vdev "net_virtio_user0,path=$SOCK_A,queues=$NW$mq$gen_mode$VIRTIO_ARGS" \
        --vdev "net_virtio_user1,path=$SOCK_B,queues=$NW$mq$gen_mode$VIRTIO_ARGS" \
        -- --workload "$wl" --size "$size" --flows "$flows" --queues "$NW" --seconds "$SECS" \
        --warmup "$warmup" $(gen_args "$wl") $rate_args >"$TMP/$gtag.out" 2>"$TMP/$gtag.log" &
    gen_pid=$!
    # How much of the window the forwarder's worker threads had their CPU (below ~0.95 the row
    # measures the machine's other tenants as much as the forwarder), and the CPU time they
    # used in it: sampled at the window's ends, which the generator marks on stderr. Not from
    # the forwarder's start: an idle kdp worker sleeps, testpmd spins, and the start-up would
    # count for one and not the other.
    s0="0 0 0 0" s1="0 0 0 0" tid="" phases_pid="" drops0_pid=""
    LAST_RUN=""
    if wait_log "$gen_pid" "$TMP/$gtag.log" "window start"; then
        tid=$(fwd_thread "$FWD_PID" || true)  # OVS adds its PMDs with the ports: ask now
        [[ -n $tid ]] && s0=$(sched_sample "$FWD_PID" "$tid")
        # OVS: its own statistics over the window alone.
        [[ $sys == ovs* ]] &&
            { ovs_appctl "$TMP/$tag-ovs" dpif-netdev/pmd-stats-clear >>"$TMP/$tag.log" 2>&1 || true; }
        # kdp: its drop counters at the window's start, and where its workers' cycles go
        # over the window, from the loop's own counters.
        if [[ $sys == kdp* ]]; then
            kdp_drops "$TMP/$tag-api.sock" "$TMP/$tag-drops0.json" &
            drops0_pid=$!
            "$KDPCTL" --dataplane "$TMP/$tag-api.sock" stats -o json \
                --interval-ms $((SECS * 1000 - 200)) >"$TMP/$tag-phases.json" \
                2>>"$TMP/$tag.log" &
            phases_pid=$!
        fi
        if wait_log "$gen_pid" "$TMP/$gtag.log" "window end" && [[ -n $tid ]]; then
            s1=$(sched_sample "$FWD_PID" "$tid")
            [[ $sys == ovs* ]] && ovs_window_stats "$TMP/$tag-ovs" "$TMP/$tag-ovs.json"
        fi
    fi
    set +e
    wait "$gen_pid"
    rc=$?
    set -e
    line=$(cat "$TMP/$gtag.out")
    # kdp: what each worker received over the whole run, so that a row with several workers
    # shows they all took part (the generator's queues reach them all).
    local worker_rx=null phases=null
    if [[ -n $phases_pid ]]; then
        wait "$phases_pid" 2>/dev/null &&
            phases=$(python3 -c 'import json, sys
print(json.dumps([{"rx_mpps": w["rx_mpps"], **w["cycles_per_packet"]}
                  for w in json.load(sys.stdin)["workers"] if "cycles_per_packet" in w]))' \
                <"$TMP/$tag-phases.json" 2>>"$TMP/$tag.log") || phases=null
        phases_pid=""
    fi
    local drops=null ovs_stats=null
    if [[ $sys == kdp* ]]; then
        [[ -n $drops0_pid ]] && wait "$drops0_pid" 2>/dev/null  # the window-start snapshot
        kdp_drops "$TMP/$tag-api.sock" "$TMP/$tag-drops1.json"
        # What the window (and the packets in flight at its end) dropped, by reason.
        drops=$(python3 -c 'import json, sys
a, b = (json.load(open(f)) or {} for f in sys.argv[1:3])
print(json.dumps({k: v - a.get(k, 0) for k, v in b.items() if v - a.get(k, 0)}))' \
            "$TMP/$tag-drops0.json" "$TMP/$tag-drops1.json" 2>>"$TMP/$tag.log") || drops=null
        worker_rx=$("$KDPCTL" --dataplane "$TMP/$tag-api.sock" stats -o json --interval-ms 1 \
            2>>"$TMP/$tag.log" | python3 -c 'import json, sys
print(json.dumps([w["rx_packets"] for w in json.load(sys.stdin)["workers"]]))' 2>>"$TMP/$tag.log") ||
            worker_rx=null
    fi
    [[ -s $TMP/$tag-ovs.json ]] && ovs_stats=$(cat "$TMP/$tag-ovs.json")
    read -r fwd_cpu fwd_wait fwd_stat < <(awk -v a="$s0" -v b="$s1" -v hz="$CLK_TCK" 'BEGIN {
        split(a, x); split(b, y); w = y[1] - x[1];
        if (w <= 0 || y[2] == 0 || x[1] == 0) { print "null null null"; exit }
        printf "%.4f %.4f %.4f\n", (y[2] - x[2]) / w, (y[3] - x[3]) / w,
               (y[4] - x[4]) / hz * 1e9 / w }')
    if ! kill -0 "$FWD_PID" 2>/dev/null; then
        wait "$FWD_PID" 2>/dev/null
        record_error "$sys" "$wl" "$size" "$run" "forwarder exited during the run, status $? (log: logs/$tag.log)"
        FWD_PID=""
        stop_forwarder "$sys" "$tag"
        save_logs "$tag" "$gtag"
    elif [[ $rc -ne 0 || $line != \{* ]]; then
        record_error "$sys" "$wl" "$size" "$run" "generator failed, status $rc (log: logs/$gtag.log)"
        stop_forwarder "$sys" "$tag"
        save_logs "$tag" "$gtag"
    elif [[ $line == *'"rx_packets":0,'* ]]; then
        # Forwarding is checked, not assumed: a system that sent nothing back has no figure.
        record_error "$sys" "$wl" "$size" "$run" "nothing came back on port B (log: logs/$tag.log)"
        stop_forwarder "$sys" "$tag"
        save_logs "$tag" "$gtag"
    else
        stop_forwarder "$sys" "$tag"
        printf '{"system":"%s","workload":"%s","size":"%s","workers":%s,"phase":"%s","worker_rx_packets":%s,"worker_phases":%s,"run":%s,"rate_target_mpps":%s,"load1_before":%s,"host_idle_cpus":%s,"fwd_cpu_share":%s,"fwd_wait_share":%s,"fwd_stat_share":%s,"kdp_drops":%s,"ovs":%s,"result":%s}\n' \
            "$sys" "$wl" "$size" "$NW" "$PHASE" "${worker_rx:-null}" "${phases:-null}" "$run" "${rate:-null}" "$load" "$idle" "$fwd_cpu" "$fwd_wait" "$fwd_stat" "${drops:-null}" "${ovs_stats:-null}" "$line" >>"$RAW"
        LAST_RUN=$line
        echo "  $sys $wl/$size run $run: $(sed -E 's/.*"rx_mpps":([0-9.]+).*"loss":([0-9.-]+).*/\1 Mpps, loss \2/' <<<"$line"), forwarder on CPU $fwd_cpu of the time" >&2
        [[ $KEEP_LOGS -eq 1 ]] && save_logs "$tag" "$gtag"
    fi
    rm -f /dev/hugepages/"$PREFIX-$tag"* /dev/hugepages/"$PREFIX-$gtag"* 2>/dev/null || true
    rm -rf /var/run/dpdk/"$PREFIX-$tag" /var/run/dpdk/"$PREFIX-$gtag" 2>/dev/null || true
    return 0
}

PHASE=run  # syn: probe, search or confirm

# run_verdict: whether the last run (LAST_RUN, the generator's JSON line, and the row just
# written) passes the syn search at its rate: "pass", "fail" (loss above --max-loss or a table
# drop) or "late RATE" (no loss above the bound, but the generator lost its CPU and offered
# only RATE, more than 2 % short: a pass at RATE, no verdict on the target).
run_verdict() {  # run_verdict RATE
    [[ -n $LAST_RUN ]] || { echo fail; return; }
    tail -n 1 "$RAW" | python3 -c '
import json, sys
r, rate, max_loss = json.loads(sys.stdin.read()), float(sys.argv[1]), float(sys.argv[2])
res = r["result"]
table = sum((r.get("kdp_drops") or {}).get(k, 0) for k in ("conntrack_full", "conntrack_source_share"))
ovs = r.get("ovs") or {}
table += (ovs.get("coverage") or {}).get("conntrack_full", 0)
if ovs.get("ct_maxconns") and ovs.get("ct_conns", 0) >= ovs["ct_maxconns"]:
    table += 1
if table or res["loss"] > max_loss:
    print("fail")
elif res.get("offered_pps", 0) < rate * 1e6 * 0.98:
    print("late %.4f" % (res.get("offered_pps", 0) / 1e6))
else:
    print("pass")' "$1" "$MAX_LOSS"
}

# syn_search SYSTEM: the highest open-loop rate (Mpps) at which SYSTEM loses at most --max-loss
# of the new connections, by bisection over --syn-steps runs of --seconds each, every run on a
# fresh forwarder (empty tables). The upper end is the lower of the closed-loop (saturated)
# runs' median delivered rate (+10%) and what the tables hold without filling: --syn-conntrack
# over the run's length. Sets SYN_FOUND to the rate ("" if none passed).
syn_search() {
    local sys=$1 hi lo=0 r step n=0 v warm=$WARMUP
    [[ $WARMUP_SET -eq 0 ]] && warm=1
    local cap
    cap=$(awk -v n="$SYN_CT" -v s="$SECS" -v w="$warm" 'BEGIN { printf "%.4f", n / (s + w + 1) / 1e6 }')
    hi=$(python3 -c 'import json, statistics, sys
rx = [r["result"]["rx_mpps"] for r in map(json.loads, open(sys.argv[1]))
      if r.get("system") == sys.argv[2] and r.get("phase") == "saturated" and "result" in r]
print(statistics.median(rx) * 1.1 if rx else 0)' "$RAW" "$sys")
    hi=$(awk -v a="$hi" -v b="$cap" 'BEGIN { printf "%.4f", (a > 0 && a < b) ? a : b }')
    PHASE=search
    r=$(awk -v h="$hi" 'BEGIN { printf "%.4f", h * 0.9 }')
    for step in $(seq "$SYN_STEPS"); do
        one_run "$sys" syn 64 $((n += 1)) "$r"
        v=$(run_verdict "$r")
        echo "  $sys syn search $step: $r Mpps -> $v" >&2
        case $v in
            pass) lo=$r ;;
            fail) hi=$r ;;
            late*) lo=$(awk -v l="$lo" -v o="${v#late }" 'BEGIN { print (o > l) ? o : l }') ;;
        esac
        r=$(awk -v l="$lo" -v h="$hi" 'BEGIN { printf "%.4f", (l + h) / 2 }')
    done
    PHASE=run
    SYN_FOUND=""
    [[ $lo != 0 ]] && SYN_FOUND=$lo
    return 0
}

FWD_CPUS=${FWD_CPUS:-$FWD_CPU}
for NW in $WORKERS; do
    [[ $NW =~ ^[1-9][0-9]?$ && $NW -le 16 ]] ||
        { echo "run.sh: --workers: '$NW' is not a count from 1 to 16" >&2; exit 2; }
done
for c in $FWD_CPUS $GEN_CPU; do
    [[ -d /sys/devices/system/cpu/cpu$c ]] ||
        { echo "run.sh: CPU '$c' (--gen-cpu/--fwd-cpu/--fwd-cpus) does not exist" >&2; exit 2; }
done
echo "kdp benchmarks: $RUNS runs x ${SECS}s (warm-up ${WARMUP}s), generator on CPU $GEN_CPU," \
     "forwarding cores on CPUs $FWD_CPUS, workers: $WORKERS" >&2
# Runs of the systems alternate (testpmd, kdp, testpmd, kdp, ...) so that a burst of load from
# other users of the machine hits both sides of a ratio rather than one system's whole cell.
for wl in $WORKLOADS; do
    for size in $SIZES; do
        if [[ $wl == syn && $size != 64 ]]; then
            continue  # a SYN is a 54-byte frame; larger sizes would only add padding
        fi
        systems=""
        for sys in $SYSTEMS; do
            if [[ $sys == kdp* && $wl == l2 ]]; then
                continue  # kdp routes at L3: plain L2 frames to a pod MAC are not its job
            fi
            if [[ $sys == kdp-cni && $wl != local ]]; then
                continue  # the pods are the generator's two ports: pod to pod on one node
            fi
            if [[ $sys == kdp-cni && ! -x $CNI ]]; then
                record_error kdp-cni "$wl" "$size" 0 "$CNI not built"
                continue
            fi
            if [[ $sys == kdp* && ! -x $KDP ]]; then
                record_error kdp "$wl" "$size" 0 "$KDP not built"
                continue
            fi
            systems+=" $sys"
        done
        for NW in $WORKERS; do
            if [[ $wl == syn ]]; then
                # New connections. First --runs closed-loop runs per system, alternating
                # (testpmd's are the port limit): the saturated rate, cycles per connection and
                # drops by reason with the forwarder always busy. Then each system's open-loop
                # rate found by its own search, and --runs confirming runs at that rate,
                # alternating between systems.
                PHASE=saturated
                for run in $(seq "$RUNS"); do
                    for sys in $systems; do
                        one_run "$sys" syn 64 "$run"
                    done
                done
                declare -A SYN_RATE=()
                for sys in $systems; do
                    [[ $sys == testpmd ]] && continue
                    syn_search "$sys"
                    SYN_RATE[$sys]=$SYN_FOUND
                    [[ -n ${SYN_RATE[$sys]} ]] ||
                        echo "  $sys syn: no rate passed the search" >&2
                done
                PHASE=confirm
                for run in $(seq "$RUNS"); do
                    for sys in $systems; do
                        if [[ -n ${SYN_RATE[$sys]:-} ]]; then
                            one_run "$sys" syn 64 "$run" "${SYN_RATE[$sys]}"
                        fi
                    done
                done
                PHASE=run
                continue
            fi
            for run in $(seq "$RUNS"); do
                for sys in $systems; do
                    one_run "$sys" "$wl" "$size" "$run"
                done
            done
        done
    done
done
NW=1

mkdir -p "$(dirname "$OUT")"
PARAMS=$(printf '{"runs":%s,"seconds":%s,"warmup":%s,"max_loss":%s,"min_cpu_share":%s,"syn_conntrack":%s,"syn_steps":%s,"flows":%s,"service_flows":%s,"gen_cpu":%s,"fwd_cpu":%s,"workers":"%s","fwd_cpus":"%s","virtio_args":"%s","dpdk":"%s","ovs":"%s","workloads":"%s","sizes":"%s","systems":"%s"}' \
    "$RUNS" "$SECS" "$WARMUP" "$MAX_LOSS" "$MIN_CPU_SHARE" "$SYN_CT" "$SYN_STEPS" "$FLOWS" "$SERVICE_FLOWS" "$GEN_CPU" "$FWD_CPU" "$WORKERS" \
    "$FWD_CPUS" "$VIRTIO_ARGS" \
    "$(pkg-config --modversion libdpdk 2>/dev/null || true)" \
    "$(ovs-vsctl --version 2>/dev/null | head -n 1 | grep -o '[0-9][0-9.]*$' || true)" \
    "$WORKLOADS" "$SIZES" "$SYSTEMS")
# The runs themselves, before anything can go wrong with the summary: next to the results.
cp "$RAW" "${OUT%.json}.runs.jsonl"
summarize "$RAW" "$OUT" "$PARAMS"
if [[ $PLOT -eq 1 ]]; then
    # Debian's matplotlib is in /usr/bin/python3's path (another python3 may come first).
    /usr/bin/python3 "$HERE/plot.py" "$OUT" "${OUT%.json}.png" || echo "run.sh: plot failed" >&2
fi
