#!/usr/bin/env python3
"""Writes the seed corpus of the `burst` fuzz target (test/fuzz/corpus/burst/): real frames of
the scratch node's cluster (fuzz_burst.cc) in its input format, [ingress][length, 2 bytes
big-endian][frame] records, ingress 0 uplink, 1 pod a, 2 pod b, 3 host; bit 7 starts a new loop
iteration. Run from anywhere: python3 test/fuzz/make_burst_corpus.py (needs python3-scapy)."""
import os
import struct

from scapy.all import ARP, ICMP, IP, TCP, UDP, Ether, raw
from scapy.layers.vxlan import VXLAN

NODE_MAC, NODE_IP = "02:00:00:00:01:01", "198.51.100.1"
NODE2_MAC, NODE2_IP = "02:00:00:00:02:02", "198.51.100.2"
VTEP1, VTEP2 = "0a:58:c6:33:64:01", "0a:58:c6:33:64:02"  # Mac::from_ip of the node IPs
GW_MAC, GW_IP = "0a:58:0a:f4:01:01", "10.244.1.1"
MAC_A, A, B, REMOTE = "02:00:00:00:0a:0a", "10.244.1.10", "10.244.1.11", "10.244.2.20"
MAC_B = "02:00:00:00:0b:0b"
HOST_MAC = "02:00:00:00:0e:0e"
CLIENT = "203.0.113.5"  # documentation range: an outside client
UPLINK, POD_A, POD_B, HOST, NEXT = 0, 1, 2, 3, 0x80


def record(ingress, frame):
    b = raw(frame)
    return struct.pack(">BH", ingress, len(b)) + b


def vxlan(inner, sport=49152):
    return (Ether(dst=NODE_MAC, src=NODE2_MAC) / IP(src=NODE2_IP, dst=NODE_IP) /
            UDP(sport=sport, dport=4789) / VXLAN(vni=1, flags=0x08) / inner)


node2_arp_reply = Ether(dst=NODE_MAC, src=NODE2_MAC) / ARP(
    op=2, hwsrc=NODE2_MAC, psrc=NODE2_IP, hwdst=NODE_MAC, pdst=NODE_IP)

SEEDS = {
    # node2's pod opens a connection to pod a over the overlay (node2's MAC learned first).
    "vxlan-to-pod": [
        record(UPLINK, node2_arp_reply),
        record(UPLINK, vxlan(Ether(dst=VTEP1, src=VTEP2) / IP(src=REMOTE, dst=A) /
                             TCP(sport=40000, dport=8080, flags="S"))),
    ],
    # ARP on every kind of port: node2 asks for the node, pod a for its gateway, the host for
    # pod a.
    "arp": [
        record(UPLINK, Ether(dst="ff:ff:ff:ff:ff:ff", src=NODE2_MAC) /
               ARP(op=1, hwsrc=NODE2_MAC, psrc=NODE2_IP, pdst=NODE_IP)),
        record(POD_A, Ether(dst="ff:ff:ff:ff:ff:ff", src=MAC_A) /
               ARP(op=1, hwsrc=MAC_A, psrc=A, pdst=GW_IP)),
        record(HOST, Ether(dst="ff:ff:ff:ff:ff:ff", src=HOST_MAC) /
               ARP(op=1, hwsrc=HOST_MAC, psrc=GW_IP, pdst=A)),
    ],
    # Pod a's SYN to the ClusterIP, then pod b's SYN-ACK (the answer if Maglev picked b), and an
    # outside client's SYN to the NodePort.
    "syn-to-service": [
        record(POD_A, Ether(dst=GW_MAC, src=MAC_A) / IP(src=A, dst="10.96.0.10") /
               TCP(sport=40000, dport=80, flags="S", seq=1000)),
        record(NEXT | POD_B, Ether(dst=GW_MAC, src=MAC_B) / IP(src=B, dst=A) /
               TCP(sport=8080, dport=40000, flags="SA", seq=5000, ack=1001)),
        record(NEXT | UPLINK, Ether(dst=NODE_MAC, src="02:00:00:00:99:99") /
               IP(src=CLIENT, dst=NODE_IP) / TCP(sport=50000, dport=30080, flags="S")),
        record(POD_A, Ether(dst=GW_MAC, src=MAC_A) / IP(src=A, dst="10.96.0.53") /
               UDP(sport=5353, dport=53) / b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"),
    ],
    # Pod a's SYN to node2's pod (encapsulated; node2's MAC unknown: held for ARP), then node2
    # answers the ARP and its router returns an ICMP error quoting the SYN, over the overlay.
    "icmp-error": [
        record(POD_A, Ether(dst=GW_MAC, src=MAC_A) / IP(src=A, dst=REMOTE) /
               TCP(sport=40001, dport=8080, flags="S")),
        record(NEXT | (2 << 2) | UPLINK, node2_arp_reply),
        record(NEXT | UPLINK, vxlan(Ether(dst=VTEP1, src=VTEP2) /
                                    IP(src="10.244.2.1", dst=A) / ICMP(type=3, code=1) /
                                    raw(IP(src=A, dst=REMOTE) /
                                        TCP(sport=40001, dport=8080, flags="S"))[:28])),
        record(POD_A, Ether(dst=GW_MAC, src=MAC_A) / IP(src=A, dst="10.96.0.10") /
               TCP(sport=40002, dport=80, flags="S")),
        record(NEXT | POD_A, Ether(dst=GW_MAC, src=MAC_A) / IP(src=A, dst="10.96.0.10") /
               ICMP(type=3, code=4, nexthopmtu=1400) /
               raw(IP(src="10.96.0.10", dst=A) / TCP(sport=80, dport=40002))[:28]),
    ],
    # The node's own network: a ping from the host to pod a, and a DNS query to the ClusterIP.
    "host": [
        record(HOST, Ether(dst=GW_MAC, src=HOST_MAC) / IP(src=GW_IP, dst=A) / ICMP(id=7, seq=1)),
        record(HOST, Ether(dst=GW_MAC, src=HOST_MAC) / IP(src=GW_IP, dst="10.96.0.53") /
               UDP(sport=5353, dport=53) / b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"),
    ],
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "burst")
os.makedirs(out, exist_ok=True)
for name, records in SEEDS.items():
    with open(os.path.join(out, name + ".bin"), "wb") as f:
        f.write(b"".join(records))
    print(f"{name}.bin: {len(records)} frames")
