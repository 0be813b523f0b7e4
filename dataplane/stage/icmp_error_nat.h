// ICMP errors about NATed connections (RFC 5508 §4.3), translated as netfilter translates
// RELATED ICMP: the errors that arrive about a tracked connection, and those the node builds
// itself about a packet it had already rewritten. Off the per-packet fast path. Worker-only.
#pragma once

#include <cstring>

#include "pkt/hdr.h"
#include "stage/context.h"
#include "stage/nat.h"

namespace kdp::dataplane::stage {

/// An ICMP error (destination unreachable, time exceeded, parameter problem) about a packet of a
/// tracked connection, translated back as netfilter does for RELATED ICMP (RFC 5508 §4.3): the
/// quoted header gets the addresses and ports its sender knows, with its IP checksum and (when
/// quoted) its L4 checksum patched; the outer addresses get the NAT of the direction the error
/// travels; the ICMP checksum is recomputed. Returns true when it matched (p is then tracked
/// and `next` says where it goes, as after_nat); false, p pending, when no tracked connection
/// matches; drops a malformed error. Errors are rare: this is off the per-packet fast path.
inline bool icmp_error_nat(Context& ctx, rte_mbuf* m, PacketMeta& p, Next& next) noexcept {
    uint8_t* d = rte_pktmbuf_mtod(m, uint8_t*);
    uint8_t* icmp = d + p.l4_off;
    const uint32_t len = p.l3_len - (p.l4_off - p.l3_off);
    uint8_t* in = icmp + pkt::kIcmpHdrLen;  // the quoted IPv4 header
    // The quote must hold the original IPv4 header and the 8 bytes of L4 that carry the ports
    // (RFC 792); a later fragment or a fragmented error has no such header.
    const bool whole = !(p.flags & pkt_flag::kFragment) &&
                       len >= pkt::kIcmpHdrLen + pkt::kIpv4HdrLen + 8u &&
                       pkt::ipv4_version(in) == 4;
    const uint32_t ihl = whole ? pkt::ipv4_header_len(in) : 0;
    if (!whole || ihl < pkt::kIpv4HdrLen || len < pkt::kIcmpHdrLen + ihl + 8u ||
        pkt::ipv4_fragment_offset(in) != 0) [[unlikely]] {
        p.drop(DropReason::kIcmpErrorMalformed);
        return false;
    }
    uint8_t* l4 = in + ihl;
    const uint32_t l4_len = len - pkt::kIcmpHdrLen - ihl;
    Tuple4 q;
    std::memcpy(&q.src.be, in + pkt::off::kIpSrc, 4);
    std::memcpy(&q.dst.be, in + pkt::off::kIpDst, 4);
    q.proto = in[pkt::off::kIpProto];
    uint8_t q_type = 0;
    switch (q.proto) {
        case pkt::kProtoTcp:
        case pkt::kProtoUdp:
        case pkt::kProtoSctp:
            std::memcpy(&q.sport, l4 + pkt::off::kL4SrcPort, 2);
            std::memcpy(&q.dport, l4 + pkt::off::kL4DstPort, 2);
            break;
        case pkt::kProtoIcmp:
            q_type = l4[pkt::off::kIcmpType];
            if (q_type != kIcmpEchoRequest && q_type != kIcmpEchoReply) {
                return false;  // about an error, or ICMP that is never tracked
            }
            std::memcpy(&q.sport, l4 + pkt::off::kIcmpEchoId, 2);
            break;
        default:
            return false;
    }
    // The error travels against the quoted packet: look up what a packet going that way is.
    const table::Conntrack& ct = *ctx.node.conntrack;
    const table::CtHit hit = ct.lookup(ct_reversed(ct_key(q, q_type)));
    if (hit.index == table::kCtNone) {
        return false;
    }
    const table::CtEntry& e = ct.entry(hit.index);
    const bool back = hit.dir == table::CtDir::kReply;  // toward the connection's originator
    // The quoted packet as its sender wrote it: the originator's, or the reply's as sent.
    const table::CtKey& want = back ? e.orig : e.reply;
    Ip4 src = p.tuple.src;
    Ip4 dst = p.tuple.dst;
    if (back) {
        src = (e.nat & kNatDnat) ? Ip4{e.orig.dst} : src;
        dst = (e.nat & kNatSnat) ? Ip4{e.orig.src} : dst;
    } else {
        src = (e.nat & kNatSnat) ? Ip4{e.reply.dst} : src;
        dst = (e.nat & kNatDnat) ? Ip4{e.reply.src} : dst;
    }
    // Quoted header: addresses and their checksum.
    uint16_t c;
    std::memcpy(&c, in + pkt::off::kIpChecksum, 2);
    c = pkt::csum_replace32(c, q.src.be, want.src);
    c = pkt::csum_replace32(c, q.dst.be, want.dst);
    std::memcpy(in + pkt::off::kIpChecksum, &c, 2);
    std::memcpy(in + pkt::off::kIpSrc, &want.src, 4);
    std::memcpy(in + pkt::off::kIpDst, &want.dst, 4);
    // Quoted L4: ports (identifier) and the checksum when the quote holds it.
    if (q.proto == pkt::kProtoIcmp) {
        std::memcpy(&c, l4 + pkt::off::kIcmpChecksum, 2);
        c = pkt::csum_replace16(c, q.sport, want.sport);
        std::memcpy(l4 + pkt::off::kIcmpChecksum, &c, 2);
        std::memcpy(l4 + pkt::off::kIcmpEchoId, &want.sport, 2);
    } else {
        const size_t at = q.proto == pkt::kProtoTcp   ? pkt::off::kTcpChecksum
                          : q.proto == pkt::kProtoUdp ? pkt::off::kUdpChecksum
                                                      : 0;
        std::memcpy(l4 + pkt::off::kL4SrcPort, &want.sport, 2);
        std::memcpy(l4 + pkt::off::kL4DstPort, &want.dport, 2);
        if (at != 0 && l4_len >= at + 2) {
            std::memcpy(&c, l4 + at, 2);
            if (c != 0 || q.proto == pkt::kProtoTcp) {  // UDP zero: no checksum
                c = pkt::csum_replace32(c, q.src.be, want.src);
                c = pkt::csum_replace32(c, q.dst.be, want.dst);
                c = pkt::csum_replace16(c, q.sport, want.sport);
                c = pkt::csum_replace16(c, q.dport, want.dport);
                std::memcpy(l4 + at, &c, 2);
            }
        }
        // SCTP's CRC32c covers chunks the quote cut off: it cannot be patched, as in netfilter.
    }
    // Outer header, then the ICMP checksum over the whole message.
    uint8_t* ip = d + p.l3_off;
    std::memcpy(&c, ip + pkt::off::kIpChecksum, 2);
    c = pkt::csum_replace32(c, p.tuple.src.be, src.be);
    c = pkt::csum_replace32(c, p.tuple.dst.be, dst.be);
    std::memcpy(ip + pkt::off::kIpChecksum, &c, 2);
    std::memcpy(ip + pkt::off::kIpSrc, &src.be, 4);
    std::memcpy(ip + pkt::off::kIpDst, &dst.be, 4);
    p.tuple.src = src;
    p.tuple.dst = dst;
    std::memset(icmp + pkt::off::kIcmpChecksum, 0, 2);
    c = pkt::csum(icmp, len);
    std::memcpy(icmp + pkt::off::kIcmpChecksum, &c, 2);
    p.flags |= pkt_flag::kTracked;
    next = after_nat(ctx.node, m, p, e, hit.dir);
    return true;
}

/// An ICMP error the node itself built in place (icmp_error) about a packet it had already
/// NATed, e.g. "fragmentation needed" for a Service packet too big for the overlay: the quote
/// shows the rewritten packet, which its sender would not recognise, so it is translated like
/// an error that arrived (RFC 5508 §4.3 asks the same of errors a NAT originates).
inline void nat_own_icmp_error(Context& c, rte_mbuf* m, PacketMeta& p) noexcept {
    const uint8_t* ip = rte_pktmbuf_mtod(m, const uint8_t*) + p.l3_off;
    p.l3_len = pkt::ipv4_total_len(ip);
    p.l4_off = static_cast<uint16_t>(p.l3_off + pkt::kIpv4HdrLen);
    p.flags = pkt_flag::kL4;
    p.ttl = ip[pkt::off::kIpTtl];
    p.tuple = Tuple4{};
    p.tuple.proto = pkt::kProtoIcmp;
    std::memcpy(&p.tuple.src.be, ip + pkt::off::kIpSrc, 4);
    std::memcpy(&p.tuple.dst.be, ip + pkt::off::kIpDst, 4);
    p.icmp_type = ip[pkt::kIpv4HdrLen + pkt::off::kIcmpType];
    Next next;  // it has been sent (or dropped) already: nothing follows
    icmp_error_nat(c, m, p, next);
}

}  // namespace kdp::dataplane::stage
