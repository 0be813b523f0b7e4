#!/usr/bin/env python3
"""The TRex and pktgen-dpdk profiles in benchmarks/profiles/ generate what kdp-pktgen sends.

For every workload and frame size, kdp-pktgen writes the first frames it would transmit
(--dump-pcap, no EAL, no ports); this test builds the same frames from each profile's own
description (TRex: base packet + field-engine variables, expanded with TRex's inc/wrap
semantics; pktgen-dpdk: the Lua table, with range-mode semantics) and compares them header
field by header field. The flow sequence is checked across a wrap of the source ports (the
Service workloads' next address), so an off-by-one in either generator fails here.

    profiles_test.py KDP_PKTGEN
"""
import os
import re
import subprocess
import sys
import tempfile

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.utils import RawPcapReader

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks", "profiles", "trex"))
import kdp_workloads as trex  # noqa: E402

FAILURES = []


def fail(msg):
    FAILURES.append(msg)
    print("FAIL " + msg)


def dump(pktgen, workload, size, flows, count, tmp, want=None):
    """kdp-pktgen's first `count` frames; only those in `want` (default all) dissected."""
    path = os.path.join(tmp, f"{workload}-{size}.pcap")
    subprocess.run([pktgen, "--", "--workload", workload, "--size", str(size), "--flows",
                    str(flows), "--dump-pcap", path, "--dump-count", str(count)],
                   check=True, capture_output=True)
    frames = {}
    n = 0
    for n, (data, _) in enumerate(RawPcapReader(path), 1):
        if want is None or n - 1 in want:
            frames[n - 1] = Ether(data)
    if n != count:
        fail(f"{workload}/{size}: kdp-pktgen wrote {n} frames, not {count}")
    return frames


def headers(pkt):
    """Every header field that defines the workload, as (layer path, field) -> value. The
    payload bytes are not part of it, nor the outer UDP source port of VXLAN (RFC 7348 s5: the
    sender's hash of the inner flow, any value in 49152-65535: checked for range only)."""
    out = {}
    for depth, layer in enumerate(_layers(pkt)):
        name = f"{layer.name}#{depth}"
        for f in layer.fields_desc:
            if layer.name == "UDP" and depth == 2 and f.name == "sport" and VXLAN in pkt:
                out[(name, "sport>=49152")] = layer.sport >= 49152
                continue
            value = layer.getfieldval(f.name)
            out[(name, f.name)] = value if value or value == 0 else None  # [] == b'' == None
    out[("frame", "len")] = len(pkt)
    return out


def _layers(pkt):
    layer = pkt
    while layer is not None and layer.name not in ("Raw", "Padding", "NoPayload"):
        yield layer
        layer = layer.payload if layer.payload.name != "NoPayload" else None


def compare(what, want, got):
    a, b = headers(want), headers(got)
    bad = [f"{k[0]}.{k[1]}: profile {a.get(k)!r}, kdp-pktgen {b.get(k)!r}"
           for k in sorted(set(a) | set(b), key=str) if a.get(k) != b.get(k)]
    if bad:
        fail(f"{what}: " + "; ".join(bad[:6]))
    return not bad


def set_field(pkt, path, value):
    layer, field = path.split(".")
    name, _, nth = layer.partition(":")
    cls = {"IP": IP, "UDP": UDP, "TCP": TCP}[name]
    hdr = pkt.getlayer(cls, int(nth) + 1 if nth else 1)
    if field in ("src", "dst"):
        value = ".".join(str(value >> s & 255) for s in (24, 16, 8, 0))
    setattr(hdr, field, value)


def trex_packet(desc, i):
    """Packet i of a TRex stream: each variable inc from min, wrapping to min after max; a
    variable with next steps that one each time it wraps (the field engine's next_var)."""
    pkt = desc["packet"].copy()
    carry = i
    for v in desc["vars"]:
        span = v["max"] - v["min"] + 1
        set_field(pkt, v["write"], v["min"] + carry % span)
        carry = carry // span if v["next"] else 0
    # STLVmFixIpv4 / the L4 fix: recomputed checksums, as scapy does on delete.
    for layer in (IP, TCP):
        for n in range(1, 3):
            h = pkt.getlayer(layer, n)
            if h is not None:
                h.chksum = None
    return Ether(bytes(pkt))


def lua_table(path):
    """The workloads table of the pktgen-dpdk profile: name -> {key: value}."""
    text = open(path).read()
    start = text.index("local workloads = {") + len("local workloads = {")
    body = text[start:text.index("\n}\n", start)]
    table = {}
    for m in re.finditer(r'(?:\["(\w+)"\]|(\w+)) = \{(.*?)\n    \}', body, re.S):
        fields = dict(re.findall(r'(\w+) = "?([\w.:]+)"?', m.group(3)))
        table[m.group(1) or m.group(2)] = fields
    sport = int(re.search(r"local sport_min = (\d+)", text).group(1))
    return table, sport


def pktgen_packet(w, sport_min, flows, size, i):
    """Packet i in pktgen-dpdk range mode: source port start + i, wrapping at max to min."""
    inner = (Ether(src=w["src_mac"], dst=w["dst_mac"]) /
             IP(src=w["src_ip"], dst=w["dst_ip"], ttl=64, flags="DF", id=0) /
             UDP(sport=sport_min + i % flows, dport=int(w["dport"]), chksum=0))
    return Ether(bytes(inner / (b"\0" * (size - 4 - len(inner)))))


def main(pktgen):
    checked = 0
    with tempfile.TemporaryDirectory() as tmp:
        # Frames picked at the start and across a wrap of the source ports (where the Service
        # workloads move on to the next address).
        cases = {"l2": 16, "local": 16, "encap": 16, "decap": 16, "service": 100000,
                 "full": 100000, "syn": 0}
        for workload, flows in cases.items():
            for size in (64, 512, 1500):
                if workload in ("decap", "full", "syn") and size == 1500:
                    continue  # a 1550-byte underlay frame; covered by the 512 case's fields
                desc = trex.describe(workload, size, flows or 1)
                if workload == "syn":
                    desc = trex.describe(workload, size)
                idx = list(range(8))
                if workload in ("service", "full"):
                    idx += [trex.FLOWS_PER_IP - 2, trex.FLOWS_PER_IP - 1, trex.FLOWS_PER_IP]
                if workload in ("l2", "local", "encap", "decap"):
                    idx += [15, 16, 17]
                if workload == "syn":
                    idx += [trex.SYN_PORTS - 1, trex.SYN_PORTS]
                got = dump(pktgen, workload, size, flows or 1, max(idx) + 1, tmp, set(idx))
                for i in idx:
                    compare(f"trex {workload}/{size} packet {i}", trex_packet(desc, i), got[i])
                    checked += 1
    table, sport_min = lua_table(os.path.join(ROOT, "benchmarks", "profiles", "pktgen-dpdk",
                                              "kdp_workloads.lua"))
    with tempfile.TemporaryDirectory() as tmp:
        for workload in ("l2", "local", "encap", "service"):
            if workload not in table:
                fail(f"pktgen-dpdk profile: no '{workload}' entry")
                continue
            flows = 16
            for size in (64, 512):
                got = dump(pktgen, workload, size, flows, 20, tmp)
                for i in range(20):
                    want = pktgen_packet(table[workload], sport_min, flows, size, i)
                    compare(f"pktgen-dpdk {workload}/{size} packet {i}", want, got[i])
                    checked += 1
    print(f"{checked} frames compared, {len(FAILURES)} differ")
    return 1 if FAILURES or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
