// The conntrack stage: a packet of a connection this node tracks gets that connection's NAT
// (DNAT/SNAT in its direction, un-NAT of replies), checked against the policy epoch and the
// Service's current backends; a packet of no tracked connection goes on to the service stage
// (TCP, UDP, SCTP) or to routing. ICMP errors about a tracked connection are translated with
// it (icmp_error_nat.h). Worker-only; the table's rules are in table/conntrack.h.
//
//   tracked, orig direction  -> DNAT to its backend (RST/drop when the backend is gone), SNAT
//   tracked, reply direction -> un-SNAT, un-DNAT; an external client's reply goes to its MAC
//   not tracked              -> kNewFlow (a first packet: admit() tracks it) -> kService
#pragma once

#include "stage/context.h"
#include "stage/icmp_error_nat.h"
#include "stage/nat.h"
#include "stage/policy.h"
#include "stage/reject.h"

namespace kdp::dataplane::stage {

inline Next conntrack(
    Context& c, const table::TableSet& t, rte_mbuf* m, PacketMeta& p, Ingress in) noexcept {
    const NodeContext& n = c.node;
    const uint8_t proto = p.tuple.proto;
    if ((p.flags & pkt_flag::kL4) == 0) {
        return Next::kRoute;  // a later fragment: judged by itself, untracked
    }
    if (proto == pkt::kProtoIcmp) [[unlikely]] {
        if (is_icmp_error_type(p.icmp_type)) {
            // Unrelated errors from pods or other nodes are plain pod traffic (no NAT to undo),
            // judged by policy on their own; from outside the cluster they can only be about a
            // connection of ours. Related ones pass with their connection.
            Next next = Next::kRoute;
            if (!icmp_error_nat(c, m, p, next) && in == Ingress::kUplink && p.pending()) {
                p.drop(DropReason::kIcmpErrorUnrelated);
            }
            return p.pending() ? next : Next::kDone;
        }
        if (p.icmp_type != kIcmpEchoRequest && p.icmp_type != kIcmpEchoReply) {
            return Next::kRoute;
        }
        p.tuple.dport = p.tuple.sport;  // the identifier is both "ports" (ct_key)
    } else if (proto != pkt::kProtoTcp && proto != pkt::kProtoUdp && proto != pkt::kProtoSctp) {
        return Next::kRoute;
    }
    table::Conntrack& ct = *n.conntrack;
    const table::CtKey key = ct_key(p.tuple, p.icmp_type);
    // The burst's passes hashed and probed TCP, UDP and SCTP packets; the probe's slot is a
    // hint (a connection inserted since, or a signature shared, needs the lookup).
    const uint64_t h = p.ct_hash != 0 ? p.ct_hash : key.hash();
    table::CtHit hit = ct.confirm(key, p.ct_hint);
    if (hit.index == table::kCtNone) {
        hit = ct.lookup(key, h);
    }
    if (hit.index == table::kCtNone) {
        // The first packet of a connection: a Service's, or one between pods (or out of the
        // cluster), judged and tracked where it is delivered, sent to another node or
        // masqueraded (admit). An echo is never a Service's.
        if (proto != pkt::kProtoIcmp || p.icmp_type == kIcmpEchoRequest) {
            p.flags |= pkt_flag::kNewFlow;
        }
        return proto == pkt::kProtoIcmp ? Next::kRoute : Next::kService;
    }
    table::CtEntry& e = ct.entry(hit.index);
    DropReason why;
    if (!entry_allowed(n, t.current_policy(), e, why)) [[unlikely]] {
        p.drop(why);  // the policy changed and no longer allows the connection
        return Next::kDone;
    }
    p.flags |= pkt_flag::kTracked;
    if (hit.dir == table::CtDir::kOrig) {
        if (e.nat & kNatDnat) {
            const Ip4 be{e.reply.src};
            if (!t.backend_alive(e.service, be, e.reply.sport, e.backend, e.block_id))
                [[unlikely]] {
                if (proto == pkt::kProtoTcp && !(p.tcp_flags & kTcpRst) && in != Ingress::kUplink) {
                    c.count_drop(p.in_port, DropReason::kStaleBackend);
                    tcp_reset(n, m, p);
                } else {
                    p.drop(DropReason::kStaleBackend);
                }
                return Next::kDone;
            }
            rewrite_dst(m, p, be, e.reply.sport);
        }
        if (e.nat & kNatSnat) {
            rewrite_src(m, p, Ip4{e.reply.dst}, e.reply.dport);
        }
    } else {
        if (e.nat & kNatSnat) {
            rewrite_dst(m, p, Ip4{e.orig.src}, e.orig.sport);
        }
        if (e.nat & kNatDnat) {
            rewrite_src(m, p, Ip4{e.orig.dst}, e.orig.dport);
        }
    }
    ct.touch(hit.index, hit.dir, p.tcp_flags, c.now_s);
    return after_nat(n, m, p, e, hit.dir);
}

}  // namespace kdp::dataplane::stage
