#!/usr/bin/env python3
"""Summarizes benchmarks/run.sh runs: medians and spreads per cell, the rules that reject a
cell, and the `syn` rate search; prints the tables and writes the results JSON.

    summarize.py RAW OUT ROOT PARAMS_JSON   RAW: a .jsonl of runs, or an earlier results JSON
                                            (then its date, commit, host and params stay)

Rules (benchmarks/README.md, "Rules"):
  - a cell's figures are medians over its runs, with min-max; runs alternate between systems;
  - port-bound: a system's median at or above 0.9 x the port limit's (testpmd's) median for
    the same cell measures the port, not the system: rejected;
  - generator-bound: the generator's loop busy in >= 95 % of its iterations (closed loop), or
    open-loop runs that offered (median) more than 2 % less than their target rate (the
    generator lost its CPU): rejected;
  - contended: the forwarder's (or the generator's) thread had its CPU for less than
    min_cpu_share of the window in the median run: flagged; its cycles per packet (CPU time,
    not wall time) are still comparable, its Mpps are not;
  - syn: a run with a connection-table drop (kdp conntrack_full, OVS conntrack_full or a table
    at its maximum) is rejected: it measured the table, not the CPU.
"""
import json
import os
import platform
import statistics
import subprocess
import sys
import time

PORT_BOUND = 0.9
GEN_BUSY = 0.95
GEN_SHORT = 0.02
TABLE_DROPS = ("conntrack_full", "conntrack_source_share")


def git(root, *args):
    try:
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def cycles(r, per):
    """CPU cycles of the forwarder's threads per packet: `per` = rx (delivered) or tx (taken
    in by the forwarder: what the generator got into its ring)."""
    busy = r.get("fwd_stat_share")
    pps = r["result"]["rx_pps" if per == "rx" else "tx_pps"]
    if busy is None or not pps:
        return None
    return busy * r["result"]["tsc_hz"] / pps


def table_drops(r):
    """Connection-table drops of a run: kdp's by reason, OVS's coverage counter or a table
    at its maximum."""
    n = sum((r.get("kdp_drops") or {}).get(k, 0) for k in TABLE_DROPS)
    ovs = r.get("ovs") or {}
    n += (ovs.get("coverage") or {}).get("conntrack_full", 0)
    if ovs.get("ct_maxconns") and ovs.get("ct_conns", 0) >= ovs["ct_maxconns"]:
        n += 1
    return n


def share(pmd, key):
    """pmd-stats-show's `key` hits over every datapath pass (packets + recirculations)."""
    passes = pmd.get("packets received", 0) + pmd.get("packet recirculations", 0)
    return pmd.get(key, 0) / passes if passes else None


def is_ovs(name):
    return name == "ovs" or name.startswith("ovs+")


