// Ingress checks: whether a frame is for this node at all, and whether a port with one peer
// (a pod, the host interface) sent it from the address that peer owns. Worker-only.
#pragma once

#include <atomic>

#include <rte_mbuf.h>

#include "pkt/eth.h"
#include "stage/node_context.h"

namespace kdp::dataplane::stage {

/// True when the frame is addressed to `mine`; otherwise drops it as multicast or not ours.
inline bool addressed_to(rte_mbuf* m, PacketMeta& p, const Mac& mine) noexcept {
    const Mac dst = pkt::read_mac(rte_pktmbuf_mtod(m, const uint8_t*));
    if (dst == mine) [[likely]] {
        return true;
    }
    p.drop(dst.is_multicast() ? DropReason::kMulticast : DropReason::kNotForUs);
    return false;
}

/// IPv4 from a port with one peer (a pod, the host interface) whose address is `own`: true
/// when it is addressed to the gateway and sent from `own` (else dropped). The frame's source
/// MAC is then the peer's, what frames to it are sent to; written only when it changed, so the
/// line stays shared between workers.
inline bool from_peer(const NodeContext& n, rte_mbuf* m, PacketMeta& p, Ip4 own) noexcept {
    if (!addressed_to(m, p, n.gateway_mac)) [[unlikely]] {
        return false;
    }
    if (p.tuple.src != own) [[unlikely]] {
        p.drop(DropReason::kSourceMismatch);
        return false;
    }
    const Mac src_mac = pkt::read_mac(rte_pktmbuf_mtod(m, const uint8_t*) + 6);
    std::atomic<uint64_t>& peer = n.ports->port[p.in_port].peer_mac;
    if (peer.load(std::memory_order_relaxed) != src_mac.pack()) [[unlikely]] {
        peer.store(src_mac.pack(), std::memory_order_relaxed);
    }
    return true;
}

}  // namespace kdp::dataplane::stage
