// Services: connection tracking, Maglev backend choice and DNAT/un-DNAT (kube-proxy's job).
// Worker-only.
//
//   new flow to a frontend (ClusterIP:port/proto) -> Maglev pick over usable backends
//        -> conntrack entry {orig: client->vip, reply: backend->client} -> rewrite dst
//   later packets of either direction -> conntrack hit -> rewrite dst (orig) / src (reply)
//   no usable backend -> reject: TCP RST, or ICMP port unreachable for UDP/SCTP
//   tracked connection whose backend is gone -> TCP RST / UDP dropped; the owner's expiry
//        scan removes the entry so the next packet picks a live backend
#pragma once

#include "core/worker.h"
#include "pkt/crc32c.h"
#include "stage/icmp.h"
#include "stage/l2.h"

namespace kdp::dataplane::stage {

inline constexpr uint8_t kNatDnat = 1;

/// Patches the L4 checksum for an address change `from` -> `to` and a port change.
inline void l4_fix(uint8_t* d,
                   const PacketMeta& p,
                   uint32_t from,
                   uint32_t to,
                   uint16_t port_from,
                   uint16_t port_to) noexcept {
    uint8_t* l4 = d + p.l4_off;
    uint16_t c;
    switch (p.tuple.proto) {
        case pkt::kProtoTcp:
            std::memcpy(&c, l4 + 16, 2);
            c = pkt::csum_replace32(c, from, to);
            c = pkt::csum_replace16(c, port_from, port_to);
            std::memcpy(l4 + 16, &c, 2);
            break;
        case pkt::kProtoUdp:
            std::memcpy(&c, l4 + 6, 2);
            if (c != 0) {  // zero: no checksum (IPv4 only), stays zero
                c = pkt::csum_replace32(c, from, to);
                c = pkt::csum_replace16(c, port_from, port_to);
                c = c == 0 ? 0xffff : c;  // RFC 768: a computed zero is sent as all ones
                std::memcpy(l4 + 6, &c, 2);
            }
            break;
        case pkt::kProtoSctp:
            // No pseudo-header: only a port change touches the CRC, and it must be recomputed.
            if (port_from != port_to && !(p.flags & pkt_flag::kFragment)) {
                pkt::sctp_fix_checksum(l4, p.l3_len - (p.l4_off - p.l3_off));
            }
            break;
        default:
            break;
    }
}

enum class Side : uint8_t { kSrc, kDst };

/// Rewrites one side's address and port (DNAT: kDst; un-DNAT of replies: kSrc), patching the
/// IP checksum and the L4 checksum incrementally.
template <Side kSide>
inline void rewrite(rte_mbuf* m, PacketMeta& p, Ip4 ip, uint16_t port_be) noexcept {
    constexpr bool kDst = kSide == Side::kDst;
    uint8_t* d = rte_pktmbuf_mtod(m, uint8_t*);
    uint8_t* iph = d + p.l3_off;
    Ip4& addr = kDst ? p.tuple.dst : p.tuple.src;
    uint16_t& port = kDst ? p.tuple.dport : p.tuple.sport;
    const uint32_t from = addr.be;
    const uint16_t port_from = port;
    std::memcpy(iph + (kDst ? 16 : 12), &ip.be, 4);
    uint16_t c;
    std::memcpy(&c, iph + 10, 2);
    c = pkt::csum_replace32(c, from, ip.be);
    std::memcpy(iph + 10, &c, 2);
    std::memcpy(d + p.l4_off + (kDst ? 2 : 0), &port_be, 2);
    addr = ip;
    port = port_be;
    l4_fix(d, p, from, ip.be, port_from, port_be);
}

inline void rewrite_dst(rte_mbuf* m, PacketMeta& p, Ip4 ip, uint16_t port_be) noexcept {
    rewrite<Side::kDst>(m, p, ip, port_be);
}
inline void rewrite_src(rte_mbuf* m, PacketMeta& p, Ip4 ip, uint16_t port_be) noexcept {
    rewrite<Side::kSrc>(m, p, ip, port_be);
}

/// Turns a TCP segment into the RST that refuses it (RFC 9293 §3.10.7.1), sent back out of the
/// port it came from, from the address it was sent to.
inline void tcp_reset(const NodeContext& n, rte_mbuf* m, PacketMeta& p) noexcept {
    uint8_t* d = rte_pktmbuf_mtod(m, uint8_t*);
    const Mac peer = pkt::read_mac(d + 6);
    const uint8_t* tcp = d + p.l4_off;
    uint32_t seq;
    uint32_t ack;
    std::memcpy(&seq, tcp + 4, 4);
    std::memcpy(&ack, tcp + 8, 4);
    const uint8_t flags = tcp[13];
    const uint32_t doff = (tcp[12] >> 4) * 4u;
    const uint32_t payload = p.l3_len - (p.l4_off - p.l3_off) - doff;
    const Tuple4 t = p.tuple;
    uint8_t* ip = d + p.l3_off;
    uint8_t* th = ip + pkt::kIpv4HdrLen;
    std::memset(th, 0, pkt::kTcpHdrLen);
    std::memcpy(th, &t.dport, 2);
    std::memcpy(th + 2, &t.sport, 2);
    if (flags & 0x10) {  // ACK set: RST with seq = their ack
        std::memcpy(th + 4, &ack, 4);
        th[13] = 0x04;
    } else {
        const uint32_t next =
            from_be32(seq) + payload + ((flags & 0x02) ? 1 : 0) + ((flags & 0x01) ? 1 : 0);
        const uint32_t next_be = to_be32(next);
        std::memcpy(th + 8, &next_be, 4);
        th[13] = 0x14;  // RST|ACK
    }
    th[12] = 0x50;
    pkt::write_ipv4(ip, pkt::kIpv4HdrLen + pkt::kTcpHdrLen, 0, true, 64, pkt::kProtoTcp, t.dst,
                    t.src);
    // Checksum over the pseudo-header and the 20-byte header.
    uint32_t sum = pkt::csum_partial(ip + 12, 8);
    const uint16_t proto_len[2] = {to_be16(pkt::kProtoTcp), to_be16(pkt::kTcpHdrLen)};
    sum = pkt::csum_partial(proto_len, 4, sum);
    const uint16_t c = static_cast<uint16_t>(~pkt::csum_fold(pkt::csum_partial(th, 20, sum)));
    std::memcpy(th + 16, &c, 2);
    const uint32_t want = uint32_t{p.l3_off} + pkt::kIpv4HdrLen + pkt::kTcpHdrLen;
    rte_pktmbuf_trim(m, static_cast<uint16_t>(m->data_len - want));
    rewrite_l2(m, p, peer, n.gateway_mac);
    p.tx(p.in_port);
}

/// Refuses a packet to a Service that has no usable endpoint: RST for TCP, ICMP port
/// unreachable from the Service address for UDP and SCTP. Never a silent blackhole.
inline void reject(Worker& w, rte_mbuf* m, PacketMeta& p) noexcept {
    bump(w.port_counters(p.in_port).drops[static_cast<size_t>(DropReason::kNoEndpoints)]);
    if (p.tuple.proto == pkt::kProtoTcp) {
        if (p.tcp_flags & 0x04) {  // never answer a RST
            p.drop(DropReason::kNoEndpoints);
            return;
        }
        tcp_reset(*w.node, m, p);
    } else {
        icmp_error(*w.node, m, p, kIcmpUnreachable, kIcmpCodePortUnreachable, 0, p.tuple.dst);
    }
    // The reply is transmitted; the original was counted above as rejected.
}

/// Conntrack and Service DNAT for a parsed IPv4 packet. `services` says whether a new flow may
/// be load-balanced here (true for traffic from local pods; the client's node is the one that
/// balances). Leaves p pending (to be routed) unless it rejects or drops.
inline void conntrack_nat(Worker& w,
                          const table::TableSet& t,
                          rte_mbuf* m,
                          PacketMeta& p,
                          uint32_t now_s,
                          bool services) noexcept {
    const uint8_t proto = p.tuple.proto;
    if ((p.flags & pkt_flag::kL4) == 0 ||
        (proto != pkt::kProtoTcp && proto != pkt::kProtoUdp && proto != pkt::kProtoSctp)) {
        return;
    }
    table::Conntrack& ct = *w.node->conntrack;
    const table::CtKey key{
        p.tuple.src.be, p.tuple.dst.be, p.tuple.sport, p.tuple.dport, proto, 0, 0};
    const table::CtHit hit = ct.lookup(key);
    if (hit.index != table::kCtNone) {
        table::CtEntry& e = ct.entry(hit.index);
        if (e.nat & kNatDnat) {
            if (hit.dir == table::CtDir::kOrig) {
                const Ip4 be{e.reply.src};
                if (!t.backend_alive(be, e.reply.sport, proto)) [[unlikely]] {
                    if (proto == pkt::kProtoTcp && !(p.tcp_flags & 0x04)) {
                        bump(w.port_counters(p.in_port)
                                 .drops[static_cast<size_t>(DropReason::kStaleBackend)]);
                        tcp_reset(*w.node, m, p);
                    } else {
                        p.drop(DropReason::kStaleBackend);
                    }
                    return;
                }
                rewrite_dst(m, p, be, e.reply.sport);
            } else {
                rewrite_src(m, p, Ip4{e.orig.dst}, e.orig.dport);
            }
        }
        ct.touch(hit.index, hit.dir, p.tcp_flags, now_s);
        return;
    }
    if (!services) {
        return;
    }
    const table::Frontend* fe = t.find_frontend(p.tuple.dst, p.tuple.dport, proto);
    if (fe == nullptr) {
        return;
    }
    const table::Service& s = t.services[fe->service];
    if (s.maglev_size == 0) [[unlikely]] {
        reject(w, m, p);
        return;
    }
    // Maglev over a non-symmetric flow hash: every node picks the same backend for a flow.
    const uint64_t h = key.hash();
    const uint16_t slot = s.maglev[h % s.maglev_size];
    const table::ServiceBackend& be = s.backends[slot - 1u];
    const table::CtKey reply{be.ip.be, p.tuple.src.be, be.port_be, p.tuple.sport, proto, 0, 0};
    const uint32_t idx = ct.insert(w.index, key, reply, now_s, [&](table::CtEntry& e) {
        e.nat = kNatDnat;
        e.service = fe->service + 1;
        e.backend = slot;
    });
    if (idx == table::kCtNone) [[unlikely]] {
        p.drop(DropReason::kConntrackFull);
        return;
    }
    ct.touch(idx, table::CtDir::kOrig, p.tcp_flags, now_s);
    rewrite_dst(m, p, be.ip, be.port_be);
}

}  // namespace kdp::dataplane::stage
