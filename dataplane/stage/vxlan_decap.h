// The VXLAN decap stage (RFC 7348): what remote nodes send this node's VTEP is checked
// (destination, port, flags, VNI) and stripped, and the inner frame parsed in its place.
// Worker-only.
#pragma once

#include "pkt/parse.h"
#include "stage/ingress.h"
#include "stage/l2.h"

namespace kdp::dataplane::stage {

/// IPv4 from the uplink, pass 1 of the burst: this node's VXLAN is checked and decapsulated,
/// so that the next pass can start the conntrack loads of the inner flows of the whole burst.
/// Returns true when `p` now describes the inner packet (continue with from_overlay); false
/// when the packet is not overlay traffic for this node (p untouched: from_uplink) or was
/// dropped (p says why).
inline bool vxlan_decap(const NodeContext& n, rte_mbuf* m, PacketMeta& p) noexcept {
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

}  // namespace kdp::dataplane::stage
