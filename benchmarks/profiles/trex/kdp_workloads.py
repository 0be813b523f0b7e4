"""TRex stateless (STL) profile: the kdp-pktgen workloads on real NICs.

    trex-console> start -f benchmarks/profiles/trex/kdp_workloads.py -m 100% \
                        -t workload=full,size=64,flows=100000

Port 0 faces the device under test's port A (a pod, or the uplink for the VXLAN workloads),
port 1 its port B; TRex counts what comes back on port 1 (`stats`), as kdp-pktgen does. The
addresses are those of benchmarks/run.sh's node (see benchmarks/README.md): pod CIDR
10.244.1.0/24, gateway 10.244.1.1 = 0a:58:0a:f4:01:01, node 198.51.100.1, remote node
198.51.100.2 / 10.244.2.0/24, ClusterIPs 10.96.0.20, .21, ... on port 80.

Each workload is one base packet and a field-engine program, both built by `describe()`
without TRex, so that test/bench/profiles_test.py can expand them packet by packet and
compare every field with what kdp-pktgen sends (its --dump-pcap).
"""
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

GATEWAY_MAC = "0a:58:0a:f4:01:01"
POD_A_MAC = "02:00:00:00:00:0a"
POD_B_MAC = "02:00:00:00:00:0b"
NODE_MAC = "02:00:00:00:01:01"
REMOTE_MAC = "02:00:00:00:02:02"
NODE_IP = "198.51.100.1"
REMOTE_IP = "198.51.100.2"
VIP = "10.96.0.20"
FLOWS_PER_IP = 50000  # kdp-pktgen --flows-per-ip: source ports per address
SYN_PORTS = 64000  # syn: source ports 1024..65023, then the next remote pod
SYN_ADDRS = 250
SPORT = 1024
IMIX = [(64, 7), (594, 4), (1518, 1)]  # frame size incl. FCS, weight (kdp-pktgen --size imix)


def mac_from_ip(ip):
    """kdp's default MAC for an address (Mac::from_ip): 0a:58 followed by the IPv4 bytes."""
    return "0a:58:" + ":".join(f"{int(b):02x}" for b in ip.split("."))


WORKLOADS = {
    # name: (encapsulated, proto, src, dst, dport, inner src MAC, inner dst MAC, vary)
    "l2": (False, "udp", "10.244.1.10", "10.244.1.11", 5001, POD_A_MAC, POD_B_MAC, "sport"),
    "local": (False, "udp", "10.244.1.10", "10.244.1.11", 5001, POD_A_MAC, GATEWAY_MAC, "sport"),
    "encap": (False, "udp", "10.244.1.10", "10.244.2.10", 5001, POD_A_MAC, GATEWAY_MAC, "sport"),
    "decap": (True, "udp", "10.244.2.10", "10.244.1.11", 5001, mac_from_ip(REMOTE_IP),
              mac_from_ip(NODE_IP), "sport"),
    "service": (False, "udp", "10.244.1.10", VIP, 80, POD_A_MAC, GATEWAY_MAC, "sport-dip"),
    "full": (True, "udp", "10.244.2.10", VIP, 80, mac_from_ip(REMOTE_IP), mac_from_ip(NODE_IP),
             "sport-sip"),
    "syn": (True, "tcp", "10.244.2.10", VIP, 80, mac_from_ip(REMOTE_IP), mac_from_ip(NODE_IP),
            "syn"),
}


def base_packet(workload, size):
    """The first packet of a workload at one frame size (incl. the 4-byte FCS)."""
    encap, proto, src, dst, dport, smac, dmac, _ = WORKLOADS[workload]
    frame = size - 4
    inner = Ether(src=smac, dst=dmac) / IP(src=src, dst=dst, ttl=64, flags="DF", id=0)
    if proto == "tcp":
        inner[IP].len = 40  # a SYN carries no data; the frame is padded to its size
        inner = inner / TCP(sport=SPORT, dport=dport, seq=1, flags="S", window=65535)
    else:
        inner = inner / UDP(sport=SPORT, dport=dport, chksum=0)
    pad = frame - len(inner)
    if proto == "udp":
        inner = inner / Raw(b"\0" * pad)  # payload bytes are not part of the workload
    if encap:
        # RFC 7348: the remote VTEP's UDP source port is its hash of the inner flow, 49152+.
        pkt = (Ether(src=REMOTE_MAC, dst=NODE_MAC) /
               IP(src=REMOTE_IP, dst=NODE_IP, ttl=64, flags="DF", id=0) /
               UDP(sport=49152, dport=4789, chksum=0) / VXLAN(vni=1, flags=0x08) / inner)
    else:
        pkt = inner
    if proto == "tcp" and len(pkt) < frame + (50 if encap else 0):
        pkt = pkt / Raw(b"\0" * (frame + (50 if encap else 0) - len(pkt)))  # Ethernet padding
    return pkt


