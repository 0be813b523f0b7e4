// NAT primitives shared by the stages that translate addresses (conntrack, service,
// masquerade, icmp_error_nat): the conntrack key of a packet, the NAT a connection records,
// in-place rewrites with incremental checksums, and SNAT port allocation. Worker-only.
#pragma once

#include <cstring>

#include <rte_mbuf.h>

#include "pkt/checksum.h"
#include "pkt/crc32c.h"
#include "pkt/hdr.h"
#include "pkt/parse.h"
#include "stage/context.h"
#include "stage/icmp.h"
#include "stage/l2.h"

namespace kdp::dataplane::stage {

/// CtEntry::nat: what a tracked connection's packets get rewritten.
inline constexpr uint8_t kNatDnat = 1;      // destination rewritten to a backend
inline constexpr uint8_t kNatSnat = 2;      // source rewritten to the node's gateway address
inline constexpr uint8_t kNatExternal = 4;  // client outside the cluster: replies go back to
                                            // the MAC its packets came from (CtEntry::peer_mac)
inline constexpr uint8_t kNatEgress = 8;    // pod -> outside the cluster, masqueraded to
                                            // the node IP; leaves by the uplink

/// The drop reason of a conntrack insert that failed with `why`.
inline DropReason insert_drop_reason(table::CtInsertFail why) noexcept {
    switch (why) {
        case table::CtInsertFail::kClash:
            return DropReason::kTupleClash;
        case table::CtInsertFail::kSourceShare:
            return DropReason::kConntrackSourceShare;
        default:
            return DropReason::kConntrackFull;
    }
}

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
            std::memcpy(&c, l4 + pkt::off::kTcpChecksum, 2);
            c = pkt::csum_replace32(c, from, to);
            c = pkt::csum_replace16(c, port_from, port_to);
            std::memcpy(l4 + pkt::off::kTcpChecksum, &c, 2);
            break;
        case pkt::kProtoUdp:
            std::memcpy(&c, l4 + pkt::off::kUdpChecksum, 2);
            if (c != 0) {  // zero: no checksum (IPv4 only), stays zero
                c = pkt::csum_replace32(c, from, to);
                c = pkt::csum_replace16(c, port_from, port_to);
                c = c == 0 ? 0xffff : c;  // RFC 768: a computed zero is sent as all ones
                std::memcpy(l4 + pkt::off::kUdpChecksum, &c, 2);
            }
            break;
        case pkt::kProtoIcmp:
            // Echo: the identifier plays the port (RFC 5508 §3.1); no pseudo-header.
            std::memcpy(&c, l4 + pkt::off::kIcmpChecksum, 2);
            c = pkt::csum_replace16(c, port_from, port_to);
            std::memcpy(l4 + pkt::off::kIcmpChecksum, &c, 2);
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
/// IP checksum and the L4 checksum incrementally. For an ICMP echo the "port" of either side is
/// the identifier (ct_key keeps it in both tuple ports).
template <Side kSide>
inline void rewrite(rte_mbuf* m, PacketMeta& p, Ip4 ip, uint16_t port_be) noexcept {
    constexpr bool kDst = kSide == Side::kDst;
    uint8_t* d = rte_pktmbuf_mtod(m, uint8_t*);
    uint8_t* iph = d + p.l3_off;
    Ip4& addr = kDst ? p.tuple.dst : p.tuple.src;
    uint16_t& port = kDst ? p.tuple.dport : p.tuple.sport;
    const uint32_t from = addr.be;
    const uint16_t port_from = port;
    std::memcpy(iph + (kDst ? pkt::off::kIpDst : pkt::off::kIpSrc), &ip.be, 4);
    uint16_t c;
    std::memcpy(&c, iph + pkt::off::kIpChecksum, 2);
    c = pkt::csum_replace32(c, from, ip.be);
    std::memcpy(iph + pkt::off::kIpChecksum, &c, 2);
    const bool icmp = p.tuple.proto == pkt::kProtoIcmp;
    const size_t at = icmp   ? pkt::off::kIcmpEchoId
                      : kDst ? pkt::off::kL4DstPort
                             : pkt::off::kL4SrcPort;
    std::memcpy(d + p.l4_off + at, &port_be, 2);
    addr = ip;
    port = port_be;
    if (icmp) {
        p.tuple.sport = p.tuple.dport = port_be;
    }
    l4_fix(d, p, from, ip.be, port_from, port_be);
}

inline void rewrite_dst(rte_mbuf* m, PacketMeta& p, Ip4 ip, uint16_t port_be) noexcept {
    rewrite<Side::kDst>(m, p, ip, port_be);
}
inline void rewrite_src(rte_mbuf* m, PacketMeta& p, Ip4 ip, uint16_t port_be) noexcept {
    rewrite<Side::kSrc>(m, p, ip, port_be);
}

/// The conntrack key of a parsed packet's tuple. An ICMP echo is keyed on its identifier in
/// both port fields and its type in `pad` (RFC 5508 §3.1: the identifier plays the port), so
/// that an echo reply's key is icmp_reversed() of its request's and a request never matches a
/// reply's entry.
inline table::CtKey ct_key(const Tuple4& t, uint8_t icmp_type) noexcept {
    if (t.proto == pkt::kProtoIcmp) {
        return table::CtKey{t.src.be, t.dst.be, t.sport, t.sport, t.proto, icmp_type, 0};
    }
    return table::CtKey{t.src.be, t.dst.be, t.sport, t.dport, t.proto, 0, 0};
}

/// What a packet travelling the other way looks like, for any key ct_key makes.
inline table::CtKey ct_reversed(const table::CtKey& k) noexcept {
    table::CtKey r = k.reversed();
    if (k.proto == pkt::kProtoIcmp) {
        r.pad = k.pad == kIcmpEchoRequest ? kIcmpEchoReply : kIcmpEchoRequest;
    }
    return r;
}

/// A source port for SNAT toward `reply_src:reply_sport` that no tracked connection uses.
/// Each worker owns the ports equal to its index modulo the worker count, so two workers never
/// race for one port and no lock is needed. Returns 0 when none of 64 candidates is free.
inline uint16_t snat_port(const Context& c,
                          const table::Conntrack& ct,
                          table::CtKey reply,
                          uint64_t hash) noexcept {
    constexpr uint32_t kBase = 32768;
    const uint32_t workers = c.node.workers;
    const uint32_t per_worker = (65536 - kBase) / workers;
    for (uint32_t k = 0; k < 64; ++k) {
        const uint32_t port = kBase + ((hash + k) % per_worker) * workers + c.worker;
        reply.dport = to_be16(static_cast<uint16_t>(port));
        if (reply.proto == pkt::kProtoIcmp) {
            reply.sport = reply.dport;  // an echo identifier is both "ports" (ct_key)
        }
        if (ct.lookup(reply).index == table::kCtNone) {
            return static_cast<uint16_t>(port);
        }
    }
    return 0;
}

/// Sends a reply to an external client straight back to the MAC its connection came from.
inline void to_external_client(const NodeContext& n,
                               rte_mbuf* m,
                               PacketMeta& p,
                               const table::CtEntry& e) noexcept {
    if (p.ttl <= 1) [[unlikely]] {
        p.drop(DropReason::kTtlExpired);
        return;
    }
    Mac to;
    std::memcpy(to.b.data(), e.peer_mac, 6);
    uint8_t* d = rewrite_l2(m, p, to, n.node_mac);
    pkt::dec_ttl(d + pkt::kEtherHdrLen);
    p.tx(n.uplink_port);
}

/// Sends a packet of a tracked connection on its way once its NAT is done: replies to an
/// external client go straight back to its MAC (kDone); masqueraded egress leaves by the
/// uplink (kEgress); anything else is routed on its (rewritten) destination (kRoute).
inline Next after_nat(const NodeContext& n,
                      rte_mbuf* m,
                      PacketMeta& p,
                      const table::CtEntry& e,
                      table::CtDir dir) noexcept {
    if (dir == table::CtDir::kOrig) {
        return (e.nat & kNatEgress) ? Next::kEgress : Next::kRoute;
    }
    if (e.nat & kNatExternal) {
        to_external_client(n, m, p, e);
        return Next::kDone;
    }
    return Next::kRoute;
}

}  // namespace kdp::dataplane::stage
