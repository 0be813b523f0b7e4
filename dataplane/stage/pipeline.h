// The packet path of IPv4, one pipeline per ingress: each line is a stage, a function in the
// file named for it, that takes the packet and says which stage is next (Next). ARP and the
// burst's first passes (parse, VXLAN decap, conntrack prefetch) are the worker's
// (core/worker.cc); every pipeline ends with the packet's action decided. A new stage is one
// file and one line here. Worker-only.
//
//   pod      source check -> conntrack -> service -> route_from_pod ------------> egress
//   host     source check -> conntrack -> service -> route_from_host -----------> egress
//   overlay  (vxlan_decap) -> conntrack -> service -> route_from_overlay
//   uplink   conntrack -> service -> route_translated -> node_health_check -> route_from_uplink
#pragma once

#include "stage/conntrack.h"
#include "stage/context.h"
#include "stage/health_check.h"
#include "stage/ingress.h"
#include "stage/route.h"
#include "stage/service.h"

namespace kdp::dataplane::stage {

/// IPv4 from a pod port.
inline void from_pod(Context& c, const table::TableSet& t, rte_mbuf* m, PacketMeta& p) noexcept {
    if (!from_peer(c.node, m, p, t.port_pod_ip[p.in_port])) [[unlikely]] {
        return;
    }
    Next next = conntrack(c, t, m, p, Ingress::kPod);
    if (next == Next::kService)
        next = service(c, t, m, p, Ingress::kPod);
    if (next == Next::kRoute)
        next = route_from_pod(c, t, m, p);
    if (next == Next::kEgress)
        egress(c, m, p);
}

/// IPv4 from the host interface. The kernel sends from the gateway address (its address in the
/// pod network), which policy treats as the node itself, or, with host.node_address, from the
/// node IP to the underlay; its connections are tracked like a pod's, so that their replies are
/// un-NATed and SNAT never reuses their ports.
inline void from_host(Context& c, const table::TableSet& t, rte_mbuf* m, PacketMeta& p) noexcept {
    const NodeContext& n = c.node;
    const Ingress in =
        n.host_node_address && p.tuple.src == n.node_ip ? Ingress::kHostUnderlay : Ingress::kHost;
    if (!from_peer(n, m, p, in == Ingress::kHostUnderlay ? n.node_ip : n.gateway_ip)) [[unlikely]] {
        return;
    }
    Next next = conntrack(c, t, m, p, in);
    if (next == Next::kService)
        next = service(c, t, m, p, in);
    if (next != Next::kDone)
        next = route_from_host(c, t, m, p, in);  // only a pod egresses
    if (next == Next::kEgress)
        egress(c, m, p);
}

/// IPv4 decapsulated from another node (vxlan_decap ran in the burst's first pass): replies of
/// connections this node balanced come back from remote backends; pod traffic still addressed
/// to a ClusterIP is balanced to this node's endpoints.
inline void from_overlay(Context& c,
                         const table::TableSet& t,
                         rte_mbuf* m,
                         PacketMeta& p) noexcept {
    Next next = conntrack(c, t, m, p, Ingress::kOverlay);
    if (next == Next::kService)
        next = service(c, t, m, p, Ingress::kOverlay);
    if (next != Next::kDone)
        route_from_overlay(c, t, m, p);
}

/// Non-overlay IPv4 from the uplink: Service frontends (NodePort on the node IP, external and
/// LoadBalancer IPs) and the connections they made, health checks, and the node's host path.
inline void from_uplink(Context& c, const table::TableSet& t, rte_mbuf* m, PacketMeta& p) noexcept {
    const Ip4 dst = p.tuple.dst;  // as received, before DNAT
    Next next = conntrack(c, t, m, p, Ingress::kUplink);
    if (next == Next::kService)
        next = service(c, t, m, p, Ingress::kUplink);
    if (next != Next::kDone)
        next = route_translated(c, t, m, p, dst);
    if (next != Next::kDone)
        next = node_health_check(c.node, t, m, p, dst);
    if (next != Next::kDone)
        route_from_uplink(c, t, m, p, dst);
}

}  // namespace kdp::dataplane::stage
