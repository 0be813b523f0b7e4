// Routing and the VXLAN overlay (RFC 7348): local delivery, encapsulation toward a remote
// node's VTEP, and decapsulation of what remote nodes send us. Worker-only.
//
// Packet path:
//   pod port  -> [proxy ARP | gateway: host or echo | local pod | remote pod CIDR -> encap]
//   host port -> [proxy ARP | local pod | remote pod CIDR -> encap]  (after Service DNAT)
//   uplink    -> [ARP | VXLAN to node IP:port/VNI -> decap -> local pod or host]
#pragma once

#include "core/worker.h"
#include "pkt/parse.h"
#include "stage/arp.h"
#include "stage/health_check.h"
#include "stage/icmp.h"
#include "stage/l2.h"
#include "stage/service.h"

namespace kdp::dataplane::stage {

/// Sends an ARP request for `target` out of the uplink from the worker's own pool. Called only
/// by the one worker that won NeighborTable::claim_request, so at most one request per
/// address per retry interval leaves the node.
void send_arp_request(Worker& w, Ip4 target) noexcept;

/// Queues `m` for transmission on `port` in the worker's TX buffer (flushed when full and at
/// the end of every loop iteration).
void tx_enqueue(Worker& w, uint16_t port, rte_mbuf* m) noexcept;

inline bool is_multicast_or_broadcast(Ip4 ip) noexcept {
    const uint32_t h = ip.host();
    return (h >> 28) == 0xe || h == 0xffffffffu;
}

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

/// Routes out of a port with one peer (a pod's, the host interface): MAC rewrite (gateway ->
/// peer), TTL decrement. Until the peer has been heard from, broadcast: the kernel accepts IPv4
/// in a broadcast frame, and a TAP or vhost port has exactly one peer.
inline void to_peer(const NodeContext& n, rte_mbuf* m, PacketMeta& p, uint16_t port) noexcept {
    if (p.ttl <= 1) [[unlikely]] {
        p.drop(DropReason::kTtlExpired);
        return;
    }
    const uint64_t packed = n.ports->port[port].peer_mac.load(std::memory_order_relaxed);
    const Mac dst = packed != 0 ? Mac::unpack(packed) : Mac{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
    uint8_t* d = rewrite_l2(m, p, dst, n.gateway_mac);
    pkt::dec_ttl(d + pkt::kEtherHdrLen);
    p.tx(port);
}

/// Routes to a pod on this node.
inline void deliver_local(const NodeContext& n,
                          rte_mbuf* m,
                          PacketMeta& p,
                          const table::LocalPod& pod) noexcept {
    if (pod.port_id == table::kNoPort) [[unlikely]] {
        p.drop(DropReason::kNoPortForPod);
        return;
    }
    to_peer(n, m, p, pod.port_id);
}

/// Routes to the node's own kernel through the host interface (only when there is one): the
/// node's address in the pod network is the gateway's.
inline void deliver_host(const NodeContext& n, rte_mbuf* m, PacketMeta& p) noexcept {
    to_peer(n, m, p, n.host_port);
}

/// Sends a frame whose Ethernet header starts at `eth` out of the uplink to the underlay
/// neighbour in `slot`: at once when its MAC is known, else held (bounded) until ARP answers.
inline void send_to_neighbor(
    Worker& w, rte_mbuf* m, PacketMeta& p, uint8_t* eth, uint32_t slot, uint64_t now) noexcept {
    const NodeContext& n = *w.node;
    table::NeighborTable& nt = *n.neighbors;
    if (nt.claim_request(slot, now, n.arp_retry_tsc, n.arp_stale_tsc)) [[unlikely]] {
        send_arp_request(w, nt.ip(slot));
    }
    const uint64_t st = nt.mac_state(slot);
    if (st & table::NeighborTable::kValid) [[likely]] {
        pkt::write_eth(eth, Mac::unpack(st), n.node_mac, pkt::kEtherTypeIpv4);
        p.tx(n.uplink_port);
        return;
    }
    if (w.held_count == w.held.size()) {
        p.drop(DropReason::kNeighborQueueFull);
        return;
    }
    pkt::write_eth(eth, Mac{}, n.node_mac, pkt::kEtherTypeIpv4);
    w.held[w.held_count++] = HeldPacket{m, now, slot, p.in_port};
    p.action = Action::kHeld;
}

/// Routes a masqueraded packet (its source already rewritten to the node IP) out of the uplink:
/// to the destination itself when it is on the underlay subnet, else to the underlay gateway.
inline void egress_out(Worker& w, rte_mbuf* m, PacketMeta& p, uint64_t now) noexcept {
    const NodeContext& n = *w.node;
    if (p.ttl <= 1) [[unlikely]] {
        p.drop(DropReason::kTtlExpired);
        return;
    }
    const uint32_t slot = n.underlay_subnet.contains(p.tuple.dst)
                              ? n.neighbors->slot_for(p.tuple.dst)
                              : n.underlay_gateway_slot;
    if (slot == table::kNoSlot) [[unlikely]] {
        p.drop(DropReason::kNoRoute);  // off-subnet and no uplink.gateway, or neighbours full
        return;
    }
    uint8_t* d = rewrite_l2(m, p, Mac{}, n.node_mac);
    pkt::dec_ttl(d + pkt::kEtherHdrLen);
    send_to_neighbor(w, m, p, d, slot, now);
}

/// Encapsulates toward a remote node. Holds the packet when the underlay next hop is not yet
/// resolved.
inline void encap_to_node(
    Worker& w, rte_mbuf* m, PacketMeta& p, const table::Route& r, uint64_t now) noexcept {
    const NodeContext& n = *w.node;
    if (p.ttl <= 1) [[unlikely]] {
        p.drop(DropReason::kTtlExpired);
        return;
    }
    if (p.l3_len > n.pod_mtu()) [[unlikely]] {
        if (p.flags & pkt_flag::kDontFragment) {
            icmp_frag_needed(n, m, p, n.pod_mtu());
            if (p.action == Action::kTx) {
                nat_own_icmp_error(w, m, p);  // quoting a Service packet: the client's view
            }
        } else {
            p.drop(DropReason::kTooBig);
        }
        return;
    }
    uint8_t* inner = rewrite_l2(m, p, r.vtep_mac, n.vtep_mac);
    pkt::dec_ttl(inner + pkt::kEtherHdrLen);
    const auto inner_len = static_cast<uint16_t>(pkt::kEtherHdrLen + p.l3_len);
    auto* o = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, pkt::kVxlanOverhead));
    if (o == nullptr) [[unlikely]] {
        p.drop(DropReason::kNoHeadroom);
        return;
    }
    pkt::write_vxlan_headers(o + pkt::kEtherHdrLen, inner_len, n.node_ip, r.vtep_ip,
                             pkt::vxlan_source_port(pkt::tuple_hash(p.tuple)), n.vxlan_port_be,
                             n.vni);
    send_to_neighbor(w, m, p, o, r.neigh_slot, now);
}