def cell_entry(key, runs, params):
    wl, size, sysname, nw = key
    res = [r["result"] for r in runs]
    mpps = [x["rx_mpps"] for x in res]
    ent = {"workload": wl, "size": size, "system": sysname, "workers": nw, "runs": len(runs)}
    if not mpps:
        return ent
    ent.update({
        "rx_mpps_median": statistics.median(mpps), "rx_mpps_min": min(mpps),
        "rx_mpps_max": max(mpps),
        "tx_mpps_median": statistics.median(x["tx_mpps"] for x in res),
        "loss_median": statistics.median(x["loss"] for x in res),
        "loss_max": max(x["loss"] for x in res),
        "gen_busy_median": statistics.median(
            max(lc["busy_ratio"] for lc in x["lcores"]) for x in res),
        "gen_cpu_share_median": med(x.get("main_cpu_share") for x in res),
        "fwd_cpu_share_median": med(r.get("fwd_cpu_share") for r in runs),
        # Mpps per second the forwarder's thread was on its CPU: a rough estimate of what a
        # dedicated core would give, when other tenants took part of it.
        "rx_mpps_per_fwd_cpu_median": med(
            r["result"]["rx_mpps"] / r["fwd_cpu_share"] for r in runs
            if r.get("fwd_cpu_share")),
        # Cycles on the forwarding core per packet delivered (rx on B) and per packet
        # received by the forwarder (what the generator got into its ring).
        "cycles_per_packet_median": med(cycles(r, "rx") for r in runs),
        "cycles_per_packet_min": min((c for c in (cycles(r, "rx") for r in runs)
                                      if c is not None), default=None),
        "cycles_per_packet_max": max((c for c in (cycles(r, "rx") for r in runs)
                                      if c is not None), default=None),
        "cycles_per_received_median": med(cycles(r, "tx") for r in runs),
        "load1_before": [r.get("load1_before") for r in runs],
        # CPUs the other tenants left idle in the second before each run started.
        "host_idle_cpus": [r.get("host_idle_cpus") for r in runs],
    })
    phases = []
    for r in runs:
        ws = [w for w in (r.get("worker_phases") or []) if w.get("rx_mpps", 0) > 0]
        if ws:
            tot = sum(w["rx_mpps"] for w in ws)
            phases.append({k: sum(w[k] * w["rx_mpps"] for w in ws) / tot
                           for k in ws[0] if k != "rx_mpps"})
    if phases:
        ent["phase_cycles_per_packet_median"] = {
            k: statistics.median(p[k] for p in phases) for k in phases[0]}
    drops = {}
    for r in runs:
        for k, v in (r.get("kdp_drops") or {}).items():
            drops[k] = drops.get(k, 0) + v
    if any(r.get("kdp_drops") is not None for r in runs):
        ent["kdp_drops_total"] = drops
    ovs = [r["ovs"] for r in runs if r.get("ovs")]
    if ovs:
        pm = [o.get("pmd", {}) for o in ovs]
        ent["ovs_median"] = {
            "processing_cycles_per_packet": med(p.get("avg processing cycles per packet")
                                                for p in pm),
            "datapath_passes_per_packet": med(p.get("avg datapath passes per packet")
                                              for p in pm),
            "upcalls_per_packet": med(p.get("upcalls per packet") for p in pm),
            # Shares of the packets (recirculated passes included) each cache answered.
            "emc_hits": med(share(p, "emc hits") for p in pm),
            "smc_hits": med(share(p, "smc hits") for p in pm),
            "megaflow_hits": med(share(p, "megaflow hits") for p in pm),
            "datapath_flows": med(o.get("datapath_flows") for o in ovs),
            "ct_conns": med(o.get("ct_conns") for o in ovs),
            "ct_maxconns": med(o.get("ct_maxconns") for o in ovs),
        }
    targets = [r.get("rate_target_mpps") for r in runs if r.get("rate_target_mpps")]
    if targets:
        ent["rate_target_mpps"] = statistics.median(targets)
        ent["offered_mpps_median"] = med(x.get("offered_pps", 0) / 1e6 for x in res)
    ent["table_drop_runs"] = sum(1 for r in runs if table_drops(r))
    return ent


def verdict(ent, limit, params):
    """Why a cell's figure does not stand for its system, or [] if it does."""
    why = []
    if "rx_mpps_median" not in ent:
        return ["no runs"]
    if ent["runs"] < params.get("runs", 5):
        why.append(f"{ent['runs']} runs")
    if ent["system"] != "testpmd":
        if limit and ent["rx_mpps_median"] >= PORT_BOUND * limit:
            why.append("port-bound")
        if ent.get("rate_target_mpps"):
            if ent["offered_mpps_median"] < ent["rate_target_mpps"] * (1 - GEN_SHORT):
                why.append("generator-bound")
        elif ent["gen_busy_median"] >= GEN_BUSY:
            why.append("generator-bound")
    if ent.get("table_drop_runs"):
        why.append("table-full")
    if ent.get("rate_target_mpps") and ent["loss_median"] > params["max_loss"]:
        why.append("loss above the bound")
    return why


