#!/usr/bin/env bash
# Runs the kdp benchmark matrix: for each workload x frame size, the port limit (dpdk-testpmd
# io-forwarding between the two vhost-user sockets) and kdp-dataplane (one worker) on the same
# sockets, both driven by kdp-pktgen over virtio_user. Prints a table and writes
# benchmarks/results/latest.json. See benchmarks/README.md for the topology and caveats.
set -euo pipefail

usage() {
    cat <<EOF
usage: $0 [options]
  --runs N            runs per cell; the table shows the median and min-max     [3]
  --seconds S         measurement window per run                                 [10]
  --warmup S          traffic before the window                                  [2]
  --workloads "W..."  from: l2 local encap decap                                 [l2 local encap decap]
  --sizes "S..."      frame sizes (64, 512, 1500, imix, ...)                     [64 512]
  --systems "S..."    from: testpmd kdp kdp-cni                                  [testpmd kdp]
                      kdp-cni: kdp started without pods, the generator's two ports
                      attached by kdp-cni as vhost-user DPDK pods (local workload only)
  --flows N           distinct 5-tuples per run                                  [1024]
  --gen-cpu C         CPU for kdp-pktgen (and the forwarders' idle main lcore)   [0]
  --fwd-cpu C         CPU for the forwarding lcore (testpmd core, kdp worker)    [1]
  --build DIR         meson build directory                                      [<repo>/build]
  --out FILE          JSON results                               [benchmarks/results/latest.json]
  --virtio-args A     extra virtio_user devargs for the generator, e.g. ",queue_size=1024"  []
  --summarize FILE    only recompute the summary and table of an earlier results JSON
  --keep-logs         copy every process log to <out dir>/logs/ (failed runs always are)
Environment: TESTPMD (default dpdk-testpmd).
EOF
}

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
RUNS=3
SECS=10
WARMUP=2
WORKLOADS="l2 local encap decap"
SIZES="64 512"
SYSTEMS="testpmd kdp"
FLOWS=1024
GEN_CPU=0
FWD_CPU=1
BUILD=$ROOT/build
OUT=$HERE/results/latest.json
KEEP_LOGS=0
VIRTIO_ARGS=""
SUMMARIZE=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --runs) RUNS=$2; shift 2 ;;
        --seconds) SECS=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --workloads) WORKLOADS=$2; shift 2 ;;
        --sizes) SIZES=$2; shift 2 ;;
        --systems) SYSTEMS=$2; shift 2 ;;
        --flows) FLOWS=$2; shift 2 ;;
        --gen-cpu) GEN_CPU=$2; shift 2 ;;
        --fwd-cpu) FWD_CPU=$2; shift 2 ;;
        --build) BUILD=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --keep-logs) KEEP_LOGS=1; shift ;;
        --virtio-args) VIRTIO_ARGS=$2; shift 2 ;;
        --summarize) SUMMARIZE=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

