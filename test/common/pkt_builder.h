// Builds test frames byte by byte, independently of the dataplane's own header writers, so
// that a test does not check the code with itself. Test-only.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common/net.h"

namespace kdp::test {

using Bytes = std::vector<uint8_t>;

inline void put16(Bytes& b, uint16_t v) {
    b.push_back(static_cast<uint8_t>(v >> 8));
    b.push_back(static_cast<uint8_t>(v));
}
inline void put32(Bytes& b, uint32_t v) {
    put16(b, static_cast<uint16_t>(v >> 16));
    put16(b, static_cast<uint16_t>(v));
}
inline void put_mac(Bytes& b, const Mac& m) {
    b.insert(b.end(), m.b.begin(), m.b.end());
}
inline uint16_t get16(const uint8_t* p) {
    return static_cast<uint16_t>(p[0] << 8 | p[1]);
}
inline uint32_t get32(const uint8_t* p) {
    return uint32_t{get16(p)} << 16 | get16(p + 2);
}

/// RFC 1071 checksum computed the slow, obvious way (host-order 16-bit words).
inline uint16_t ref_checksum(const uint8_t* p, size_t n) {
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < n; i += 2) {
        s += get16(p + i);
    }
    if (n & 1) {
        s += uint32_t{p[n - 1]} << 8;
    }
    while (s >> 16) {
        s = (s & 0xffff) + (s >> 16);
    }
    return static_cast<uint16_t>(~s);
}

/// CRC32c bit by bit (RFC 3309), independent of the dataplane's SSE4.2 version.
inline uint32_t ref_crc32c_update(uint32_t c, const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        c ^= p[i];
        for (int k = 0; k < 8; ++k) {
            c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
        }
    }
    return c;
}
inline uint32_t ref_crc32c(const uint8_t* p, size_t n) {
    return ~ref_crc32c_update(0xffffffffu, p, n);
}

/// Verifies the L4 checksum of the IPv4 datagram at `ip` (TCP/UDP with the pseudo-header,
/// SCTP's CRC32c). UDP with a zero checksum counts as valid.
inline bool l4_checksum_ok(const uint8_t* ip) {
    const size_t ihl = (ip[0] & 0xf) * 4u;
    const size_t total = get16(ip + 2);
    const uint8_t* l4 = ip + ihl;
    const size_t len = total - ihl;
    if (ip[9] == 132) {
        if (len < 12) {
            return false;
        }
        const uint32_t stored = uint32_t{l4[8]} | uint32_t{l4[9]} << 8 | uint32_t{l4[10]} << 16 |
                                uint32_t{l4[11]} << 24;
        const uint8_t zeros[4] = {0, 0, 0, 0};
        uint32_t c = ref_crc32c_update(0xffffffffu, l4, 8);
        c = ref_crc32c_update(c, zeros, 4);
        c = ref_crc32c_update(c, l4 + 12, len - 12);
        return ~c == stored;
    }
    if (ip[9] == 17 && get16(l4 + 6) == 0) {
        return true;
    }
    std::vector<uint8_t> buf(ip + 12, ip + 20);
    buf.push_back(0);
    buf.push_back(ip[9]);
    buf.push_back(static_cast<uint8_t>(len >> 8));
    buf.push_back(static_cast<uint8_t>(len));
    buf.insert(buf.end(), l4, l4 + len);
    return ref_checksum(buf.data(), buf.size()) == 0;
}

struct L4 {
    uint8_t proto = 17;  // 6 TCP, 17 UDP, 132 SCTP, 1 ICMP
    uint16_t sport = 12345;
    uint16_t dport = 80;
    uint8_t tcp_flags = 0x02;
    uint8_t icmp_type = 8;
    uint16_t icmp_id = 0x1234;
};

struct Ipv4Opts {
    uint8_t ttl = 64;
    bool df = true;
    uint16_t frag_off = 0;  // in 8-byte units
    bool mf = false;
    std::vector<uint8_t> options;  // multiple of 4
    uint8_t tos = 0;
};