/// A packet for a pod, here or on another node: delivered or encapsulated once policy admits
/// it (dropped otherwise). Returns false, p untouched, when its destination is no pod this
/// node knows a way to.
inline bool to_pod_admitted(Worker& w,
                            const table::TableSet& t,
                            rte_mbuf* m,
                            PacketMeta& p,
                            uint64_t now,
                            uint32_t now_s) noexcept {
    if (const table::LocalPod* pod = t.find_pod(p.tuple.dst)) {
        if (admit(w, t, p, now_s)) {
            deliver_local(*w.node, m, p, *pod);
        }
        return true;
    }
    if (const table::Route* r = t.find_route(p.tuple.dst)) {
        if (admit(w, t, p, now_s)) {
            encap_to_node(w, m, p, *r, now);
        }
        return true;
    }
    return false;
}

/// IPv4 from a pod port.
inline void pod_ipv4(Worker& w,
                     const table::TableSet& t,
                     rte_mbuf* m,
                     PacketMeta& p,
                     uint64_t now,
                     uint32_t now_s) noexcept {
    const NodeContext& n = *w.node;
    if (!from_peer(n, m, p, t.port_pod_ip[p.in_port])) [[unlikely]] {
        return;
    }
    conntrack_nat(w, t, m, p, now_s, /*services=*/true);
    if (!p.pending()) {
        return;
    }
    if (p.aux == kAuxEgress) {
        egress_out(w, m, p, now);  // a masqueraded connection's later packets
        return;
    }
    if (to_pod_admitted(w, t, m, p, now, now_s)) {
        return;
    }
    if (t.in_service_cidr(p.tuple.dst)) [[unlikely]] {
        service_cidr_miss(w, t, m, p);
        return;
    }
    const Ip4 dst = p.tuple.dst;
    if (dst == n.gateway_ip) {
        // The node itself: its kernel when it has a host interface (always allowed, and
        // tracked so that SNAT never takes a port of this connection), else echo only.
        if (!n.has_host()) {
            icmp_echo_reply(n, m, p);
        } else if (admit(w, t, p, now_s)) {
            deliver_host(n, m, p);
        }
        return;
    }
    if (is_multicast_or_broadcast(dst)) [[unlikely]] {
        p.drop(DropReason::kMulticast);
        return;
    }
    if (n.pod_cidr.contains(dst)) {
        p.drop(DropReason::kNoPod);
        return;
    }
    const bool way_out =
        n.underlay_subnet.contains(dst) || n.underlay_gateway_slot != table::kNoSlot;
    if (way_out && !n.cluster_cidr.contains(dst) && masquerade(w, t, m, p, now_s)) {
        egress_out(w, m, p, now);
        return;
    }
    if (p.pending()) {
        p.drop(DropReason::kNoRoute);
    }
}