summarize() {  # summarize RAW OUT PARAMS: RAW is a .jsonl of runs or an earlier results JSON
    python3 - "$1" "$2" "$ROOT" "$3" <<'EOF'
import json, os, platform, statistics, subprocess, sys, time

raw, out, root, params = sys.argv[1:5]
prev = None
if raw.endswith(".json"):
    prev = json.load(open(raw))
    rows = prev["runs"]
else:
    rows = [json.loads(l) for l in open(raw) if l.strip()]

def git(*args):
    try:
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return None

cells = {}
order = []
for r in rows:
    key = (r["workload"], r["size"], r["system"])
    if key not in cells:
        cells[key] = {"runs": [], "errors": [], "fwd_cpu": [], "per_cpu": []}
        order.append(key)
    if "result" in r:
        cells[key]["runs"].append(r["result"])
        if r.get("fwd_cpu_share") is not None:
            cells[key]["fwd_cpu"].append(r["fwd_cpu_share"])
            if r["fwd_cpu_share"] > 0:
                cells[key]["per_cpu"].append(r["result"]["rx_mpps"] / r["fwd_cpu_share"])
    else:
        cells[key]["errors"].append(r["error"])

summary = []
limit = {}
for key in order:
    wl, size, sysname = key
    c = cells[key]
    mpps = [x["rx_mpps"] for x in c["runs"]]
    ent = {"workload": wl, "size": size, "system": sysname, "runs": len(mpps),
           "errors": sorted(set(c["errors"]))}
    if mpps:
        ent.update({
            "rx_mpps_median": statistics.median(mpps), "rx_mpps_min": min(mpps),
            "rx_mpps_max": max(mpps),
            "tx_mpps_median": statistics.median(x["tx_mpps"] for x in c["runs"]),
            "loss_median": statistics.median(x["loss"] for x in c["runs"]),
            "gen_busy_median": statistics.median(
                max(l["busy_ratio"] for l in x["lcores"]) for x in c["runs"]),
            "gen_cpu_share_median": statistics.median(
                x.get("main_cpu_share", float("nan")) for x in c["runs"]),
            "fwd_cpu_share_median": (statistics.median(c["fwd_cpu"]) if c["fwd_cpu"]
                                     else None),
            # Mpps per second the forwarder's thread was on its CPU: a rough estimate of what
            # a dedicated core would give, when other tenants took part of it.
            "rx_mpps_per_fwd_cpu_median": (statistics.median(c["per_cpu"]) if c["per_cpu"]
                                           else None),
        })
        if sysname == "testpmd":
            limit[(wl, size)] = ent["rx_mpps_median"]
    summary.append(ent)
# Runs alternate between systems, so run i of kdp and run i of testpmd saw nearly the same
# machine; the median of those paired ratios resists bursts of foreign load better than the
# ratio of the two medians.
by_run = {}
for r in rows:
    if "result" in r:
        by_run[(r["workload"], r["size"], r["system"], r["run"])] = r["result"]["rx_mpps"]
for ent in summary:
    lim = limit.get((ent["workload"], ent["size"]))
    ent["ratio_to_port_limit"] = (ent["rx_mpps_median"] / lim
                                  if lim and "rx_mpps_median" in ent else None)
    pairs = []
    for (wl, size, sysname, run), mpps in by_run.items():
        if (wl, size, sysname) == (ent["workload"], ent["size"], ent["system"]):
            base = by_run.get((wl, size, "testpmd", run))
            if base:
                pairs.append(mpps / base)
    ent["paired_ratio_median"] = statistics.median(pairs) if pairs else None

cpu = ""
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
               if l.startswith("model name"))
except Exception:
    pass
doc = {
    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "git_commit": git("rev-parse", "HEAD"),
    "git_dirty": bool(git("status", "--porcelain")),
    "host": {"cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(),
             "loadavg_at_end": os.getloadavg()},
    "params": json.loads(params),
    "summary": summary,
    "runs": rows,
}
if prev is not None:  # re-summarizing: the run's own date, commit, host and parameters stay
    for k in ("date", "git_commit", "git_dirty", "host", "params"):
        doc[k] = prev.get(k)
with open(out, "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")

hdr = f"{'workload':<9}{'size':>6}  {'system':<8}{'Mpps':>8}  {'min-max':<15}{'loss':>8}" \
      f"{'gen busy':>10}{'gen cpu':>9}{'fwd cpu':>9}{'Mpps/cpu':>10}{'vs limit':>10}{'paired':>8}"
print(hdr)
print("-" * len(hdr))
for e in summary:
    if "rx_mpps_median" in e:
        mm = f"{e['rx_mpps_min']:.2f}-{e['rx_mpps_max']:.2f}"
        ratio = f"{e['ratio_to_port_limit']:.2f}" if e["ratio_to_port_limit"] is not None else "-"
        note = f"  ({len(e['errors'])} failed run(s))" if e["errors"] else ""
        pct = lambda v: f"{v * 100:.0f}%" if v is not None and v == v else "-"
        num = lambda v: f"{v:.2f}" if v is not None else "-"
        paired = (f"{e['paired_ratio_median']:.2f}"
                  if e["paired_ratio_median"] is not None else "-")
        print(f"{e['workload']:<9}{e['size']:>6}  {e['system']:<8}{e['rx_mpps_median']:>8.2f}  "
              f"{mm:<15}{e['loss_median'] * 100:>7.2f}%{e['gen_busy_median'] * 100:>9.0f}%"
              f"{pct(e.get('gen_cpu_share_median')):>9}{pct(e.get('fwd_cpu_share_median')):>9}"
              f"{num(e.get('rx_mpps_per_fwd_cpu_median')):>10}"
              f"{ratio:>10}{paired:>8}{note}")
    else:
        print(f"{e['workload']:<9}{e['size']:>6}  {e['system']:<8}{'-':>8}  "
              f"not measured: {'; '.join(e['errors'])}")
print(f"\n{len(rows)} runs; median of runs per cell; JSON: {out}")
EOF
}

if [[ -n $SUMMARIZE ]]; then
    summarize "$SUMMARIZE" "$SUMMARIZE" "{}"
    exit 0
fi

