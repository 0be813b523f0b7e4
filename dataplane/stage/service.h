// The service stage (kube-proxy's DNAT): the first packet of a connection to a Service
// frontend (ClusterIP, NodePort, external or LoadBalancer IP : port / protocol) is balanced
// to a backend by that Service port's Maglev table, judged by policy as the backend will see
// it, tracked, and rewritten; later packets are the conntrack stage's. Worker-only.
//
//   new flow to a frontend -> Maglev pick over usable backends (sessionAffinity: as recorded)
//        -> policy -> conntrack entry {orig: client->vip, reply: backend->client} -> rewrite
//   no usable backend -> reject: TCP RST, or ICMP port unreachable for UDP/SCTP
//   tracked connection whose backend is gone (conntrack stage) -> TCP RST / UDP dropped; the
//        owner's expiry scan removes the entry so the next packet picks a live backend. "Gone":
//        no longer a usable backend of the Service port the entry records (CtEntry::service),
//        checked in that port's current block, which a delta may have swapped since
#pragma once

#include <rte_rcu_qsbr.h>

#include "pkt/hdr.h"
#include "stage/context.h"
#include "stage/nat.h"
#include "stage/policy.h"
#include "stage/reject.h"

namespace kdp::dataplane::stage {

/// The slot (backend index + 1) of backend ip:port in the set a new connection picks from (this
/// node's when `local_only`, else the cluster's), or 0. `hint` is the slot it had when recorded.
inline uint16_t usable_slot(const table::ServiceBlock& b,
                            uint8_t proto,
                            bool local_only,
                            Ip4 ip,
                            uint16_t port_be,
                            uint32_t hint) noexcept {
    const uint16_t slot = b.slot_of(ip, port_be, proto, hint);
    const uint8_t want =
        local_only ? table::ServiceBackend::kLocal : table::ServiceBackend::kCluster;
    return slot != 0 && (b.backends[slot - 1u].sets & want) != 0 ? slot : uint16_t{0};
}

/// sessionAffinity: ClientIP with kube-proxy's semantics. A client's first connection to a
/// Service port records (client IP, Service port) -> backend in conntrack (kCtZoneAffinity);
/// its later new connections go to that backend while the record was used within the timeout
/// and the backend is still usable, even if Maglev now picks another; otherwise `fresh` (the
/// Maglev pick) is taken and recorded. One lookup per new connection, lock-free. A stale
/// record is replaced by its owner; another worker takes the fresh pick without recording
/// until the owner's expiry scan clears it (records are immutable once published).
inline uint16_t affinity_pick(Context& c,
                              const table::Service& s,
                              const table::ServiceBlock& b,
                              bool local_only,
                              Ip4 client,
                              uint16_t fresh,
                              uint32_t now_s) noexcept {
    table::Conntrack& ct = *c.node.conntrack;
    const table::CtKey key{client.be, s.affinity_id, 0, 0, s.proto, 0, table::kCtZoneAffinity};
    const uint64_t h = key.hash();
    const table::CtHit hit = ct.lookup(key, h);
    if (hit.index != table::kCtNone) {
        table::CtEntry& e = ct.entry(hit.index);
        const uint32_t idle = now_s - e.last_seen.load(std::memory_order_relaxed);
        const uint16_t slot =
            usable_slot(b, s.proto, local_only, Ip4{e.reply.src}, e.reply.sport, e.backend);
        if (slot != 0 && idle <= e.timeout_s) {
            e.last_seen.store(now_s, std::memory_order_relaxed);
            return slot;
        }
        if (e.owner != c.worker) {
            return fresh;
        }
        ct.remove(c.worker, hit.index, c.qsbr != nullptr ? rte_rcu_qsbr_start(c.qsbr) : 0);
    }
    const table::ServiceBackend& be = b.backends[fresh - 1u];
    const table::CtKey record{
        be.ip.be, client.be, be.port_be, 0, s.proto, 0, table::kCtZoneAffinity};
    // A full table only costs the stickiness of this client, never its connection.
    ct.insert(c.worker, key, record, now_s, [&](table::CtEntry& e) {
        e.nat = kNatDnat;  // the expiry scan clears it when its backend leaves the Service
        e.service = s.ct_ref;
        e.backend = fresh;
        e.timeout_s = s.affinity_timeout_s;
    });
    return fresh;
}

/// How a new connection to Service `s` is balanced, by the traffic policy kube-proxy applies to
/// it (pkg/proxy/nftables/proxier.go: the service, external and local-policy chains):
///  - it came over the overlay (its node did not balance it): this node's endpoints;
///  - to an external frontend (NodePort, externalIP, LoadBalancer IP) from outside the cluster:
///    externalTrafficPolicy;
///  - to an external frontend from a pod or from the node itself: all endpoints, whatever the
///    policies (kube-proxy's "short-circuit" of pod and local traffic);
///  - to a ClusterIP, from anywhere: internalTrafficPolicy.
/// Maglev over the flow hash, the same on every node, or with ClientIP affinity over the client
/// address alone (every node agrees on a client's first pick), then as recorded. The service
/// stage's choice; a trace asks it the same question.
struct MaglevChoice {
    const std::vector<uint16_t>* table;
    bool local_only;
    bool affinity;
    uint64_t hash;  // table[hash % size] is the pick
};
inline MaglevChoice maglev_choice(const table::Service& s,
                                  const table::ServiceBlock& b,
                                  table::FrontendKind kind,
                                  bool from_outside,
                                  bool overlay,
                                  Ip4 client,
                                  uint64_t flow_hash) noexcept {
    bool local_only;
    if (overlay) {
        local_only = true;
    } else if (kind != table::FrontendKind::kClusterIp) {
        local_only = from_outside && (s.flags & table::Service::kExternalLocal) != 0;
    } else {
        local_only = (s.flags & table::Service::kInternalLocal) != 0;
    }
    const bool affinity = (s.flags & table::Service::kAffinity) != 0;
    return MaglevChoice{local_only ? &b.local_maglev : &b.maglev, local_only, affinity,
                        affinity ? table::mix64(client.be) : flow_hash};
}

/// Balances a new TCP, UDP or SCTP connection (the conntrack stage found none) addressed to a
/// Service frontend, for the ingresses whose node balances it: local pods and the node itself
/// (the client's node balances), outside clients on the uplink, and pod traffic from another
/// node still addressed to a ClusterIP (its node did not balance it, as kube-proxy's PREROUTING
/// rules also catch), which picks among this node's endpoints only so that the reply comes back
/// through this node's conntrack without SNAT. The node's own underlay traffic is never
/// balanced. kRoute when it is no Service's (or now rewritten to its backend), else kDone.
inline Next service(
    Context& c, const table::TableSet& t, rte_mbuf* m, PacketMeta& p, Ingress in) noexcept {
    if (in == Ingress::kHostUnderlay) {
        return Next::kRoute;
    }
    const NodeContext& n = c.node;
    const uint8_t proto = p.tuple.proto;
    const uint32_t now_s = c.now_s;
    table::Conntrack& ct = *n.conntrack;
    const table::CtKey key = ct_key(p.tuple, p.icmp_type);
    const uint64_t h = p.ct_hash != 0 ? p.ct_hash : key.hash();
    const table::Frontend* fe = t.find_frontend(p.tuple.dst, p.tuple.dport, proto);
    if (fe == nullptr) {
        return Next::kRoute;
    }
    p.flags &= static_cast<uint8_t>(~pkt_flag::kNewFlow);
    // A client outside the cluster: its replies go back to the MAC it came from. It may reach
    // a ClusterIP too (routed to the node, e.g. advertised by BGP): served like a NodePort.
    const bool external = in == Ingress::kUplink;
    const table::Service& s = t.services[fe->service];
    // The id first, then the block (stored in the other order): a connection never records the
    // id of a block newer than the one that balanced it.
    const uint16_t block_id = s.block_id.load(std::memory_order_acquire);
    const table::ServiceBlock& b = s.current();  // one block for the whole packet
    if (fe->kind == table::FrontendKind::kLoadBalancer && !b.source_ranges.empty()) {
        bool allowed = false;
        for (const Prefix4& r : b.source_ranges) {
            allowed = allowed || r.contains(p.tuple.src);
        }
        if (!allowed) {
            p.drop(DropReason::kSourceRange);
            return Next::kDone;
        }
    }
    const bool overlay = in == Ingress::kOverlay;
    const MaglevChoice mc = maglev_choice(s, b, fe->kind, external, overlay, p.tuple.src, h);
    const bool local_only = mc.local_only;
    const uint16_t* table = mc.table->data();
    const auto size = static_cast<uint32_t>(mc.table->size());
    if (size == 0) [[unlikely]] {
        if (local_only && !b.maglev.empty()) {
            // As kube-proxy: Local policy and endpoints only elsewhere is dropped, not refused,
            // so that a load balancer's retry reaches a node that has one.
            p.drop(DropReason::kNoLocalEndpoint);
        } else if (overlay) {
            p.drop(DropReason::kNoEndpoints);  // the client's node refuses it already
        } else {
            reject(c, m, p);  // no endpoint anywhere: refused, whoever the client
        }
        return Next::kDone;
    }
    uint16_t slot = table[mc.hash % size];
    if (mc.affinity) {
        slot = affinity_pick(c, s, b, local_only, p.tuple.src, slot, now_s);
    }
    const table::ServiceBackend& be = b.backends[slot - 1u];
    // SNAT to this node's gateway address when the reply would not come back through this
    // node otherwise: an external client's connection to a backend on another node (to a
    // ClusterIP too, which kube-proxy masquerades whatever the backend), and a pod reaching
    // itself through its Service (hairpin), as kube-proxy does. A local backend sees the
    // client, and NetworkPolicy judges the client, not this node.
    const bool hairpin = be.ip == p.tuple.src;
    const bool snat = hairpin || (external && !n.pod_cidr.contains(be.ip));
    // Policy judges the connection the backend will see: after DNAT, and after SNAT.
    const table::PolicyTables& pol = t.current_policy();
    const PolicyVerdict v =
        judge(n, pol, p.tuple.src, snat ? n.gateway_ip : p.tuple.src, be.ip, be.port_be, proto);
    if (!v.allowed) {
        p.drop(v.reason);
        return Next::kDone;
    }
    table::CtKey reply{be.ip.be, p.tuple.src.be, be.port_be, p.tuple.sport, proto, 0, 0};
    if (snat) {
        reply.dst = n.gateway_ip.be;
        const uint16_t port = snat_port(c, ct, reply, h);
        if (port == 0) [[unlikely]] {
            p.drop(DropReason::kSnatExhausted);
            return Next::kDone;
        }
        reply.dport = to_be16(port);
    }
    const uint8_t* frame = rte_pktmbuf_mtod(m, const uint8_t*);
    bool remap = snat;  // the source is rewritten to reply.dst:reply.dport
    const auto track = [&](table::CtInsertFail* why) {
        return ct.insert(
            c.worker, key, reply, now_s,
            [&](table::CtEntry& e) {
                e.nat = static_cast<uint8_t>(kNatDnat | (remap ? kNatSnat : 0) |
                                             (external ? kNatExternal : 0));
                e.service = s.ct_ref;
                e.backend = slot;
                e.block_id = block_id;
                e.policy.store(cached_verdict(pol, true), std::memory_order_relaxed);
                if (external) {
                    std::memcpy(e.peer_mac, frame + pkt::off::kEthSrc, 6);
                }
            },
            why);
    };
    table::CtInsertFail why = table::CtInsertFail::kNone;
    uint32_t idx = track(&why);
    if (idx == table::kCtNone && why == table::CtInsertFail::kClash && !remap) {
        // Another connection already has this reply tuple: the same client port reached the
        // same backend through another Service (or directly). Its replies could not be told
        // apart, so this one leaves from another source port of the client's address (as a
        // NAT remaps a clashing source port); replies get the client's own port back.
        const uint16_t port = snat_port(c, ct, reply, h);
        if (port == 0) [[unlikely]] {
            p.drop(DropReason::kSnatExhausted);
            return Next::kDone;
        }
        reply.dport = to_be16(port);
        remap = true;
        idx = track(&why);
    }
    if (idx == table::kCtNone) [[unlikely]] {
        p.drop(insert_drop_reason(why));
        return Next::kDone;
    }
    p.flags |= pkt_flag::kTracked;
    ct.touch(idx, table::CtDir::kOrig, p.tcp_flags, now_s);
    rewrite_dst(m, p, be.ip, be.port_be);
    if (remap) {
        rewrite_src(m, p, Ip4{reply.dst}, reply.dport);
    }
    return Next::kRoute;
}

}  // namespace kdp::dataplane::stage