/// Routes a packet to a pod by its (possibly rewritten) destination: local delivery or the
/// overlay. Returns false when the destination is no pod.
inline bool route_to_pod(
    Worker& w, const table::TableSet& t, rte_mbuf* m, PacketMeta& p, uint64_t now) noexcept {
    if (const table::LocalPod* pod = t.find_pod(p.tuple.dst)) {
        deliver_local(*w.node, m, p, *pod);
        return true;
    }
    if (const table::Route* r = t.find_route(p.tuple.dst)) {
        encap_to_node(w, m, p, *r, now);
        return true;
    }
    return false;
}

/// Non-overlay IPv4 from the uplink: Service frontends (NodePort on the node IP, external and
/// LoadBalancer IPs) and the connections they made; anything else for the node itself goes to
/// the host path, and the rest is not ours.
inline void uplink_service(Worker& w,
                           const table::TableSet& t,
                           rte_mbuf* m,
                           PacketMeta& p,
                           uint64_t now,
                           uint32_t now_s) noexcept {
    const Ip4 dst = p.tuple.dst;
    conntrack_nat(w, t, m, p, now_s, /*services=*/true, /*from_uplink=*/true);
    if (!p.pending()) {
        return;
    }
    if (p.tuple.dst != dst && route_to_pod(w, t, m, p, now)) {
        return;
    }
    if (dst == w.node->node_ip && p.tuple.proto == pkt::kProtoTcp) {
        if (const uint32_t* hc = t.health_checks.find(from_be16(p.tuple.dport))) {
            const table::ServiceBlock& b = t.services[*hc].current();
            health_check(*w.node, m, p, b.spec.name, b.local_backends);
            return;
        }
    }
    if (t.in_service_cidr(dst)) [[unlikely]] {
        service_cidr_miss(w, t, m, p);  // a ClusterIP route toward this node (e.g. BGP)
        return;
    }
    if (dst == w.node->node_ip) {
        if (w.node->host_node_address) {
            deliver_host(*w.node, m, p);  // the exception path: the node's kernel takes it
        } else {
            p.drop(DropReason::kHostPath);
        }
    } else {
        p.drop(is_multicast_or_broadcast(dst) ? DropReason::kMulticast : DropReason::kNotForUs);
    }
}

