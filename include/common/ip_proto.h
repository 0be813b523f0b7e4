/// IP protocol numbers kdp handles (IANA "Assigned Internet Protocol Numbers") and their names,
/// once for every component: the dataplane's parser and stages, the wire format (spec/), the
/// trace and the CLI. Pure constants; any thread.
#pragma once

#include <cstdint>
#include <string_view>

namespace kdp {

inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr uint8_t kProtoSctp = 132;

/// "icmp", "tcp", "udp", "sctp"; empty for any other protocol.
constexpr std::string_view ip_proto_name(uint8_t proto) noexcept {
    switch (proto) {
        case kProtoIcmp:
            return "icmp";
        case kProtoTcp:
            return "tcp";
        case kProtoUdp:
            return "udp";
        case kProtoSctp:
            return "sctp";
        default:
            return {};
    }
}

}  // namespace kdp