def main():
    raw, out, root, params = sys.argv[1:5]
    params = json.loads(params)
    prev = None
    if raw.endswith(".json"):
        prev = json.load(open(raw))
        rows = prev["runs"]
        params = {**prev.get("params", {}), **params}
    else:
        rows = [json.loads(line) for line in open(raw) if line.strip()]
    params.setdefault("max_loss", 0.001)
    params.setdefault("min_cpu_share", 0.8)
    params.setdefault("runs", 3)

    # Cells: the runs of one workload, size, system and worker count. syn has two: `syn-sat`,
    # its closed-loop (saturated) runs, and `syn`, the confirming open-loop runs at the rate
    # the search found; the search's runs are listed with the latter.
    cells, order, errors, search = {}, [], {}, {}
    for r in rows:
        wl = r["workload"]
        if wl == "syn" and r.get("phase") in ("saturated", "probe"):
            wl = "syn-sat"
        key = (wl, r["size"], r["system"], r.get("workers", 1))
        if key not in cells:
            cells[key] = []
            order.append(key)
        if "error" in r:
            errors.setdefault(key, []).append(r["error"])
        elif r.get("phase") in ("probe", "search"):
            search.setdefault(key, []).append(r)
        else:
            cells[key].append(r)

    summary = []
    for key in order:
        ent = cell_entry(key, cells[key], params)
        ent["errors"] = sorted(set(errors.get(key, [])))
        if key in search:
            ent["search"] = [{
                "phase": r.get("phase"), "rate_target_mpps": r.get("rate_target_mpps"),
                "offered_mpps": r["result"].get("offered_pps", r["result"]["tx_pps"]) / 1e6,
                "rx_mpps": r["result"]["rx_mpps"], "loss": r["result"]["loss"],
                "fwd_cpu_share": r.get("fwd_cpu_share"), "table_drops": table_drops(r),
                "kdp_drops": r.get("kdp_drops")} for r in search[key]]
        summary.append(ent)

    limit, best_ovs = {}, {}
    for e in summary:
        g = (e["workload"], e["size"], e["workers"])
        if e["system"] == "testpmd" and "rx_mpps_median" in e:
            limit[g] = e["rx_mpps_median"]
            if e["workload"] == "syn-sat":  # the open-loop syn rows' port limit too
                limit[("syn", e["size"], e["workers"])] = e["rx_mpps_median"]
    for e in summary:
        g = (e["workload"], e["size"], e["workers"])
        e["rejected"] = verdict(e, limit.get(g), params)
        e["contended"] = bool(
            "rx_mpps_median" in e and
            ((e.get("fwd_cpu_share_median") or 0) < params["min_cpu_share"] or
             (e.get("gen_cpu_share_median") or 0) < params["min_cpu_share"]))
        # The baseline is the best OVS configuration measured for the cell (not rejected).
        if is_ovs(e["system"]) and "rx_mpps_median" in e and not e["rejected"]:
            if g not in best_ovs or e["rx_mpps_median"] > best_ovs[g]["rx_mpps_median"]:
                best_ovs[g] = e

    # Runs alternate between systems, so run i of kdp and run i of testpmd saw nearly the same
    # machine; the median of those paired ratios resists bursts of foreign load better than the
    # ratio of the two medians.
    by_run = {}
    for key, runs in cells.items():
        for r in runs:
            by_run[(*key, r["run"])] = r
    for e in summary:
        g = (e["workload"], e["size"], e["workers"])
        lim = limit.get(g)
        have = "rx_mpps_median" in e
        e["ratio_to_port_limit"] = e["rx_mpps_median"] / lim if lim and have else None
        base = best_ovs.get(g)
        e["baseline_ovs"] = base["system"] if base else None
        e["ratio_to_ovs"] = (e["rx_mpps_median"] / base["rx_mpps_median"]
                             if base and have else None)
        e["cycles_ratio_ovs_to_this"] = (
            base["cycles_per_packet_median"] / e["cycles_per_packet_median"]
            if base and have and e.get("cycles_per_packet_median") else None)
        pairs, pairs_ovs = [], []
        for (wl, size, sysname, nw, run), r in by_run.items():
            if (wl, size, sysname, nw) != (e["workload"], e["size"], e["system"], e["workers"]):
                continue
            t = by_run.get((wl, size, "testpmd", nw, run))
            if t and t["result"]["rx_mpps"]:
                pairs.append(r["result"]["rx_mpps"] / t["result"]["rx_mpps"])
            o = by_run.get((wl, size, base["system"], nw, run)) if base else None
            if o and o["result"]["rx_mpps"]:
                pairs_ovs.append(r["result"]["rx_mpps"] / o["result"]["rx_mpps"])
        e["paired_ratio_median"] = med(pairs)
        e["paired_ratio_to_ovs"] = ({"median": med(pairs_ovs), "min": min(pairs_ovs),
                                     "max": max(pairs_ovs)} if pairs_ovs else None)

    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except Exception:
        pass
    doc = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": git(root, "rev-parse", "HEAD"),
        "git_dirty": bool(git(root, "status", "--porcelain")),
        "host": {"cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(),
                 "loadavg_at_end": os.getloadavg()},
        "params": params,
        "summary": summary,
        "runs": rows,
    }
    if prev is not None:  # re-summarizing: the run's own date, commit, host and params stay
        for k in ("date", "git_commit", "git_dirty", "host"):
            doc[k] = prev.get(k)
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print_tables(summary, out, len(rows))


