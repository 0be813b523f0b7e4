// Shared per-packet helpers of the stages: L2 rewrite and TX decisions. Worker-only.
#pragma once

#include <rte_mbuf.h>

#include "pkt/burst.h"
#include "pkt/eth.h"

namespace kdp::dataplane::stage {

/// Moves the start of the data `len` bytes forward. Invariant: len <= m->data_len, which holds
/// for every offset the parser produced (it never points past the frame).
inline uint8_t* adj_parsed(rte_mbuf* m, uint16_t len) noexcept {
    m->data_off = static_cast<uint16_t>(m->data_off + len);
    m->data_len = static_cast<uint16_t>(m->data_len - len);
    m->pkt_len -= len;
    return rte_pktmbuf_mtod(m, uint8_t*);
}

/// Makes the frame start exactly one Ethernet header before L3 (removing a VLAN tag if any)
/// and writes that header. Returns the frame start; offsets in `p` follow the move.
inline uint8_t* rewrite_l2(rte_mbuf* m,
                           PacketMeta& p,
                           const Mac& dst,
                           const Mac& src,
                           uint16_t type = pkt::kEtherTypeIpv4) noexcept {
    const uint16_t extra = static_cast<uint16_t>(p.l3_off - pkt::kEtherHdrLen);
    uint8_t* d = adj_parsed(m, extra);
    pkt::write_eth(d, dst, src, type);
    p.l3_off = pkt::kEtherHdrLen;
    if (p.flags & pkt_flag::kL4) {
        p.l4_off = static_cast<uint16_t>(p.l4_off - extra);
    }
    p.flags &= static_cast<uint8_t>(~pkt_flag::kVlan);
    return d;
}

/// Removes Ethernet padding after the IPv4 datagram so that lengths derived from the mbuf
/// (encapsulation, TX byte counters) are the datagram's.
inline void trim_to_l3(rte_mbuf* m, const PacketMeta& p) noexcept {
    const uint32_t want = uint32_t{p.l3_off} + p.l3_len;
    if (m->data_len > want) {
        rte_pktmbuf_trim(m, static_cast<uint16_t>(m->data_len - want));
    }
}

}  // namespace kdp::dataplane::stage
