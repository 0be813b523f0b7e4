#!/usr/bin/env python3
"""Plots a benchmarks/run.sh results JSON: Mpps (median, min-max bars) and cycles per packet
on the forwarding core, per workload and frame size, one bar per system.

    python3 benchmarks/plot.py benchmarks/results/latest.json benchmarks/results/latest.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SYSTEMS = ["testpmd", "kdp", "ovs", "kdp-cni"]
COLORS = {"testpmd": "#999999", "kdp": "#1f77b4", "ovs": "#d62728", "kdp-cni": "#6baed6"}
LABELS = {"testpmd": "port limit (testpmd io)", "kdp": "kdp", "ovs": "OVS-DPDK",
          "kdp-cni": "kdp (pods by kdp-cni)"}


def main(src, dst):
    doc = json.load(open(src))
    cells = [e for e in doc["summary"] if "rx_mpps_median" in e]
    groups = []
    for e in cells:
        g = (e["workload"], e["size"], e.get("workers", 1))
        if g not in groups:
            groups.append(g)
    # The known systems first, then OVS's variants (ovs+smc, ...) in the order measured.
    systems = [s for s in SYSTEMS if any(e["system"] == s for e in cells)]
    systems += [e["system"] for e in cells if e["system"] not in systems]
    systems = list(dict.fromkeys(systems))
    reds = ["#ff9896", "#e377c2", "#8c564b", "#bcbd22", "#f7b6d2"]
    for i, s in enumerate(x for x in systems if x not in COLORS):
        COLORS[s] = reds[i % len(reds)]
        LABELS[s] = "OVS-DPDK " + s[4:] if s.startswith("ovs+") else s
    width = 0.8 / max(len(systems), 1)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8, len(groups) * 1.1), 8), sharex=True)
    for k, sysname in enumerate(systems):
        xs, mpps, lo, hi, cpp_x, cpp = [], [], [], [], [], []
        for i, g in enumerate(groups):
            e = next((c for c in cells if (c["workload"], c["size"], c.get("workers", 1)) == g
                      and c["system"] == sysname), None)
            if e is None:
                continue
            x = i - 0.4 + width * (k + 0.5)
            xs.append(x)
            mpps.append(e["rx_mpps_median"])
            lo.append(e["rx_mpps_median"] - e["rx_mpps_min"])
            hi.append(e["rx_mpps_max"] - e["rx_mpps_median"])
            if e.get("cycles_per_packet_median"):
                cpp_x.append(x)
                cpp.append(e["cycles_per_packet_median"])
        ax1.bar(xs, mpps, width, yerr=[lo, hi], capsize=2, color=COLORS[sysname],
                label=LABELS[sysname])
        ax2.bar(cpp_x, cpp, width, color=COLORS[sysname])
    ax1.set_ylabel("Mpps received (median, min-max)")
    ax2.set_ylabel("cycles / packet, forwarding core")
    ax2.set_yscale("log")
    ax2.set_xticks(range(len(groups)))
    several = len({g[2] for g in groups}) > 1
    ax2.set_xticklabels([f"{w}\n{s}" + (f"\n{n} wk" if several else "") for w, s, n in groups])
    ax1.legend(loc="upper right", fontsize=8)
    p = doc.get("params", {})
    host = doc.get("host", {})
    load = host.get("loadavg_at_end") or [0]
    cores = "one forwarding core" if not several else "forwarding cores as marked"
    ax1.set_title(f"kdp vs port limit vs OVS-DPDK, {cores}, vhost-user "
                  f"({doc.get('date', '')[:16]}, {p.get('runs', '?')} runs x "
                  f"{p.get('seconds', '?')} s, load {load[0]:.1f} on {host.get('cpus', '?')} CPUs)",
                  fontsize=9)
    for ax in (ax1, ax2):
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)
    print(f"plot: {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