/// Fills the TCP or UDP checksum of segment `l4b` (its checksum field zero) sent src -> dst.
inline void fill_l4_checksum(Ip4 src, Ip4 dst, uint8_t proto, Bytes& l4b) {
    Bytes ph;
    put32(ph, src.host());
    put32(ph, dst.host());
    ph.push_back(0);
    ph.push_back(proto);
    put16(ph, static_cast<uint16_t>(l4b.size()));
    ph.insert(ph.end(), l4b.begin(), l4b.end());
    uint16_t c = ref_checksum(ph.data(), ph.size());
    if (proto == 17 && c == 0) {
        c = 0xffff;
    }
    const size_t at = proto == 6 ? 16 : 6;
    l4b[at] = static_cast<uint8_t>(c >> 8);
    l4b[at + 1] = static_cast<uint8_t>(c);
}

/// IPv4 datagram (header + L4 + payload), checksums filled.
inline Bytes ipv4(Ip4 src, Ip4 dst, const L4& l4, size_t payload, const Ipv4Opts& o = {}) {
    Bytes l4b;
    switch (l4.proto) {
        case 6:
            put16(l4b, l4.sport);
            put16(l4b, l4.dport);
            put32(l4b, 1000);
            put32(l4b, 0);
            l4b.push_back(0x50);
            l4b.push_back(l4.tcp_flags);
            put16(l4b, 65535);
            put16(l4b, 0);
            put16(l4b, 0);
            break;
        case 17:
            put16(l4b, l4.sport);
            put16(l4b, l4.dport);
            put16(l4b, static_cast<uint16_t>(8 + payload));
            put16(l4b, 0);
            break;
        case 132:
            put16(l4b, l4.sport);
            put16(l4b, l4.dport);
            put32(l4b, 0xabcdef01);
            put32(l4b, 0);
            if (payload != 0) {  // one DATA chunk carrying the payload, padded to 4 bytes
                l4b.push_back(0);
                l4b.push_back(3);
                put16(l4b, static_cast<uint16_t>(16 + payload));
                put32(l4b, 1);
                put16(l4b, 0);
                put16(l4b, 0);
                put32(l4b, 0);
            }
            break;
        case 1:
            l4b.push_back(l4.icmp_type);
            l4b.push_back(0);
            put16(l4b, 0);
            put16(l4b, l4.icmp_id);
            put16(l4b, 1);
            break;
        default:
            break;
    }
    for (size_t i = 0; i < payload; ++i) {
        l4b.push_back(static_cast<uint8_t>(i * 7 + 3));
    }
    while (l4.proto == 132 && l4b.size() % 4 != 0) {
        l4b.push_back(0);
    }
    if (l4.proto == 1) {
        const uint16_t c = ref_checksum(l4b.data(), l4b.size());
        l4b[2] = static_cast<uint8_t>(c >> 8);
        l4b[3] = static_cast<uint8_t>(c);
    }
    if (l4.proto == 6 || l4.proto == 17) {
        fill_l4_checksum(src, dst, l4.proto, l4b);
    }
    if (l4.proto == 132) {
        const uint32_t c = ref_crc32c(l4b.data(), l4b.size());
        l4b[8] = static_cast<uint8_t>(c);
        l4b[9] = static_cast<uint8_t>(c >> 8);
        l4b[10] = static_cast<uint8_t>(c >> 16);
        l4b[11] = static_cast<uint8_t>(c >> 24);
    }
    Bytes b;
    const size_t ihl = 20 + o.options.size();
    b.push_back(static_cast<uint8_t>(0x40 | (ihl / 4)));
    b.push_back(o.tos);
    put16(b, static_cast<uint16_t>(ihl + l4b.size()));
    put16(b, 0x4242);
    put16(b, static_cast<uint16_t>((o.df ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | o.frag_off));
    b.push_back(o.ttl);
    b.push_back(l4.proto);
    put16(b, 0);
    put32(b, src.host());
    put32(b, dst.host());
    b.insert(b.end(), o.options.begin(), o.options.end());
    const uint16_t c = ref_checksum(b.data(), ihl);
    b[10] = static_cast<uint8_t>(c >> 8);
    b[11] = static_cast<uint8_t>(c);
    b.insert(b.end(), l4b.begin(), l4b.end());
    return b;
}

inline Bytes ether(
    const Mac& dst, const Mac& src, uint16_t type, const Bytes& body, int vlan = -1) {
    Bytes b;
    put_mac(b, dst);
    put_mac(b, src);
    if (vlan >= 0) {
        put16(b, 0x8100);
        put16(b, static_cast<uint16_t>(vlan));
    }
    put16(b, type);
    b.insert(b.end(), body.begin(), body.end());
    return b;
}

inline Bytes arp(uint16_t op, const Mac& sha, Ip4 spa, const Mac& tha, Ip4 tpa) {
    Bytes b;
    put16(b, 1);
    put16(b, 0x0800);
    b.push_back(6);
    b.push_back(4);
    put16(b, op);
    put_mac(b, sha);
    put32(b, spa.host());
    put_mac(b, tha);
    put32(b, tpa.host());
    return b;
}

/// A 20-byte IPv4 header (DF, TTL 64, checksum filled) in front of `body`.
inline Bytes ipv4_around(Ip4 src, Ip4 dst, uint8_t proto, const Bytes& body) {
    Bytes b;
    b.push_back(0x45);
    b.push_back(0);
    put16(b, static_cast<uint16_t>(20 + body.size()));
    put16(b, 0);
    put16(b, 0x4000);
    b.push_back(64);
    b.push_back(proto);
    put16(b, 0);
    put32(b, src.host());
    put32(b, dst.host());
    const uint16_t c = ref_checksum(b.data(), 20);
    b[10] = static_cast<uint8_t>(c >> 8);
    b[11] = static_cast<uint8_t>(c);
    b.insert(b.end(), body.begin(), body.end());
    return b;
}

/// Outer IPv4/UDP/VXLAN around `inner_frame` (UDP checksum zero).
inline Bytes vxlan(Ip4 src,
                   Ip4 dst,
                   uint16_t sport,
                   uint16_t dport,
                   uint32_t vni,
                   const Bytes& inner_frame,
                   uint8_t flags = 0x08) {
    Bytes udp;
    put16(udp, sport);
    put16(udp, dport);
    put16(udp, static_cast<uint16_t>(16 + inner_frame.size()));
    put16(udp, 0);
    udp.push_back(flags);
    udp.push_back(0);
    udp.push_back(0);
    udp.push_back(0);
    put32(udp, vni << 8);
    udp.insert(udp.end(), inner_frame.begin(), inner_frame.end());
    return ipv4_around(src, dst, 17, udp);
}

/// An IPv4 TCP segment with the given numbers, flags and payload (20-byte header, window
/// 65535); checksums filled.
inline Bytes tcp_segment(Ip4 src,
                         Ip4 dst,
                         uint16_t sport,
                         uint16_t dport,
                         uint32_t seq,
                         uint32_t ack,
                         uint8_t flags,
                         const std::string& payload = "") {
    Bytes t;
    put16(t, sport);
    put16(t, dport);
    put32(t, seq);
    put32(t, ack);
    t.push_back(0x50);
    t.push_back(flags);
    put16(t, 65535);
    put16(t, 0);
    put16(t, 0);
    t.insert(t.end(), payload.begin(), payload.end());
    fill_l4_checksum(src, dst, 6, t);
    return ipv4_around(src, dst, 6, t);
}

/// An ICMP error (type, code, 16-bit next-hop MTU in the second word) from `src` to `dst`
/// quoting the first `quote_len` bytes of the IPv4 datagram `quoted`; checksums filled.
inline Bytes icmp_error(Ip4 src,
                        Ip4 dst,
                        uint8_t type,
                        uint8_t code,
                        const Bytes& quoted,
                        size_t quote_len = 576 - 28,
                        uint16_t mtu = 0) {
    Bytes icmp{type, code, 0, 0, 0, 0};
    put16(icmp, mtu);
    icmp.insert(icmp.end(), quoted.begin(),
                quoted.begin() + static_cast<long>(std::min(quote_len, quoted.size())));
    const uint16_t c = ref_checksum(icmp.data(), icmp.size());
    icmp[2] = static_cast<uint8_t>(c >> 8);
    icmp[3] = static_cast<uint8_t>(c);
    return ipv4_around(src, dst, 1, icmp);
}

inline Ip4 ip(const char* s) {
    return *Ip4::parse(s);
}
inline Mac mac(const char* s) {
    return *Mac::parse(s);
}

}  // namespace kdp::test

namespace kdp::test {
inline Mac read_mac_at(const Bytes& b, size_t off) {
    Mac m;
    std::copy(b.begin() + static_cast<long>(off), b.begin() + static_cast<long>(off) + 6,
              m.b.begin());
    return m;
}
}  // namespace kdp::test
