// ARP stage. Pod ports: proxy ARP — every request from the pod for any address but its own is
// answered with the gateway MAC, so pods route everything through the node whether their
// prefix is /32 or the node's /24 (Calico's approach). The host interface: the same for the
// node's kernel, whose address there is the gateway's. Uplink: answer for the node IP, and
// learn the MAC of every underlay neighbour the tables need (remote VTEPs, the gateway).
// Worker-only; replies are built in place in the received mbuf.
#pragma once

#include "pkt/hdr.h"
#include "stage/l2.h"
#include "stage/node_context.h"

namespace kdp::dataplane::stage {

/// Proxy ARP on a port with one peer whose address is `own` (or `also`, when not zero): every
/// request from it for any other address is answered with the gateway MAC, and the peer's MAC
/// is learned.
inline void proxy_arp(
    const NodeContext& n, rte_mbuf* m, PacketMeta& p, Ip4 own, Ip4 also = {}) noexcept {
    uint8_t* d = rte_pktmbuf_mtod(m, uint8_t*);
    pkt::ArpView a{d + p.l3_off};
    if (!a.is_eth_ipv4()) [[unlikely]] {
        p.drop(DropReason::kArpMalformed);
        return;
    }
    const Ip4 spa = a.spa();
    const Ip4 tpa = a.tpa();
    const bool from_peer = !own.is_zero() && (spa == own || (!also.is_zero() && spa == also));
    if (a.op() != pkt::kArpOpRequest || !from_peer || tpa == own || tpa == spa || tpa.is_zero() ||
        (!also.is_zero() && tpa == also)) {
        p.drop(DropReason::kArpIgnored);
        return;
    }
    const Mac sha = a.sha();
    n.ports->port[p.in_port].peer_mac.store(sha.pack(), std::memory_order_relaxed);
    a.set(pkt::kArpOpReply, n.gateway_mac, tpa, sha, spa);
    rewrite_l2(m, p, sha, n.gateway_mac, pkt::kEtherTypeArp);
    p.tx(p.in_port);
}

inline void arp_from_pod(const NodeContext& n,
                         const table::TableSet& t,
                         rte_mbuf* m,
                         PacketMeta& p) noexcept {
    proxy_arp(n, m, p, t.port_pod_ip[p.in_port]);
}

/// The node's kernel on the host interface: its address there is the gateway's, and with
/// host.node_address also the node's (it then asks for underlay neighbours here too).
inline void arp_from_host(const NodeContext& n, rte_mbuf* m, PacketMeta& p) noexcept {
    proxy_arp(n, m, p, n.gateway_ip, n.host_node_address ? n.node_ip : Ip4{});
}

inline void arp_from_uplink(const NodeContext& n,
                            rte_mbuf* m,
                            PacketMeta& p,
                            uint64_t now) noexcept {
    uint8_t* d = rte_pktmbuf_mtod(m, uint8_t*);
    pkt::ArpView a{d + p.l3_off};
    if (!a.is_eth_ipv4()) [[unlikely]] {
        p.drop(DropReason::kArpMalformed);
        return;
    }
    const Mac sha = a.sha();
    const Ip4 spa = a.spa();
    const uint32_t slot = n.neighbors->find(spa);
    if (slot != table::kNoSlot && !sha.is_multicast() && !sha.is_zero()) {
        n.neighbors->learn(slot, sha, now);
    }
    if (a.op() == pkt::kArpOpRequest && a.tpa() == n.node_ip) {
        a.set(pkt::kArpOpReply, n.node_mac, n.node_ip, sha, spa);
        pkt::write_eth(d, sha, n.node_mac, pkt::kEtherTypeArp);
        if (p.flags & pkt_flag::kVlan) {
            // Keep the tag: the reply goes back on the VLAN the request came from.
            const uint16_t tpid = to_be16(pkt::kEtherTypeVlan);
            std::memcpy(d + pkt::off::kEthType, &tpid, 2);
        }
        p.tx(p.in_port);
        return;
    }
    if (slot != table::kNoSlot) {
        p.action = Action::kConsumed;
    } else {
        p.drop(DropReason::kArpIgnored);
    }
}

}  // namespace kdp::dataplane::stage