def describe(workload, size, flows=1024):
    """Base packet plus the field engine: flow variables (name, min, max, step when the
    previous one wraps) and the header fields each writes; TRex semantics (inc, wrap)."""
    encap, proto, src, dst, _, _, _, vary = WORKLOADS[workload]
    l3 = "IP:1" if encap else "IP"
    l4 = ("TCP" if proto == "tcp" else "UDP:1" if encap else "UDP")
    per_ip = SYN_PORTS if vary == "syn" else FLOWS_PER_IP
    if vary == "sport":
        fvars = [dict(name="sport", min=SPORT, max=SPORT + flows - 1, next=None,
                      write=f"{l4}.sport")]
    else:
        addr_field = f"{l3}.dst" if vary == "sport-dip" else f"{l3}.src"
        base = dst if vary == "sport-dip" else src
        n_addr = SYN_ADDRS if vary == "syn" else (flows + per_ip - 1) // per_ip
        ports = per_ip if vary == "syn" or flows > per_ip else flows
        fvars = [dict(name="sport", min=SPORT, max=SPORT + ports - 1, next="addr",
                      write=f"{l4}.sport"),
                 dict(name="addr", min=ip_int(base), max=ip_int(base) + n_addr - 1, next=None,
                      write=addr_field)]
    return dict(packet=base_packet(workload, size), vars=fvars, fix_ipv4=l3,
                fix_l4=l4 if proto == "tcp" else None)


def ip_int(a):
    b = [int(x) for x in a.split(".")]
    return b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3]


def sizes(size):
    return [(s, w) for s, w in IMIX] if size == "imix" else [(int(size), 1)]


class KdpWorkloads:
    """The STL profile proper; TRex calls get_streams() with the -t tunables."""

    def get_streams(self, tunables="", workload="local", size="64", flows=1024, **kwargs):
        from trex_stl_lib.api import (STLFlowStats, STLPktBuilder, STLScVmRaw, STLStream,
                                      STLTXCont, STLVmFixChecksumHw, STLVmFixIpv4,
                                      STLVmFlowVar, STLVmWrFlowVar)
        from trex_stl_lib.trex_stl_packet_builder_scapy import CTRexVmInsFixHwCs

        streams = []
        for n, (frame, weight) in enumerate(sizes(str(size))):
            d = describe(workload, frame, int(flows))
            prog = []
            for v in d["vars"]:
                kw = dict(next_var=v["next"]) if v["next"] else {}
                prog.append(STLVmFlowVar(name=v["name"], min_value=v["min"], max_value=v["max"],
                                         size=2 if v["name"] == "sport" else 4, op="inc",
                                         **kw))
            for v in d["vars"]:
                prog.append(STLVmWrFlowVar(fv_name=v["name"], pkt_offset=v["write"]))
            prog.append(STLVmFixIpv4(offset=d["fix_ipv4"]))
            if d["fix_l4"]:
                prog.append(STLVmFixChecksumHw(l3_offset=d["fix_ipv4"], l4_offset=d["fix_l4"],
                                               l4_type=CTRexVmInsFixHwCs.L4_TYPE_TCP))
            streams.append(STLStream(
                packet=STLPktBuilder(pkt=d["packet"], vm=STLScVmRaw(prog)),
                mode=STLTXCont(percentage=100.0 * weight / sum(w for _, w in sizes(str(size)))),
                flow_stats=STLFlowStats(pg_id=n) if kwargs.get("latency") else None))
        return streams


def register():
    return KdpWorkloads()
