// Where each field the dataplane reads or rewrites sits in its header: offsets taken from DPDK's
// header structs (rte_ether_hdr, rte_ipv4_hdr, rte_tcp_hdr, ...), so that code working on the
// bytes of a frame names the field instead of counting (`ip + off::kIpChecksum`, not
// `ip + 10`). The structs themselves are packed and unaligned in a frame; these offsets go with
// memcpy. TCP flag bits and ICMP types are here once too. Pure constants; any thread.
#pragma once

#include <cstddef>
#include <cstdint>

#include <rte_ether.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_sctp.h>
#include <rte_tcp.h>
#include <rte_udp.h>

namespace kdp::pkt {

namespace off {
// Ethernet.
inline constexpr size_t kEthDst = offsetof(rte_ether_hdr, dst_addr);
inline constexpr size_t kEthSrc = offsetof(rte_ether_hdr, src_addr);
inline constexpr size_t kEthType = offsetof(rte_ether_hdr, ether_type);
// IPv4.
inline constexpr size_t kIpVersionIhl = offsetof(rte_ipv4_hdr, version_ihl);
inline constexpr size_t kIpTotalLength = offsetof(rte_ipv4_hdr, total_length);
inline constexpr size_t kIpFragment = offsetof(rte_ipv4_hdr, fragment_offset);
inline constexpr size_t kIpTtl = offsetof(rte_ipv4_hdr, time_to_live);
inline constexpr size_t kIpProto = offsetof(rte_ipv4_hdr, next_proto_id);
inline constexpr size_t kIpChecksum = offsetof(rte_ipv4_hdr, hdr_checksum);
inline constexpr size_t kIpSrc = offsetof(rte_ipv4_hdr, src_addr);
inline constexpr size_t kIpDst = offsetof(rte_ipv4_hdr, dst_addr);
// Ports: the same place in TCP, UDP and SCTP.
inline constexpr size_t kL4SrcPort = offsetof(rte_tcp_hdr, src_port);
inline constexpr size_t kL4DstPort = offsetof(rte_tcp_hdr, dst_port);
static_assert(offsetof(rte_udp_hdr, dst_port) == kL4DstPort &&
              offsetof(rte_sctp_hdr, dst_port) == kL4DstPort);
// TCP.
inline constexpr size_t kTcpSeq = offsetof(rte_tcp_hdr, sent_seq);
inline constexpr size_t kTcpAck = offsetof(rte_tcp_hdr, recv_ack);
inline constexpr size_t kTcpDataOff = offsetof(rte_tcp_hdr, data_off);
inline constexpr size_t kTcpFlags = offsetof(rte_tcp_hdr, tcp_flags);
inline constexpr size_t kTcpWindow = offsetof(rte_tcp_hdr, rx_win);
inline constexpr size_t kTcpChecksum = offsetof(rte_tcp_hdr, cksum);
// UDP.
inline constexpr size_t kUdpLength = offsetof(rte_udp_hdr, dgram_len);
inline constexpr size_t kUdpChecksum = offsetof(rte_udp_hdr, dgram_cksum);
// SCTP.
inline constexpr size_t kSctpChecksum = offsetof(rte_sctp_hdr, cksum);
// ICMP: echo request/reply carry an identifier and a sequence number; errors put their own
// fields there (e.g. the next-hop MTU of "fragmentation needed", RFC 1191) and quote the packet
// after the 8-byte header.
inline constexpr size_t kIcmpType = offsetof(rte_icmp_hdr, icmp_type);
inline constexpr size_t kIcmpCode = offsetof(rte_icmp_hdr, icmp_code);
inline constexpr size_t kIcmpChecksum = offsetof(rte_icmp_hdr, icmp_cksum);
inline constexpr size_t kIcmpEchoId = offsetof(rte_icmp_hdr, icmp_ident);
inline constexpr size_t kIcmpRest = offsetof(rte_icmp_hdr, icmp_ident);  // errors: unused/MTU
inline constexpr size_t kIcmpNextHopMtu = kIcmpRest + 2;                 // RFC 1191 §4
}  // namespace off

/// Readers of IPv4 header fields that are not whole bytes, on a header at `ip`.
inline uint8_t ipv4_version(const uint8_t* ip) noexcept {
    return static_cast<uint8_t>(ip[off::kIpVersionIhl] >> 4);
}
inline uint32_t ipv4_header_len(const uint8_t* ip) noexcept {
    return (ip[off::kIpVersionIhl] & RTE_IPV4_HDR_IHL_MASK) * uint32_t{RTE_IPV4_IHL_MULTIPLIER};
}
inline uint16_t ipv4_total_len(const uint8_t* ip) noexcept {
    return static_cast<uint16_t>(ip[off::kIpTotalLength] << 8 | ip[off::kIpTotalLength + 1]);
}
/// The fragment offset in 8-byte units (zero: a first fragment or a whole datagram).
inline uint16_t ipv4_fragment_offset(const uint8_t* ip) noexcept {
    const auto v = static_cast<uint16_t>(ip[off::kIpFragment] << 8 | ip[off::kIpFragment + 1]);
    return static_cast<uint16_t>(v & RTE_IPV4_HDR_OFFSET_MASK);
}

/// TCP flag bits (RFC 9293 §3.1), as DPDK names them.
inline constexpr uint8_t kTcpFin = RTE_TCP_FIN_FLAG;
inline constexpr uint8_t kTcpSyn = RTE_TCP_SYN_FLAG;
inline constexpr uint8_t kTcpRst = RTE_TCP_RST_FLAG;
inline constexpr uint8_t kTcpPsh = RTE_TCP_PSH_FLAG;
inline constexpr uint8_t kTcpAck = RTE_TCP_ACK_FLAG;

/// ICMP types and codes (RFC 792; "fragmentation needed" RFC 1191).
inline constexpr uint8_t kIcmpEchoReply = RTE_IP_ICMP_ECHO_REPLY;
inline constexpr uint8_t kIcmpUnreachable = 3;
inline constexpr uint8_t kIcmpCodePortUnreachable = 3;
inline constexpr uint8_t kIcmpCodeFragNeeded = 4;
inline constexpr uint8_t kIcmpEchoRequest = RTE_IP_ICMP_ECHO_REQUEST;
inline constexpr uint8_t kIcmpTimeExceeded = 11;
inline constexpr uint8_t kIcmpParameterProblem = 12;

}  // namespace kdp::pkt