TESTPMD=${TESTPMD:-dpdk-testpmd}
PKTGEN=$BUILD/benchmarks/kdp-pktgen
KDP=$BUILD/dataplane/kdp-dataplane
CNI=$BUILD/cni-shim/kdp-cni
[[ -x $PKTGEN ]] || { echo "run.sh: $PKTGEN not built (ninja -C $BUILD)" >&2; exit 2; }
command -v "$TESTPMD" >/dev/null || { echo "run.sh: $TESTPMD not found" >&2; exit 2; }
[[ $EUID -eq 0 ]] || { echo "run.sh: needs root (hugepages, vhost-user)" >&2; exit 2; }
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

start_testpmd() {  # start_testpmd TAG
    "$TESTPMD" --file-prefix "$PREFIX-$1" --lcores "0@$GEN_CPU,1@$FWD_CPU" --no-pci \
        --vdev "net_vhost0,iface=$SOCK_A,queues=1" --vdev "net_vhost1,iface=$SOCK_B,queues=1" \
        -- --forward-mode=io --nb-cores=1 --total-num-mbufs=16384 --stats-period 60 \
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
    local wl=$1 tag=$2 file=$3 pod_a pod_b uplink
    case $wl in
        local) pod_a=$SOCK_A; pod_b=$SOCK_B; uplink=$TMP/$tag-uplink.sock ;;
        encap) pod_a=$SOCK_A; pod_b=$TMP/$tag-b.sock; uplink=$SOCK_B ;;
        decap) pod_a=$TMP/$tag-a.sock; pod_b=$SOCK_B; uplink=$SOCK_A ;;
    esac
    cat >"$file" <<EOF
node: {name: bench, ip: 198.51.100.1, mac: "02:00:00:00:01:01", pod_cidr: 10.244.1.0/24, mtu: 1500}
vxlan: {mode: standard, port: 4789, vni: 1}
dpdk: {file_prefix: $PREFIX-$tag, lcores: "0@$GEN_CPU,1@$FWD_CPU", eal_args: ["--no-pci"]}
workers: {lcores: [1], idle: {spin_polls: 1000000}}
uplink: {devargs: "net_vhost1,iface=$uplink,queues=1"}
pods:
  - {name: default/a, ip: 10.244.1.10, type: vhostuser, socket: $pod_a, mac: "02:00:00:00:00:0a"}
  - {name: default/b, ip: 10.244.1.11, type: vhostuser, socket: $pod_b, mac: "02:00:00:00:00:0b"}
remote_nodes:
  - {name: node2, ip: 198.51.100.2, pod_cidr: 10.244.2.0/24}
api: {socket: $TMP/$tag-api.sock}
network_policy: {before_sync: allow}
EOF
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
        out=$(printf '{"cniVersion":"1.0.0","name":"bench","type":"kdp-cni","port_type":"vhostuser","dataplane_socket":"%s","data_dir":"%s","vhost_dir":"%s"}' \
            "$TMP/$tag-api.sock" "$TMP/$tag-ipam" "$TMP/$tag-vhost" |
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

gen_args() {  # gen_args WORKLOAD: the generator's per-path flags (defaults cover the rest)
    case $1 in
        encap) echo "--arp-reply-ip 198.51.100.2 --arp-reply-mac 02:00:00:00:02:02" ;;
        *) echo "" ;;
    esac
}

