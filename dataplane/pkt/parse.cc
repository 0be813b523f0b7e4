#include "pkt/parse.h"

#include <cstring>

#include "common/hash.h"
#include "pkt/checksum.h"
#include "pkt/hdr.h"

namespace kdp::pkt {

using dataplane::DropReason;
using dataplane::PacketMeta;
namespace flag = dataplane::pkt_flag;

namespace {

inline uint16_t load_be16(const uint8_t* p) noexcept {
    return static_cast<uint16_t>(p[0] << 8 | p[1]);
}

inline uint16_t load_raw16(const uint8_t* p) noexcept {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}

inline uint32_t load_raw32(const uint8_t* p) noexcept {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

// True for sources no host may send from: 0.0.0.0/8, 127/8, multicast, 240/4 and broadcast.
inline bool bad_source(uint32_t host) noexcept {
    const uint32_t top = host >> 24;
    return top == 0 || top == 127 || top >= 224;
}

// Parses the L4 header at `l4` with `avail` bytes of IP payload.
DropReason parse_l4(const uint8_t* l4, uint32_t avail, PacketMeta& m) noexcept {
    switch (m.tuple.proto) {
        case kProtoTcp: {
            if (avail < kTcpHdrLen) [[unlikely]] {
                return DropReason::kL4Truncated;
            }
            const uint32_t doff = (l4[off::kTcpDataOff] >> 4) * 4u;
            if (doff < kTcpHdrLen || doff > avail) [[unlikely]] {
                return DropReason::kTcpDataOffset;
            }
            m.tuple.sport = load_raw16(l4 + off::kL4SrcPort);
            m.tuple.dport = load_raw16(l4 + off::kL4DstPort);
            m.tcp_flags = l4[off::kTcpFlags];
            break;
        }
        case kProtoUdp: {
            if (avail < kUdpHdrLen) [[unlikely]] {
                return DropReason::kL4Truncated;
            }
            const uint16_t ulen = load_be16(l4 + off::kUdpLength);
            // A fragment's UDP length covers the whole datagram, not this piece.
            if (ulen < kUdpHdrLen || ((m.flags & flag::kFragment) == 0 && uint32_t{ulen} != avail))
                [[unlikely]] {
                return DropReason::kUdpLength;
            }
            m.tuple.sport = load_raw16(l4);
            m.tuple.dport = load_raw16(l4 + 2);
            break;
        }
        case kProtoSctp: {
            if (avail < kSctpHdrLen) [[unlikely]] {
                return DropReason::kL4Truncated;
            }
            m.tuple.sport = load_raw16(l4);
            m.tuple.dport = load_raw16(l4 + 2);
            break;
        }
        case kProtoIcmp: {
            if (avail < kIcmpHdrLen) [[unlikely]] {
                return DropReason::kL4Truncated;
            }
            m.icmp_type = l4[off::kIcmpType];
            // Echo request/reply identify their flow by the identifier, as conntrack does.
            if (m.icmp_type == kIcmpEchoRequest || m.icmp_type == kIcmpEchoReply) {
                m.tuple.sport = load_raw16(l4 + off::kIcmpEchoId);
            }
            break;
        }
        default:
            return DropReason::kNone;  // other protocols are routed on addresses alone
    }
    m.flags |= flag::kL4;
    return DropReason::kNone;
}

}  // namespace

DropReason parse_frame(const uint8_t* data,
                       uint32_t len,
                       PacketMeta& m,
                       const ParseOptions& opt) noexcept {
    if (len < kEtherHdrLen) [[unlikely]] {
        return DropReason::kTruncated;
    }
    uint16_t l3 = kEtherHdrLen;
    uint16_t type = load_be16(data + off::kEthType);
    if (type == kEtherTypeVlan || type == kEtherTypeQinQ) {
        if (len < uint32_t{kEtherHdrLen} + kVlanHdrLen) [[unlikely]] {
            return DropReason::kTruncated;
        }
        m.flags |= flag::kVlan;
        m.vlan_tci = load_be16(data + kEtherHdrLen + offsetof(rte_vlan_hdr, vlan_tci));
        type = load_be16(data + kEtherHdrLen + offsetof(rte_vlan_hdr, eth_proto));
        l3 += kVlanHdrLen;
        if (type == kEtherTypeVlan || type == kEtherTypeQinQ) [[unlikely]] {
            return DropReason::kStackedVlan;
        }
    }
    m.ether_type = type;
    m.l3_off = l3;

    if (type == kEtherTypeArp) {
        if (len < uint32_t{l3} + kArpLen) [[unlikely]] {
            return DropReason::kArpMalformed;
        }
        return DropReason::kNone;  // the ARP stage checks the fields it relies on
    }
    if (type != kEtherTypeIpv4) [[unlikely]] {
        return DropReason::kUnknownEthertype;
    }

    const uint8_t* ip = data + l3;
    const uint32_t avail = len - l3;
    if (avail < kIpv4HdrLen) [[unlikely]] {
        return DropReason::kTruncated;
    }
    if (ipv4_version(ip) != 4) [[unlikely]] {
        return DropReason::kIpVersion;
    }
    const uint32_t ihl = ipv4_header_len(ip);
    if (ihl < kIpv4HdrLen || ihl > avail) [[unlikely]] {
        return DropReason::kIpHeaderLength;
    }
    const uint16_t total = ipv4_total_len(ip);
    if (total < ihl || total > avail) [[unlikely]] {
        return DropReason::kIpTotalLength;
    }
    if (opt.verify_ip_checksum && !csum_ok(ip, ihl)) [[unlikely]] {
        return DropReason::kIpChecksum;
    }
    const uint32_t src = load_raw32(ip + off::kIpSrc);
    if (bad_source(from_be32(src))) [[unlikely]] {
        return DropReason::kIpSourceInvalid;
    }
    m.l3_len = total;
    m.ttl = ip[off::kIpTtl];
    m.tuple.proto = ip[off::kIpProto];
    m.tuple.src = Ip4{src};
    m.tuple.dst = Ip4{load_raw32(ip + off::kIpDst)};
    if (ihl > kIpv4HdrLen) {
        m.flags |= flag::kIpOptions;
    }
    const uint16_t frag = load_be16(ip + off::kIpFragment);
    if (frag & RTE_IPV4_HDR_DF_FLAG) {
        m.flags |= flag::kDontFragment;
    }
    if (frag & (RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) {
        m.flags |= flag::kFragment;
        if (frag & RTE_IPV4_HDR_OFFSET_MASK) {
            m.flags |= flag::kLaterFragment;
            return DropReason::kNone;  // no L4 header in this piece
        }
    }
    m.l4_off = static_cast<uint16_t>(l3 + ihl);
    return parse_l4(ip + ihl, total - ihl, m);
}

uint32_t tuple_hash(const dataplane::Tuple4& t) noexcept {
    // Order-independent combination of both endpoints, so that a flow and its reply hash
    // alike, then the project's 64-bit finaliser to spread the bits.
    const uint32_t a = t.src.be ^ (uint32_t{t.sport} << 16);
    const uint32_t b = t.dst.be ^ (uint32_t{t.dport} << 16);
    return static_cast<uint32_t>(
        mix64((uint64_t{a + b} << 32 | (a * b)) ^ (uint64_t{t.proto} << 56)));
}

}  // namespace kdp::pkt