def heading(title, hdr):
    """A table's title (if any), its header line and a rule as wide."""
    if title:
        print("\n" + title)
    print(hdr)
    print("-" * len(hdr))


def print_tables(summary, out, nrows):
    pct = lambda v: f"{v * 100:.0f}%" if v is not None and v == v else "-"  # noqa: E731
    num = lambda v: f"{v:.2f}" if v is not None else "-"  # noqa: E731
    cyc = lambda v: f"{v:.0f}" if v is not None else "-"  # noqa: E731
    hdr = (f"{'workload':<9}{'size':>6}  {'system':<16}{'Mpps':>7}  {'min-max':<12}{'loss':>7}"
           f"{'gen busy':>9}{'gen cpu':>8}{'fwd cpu':>8}{'Mpps/cpu':>9}{'cyc/rx':>8}"
           f"{'cyc/dlv':>8}{'vs limit':>9}{'paired':>7}{'vs ovs':>7}  verdict")
    heading(None, hdr)
    for e in summary:
        name = e["system"] + (f" x{e['workers']}" if e["workers"] != 1 else "")
        if "rx_mpps_median" not in e:
            print(f"{e['workload']:<9}{e['size']:>6}  {name:<16}{'-':>7}  not measured: "
                  f"{'; '.join(e['errors'])}")
            continue
        mm = f"{e['rx_mpps_min']:.2f}-{e['rx_mpps_max']:.2f}"
        v = ", ".join(e["rejected"]) or "ok"
        if e["contended"]:
            v += " (contended)"
        if e["errors"]:
            v += f" ({len(e['errors'])} failed)"
        print(f"{e['workload']:<9}{e['size']:>6}  {name:<16}{e['rx_mpps_median']:>7.3f}  "
              f"{mm:<12}{e['loss_median'] * 100:>6.2f}%{pct(e['gen_busy_median']):>9}"
              f"{pct(e.get('gen_cpu_share_median')):>8}{pct(e.get('fwd_cpu_share_median')):>8}"
              f"{num(e.get('rx_mpps_per_fwd_cpu_median')):>9}"
              f"{cyc(e.get('cycles_per_received_median')):>8}"
              f"{cyc(e.get('cycles_per_packet_median')):>8}"
              f"{num(e.get('ratio_to_port_limit')):>9}{num(e.get('paired_ratio_median')):>7}"
              f"{num(e.get('ratio_to_ovs')):>7}  {v}")
    syn = [e for e in summary if e["workload"] in ("syn", "syn-sat") and e["system"] != "testpmd"]
    if syn:
        heading("new connections (syn): syn-sat = closed loop, the forwarder always busy; "
                "syn = open loop at the highest rate that passed the search (confirming runs)",
                f"{'cell':<8}{'system':<16}{'rate':>7}{'conn/s':>10}  {'min-max':<14}"
                f"{'loss med':>9}{'loss max':>9}{'fwd cpu':>8}{'conn/s/core':>12}{'cyc/conn':>9}"
                f"{'busy cyc':>9}  drops by reason (all runs)   verdict")
        for e in syn:
            if "rx_mpps_median" not in e:
                print(f"{e['workload']:<8}{e['system']:<16} no confirming runs; search: "
                      + "; ".join(f"{s['rate_target_mpps']} -> loss {s['loss']:.4f}"
                                  for s in e.get("search", []) if s["rate_target_mpps"]))
                continue
            busy = None
            if e.get("ovs_median"):
                busy = e["ovs_median"].get("processing_cycles_per_packet")
            elif e.get("phase_cycles_per_packet_median"):
                busy = e["phase_cycles_per_packet_median"].get("total")
            drops = e.get("kdp_drops_total")
            if drops is None and e.get("ovs_median"):
                drops = {"ovs_ct_conns_median": e["ovs_median"].get("ct_conns")}
            mm = f"{e['rx_mpps_min'] * 1e3:.0f}-{e['rx_mpps_max'] * 1e3:.0f}k"
            rate = e.get("rate_target_mpps")
            rate = f"{rate * 1e3:.0f}k" if rate else "max"
            print(f"{e['workload']:<8}{e['system']:<16}{rate:>7}{e['rx_mpps_median'] * 1e6:>10.0f}"
                  f"  {mm:<14}{e['loss_median'] * 100:>8.3f}%{e['loss_max'] * 100:>8.3f}%"
                  f"{pct(e.get('fwd_cpu_share_median')):>8}"
                  f"{(e.get('rx_mpps_per_fwd_cpu_median') or 0) * 1e6:>12.0f}"
                  f"{cyc(e.get('cycles_per_packet_median')):>9}{cyc(busy):>9}  "
                  f"{json.dumps(drops or {})}   {', '.join(e['rejected']) or 'ok'}"
                  f"{' (contended)' if e['contended'] else ''}")
    prof = [e for e in summary if e.get("phase_cycles_per_packet_median")]
    if prof:
        names = list(prof[0]["phase_cycles_per_packet_median"])
        heading("where kdp's worker cycles go: cycles per received packet by loop phase, from "
                "the workers' TSC counters\n(wall-clock cycles: time the worker lost its CPU "
                "counts; cyc/dlv above is CPU time)",
                f"{'workload':<9}{'size':>6}{'wk':>4}" + "".join(f"{n[:8]:>9}" for n in names))
        for e in prof:
            ph = e["phase_cycles_per_packet_median"]
            print(f"{e['workload']:<9}{e['size']:>6}{e['workers']:>4}" +
                  "".join(f"{ph.get(n, 0):>9.0f}" for n in names))
    ovs = [e for e in summary if e.get("ovs_median")]
    if ovs:
        heading("OVS's own statistics over the window (pmd-stats-show, cleared at its start; "
                "medians; hits are shares of datapath passes)",
                f"{'workload':<9}{'size':>6}  {'system':<16}{'proc cyc':>9}{'passes':>7}"
                f"{'upcalls':>9}{'emc hits':>10}{'smc hits':>10}{'megaflow':>10}{'dp flows':>9}"
                f"{'ct conns':>10}")
        for e in ovs:
            o = e["ovs_median"]
            f = lambda v, w, p=0: f"{v:>{w}.{p}f}" if v is not None else f"{'-':>{w}}"  # noqa
            print(f"{e['workload']:<9}{e['size']:>6}  {e['system']:<16}"
                  f"{f(o['processing_cycles_per_packet'], 9)}"
                  f"{f(o['datapath_passes_per_packet'], 7, 2)}{f(o['upcalls_per_packet'], 9, 4)}"
                  f"{f(o['emc_hits'], 10, 3)}{f(o['smc_hits'], 10, 3)}"
                  f"{f(o['megaflow_hits'], 10, 3)}"
                  f"{f(o['datapath_flows'], 9)}{f(o['ct_conns'], 10)}")
    print(f"\n{nrows} runs; median of runs per cell; JSON: {out}")


if __name__ == "__main__":
    main()