record_error() {  # record_error SYSTEM WORKLOAD SIZE RUN MESSAGE
    printf '{"system":"%s","workload":"%s","size":"%s","run":%s,"error":"%s"}\n' \
        "$1" "$2" "$3" "$4" "$5" >>"$RAW"
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

fwd_thread() {  # fwd_thread PID: the task id of the forwarder's worker lcore (EAL names it)
    local t
    for t in /proc/"$1"/task/*; do
        if [[ $(cat "$t/comm" 2>/dev/null) == *worker* ]]; then
            basename "$t"
            return 0
        fi
    done
    return 1
}

sched_sample() {  # sched_sample PID TID: "<wall ns> <on-cpu ns> <runnable-waiting ns>"
    local cpu=0 wait=0
    read -r cpu wait _ <"/proc/$1/task/$2/schedstat" 2>/dev/null || true
    echo "$(date +%s%N) ${cpu:-0} ${wait:-0}"
}

one_run() {  # one_run SYSTEM WORKLOAD SIZE RUN
    local sys=$1 wl=$2 size=$3 run=$4 tag gtag line rc load tid s0 s1 fwd_cpu fwd_wait
    tag=$sys-$wl-$size-$run
    gtag=gen-$wl-$size-$run-$sys
    SOCK_A=$TMP/a.sock SOCK_B=$TMP/b.sock
    rm -f "$SOCK_A" "$SOCK_B"
    local gen_mode=""
    case $sys in
        testpmd) start_testpmd "$tag" ;;
        kdp) start_kdp "$wl" "$tag" ;;
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
    load=$(cut -d' ' -f1 /proc/loadavg)  # other users of the machine: the noise to expect
    # How much of the run the forwarder's worker thread actually had its CPU: below ~0.95 the
    # row measures the machine's other tenants as much as the forwarder.
    tid=$(fwd_thread "$FWD_PID" || true)
    s0=$( [[ -n $tid ]] && sched_sample "$FWD_PID" "$tid" || echo "0 0 0")
    # shellcheck disable=SC2046
    set +e
    line=$(taskset -c "$GEN_CPU" "$PKTGEN" --file-prefix "$PREFIX-$gtag" --lcores "0@$GEN_CPU" \
        --no-pci --single-file-segments \
        --vdev "net_virtio_user0,path=$SOCK_A,queues=1$gen_mode$VIRTIO_ARGS" \
        --vdev "net_virtio_user1,path=$SOCK_B,queues=1$gen_mode$VIRTIO_ARGS" \
        -- --workload "$wl" --size "$size" --flows "$FLOWS" --seconds "$SECS" \
        --warmup "$WARMUP" $(gen_args "$wl") 2>"$TMP/$gtag.log")
    rc=$?
    set -e
    s1=$( [[ -n $tid ]] && sched_sample "$FWD_PID" "$tid" || echo "0 0 0")
    read -r fwd_cpu fwd_wait < <(awk -v a="$s0" -v b="$s1" 'BEGIN {
        split(a, x); split(b, y); w = y[1] - x[1];
        if (w <= 0 || x[2] == 0) { print "null null"; exit }
        printf "%.4f %.4f\n", (y[2] - x[2]) / w, (y[3] - x[3]) / w }')
    if ! kill -0 "$FWD_PID" 2>/dev/null; then
        wait "$FWD_PID" 2>/dev/null
        record_error "$sys" "$wl" "$size" "$run" "forwarder exited during the run, status $? (log: logs/$tag.log)"
        FWD_PID=""
        save_logs "$tag" "$gtag"
    elif [[ $rc -ne 0 || $line != \{* ]]; then
        record_error "$sys" "$wl" "$size" "$run" "generator failed, status $rc (log: logs/$gtag.log)"
        stop_pid "$FWD_PID"; FWD_PID=""
        save_logs "$tag" "$gtag"
    else
        stop_pid "$FWD_PID"; FWD_PID=""
        printf '{"system":"%s","workload":"%s","size":"%s","run":%s,"load1_before":%s,"fwd_cpu_share":%s,"fwd_wait_share":%s,"result":%s}\n' \
            "$sys" "$wl" "$size" "$run" "$load" "$fwd_cpu" "$fwd_wait" "$line" >>"$RAW"
        echo "  $sys $wl/$size run $run: $(sed -E 's/.*"rx_mpps":([0-9.]+).*"loss":([0-9.-]+).*/\1 Mpps, loss \2/' <<<"$line"), forwarder on CPU $fwd_cpu of the time" >&2
        [[ $KEEP_LOGS -eq 1 ]] && save_logs "$tag" "$gtag"
    fi
    rm -f /dev/hugepages/"$PREFIX-$tag"* /dev/hugepages/"$PREFIX-$gtag"* 2>/dev/null || true
    rm -rf /var/run/dpdk/"$PREFIX-$tag" /var/run/dpdk/"$PREFIX-$gtag" 2>/dev/null || true
    return 0
}

echo "kdp benchmarks: $RUNS runs x ${SECS}s (warm-up ${WARMUP}s), generator on CPU $GEN_CPU," \
     "forwarder on CPU $FWD_CPU" >&2
# Runs of the systems alternate (testpmd, kdp, testpmd, kdp, ...) so that a burst of load from
# other users of the machine hits both sides of a ratio rather than one system's whole cell.
for wl in $WORKLOADS; do
    for size in $SIZES; do
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
        for run in $(seq "$RUNS"); do
            for sys in $systems; do
                one_run "$sys" "$wl" "$size" "$run"
            done
        done
    done
done

mkdir -p "$(dirname "$OUT")"
PARAMS=$(printf '{"runs":%s,"seconds":%s,"warmup":%s,"flows":%s,"gen_cpu":%s,"fwd_cpu":%s,"virtio_args":"%s","dpdk":"%s"}' \
    "$RUNS" "$SECS" "$WARMUP" "$FLOWS" "$GEN_CPU" "$FWD_CPU" "$VIRTIO_ARGS" "$(pkg-config --modversion libdpdk 2>/dev/null || true)")
summarize "$RAW" "$OUT" "$PARAMS"
