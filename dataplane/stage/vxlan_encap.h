// The VXLAN encap stage (RFC 7348): a packet for a pod on another node is wrapped for that
// node's VTEP and sent to the underlay next hop (held until ARP resolves it). Too big for the
// overlay with DF set: "fragmentation needed", as the client should see it. Worker-only.
#pragma once

#include "pkt/eth.h"
#include "pkt/parse.h"
#include "stage/context.h"
#include "stage/icmp.h"
#include "stage/icmp_error_nat.h"
#include "stage/l2.h"
#include "stage/tx.h"

namespace kdp::dataplane::stage {

/// Encapsulates toward a remote node. Holds the packet when the underlay next hop is not yet
/// resolved.
inline void vxlan_encap(Context& c, rte_mbuf* m, PacketMeta& p, const table::Route& r) noexcept {
    const NodeContext& n = c.node;
    if (p.ttl <= 1) [[unlikely]] {
        p.drop(DropReason::kTtlExpired);
        return;
    }
    if (p.l3_len > n.pod_mtu()) [[unlikely]] {
        if (p.flags & pkt_flag::kDontFragment) {
            icmp_frag_needed(n, m, p, n.pod_mtu());
            if (p.action == Action::kTx) {
                nat_own_icmp_error(c, m, p);  // quoting a Service packet: the client's view
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
    send_to_neighbor(c, m, p, o, r.neigh_slot);
}

}  // namespace kdp::dataplane::stage
