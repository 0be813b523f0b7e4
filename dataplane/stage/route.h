// The route stage: where a packet goes on its (possibly NATed) destination, by where it came in.
// Delivery to a pod or to another node's pod passes policy admission first (admit(); a tracked
// packet was judged when its connection was). Worker-only.
//
//   from a pod     -> pod here | pod on another node (vxlan_encap) | unused service CIDR address:
//                     refused | the gateway: host interface, or echo | outside the cluster:
//                     masquerade, egress
//   from the host  -> pod here | pod on another node | unused service CIDR address: refused;
//                     from the node IP (host.node_address): egress, unchanged
//   from overlay   -> pod here | the gateway (a remote pod answers the host interface)
//   from uplink    -> rewritten by DNAT: pod here or on another node | unused service CIDR
//                     address: refused | the node IP: host path | anything else: not ours
#pragma once

#include "pkt/eth.h"
#include "stage/context.h"
#include "stage/icmp.h"
#include "stage/l2.h"
#include "stage/masquerade.h"
#include "stage/policy.h"
#include "stage/reject.h"
#include "stage/tx.h"
#include "stage/vxlan_encap.h"

namespace kdp::dataplane::stage {

inline bool is_multicast_or_broadcast(Ip4 ip) noexcept {
    const uint32_t h = ip.host();
    return (h >> 28) == 0xe || h == 0xffffffffu;
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

/// Routes a packet that leaves the cluster unchanged from here on (masqueraded, or the node's
/// own) out of the uplink: to the destination itself when it is on the underlay subnet, else to
/// the underlay gateway.
inline void egress(Context& c, rte_mbuf* m, PacketMeta& p) noexcept {
    const NodeContext& n = c.node;
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
    send_to_neighbor(c, m, p, d, slot);
}

/// A packet for a pod, here or on another node: delivered or encapsulated once policy admits
/// it (dropped otherwise; admit() passes a tracked packet, judged with its connection). Returns
/// false, p untouched, when its destination is no pod this node knows a way to.
inline bool to_pod(Context& c, const table::TableSet& t, rte_mbuf* m, PacketMeta& p) noexcept {
    if (const table::LocalPod* pod = t.find_pod(p.tuple.dst)) {
        if (admit(c, t, p)) {
            deliver_local(c.node, m, p, *pod);
        }
        return true;
    }
    if (const table::Route* r = t.find_route(p.tuple.dst)) {
        if (admit(c, t, p)) {
            vxlan_encap(c, m, p, *r);
        }
        return true;
    }
    return false;
}

/// Routes IPv4 from a pod. kEgress when it was masqueraded to leave the cluster.
inline Next route_from_pod(Context& c,
                           const table::TableSet& t,
                           rte_mbuf* m,
                           PacketMeta& p) noexcept {
    const NodeContext& n = c.node;
    if (to_pod(c, t, m, p)) {
        return Next::kDone;
    }
    const Ip4 dst = p.tuple.dst;
    if (t.in_service_cidr(dst)) [[unlikely]] {
        service_cidr_miss(c, t, m, p);
        return Next::kDone;
    }
    if (dst == n.gateway_ip) {
        // The node itself: its kernel when it has a host interface (always allowed, and
        // tracked so that SNAT never takes a port of this connection), else echo only.
        if (!n.has_host()) {
            icmp_echo_reply(n, m, p);
        } else if (admit(c, t, p)) {
            deliver_host(n, m, p);
        }
        return Next::kDone;
    }
    if (is_multicast_or_broadcast(dst)) [[unlikely]] {
        p.drop(DropReason::kMulticast);
        return Next::kDone;
    }
    if (n.pod_cidr.contains(dst)) {
        p.drop(DropReason::kNoPod);
        return Next::kDone;
    }
    const bool way_out =
        n.underlay_subnet.contains(dst) || n.underlay_gateway_slot != table::kNoSlot;
    if (way_out && !n.cluster_cidr.contains(dst) && masquerade(c, t, m, p)) {
        return Next::kEgress;
    }
    if (p.pending()) {
        p.drop(DropReason::kNoRoute);
    }
    return Next::kDone;
}

/// Routes IPv4 from the host interface: the node's kernel reaching a local pod, a pod on
/// another node or a Service. From the node IP (host.node_address) only to the underlay,
/// unchanged (kEgress), tracked so that masquerade, which uses the same address, never takes
/// one of its ports.
inline Next route_from_host(
    Context& c, const table::TableSet& t, rte_mbuf* m, PacketMeta& p, Ingress in) noexcept {
    const NodeContext& n = c.node;
    if (in == Ingress::kHostUnderlay) [[unlikely]] {
        return admit(c, t, p) ? Next::kEgress : Next::kDone;
    }
    if (to_pod(c, t, m, p)) {
        return Next::kDone;
    }
    if (t.in_service_cidr(p.tuple.dst)) [[unlikely]] {
        service_cidr_miss(c, t, m, p);
        return Next::kDone;
    }
    // The kernel routes only the pod network here.
    p.drop(n.pod_cidr.contains(p.tuple.dst) ? DropReason::kNoPod : DropReason::kNoRoute);
    return Next::kDone;
}

/// Routes IPv4 decapsulated from another node: to a local pod (its ingress policy), or to the
/// host interface when a remote pod answers this node.
inline void route_from_overlay(Context& c,
                               const table::TableSet& t,
                               rte_mbuf* m,
                               PacketMeta& p) noexcept {
    const NodeContext& n = c.node;
    if (const table::LocalPod* pod = t.find_pod(p.tuple.dst)) {
        if (admit(c, t, p)) {  // ingress of the destination pod
            deliver_local(n, m, p, *pod);
        }
        return;
    }
    if (p.tuple.dst == n.gateway_ip && n.has_host()) {  // a remote pod answers this node
        if (admit(c, t, p)) {
            deliver_host(n, m, p);
        }
        return;
    }
    p.drop(n.pod_cidr.contains(p.tuple.dst) ? DropReason::kNoPod : DropReason::kNoRoute);
}

/// Routes non-overlay IPv4 from the uplink that `dst` (its destination as received) brought to
/// this node: DNATed to a pod (a NodePort's, an external or LoadBalancer IP's connection; it is
/// tracked, so to_pod's admission passes it as judged), or kRoute for what is left.
inline Next route_translated(
    Context& c, const table::TableSet& t, rte_mbuf* m, PacketMeta& p, Ip4 dst) noexcept {
    if (p.tuple.dst != dst && to_pod(c, t, m, p)) {
        return Next::kDone;
    }
    return Next::kRoute;
}

/// The rest of the uplink's non-overlay IPv4, by its destination as received: a ClusterIP
/// route toward this node (e.g. BGP) that no Service took is refused; the node IP goes to the
/// node's kernel when it shares the address (the exception path); anything else is not ours.
inline void route_from_uplink(
    Context& c, const table::TableSet& t, rte_mbuf* m, PacketMeta& p, Ip4 dst) noexcept {
    const NodeContext& n = c.node;
    if (t.in_service_cidr(dst)) [[unlikely]] {
        service_cidr_miss(c, t, m, p);
        return;
    }
    if (dst == n.node_ip) {
        if (n.host_node_address) {
            deliver_host(n, m, p);
        } else {
            p.drop(DropReason::kHostPath);
        }
    } else {
        p.drop(is_multicast_or_broadcast(dst) ? DropReason::kMulticast : DropReason::kNotForUs);
    }
}

}  // namespace kdp::dataplane::stage
