// Refusals: what a packet that may not pass gets instead of silence, as kube-proxy's reject
// rules answer (TCP RST, ICMP port unreachable), paced by the worker's ReplyBudget; and the
// service CIDR's own rule for addresses no Service frontend took. Worker-only.
#pragma once

#include <cstring>

#include "pkt/hdr.h"
#include "stage/context.h"
#include "stage/icmp.h"
#include "stage/tcp_answer.h"

namespace kdp::dataplane::stage {

/// Refuses a TCP segment from a pod with a RST from the address it was sent to.
inline void tcp_reset(const NodeContext& n, rte_mbuf* m, PacketMeta& p) noexcept {
    tcp_reset(m, p, n.gateway_mac);
}

/// Refuses a packet to a Service that has no usable endpoint (or to a ClusterIP on a port the
/// Service does not have), as kube-proxy's reject rules do: RST for TCP, ICMP port unreachable
/// from the address it was sent to for UDP and SCTP. Never a silent blackhole, from pods, the
/// node or outside the cluster alike (an outside client's answer leaves by the uplink from the
/// node's MAC). The replies are paced by the worker's budget (ReplyBudget); past it the packet is
/// dropped as kRejectRateLimited. `why` is the reason the refusal is counted under.
inline void reject(Context& c,
                   rte_mbuf* m,
                   PacketMeta& p,
                   DropReason why = DropReason::kNoEndpoints) noexcept {
    const NodeContext& n = c.node;
    if (p.tuple.proto == pkt::kProtoTcp && (p.tcp_flags & kTcpRst)) {  // never answer a RST
        p.drop(why);
        return;
    }
    if (!c.replies.take(c.now, n.tsc_hz)) [[unlikely]] {
        p.drop(DropReason::kRejectRateLimited);
        return;
    }
    c.count_drop(p.in_port, why);
    const bool uplink = n.ports->port[p.in_port].kind == PortKind::kUplink;
    if (p.tuple.proto == pkt::kProtoTcp) {
        tcp_reset(m, p, uplink ? n.node_mac : n.gateway_mac);
    } else {
        icmp_error(n, m, p, kIcmpUnreachable, kIcmpCodePortUnreachable, 0, p.tuple.dst);
        if (uplink && p.action == Action::kTx) {
            std::memcpy(rte_pktmbuf_mtod(m, uint8_t*) + pkt::off::kEthSrc, n.node_mac.b.data(), 6);
        }
    }
    // The reply is transmitted; the original was counted above as rejected.
}

/// A packet to the service CIDR that no Service frontend took, as the nftables kube-proxy's
/// cluster-ips-check chain treats it: to a ClusterIP (on a port or protocol its Service does
/// not have) it is refused; to an address no Service holds it is dropped. Either way it never
/// leaves the node, where the underlay would route it anywhere.
inline void service_cidr_miss(Context& c,
                              const table::TableSet& t,
                              rte_mbuf* m,
                              PacketMeta& p) noexcept {
    if (t.cluster_ips.find(p.tuple.dst.be) == nullptr) {
        p.drop(DropReason::kServiceCidrUnallocated);
    } else if ((p.flags & pkt_flag::kL4) == 0 ||
               (p.tuple.proto == pkt::kProtoIcmp && p.icmp_type != kIcmpEchoRequest)) {
        p.drop(DropReason::kNoServicePort);  // a later fragment, an ICMP error: no answer
    } else {
        reject(c, m, p, DropReason::kNoServicePort);
    }
}

}  // namespace kdp::dataplane::stage
