#include "common/net.h"

#include <charconv>
#include <cstdio>

namespace kdp {
namespace {

// Parses a decimal number in [0, max] that fills `s` exactly; no sign, no leading zeros.
std::optional<uint32_t> parse_dec(std::string_view s, uint32_t max) {
    if (s.empty() || s.size() > 10 || (s.size() > 1 && s[0] == '0')) {
        return std::nullopt;
    }
    uint32_t v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size() || v > max) {
        return std::nullopt;
    }
    return v;
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

}  // namespace

std::optional<Ip4> Ip4::parse(std::string_view s) {
    uint32_t h = 0;
    for (int i = 0; i < 4; ++i) {
        const size_t dot = s.find('.');
        const bool last = i == 3;
        if (last != (dot == std::string_view::npos)) {
            return std::nullopt;
        }
        const auto octet = parse_dec(last ? s : s.substr(0, dot), 255);
        if (!octet) {
            return std::nullopt;
        }
        h = (h << 8) | *octet;
        if (!last) {
            s.remove_prefix(dot + 1);
        }
    }
    return Ip4::from_host(h);
}

std::string Ip4::str() const {
    const uint32_t h = host();
    char buf[16];
    std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", h >> 24, (h >> 16) & 0xff, (h >> 8) & 0xff,
                  h & 0xff);
    return buf;
}

std::optional<Prefix4> Prefix4::parse(std::string_view s, bool strict) {
    const size_t slash = s.find('/');
    if (slash == std::string_view::npos) {
        return std::nullopt;
    }
    const auto ip = Ip4::parse(s.substr(0, slash));
    const auto len = parse_dec(s.substr(slash + 1), 32);
    if (!ip || !len) {
        return std::nullopt;
    }
    Prefix4 p{*ip, static_cast<uint8_t>(*len)};
    const uint32_t masked = ip->host() & p.mask_host();
    if (strict && masked != ip->host()) {
        return std::nullopt;
    }
    p.addr = Ip4::from_host(masked);
    return p;
}

std::string Prefix4::str() const {
    return addr.str() + "/" + std::to_string(len);
}

std::optional<Mac> Mac::parse(std::string_view s) {
    if (s.size() != 17) {
        return std::nullopt;
    }
    Mac m;
    for (int i = 0; i < 6; ++i) {
        const int hi = hex_digit(s[i * 3]);
        const int lo = hex_digit(s[i * 3 + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && s[i * 3 + 2] != ':')) {
            return std::nullopt;
        }
        m.b[i] = static_cast<uint8_t>(hi << 4 | lo);
    }
    return m;
}

std::string Mac::str() const {
    char buf[18];
    std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4],
                  b[5]);
    return buf;
}

Mac Mac::from_ip(Ip4 ip) noexcept {
    const uint32_t h = ip.host();
    return Mac{{0x0a, 0x58, static_cast<uint8_t>(h >> 24), static_cast<uint8_t>(h >> 16),
                static_cast<uint8_t>(h >> 8), static_cast<uint8_t>(h)}};
}

}  // namespace kdp