/// IPv4 from the uplink, pass 1 of the burst: this node's VXLAN is checked and decapsulated,
/// so that the next pass can start the conntrack loads of the inner flows of the whole burst.
/// Returns true when `p` now describes the inner packet (continue with uplink_inner); false
/// when the packet is not overlay traffic for this node (p untouched: uplink_service) or was
/// dropped (p says why).
inline bool uplink_decap(const NodeContext& n, rte_mbuf* m, PacketMeta& p) noexcept {
    if (!addressed_to(m, p, n.node_mac)) [[unlikely]] {
        return false;
    }
    const uint8_t* d = rte_pktmbuf_mtod(m, const uint8_t*);
    if (p.tuple.dst != n.node_ip || p.tuple.proto != pkt::kProtoUdp ||
        p.tuple.dport != n.vxlan_port_be) {
        // Not the overlay: a client outside the cluster reaching a NodePort, an external IP or
        // a LoadBalancer IP of a Service (or replies of such connections' clients).
        return false;
    }
    if (p.flags & pkt_flag::kFragment) [[unlikely]] {
        p.drop(DropReason::kOuterFragment);
        return false;
    }
    const uint32_t inner_off = uint32_t{p.l4_off} + pkt::kUdpHdrLen + pkt::kVxlanHdrLen;
    if (uint32_t{p.l3_off} + p.l3_len < inner_off + pkt::kEtherHdrLen) [[unlikely]] {
        p.drop(DropReason::kVxlanHeader);
        return false;
    }
    const uint8_t* vx = d + p.l4_off + pkt::kUdpHdrLen;
    if ((vx[0] & pkt::kVxlanFlagI) == 0) [[unlikely]] {
        p.drop(DropReason::kVxlanHeader);
        return false;
    }
    const uint32_t vni = uint32_t{vx[4]} << 16 | uint32_t{vx[5]} << 8 | vx[6];
    if (vni != n.vni) [[unlikely]] {
        p.drop(DropReason::kVxlanVni);
        return false;
    }
    const uint16_t in_port = p.in_port;
    adj_parsed(m, static_cast<uint16_t>(inner_off));
    p = PacketMeta{};
    p.in_port = in_port;
    const DropReason r =
        pkt::parse_frame(rte_pktmbuf_mtod(m, const uint8_t*), m->data_len, p, pkt::ParseOptions{});
    if (r != DropReason::kNone) [[unlikely]] {
        p.drop(r);
        return false;
    }
    if (p.ether_type != pkt::kEtherTypeIpv4) [[unlikely]] {
        p.drop(DropReason::kInnerNotIpv4);
        return false;
    }
    trim_to_l3(m, p);
    return true;
}

/// IPv4 from the uplink, pass 2 for a decapsulated packet: delivered to a local pod.
inline void uplink_inner(
    Worker& w, const table::TableSet& t, rte_mbuf* m, PacketMeta& p, uint32_t now_s) noexcept {
    const NodeContext& n = *w.node;
    // Replies of connections this node load-balanced come back here from remote backends;
    // pod traffic still addressed to a ClusterIP is balanced to this node's endpoints.
    conntrack_nat(w, t, m, p, now_s, /*services=*/true);
    if (!p.pending()) {
        return;
    }
    if (const table::LocalPod* pod = t.find_pod(p.tuple.dst)) {
        if (admit(w, t, p, now_s)) {  // ingress of the destination pod
            deliver_local(n, m, p, *pod);
        }
        return;
    }
    if (p.tuple.dst == n.gateway_ip && n.has_host()) {  // a remote pod answers this node
        if (admit(w, t, p, now_s)) {
            deliver_host(n, m, p);
        }
        return;
    }
    p.drop(n.pod_cidr.contains(p.tuple.dst) ? DropReason::kNoPod : DropReason::kNoRoute);
}

/// IPv4 from the host interface: the node's kernel reaching a local pod, a pod on another node
/// or a Service. It sends from the gateway address (its address there), which policy treats as
/// the node itself; its connections are tracked like a pod's, so that their replies are
/// un-NATed and SNAT never reuses their ports.
inline void host_ipv4(Worker& w,
                      const table::TableSet& t,
                      rte_mbuf* m,
                      PacketMeta& p,
                      uint64_t now,
                      uint32_t now_s) noexcept {
    const NodeContext& n = *w.node;
    const bool underlay = n.host_node_address && p.tuple.src == n.node_ip;
    if (!from_peer(n, m, p, underlay ? n.node_ip : n.gateway_ip)) [[unlikely]] {
        return;
    }
    // From the node address only to the underlay: a pod answering it would be masqueraded
    // back (the routes into the pod network give the kernel the gateway address as source).
    conntrack_nat(w, t, m, p, now_s, /*services=*/!underlay);
    if (!p.pending()) {
        return;
    }
    if (underlay) [[unlikely]] {
        // The node's own traffic leaves unchanged, tracked so that masquerade, which uses the
        // same address, never takes one of its ports.
        if (admit(w, t, p, now_s)) {
            egress_out(w, m, p, now);
        }
        return;
    }
    if (to_pod_admitted(w, t, m, p, now, now_s)) {
        return;
    }
    if (t.in_service_cidr(p.tuple.dst)) [[unlikely]] {
        service_cidr_miss(w, t, m, p);
        return;
    }
    // The kernel routes only the pod network here.
    p.drop(n.pod_cidr.contains(p.tuple.dst) ? DropReason::kNoPod : DropReason::kNoRoute);
}

}  // namespace kdp::dataplane::stage
