// Small in-place header writers shared by the stages: Ethernet, IPv4 TTL, ARP layout.
// Pure functions on bytes; callers guarantee the lengths (the parser checked them).
#pragma once

#include <cstdint>
#include <cstring>

#include "common/net.h"
#include "pkt/checksum.h"
#include "pkt/hdr.h"
#include "pkt/parse.h"

namespace kdp::pkt {

inline void write_eth(uint8_t* p, const Mac& dst, const Mac& src, uint16_t type) noexcept {
    std::memcpy(p + off::kEthDst, dst.b.data(), 6);
    std::memcpy(p + off::kEthSrc, src.b.data(), 6);
    p[off::kEthType] = static_cast<uint8_t>(type >> 8);
    p[off::kEthType + 1] = static_cast<uint8_t>(type);
}

inline Mac read_mac(const uint8_t* p) noexcept {
    Mac m;
    std::memcpy(m.b.data(), p, 6);
    return m;
}

/// Decrements the TTL of the IPv4 header at `ip`, patching its checksum per RFC 1624.
inline void dec_ttl(uint8_t* ip) noexcept {
    uint16_t before;  // TTL and protocol: one 16-bit word of the checksum
    std::memcpy(&before, ip + off::kIpTtl, 2);
    ip[off::kIpTtl] = static_cast<uint8_t>(ip[off::kIpTtl] - 1);
    uint16_t after;
    std::memcpy(&after, ip + off::kIpTtl, 2);
    uint16_t check;
    std::memcpy(&check, ip + off::kIpChecksum, 2);
    check = csum_replace16(check, before, after);
    std::memcpy(ip + off::kIpChecksum, &check, 2);
}

/// Fills a 20-byte IPv4 header (no options) and its checksum.
inline void write_ipv4(uint8_t* ip,
                       uint16_t total_len,
                       uint8_t tos,
                       bool dont_fragment,
                       uint8_t ttl,
                       uint8_t proto,
                       Ip4 src,
                       Ip4 dst) noexcept {
    ip[0] = 0x45;
    ip[1] = tos;
    ip[2] = static_cast<uint8_t>(total_len >> 8);
    ip[3] = static_cast<uint8_t>(total_len);
    ip[4] = 0;  // identification: 0 is fine for atomic datagrams (RFC 6864 §4.1) ...
    ip[5] = 0;
    ip[6] = dont_fragment ? 0x40 : 0;  // ... which is what DF makes these
    ip[7] = 0;
    ip[8] = ttl;
    ip[9] = proto;
    ip[10] = 0;
    ip[11] = 0;
    std::memcpy(ip + 12, &src.be, 4);
    std::memcpy(ip + 16, &dst.be, 4);
    const uint16_t c = csum(ip, kIpv4HdrLen);
    std::memcpy(ip + 10, &c, 2);
}

// ARP (RFC 826) for Ethernet/IPv4, offsets within the 28-byte body.
inline constexpr uint16_t kArpOpRequest = 1;
inline constexpr uint16_t kArpOpReply = 2;
struct ArpView {
    uint8_t* p;
    bool is_eth_ipv4() const noexcept {
        return p[0] == 0 && p[1] == 1 && p[2] == 0x08 && p[3] == 0 && p[4] == 6 && p[5] == 4;
    }
    uint16_t op() const noexcept { return static_cast<uint16_t>(p[6] << 8 | p[7]); }
    Mac sha() const noexcept { return read_mac(p + 8); }
    Ip4 spa() const noexcept {
        Ip4 a;
        std::memcpy(&a.be, p + 14, 4);
        return a;
    }
    Ip4 tpa() const noexcept {
        Ip4 a;
        std::memcpy(&a.be, p + 24, 4);
        return a;
    }
    void set(uint16_t op, const Mac& sha, Ip4 spa, const Mac& tha, Ip4 tpa) noexcept {
        p[0] = 0;
        p[1] = 1;
        p[2] = 0x08;
        p[3] = 0;
        p[4] = 6;
        p[5] = 4;
        p[6] = static_cast<uint8_t>(op >> 8);
        p[7] = static_cast<uint8_t>(op);
        std::memcpy(p + 8, sha.b.data(), 6);
        std::memcpy(p + 14, &spa.be, 4);
        std::memcpy(p + 18, tha.b.data(), 6);
        std::memcpy(p + 24, &tpa.be, 4);
    }
};

// VXLAN (RFC 7348 §5).
inline constexpr uint8_t kVxlanFlagI = 0x08;
/// The UDP source port for an inner flow hash: the dynamic range 49152-65535, as RFC 7348
/// recommends, so that underlay ECMP spreads flows while each flow keeps one path.
inline uint16_t vxlan_source_port(uint32_t flow_hash) noexcept {
    return static_cast<uint16_t>(49152u + (flow_hash % 16384u));
}

/// Writes outer IPv4 + UDP + VXLAN (36 bytes) at `p` for an inner frame of `inner_len`.
/// The UDP checksum is sent as zero, as RFC 7348 §5 says it SHOULD be over IPv4.
inline void write_vxlan_headers(uint8_t* p,
                                uint16_t inner_len,
                                Ip4 src,
                                Ip4 dst,
                                uint16_t sport,
                                uint16_t dport_be,
                                uint32_t vni) noexcept {
    const uint16_t udp_len = static_cast<uint16_t>(kUdpHdrLen + kVxlanHdrLen + inner_len);
    write_ipv4(p, static_cast<uint16_t>(kIpv4HdrLen + udp_len), 0, true, 64, kProtoUdp, src, dst);
    uint8_t* u = p + kIpv4HdrLen;
    u[0] = static_cast<uint8_t>(sport >> 8);
    u[1] = static_cast<uint8_t>(sport);
    std::memcpy(u + 2, &dport_be, 2);
    u[4] = static_cast<uint8_t>(udp_len >> 8);
    u[5] = static_cast<uint8_t>(udp_len);
    u[6] = 0;
    u[7] = 0;
    uint8_t* v = u + kUdpHdrLen;
    v[0] = kVxlanFlagI;
    v[1] = v[2] = v[3] = 0;
    v[4] = static_cast<uint8_t>(vni >> 16);
    v[5] = static_cast<uint8_t>(vni >> 8);
    v[6] = static_cast<uint8_t>(vni);
    v[7] = 0;
}

}  // namespace kdp::pkt
