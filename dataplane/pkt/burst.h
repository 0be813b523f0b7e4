// Burst and PacketMeta: the unit of work of every hot-path stage.
//
// A worker receives up to kBurstSize mbufs from one (port, queue), parses them into the
// parallel PacketMeta array, and runs the stages over the burst. Stages only record a
// decision (action, reason, out_port); the worker dispatches once at the end (VPP's nexts[]).
// Owned by one worker; never shared between threads.
#pragma once

#include <cstdint>

#include "common/net.h"
#include "pkt/drop_reason.h"

struct rte_mbuf;

namespace kdp::dataplane {

/// 32 mbufs per burst, as DPDK's l3fwd and OVS's dp_packet_batch: large enough to amortise
/// the rx/tx calls and the table loads, small enough that a burst's headers stay in L1.
inline constexpr uint16_t kBurstSize = 32;

/// A flow's identity as parsed from its headers; ports in network order, 0 when absent.
template <class Addr>
struct Tuple {
    Addr src;
    Addr dst;
    uint16_t sport = 0;
    uint16_t dport = 0;
    uint8_t proto = 0;
};
using Tuple4 = Tuple<Ip4>;

/// What the worker does with a packet once every stage has run.
enum class Action : uint8_t {
    kPending = 0,  // no stage has decided yet
    kTx,           // transmit on out_port
    kDrop,         // count `reason` against the ingress port and free
    kHeld,         // a stage kept the mbuf (e.g. waiting for ARP); the worker must not touch it
    kConsumed,     // handled without forwarding (e.g. an ARP reply learned); free, no drop count
};

namespace pkt_flag {
inline constexpr uint8_t kVlan = 1 << 0;           // one 802.1Q tag present
inline constexpr uint8_t kFragment = 1 << 1;       // MF set or fragment offset non-zero
inline constexpr uint8_t kLaterFragment = 1 << 2;  // fragment offset non-zero: no L4 header
inline constexpr uint8_t kDontFragment = 1 << 3;   // DF set
inline constexpr uint8_t kIpOptions = 1 << 4;      // IHL > 5
inline constexpr uint8_t kL4 = 1 << 5;             // l4_off and the tuple's ports are valid
inline constexpr uint8_t kTracked = 1 << 6;  // conntrack knows its connection (judged by policy)
inline constexpr uint8_t kNewFlow = 1 << 7;  // a trackable first packet without NAT: admit()
}  // namespace pkt_flag

/// Per-packet results of parsing plus the decision of the stages. Offsets are from the start
/// of the mbuf's data (rte_pktmbuf_mtod). 64 bytes: one cache line per packet.
struct alignas(64) PacketMeta {
    uint16_t l3_off = 0;      // IPv4/ARP header offset (after Ethernet and the VLAN tag)
    uint16_t l4_off = 0;      // L4 header offset (valid with pkt_flag::kL4)
    uint16_t l3_len = 0;      // IPv4 total length (frame padding has been trimmed)
    uint16_t ether_type = 0;  // host order, after the VLAN tag
    uint16_t vlan_tci = 0;    // host order (valid with pkt_flag::kVlan)
    uint8_t flags = 0;        // pkt_flag bits
    uint8_t ttl = 0;
    Tuple4 tuple;  // proto is the IPv4 protocol number
    uint8_t tcp_flags = 0;
    uint8_t icmp_type = 0;
    uint16_t in_port = 0;
    uint16_t out_port = 0;
    Action action = Action::kPending;
    DropReason reason = DropReason::kNone;
    // Conntrack, from the burst's first passes (TCP, UDP, SCTP): the hash of the tuple's key
    // (0: not computed) and the bucket slot whose signature matched it (Conntrack::probe; a
    // hint, confirmed against the entry's key before it is used).
    uint64_t ct_hash = 0;
    uint64_t ct_hint = 0;

    bool pending() const noexcept { return action == Action::kPending; }
    void drop(DropReason r) noexcept {
        action = Action::kDrop;
        reason = r;
    }
    void tx(uint16_t port) noexcept {
        action = Action::kTx;
        out_port = port;
    }
};
static_assert(sizeof(PacketMeta) == 64, "one cache line per packet");

struct Burst {
    rte_mbuf* pkts[kBurstSize];
    PacketMeta meta[kBurstSize];
    uint16_t count = 0;
};

}  // namespace kdp::dataplane
