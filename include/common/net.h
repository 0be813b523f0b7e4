// Address types shared by the dataplane, the control plane and the CNI plugin.
//
/// Addresses are kept in network byte order exactly as they appear on the wire, so that the hot
/// path compares and hashes them without swapping. Parsing and printing live in net.cc and may
/// throw; everything declared inline here is noexcept and usable on a worker lcore.
///
/// IPv6 is planned as a second address type with the same interface (`Ip6`), so that templates
/// over the address type (tuples, prefixes, tables) serve both families.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace kdp {

/// Host <-> network byte order for the few places that need it outside DPDK code.
constexpr uint16_t bswap16(uint16_t v) noexcept {
    return static_cast<uint16_t>((v << 8) | (v >> 8));
}
constexpr uint32_t bswap32(uint32_t v) noexcept {
    return __builtin_bswap32(v);
}
constexpr uint16_t to_be16(uint16_t v) noexcept {
    return bswap16(v);
}
constexpr uint32_t to_be32(uint32_t v) noexcept {
    return bswap32(v);
}
constexpr uint16_t from_be16(uint16_t v) noexcept {
    return bswap16(v);
}
constexpr uint32_t from_be32(uint32_t v) noexcept {
    return bswap32(v);
}

/// An IPv4 address in network byte order.
struct Ip4 {
    uint32_t be = 0;

    static constexpr Ip4 from_host(uint32_t h) noexcept { return Ip4{to_be32(h)}; }
    constexpr uint32_t host() const noexcept { return from_be32(be); }
    constexpr bool is_zero() const noexcept { return be == 0; }
    friend constexpr bool operator==(Ip4 a, Ip4 b) noexcept { return a.be == b.be; }
    friend constexpr auto operator<=>(Ip4 a, Ip4 b) noexcept { return a.host() <=> b.host(); }

    /// Parses dotted quad; nullopt on anything else (no leading zeros games, no trailing bytes).
    static std::optional<Ip4> parse(std::string_view s);
    std::string str() const;
};

/// An IPv4 prefix; `addr` always has its host bits cleared.
struct Prefix4 {
    Ip4 addr;
    uint8_t len = 0;

    constexpr uint32_t mask_host() const noexcept {
        return len == 0 ? 0u : (len >= 32 ? 0xffffffffu : ~((1u << (32 - len)) - 1));
    }
    constexpr bool contains(Ip4 ip) const noexcept {
        return (ip.host() & mask_host()) == addr.host();
    }
    constexpr bool overlaps(const Prefix4& o) const noexcept {
        const uint8_t l = len < o.len ? len : o.len;
        const Prefix4 shorter{Ip4{}, l};
        return (addr.host() & shorter.mask_host()) == (o.addr.host() & shorter.mask_host());
    }
    /// Number of addresses, saturating at 2^32 - 1.
    constexpr uint64_t size() const noexcept { return uint64_t{1} << (32 - len); }
    friend constexpr bool operator==(const Prefix4&, const Prefix4&) noexcept = default;

    /// Parses "a.b.c.d/len". With `strict`, host bits must be zero ("10.0.0.1/24" is refused);
    /// otherwise they are cleared.
    static std::optional<Prefix4> parse(std::string_view s, bool strict = true);
    std::string str() const;
};

/// An Ethernet address as six bytes in wire order.
struct Mac {
    std::array<uint8_t, 6> b{};

    constexpr bool is_zero() const noexcept {
        return (b[0] | b[1] | b[2] | b[3] | b[4] | b[5]) == 0;
    }
    constexpr bool is_multicast() const noexcept { return (b[0] & 1) != 0; }
    friend constexpr bool operator==(const Mac&, const Mac&) noexcept = default;

    /// Packs into the low 48 bits of an integer (for atomics); `unpack` reverses it.
    constexpr uint64_t pack() const noexcept {
        uint64_t v = 0;
        for (int i = 0; i < 6; ++i) {
            v = (v << 8) | b[i];
        }
        return v;
    }
    static constexpr Mac unpack(uint64_t v) noexcept {
        Mac m;
        for (int i = 5; i >= 0; --i) {
            m.b[i] = static_cast<uint8_t>(v & 0xff);
            v >>= 8;
        }
        return m;
    }

    /// Parses "aa:bb:cc:dd:ee:ff" (case-insensitive).
    static std::optional<Mac> parse(std::string_view s);
    std::string str() const;
    /// A locally administered unicast MAC derived from an IPv4 address: 0a:58:a.b.c.d, the
    /// convention several CNI plugins use for gateway and VTEP addresses.
    static Mac from_ip(Ip4 ip) noexcept;
};

}  // namespace kdp
