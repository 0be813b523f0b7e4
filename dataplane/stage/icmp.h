// ICMP the node originates: echo replies from the pod gateway address, and "fragmentation
// needed" (RFC 792, RFC 1191) when a DF packet does not fit the overlay. Both are built in
// place in the received mbuf and sent back out of the port it came in on. Worker-only.
#pragma once

#include <algorithm>

#include "pkt/hdr.h"
#include "stage/l2.h"
#include "stage/node_context.h"

namespace kdp::dataplane::stage {

using pkt::kIcmpCodeFragNeeded;
using pkt::kIcmpCodePortUnreachable;
using pkt::kIcmpEchoReply;
using pkt::kIcmpEchoRequest;
using pkt::kIcmpParameterProblem;
using pkt::kIcmpTimeExceeded;
using pkt::kIcmpUnreachable;

/// The ICMP errors that quote a packet of a connection and are translated back with it.
inline bool is_icmp_error_type(uint8_t type) noexcept {
    return type == kIcmpUnreachable || type == kIcmpTimeExceeded || type == kIcmpParameterProblem;
}

/// ICMP errors are never sent about ICMP errors (RFC 1122 §3.2.2).
inline bool is_icmp_error(const PacketMeta& p) noexcept {
    return p.tuple.proto == pkt::kProtoIcmp && p.icmp_type != kIcmpEchoRequest &&
           p.icmp_type != kIcmpEchoReply;
}

inline void icmp_echo_reply(const NodeContext& n, rte_mbuf* m, PacketMeta& p) noexcept {
    if (p.tuple.proto != pkt::kProtoIcmp || p.icmp_type != kIcmpEchoRequest ||
        (p.flags & pkt_flag::kFragment)) {
        p.drop(p.tuple.proto == pkt::kProtoIcmp ? DropReason::kIcmpUnhandled
                                                : DropReason::kHostPath);
        return;
    }
    uint8_t* d = rte_pktmbuf_mtod(m, uint8_t*);
    const Mac peer = pkt::read_mac(d + pkt::off::kEthSrc);
    uint8_t* ip = d + p.l3_off;
    uint8_t* icmp = d + p.l4_off;
    const uint16_t ihl = static_cast<uint16_t>(p.l4_off - p.l3_off);
    std::memcpy(ip + pkt::off::kIpDst, &p.tuple.src.be, 4);
    std::memcpy(ip + pkt::off::kIpSrc, &n.gateway_ip.be, 4);
    ip[pkt::off::kIpTtl] = 64;
    std::memset(ip + pkt::off::kIpChecksum, 0, 2);
    const uint16_t ipc = pkt::csum(ip, ihl);
    std::memcpy(ip + pkt::off::kIpChecksum, &ipc, 2);
    uint16_t before;  // type and code: one 16-bit word of the checksum
    std::memcpy(&before, icmp + pkt::off::kIcmpType, 2);
    icmp[pkt::off::kIcmpType] = kIcmpEchoReply;
    uint16_t after;
    std::memcpy(&after, icmp + pkt::off::kIcmpType, 2);
    uint16_t c;
    std::memcpy(&c, icmp + pkt::off::kIcmpChecksum, 2);
    c = pkt::csum_replace16(c, before, after);
    std::memcpy(icmp + pkt::off::kIcmpChecksum, &c, 2);
    rewrite_l2(m, p, peer, n.gateway_mac);
    p.tx(p.in_port);
}

/// Turns `m` into an ICMP error (type, code, and the 16-bit next-hop MTU field) from `from` to
/// the packet's sender, quoting as much of the original as keeps the reply within 576 bytes
/// (RFC 1812 §4.3.2.3), and sends it back out of the port it came in on.
inline void icmp_error(const NodeContext& n,
                       rte_mbuf* m,
                       PacketMeta& p,
                       uint8_t type,
                       uint8_t code,
                       uint16_t mtu,
                       Ip4 from) noexcept {
    if (is_icmp_error(p)) {
        p.drop(DropReason::kTooBig);
        return;
    }
    constexpr uint16_t kMaxQuote = 576 - pkt::kIpv4HdrLen - pkt::kIcmpHdrLen;
    constexpr uint16_t kHeaders = pkt::kEtherHdrLen + pkt::kIpv4HdrLen + pkt::kIcmpHdrLen;
    const Mac peer = pkt::read_mac(rte_pktmbuf_mtod(m, uint8_t*) + pkt::off::kEthSrc);
    const Ip4 to = p.tuple.src;
    const uint16_t quote = std::min(p.l3_len, kMaxQuote);
    adj_parsed(m, p.l3_off);
    rte_pktmbuf_trim(m, static_cast<uint16_t>(m->data_len - quote));
    auto* h = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, kHeaders));
    if (h == nullptr) [[unlikely]] {
        p.drop(DropReason::kNoHeadroom);
        return;
    }
    uint8_t* icmp = h + pkt::kEtherHdrLen + pkt::kIpv4HdrLen;
    std::memset(icmp, 0, pkt::kIcmpHdrLen);
    icmp[pkt::off::kIcmpType] = type;
    icmp[pkt::off::kIcmpCode] = code;
    const uint16_t mtu_be = to_be16(mtu);
    std::memcpy(icmp + pkt::off::kIcmpNextHopMtu, &mtu_be, 2);
    const uint16_t c = pkt::csum(icmp, pkt::kIcmpHdrLen + quote);
    std::memcpy(icmp + pkt::off::kIcmpChecksum, &c, 2);
    // Precedence "internetwork control" (0xc0), as routers send ICMP errors.
    pkt::write_ipv4(h + pkt::kEtherHdrLen,
                    static_cast<uint16_t>(pkt::kIpv4HdrLen + pkt::kIcmpHdrLen + quote), 0xc0, false,
                    64, pkt::kProtoIcmp, from, to);
    pkt::write_eth(h, peer, n.gateway_mac, pkt::kEtherTypeIpv4);
    p.l3_off = pkt::kEtherHdrLen;
    p.flags = 0;
    p.tx(p.in_port);
}

/// ICMP "fragmentation needed, next-hop MTU `mtu`" (RFC 1191) from the pod gateway.
inline void icmp_frag_needed(const NodeContext& n,
                             rte_mbuf* m,
                             PacketMeta& p,
                             uint16_t mtu) noexcept {
    icmp_error(n, m, p, kIcmpUnreachable, kIcmpCodeFragNeeded, mtu, n.gateway_ip);
}

}  // namespace kdp::dataplane::stage
