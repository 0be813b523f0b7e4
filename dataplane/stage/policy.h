// NetworkPolicy enforcement. Worker-only.
//
// Where: egress on the source pod's node, ingress on the destination pod's node, each judged
// once per connection — on its first packet, after Service DNAT (a Service is judged against
// the backend pod it leads to) — and cached in the conntrack entry with the policy's epoch.
//
//   first packet of a connection -> judge (egress of a local source pod, ingress of a local
//        destination pod) -> denied: dropped, no entry | allowed: tracked with the verdict
//   later packets, both directions -> conntrack hit -> cached verdict of this epoch: pass
//   after a policy change -> the next packet of each connection, either direction, judges it
//        again from its entry: a connection the new policy does not allow stops there
//   not trackable (later fragments, ICMP other than echo, other protocols) -> judged per
//        packet, without ports
// Traffic between a pod and its own node (the node and gateway addresses) is always allowed,
// as Kubernetes requires. Every pod connection is tracked, policy or not, so that a policy
// added later finds each connection in the direction it was opened.
#pragma once

#include "stage/context.h"
#include "stage/nat.h"
#include "table/tables.h"

namespace kdp::dataplane::stage {

struct PolicyVerdict {
    bool allowed = true;
    DropReason reason = DropReason::kNone;  // when denied
    bool egress_judged = false;             // the client is a local pod isolated for egress
    bool ingress_judged = false;            // the server is a local pod isolated for ingress
    uint32_t egress_rule = 0;               // the rule (index + 1) that allowed it; 0: none
    uint32_t ingress_rule = 0;
};

inline bool own_node(const NodeContext& n, Ip4 ip) noexcept {
    return ip == n.node_ip || ip == n.gateway_ip;
}

/// Judges a connection from `client` to `server`:`port_be` (after DNAT) over `proto`, which the
/// server sees coming from `seen_src` (after SNAT).
inline PolicyVerdict judge(const NodeContext& n,
                           const table::PolicyTables& pol,
                           Ip4 client,
                           Ip4 seen_src,
                           Ip4 server,
                           uint16_t port_be,
                           uint8_t proto) noexcept {
    PolicyVerdict v;
    if (!pol.synced) [[unlikely]] {
        if (own_node(n, client) || own_node(n, server)) {
            return v;  // the node itself (kubelet probes) never waits for the control plane
        }
        v.allowed = false;
        v.reason = DropReason::kPolicyNotSynced;
        return v;
    }
    if (pol.pods.size() == 0) {
        return v;  // no pod on this node is isolated
    }
    const uint16_t port = from_be16(port_be);
    const table::PodPolicy* from = pol.find_pod(client);
    if (from != nullptr && (from->isolation & table::PodPolicy::kEgressIsolated) &&
        !own_node(n, server)) {
        v.egress_judged = true;
        v.egress_rule = pol.match(*from, table::PolicyDir::kEgress, server, proto, port);
        if (v.egress_rule == 0) {
            v.allowed = false;
            v.reason = DropReason::kPolicyDenied;
            return v;
        }
    }
    const table::PodPolicy* to = pol.find_pod(server);
    if (to != nullptr && (to->isolation & table::PodPolicy::kIngressIsolated) &&
        !own_node(n, seen_src)) {
        v.ingress_judged = true;
        v.ingress_rule = pol.match(*to, table::PolicyDir::kIngress, seen_src, proto, port);
        if (v.ingress_rule == 0) {
            v.allowed = false;
            v.reason = DropReason::kPolicyDenied;
        }
    }
    return v;
}

/// The verdict a conntrack entry stands for, judged from its keys: its client is orig.src,
/// its server (the backend after DNAT) reply.src:reply.sport, seen from reply.dst.
inline PolicyVerdict judge_entry(const NodeContext& n,
                                 const table::PolicyTables& pol,
                                 const table::CtEntry& e) noexcept {
    return judge(n, pol, Ip4{e.orig.src}, Ip4{e.reply.dst}, Ip4{e.reply.src}, e.reply.sport,
                 e.orig.proto);
}

inline uint32_t cached_verdict(const table::PolicyTables& pol, bool allowed) noexcept {
    return pol.epoch << 1 | (allowed ? 0u : 1u);
}

/// A tracked connection's packet: passes when the verdict cached for this policy epoch allows
/// it, judging the connection again first if the policy changed since.
inline bool entry_allowed(const NodeContext& n,
                          const table::PolicyTables& pol,
                          table::CtEntry& e,
                          DropReason& reason) noexcept {
    uint32_t cached = e.policy.load(std::memory_order_relaxed);
    if ((cached >> 1) != pol.epoch) [[unlikely]] {
        const PolicyVerdict v = judge_entry(n, pol, e);
        cached = cached_verdict(pol, v.allowed);
        e.policy.store(cached, std::memory_order_relaxed);
        reason = v.reason;
        return v.allowed;
    }
    reason = pol.synced ? DropReason::kPolicyDenied : DropReason::kPolicyNotSynced;
    return (cached & 1) == 0;
}

/// Policy for a packet the conntrack stage left untracked, before it is delivered to a pod or sent
/// to another node: the first packet of a connection (kNewFlow) is judged and tracked without NAT,
/// so that its replies pass and a policy change finds it; a packet conntrack cannot follow
/// (a later fragment, ICMP other than echo, another protocol) is judged by itself, without
/// ports. Returns false, p dropped, when policy denies it.
inline bool admit(Context& c, const table::TableSet& t, PacketMeta& p) noexcept {
    if (p.flags & pkt_flag::kTracked) [[likely]] {
        return true;
    }
    const NodeContext& n = c.node;
    const uint32_t now_s = c.now_s;
    const table::PolicyTables& pol = t.current_policy();
    const bool ports = (p.flags & pkt_flag::kL4) && p.tuple.proto != pkt::kProtoIcmp;
    const PolicyVerdict v = judge(n, pol, p.tuple.src, p.tuple.src, p.tuple.dst,
                                  ports ? p.tuple.dport : uint16_t{0}, p.tuple.proto);
    if (!v.allowed) {
        p.drop(v.reason);
        return false;
    }
    if (!(p.flags & pkt_flag::kNewFlow)) {
        return true;
    }
    table::Conntrack& ct = *n.conntrack;
    const table::CtKey key = ct_key(p.tuple, p.icmp_type);
    table::CtInsertFail why = table::CtInsertFail::kNone;
    const uint32_t idx = ct.insert(
        c.worker, key, ct_reversed(key), now_s,
        [&](table::CtEntry& e) {
            e.policy.store(cached_verdict(pol, true), std::memory_order_relaxed);
        },
        &why);
    if (idx == table::kCtNone) [[unlikely]] {
        if (why == table::CtInsertFail::kClash) {
            // Its replies look like a Service connection's (the same client port DNATed to
            // this destination): untracked, they would be un-NATed as that one's.
            p.drop(DropReason::kTupleClash);
            return false;
        }
        if (v.egress_judged || v.ingress_judged) {
            p.drop(insert_drop_reason(why));  // its replies could not be told from attacks
            return false;
        }
        return true;  // no policy involved: forwarded untracked
    }
    ct.touch(idx, table::CtDir::kOrig, p.tcp_flags, now_s);
    p.flags |= pkt_flag::kTracked;
    return true;
}

}  // namespace kdp::dataplane::stage
