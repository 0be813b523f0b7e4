// The masquerade stage (egress SNAT): a pod's new connection to outside the cluster leaves
// from the node IP, on a source port this worker owns, tracked so that the conntrack stage
// un-NATs its replies. Worker-only.
#pragma once

#include "stage/context.h"
#include "stage/nat.h"
#include "stage/policy.h"

namespace kdp::dataplane::stage {

/// Masquerades a new connection from a pod to outside the cluster: SNAT to the node IP on a
/// port this worker owns, tracked so that replies are un-NATed. Returns false (with p dropped)
/// when it cannot; on true the caller routes the packet out of the uplink (egress).
inline bool masquerade(Context& c, const table::TableSet& t, rte_mbuf* m, PacketMeta& p) noexcept {
    const NodeContext& n = c.node;
    const uint32_t now_s = c.now_s;
    const uint8_t proto = p.tuple.proto;
    const bool echo = proto == pkt::kProtoIcmp && p.icmp_type == kIcmpEchoRequest;
    if ((p.flags & pkt_flag::kL4) == 0 ||
        (proto != pkt::kProtoTcp && proto != pkt::kProtoUdp && proto != pkt::kProtoSctp && !echo)) {
        return false;  // later fragments, other ICMP: no route
    }
    const table::PolicyTables& pol = t.current_policy();
    const PolicyVerdict v =
        judge(n, pol, p.tuple.src, n.node_ip, p.tuple.dst, echo ? 0 : p.tuple.dport, proto);
    if (!v.allowed) {
        p.drop(v.reason);
        return false;
    }
    table::Conntrack& ct = *n.conntrack;
    // An echo request is keyed and allocated like a TCP/UDP source port, on its identifier
    // (the conntrack stage has put it in both tuple ports); its replies come back as echo replies.
    const table::CtKey key = ct_key(p.tuple, p.icmp_type);
    table::CtKey reply{p.tuple.dst.be,
                       n.node_ip.be,
                       p.tuple.dport,
                       0,
                       proto,
                       uint8_t{echo ? kIcmpEchoReply : uint8_t{0}},
                       0};
    const uint16_t port = snat_port(c, ct, reply, key.hash());
    if (port == 0) [[unlikely]] {
        p.drop(DropReason::kSnatExhausted);
        return false;
    }
    reply.dport = to_be16(port);
    if (echo) {
        reply.sport = reply.dport;
    }
    table::CtInsertFail why = table::CtInsertFail::kNone;
    const uint32_t idx = ct.insert(
        c.worker, key, reply, now_s,
        [&](table::CtEntry& e) {
            e.nat = kNatSnat | kNatEgress;
            e.policy.store(cached_verdict(pol, true), std::memory_order_relaxed);
        },
        &why);
    if (idx == table::kCtNone) [[unlikely]] {
        p.drop(insert_drop_reason(why));
        return false;
    }
    ct.touch(idx, table::CtDir::kOrig, p.tcp_flags, now_s);
    rewrite_src(m, p, n.node_ip, reply.dport);
    return true;
}

}  // namespace kdp::dataplane::stage
