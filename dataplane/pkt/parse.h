// Frame parser: Ethernet (at most one 802.1Q tag), ARP, IPv4 (options, fragments), and the L4
// headers kdp looks at (TCP, UDP, SCTP, ICMP). A pure function on bytes, so that the unit
// tests and the fuzzer (test/fuzz/fuzz_frame.cc) drive it without an EAL. Every malformed input
// returns a DropReason; nothing is read beyond `len`.
#pragma once

#include <cstdint>

#include "common/ip_proto.h"
#include "pkt/burst.h"

namespace kdp::pkt {

inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeArp = 0x0806;
inline constexpr uint16_t kEtherTypeVlan = 0x8100;
inline constexpr uint16_t kEtherTypeQinQ = 0x88a8;
inline constexpr uint16_t kEtherHdrLen = 14;
inline constexpr uint16_t kVlanHdrLen = 4;
inline constexpr uint16_t kIpv4HdrLen = 20;
inline constexpr uint16_t kUdpHdrLen = 8;
inline constexpr uint16_t kTcpHdrLen = 20;
inline constexpr uint16_t kSctpHdrLen = 12;
inline constexpr uint16_t kIcmpHdrLen = 8;
inline constexpr uint16_t kArpLen = 28;
inline constexpr uint16_t kVxlanHdrLen = 8;
/// Outer Ethernet + IPv4 + UDP + VXLAN: what encapsulation adds in front of the inner frame.
inline constexpr uint16_t kVxlanOverhead = kEtherHdrLen + kIpv4HdrLen + kUdpHdrLen + kVxlanHdrLen;

using kdp::kProtoIcmp;  // common/ip_proto.h: the numbers and their names, once
using kdp::kProtoSctp;
using kdp::kProtoTcp;
using kdp::kProtoUdp;

struct ParseOptions {
    bool verify_ip_checksum = true;  // false when the NIC already verified it (RX offload flag)
};

/// Parses `len` bytes of a frame into `m` (offsets, ether_type, flags, tuple, ttl, L4 fields).
/// Returns DropReason::kNone on success. On success for IPv4, `m.l3_len` is the IP total
/// length, and `len` may exceed l3_off + l3_len by Ethernet padding, which the caller trims.
dataplane::DropReason parse_frame(const uint8_t* data,
                                  uint32_t len,
                                  dataplane::PacketMeta& m,
                                  const ParseOptions& opt = {}) noexcept;

/// A symmetric 32-bit hash of the tuple (same for both directions of a flow).
uint32_t tuple_hash(const dataplane::Tuple4& t) noexcept;

}  // namespace kdp::pkt
