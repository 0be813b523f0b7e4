// Services: connection tracking, Maglev backend choice and DNAT/un-DNAT (kube-proxy's job).
// Worker-only.
//
//   new flow to a frontend (ClusterIP:port/proto) -> Maglev pick over usable backends
//        -> conntrack entry {orig: client->vip, reply: backend->client} -> rewrite dst
//   later packets of either direction -> conntrack hit -> rewrite dst (orig) / src (reply)
//   no usable backend -> reject: TCP RST, or ICMP port unreachable for UDP/SCTP
//   tracked connection whose backend is gone -> TCP RST / UDP dropped; the owner's expiry
//        scan removes the entry so the next packet picks a live backend. "Gone": no longer a
//        usable backend of the Service port the entry records (CtEntry::service), checked in
//        that port's current block, which a delta may have swapped since the last packet
#pragma once

#include "core/worker.h"
#include "pkt/crc32c.h"
#include "stage/icmp.h"
#include "stage/l2.h"
#include "stage/policy.h"
#include "stage/tcp_answer.h"
#include "table/flat_map.h"

namespace kdp::dataplane::stage {

inline constexpr uint8_t kNatDnat = 1;    // destination rewritten to a backend
inline constexpr uint8_t kNatSnat = 2;    // source rewritten to the node's gateway address
inline constexpr uint8_t kNatEgress = 8;  // pod -> outside the cluster, masqueraded to
                                          // the node IP; leaves by the uplink
/// PacketMeta::aux set by conntrack_nat: route the packet out of the uplink (egress_out).
inline constexpr uint32_t kAuxEgress = 1;
inline constexpr uint8_t kNatExternal = 4;  // client outside the cluster: replies go back to
                                            // the MAC its packets came from (CtEntry::peer_mac)

/// The drop reason of a conntrack insert that failed with `why`.
inline DropReason insert_drop_reason(table::CtInsertFail why) noexcept {
    switch (why) {
        case table::CtInsertFail::kClash:
            return DropReason::kTupleClash;
        case table::CtInsertFail::kSourceShare:
            return DropReason::kConntrackSourceShare;
        default:
            return DropReason::kConntrackFull;
    }
}

/// Patches the L4 checksum for an address change `from` -> `to` and a port change.
inline void l4_fix(uint8_t* d,
                   const PacketMeta& p,
                   uint32_t from,
                   uint32_t to,
                   uint16_t port_from,
                   uint16_t port_to) noexcept {
    uint8_t* l4 = d + p.l4_off;
    uint16_t c;
    switch (p.tuple.proto) {
        case pkt::kProtoTcp:
            std::memcpy(&c, l4 + 16, 2);
            c = pkt::csum_replace32(c, from, to);
            c = pkt::csum_replace16(c, port_from, port_to);
            std::memcpy(l4 + 16, &c, 2);
            break;
        case pkt::kProtoUdp:
            std::memcpy(&c, l4 + 6, 2);
            if (c != 0) {  // zero: no checksum (IPv4 only), stays zero
                c = pkt::csum_replace32(c, from, to);
                c = pkt::csum_replace16(c, port_from, port_to);
                c = c == 0 ? 0xffff : c;  // RFC 768: a computed zero is sent as all ones
                std::memcpy(l4 + 6, &c, 2);
            }
            break;
        case pkt::kProtoIcmp:
            // Echo: the identifier plays the port (RFC 5508 §3.1); no pseudo-header.
            std::memcpy(&c, l4 + 2, 2);
            c = pkt::csum_replace16(c, port_from, port_to);
            std::memcpy(l4 + 2, &c, 2);
            break;
        case pkt::kProtoSctp:
            // No pseudo-header: only a port change touches the CRC, and it must be recomputed.
            if (port_from != port_to && !(p.flags & pkt_flag::kFragment)) {
                pkt::sctp_fix_checksum(l4, p.l3_len - (p.l4_off - p.l3_off));
            }
            break;
        default:
            break;
    }
}

enum class Side : uint8_t { kSrc, kDst };

/// Rewrites one side's address and port (DNAT: kDst; un-DNAT of replies: kSrc), patching the
/// IP checksum and the L4 checksum incrementally. For an ICMP echo the "port" of either side is
/// the identifier (ct_key keeps it in both tuple ports).
template <Side kSide>
inline void rewrite(rte_mbuf* m, PacketMeta& p, Ip4 ip, uint16_t port_be) noexcept {
    constexpr bool kDst = kSide == Side::kDst;
    uint8_t* d = rte_pktmbuf_mtod(m, uint8_t*);
    uint8_t* iph = d + p.l3_off;
    Ip4& addr = kDst ? p.tuple.dst : p.tuple.src;
    uint16_t& port = kDst ? p.tuple.dport : p.tuple.sport;
    const uint32_t from = addr.be;
    const uint16_t port_from = port;
    std::memcpy(iph + (kDst ? 16 : 12), &ip.be, 4);
    uint16_t c;
    std::memcpy(&c, iph + 10, 2);
    c = pkt::csum_replace32(c, from, ip.be);
    std::memcpy(iph + 10, &c, 2);
    const bool icmp = p.tuple.proto == pkt::kProtoIcmp;
    std::memcpy(d + p.l4_off + (icmp ? 4 : kDst ? 2 : 0), &port_be, 2);
    addr = ip;
    port = port_be;
    if (icmp) {
        p.tuple.sport = p.tuple.dport = port_be;
    }
    l4_fix(d, p, from, ip.be, port_from, port_be);
}

inline void rewrite_dst(rte_mbuf* m, PacketMeta& p, Ip4 ip, uint16_t port_be) noexcept {
    rewrite<Side::kDst>(m, p, ip, port_be);
}
inline void rewrite_src(rte_mbuf* m, PacketMeta& p, Ip4 ip, uint16_t port_be) noexcept {
    rewrite<Side::kSrc>(m, p, ip, port_be);
}

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
inline void reject(Worker& w,
                   rte_mbuf* m,
                   PacketMeta& p,
                   DropReason why = DropReason::kNoEndpoints) noexcept {
    const NodeContext& n = *w.node;
    if (p.tuple.proto == pkt::kProtoTcp && (p.tcp_flags & 0x04)) {  // never answer a RST
        p.drop(why);
        return;
    }
    if (!w.replies.take(w.now_tsc, n.tsc_hz)) [[unlikely]] {
        p.drop(DropReason::kRejectRateLimited);
        return;
    }
    bump(w.port_counters(p.in_port).drops[static_cast<size_t>(why)]);
    const bool uplink = n.ports->port[p.in_port].kind == PortKind::kUplink;
    if (p.tuple.proto == pkt::kProtoTcp) {
        tcp_reset(m, p, uplink ? n.node_mac : n.gateway_mac);
    } else {
        icmp_error(n, m, p, kIcmpUnreachable, kIcmpCodePortUnreachable, 0, p.tuple.dst);
        if (uplink && p.action == Action::kTx) {
            std::memcpy(rte_pktmbuf_mtod(m, uint8_t*) + 6, n.node_mac.b.data(), 6);
        }
    }
    // The reply is transmitted; the original was counted above as rejected.
}

/// A packet to the service CIDR that no Service frontend took, as the nftables kube-proxy's
/// cluster-ips-check chain treats it: to a ClusterIP (on a port or protocol its Service does
/// not have) it is refused; to an address no Service holds it is dropped. Either way it never
/// leaves the node, where the underlay would route it anywhere.
inline void service_cidr_miss(Worker& w,
                              const table::TableSet& t,
                              rte_mbuf* m,
                              PacketMeta& p) noexcept {
    if (t.cluster_ips.find(p.tuple.dst.be) == nullptr) {
        p.drop(DropReason::kServiceCidrUnallocated);
    } else if ((p.flags & pkt_flag::kL4) == 0 ||
               (p.tuple.proto == pkt::kProtoIcmp && p.icmp_type != kIcmpEchoRequest)) {
        p.drop(DropReason::kNoServicePort);  // a later fragment, an ICMP error: no answer
    } else {
        reject(w, m, p, DropReason::kNoServicePort);
    }
}

/// Sends a reply to an external client straight back to the MAC its connection came from.
inline void to_external_client(const NodeContext& n,
                               rte_mbuf* m,
                               PacketMeta& p,
                               const table::CtEntry& e) noexcept {
    if (p.ttl <= 1) [[unlikely]] {
        p.drop(DropReason::kTtlExpired);
        return;
    }
    Mac to;
    std::memcpy(to.b.data(), e.peer_mac, 6);
    uint8_t* d = rewrite_l2(m, p, to, n.node_mac);
    pkt::dec_ttl(d + pkt::kEtherHdrLen);
    p.tx(n.uplink_port);
}

/// A source port for SNAT toward `reply_src:reply_sport` that no tracked connection uses.
/// Each worker owns the ports equal to its index modulo the worker count, so two workers never
/// race for one port and no lock is needed. Returns 0 when none of 64 candidates is free.
inline uint16_t snat_port(const Worker& w,
                          const table::Conntrack& ct,
                          table::CtKey reply,
                          uint64_t hash) noexcept {
    constexpr uint32_t kBase = 32768;
    const uint32_t workers = w.node->workers;
    const uint32_t per_worker = (65536 - kBase) / workers;
    for (uint32_t k = 0; k < 64; ++k) {
        const uint32_t port = kBase + ((hash + k) % per_worker) * workers + w.index;
        reply.dport = to_be16(static_cast<uint16_t>(port));
        if (reply.proto == pkt::kProtoIcmp) {
            reply.sport = reply.dport;  // an echo identifier is both "ports" (ct_key)
        }
        if (ct.lookup(reply).index == table::kCtNone) {
            return static_cast<uint16_t>(port);
        }
    }
    return 0;
}

/// The conntrack key of a parsed packet's tuple. An ICMP echo is keyed on its identifier in
/// both port fields and its type in `pad` (RFC 5508 §3.1: the identifier plays the port), so
/// that an echo reply's key is icmp_reversed() of its request's and a request never matches a
/// reply's entry.
inline table::CtKey ct_key(const Tuple4& t, uint8_t icmp_type) noexcept {
    if (t.proto == pkt::kProtoIcmp) {
        return table::CtKey{t.src.be, t.dst.be, t.sport, t.sport, t.proto, icmp_type, 0};
    }
    return table::CtKey{t.src.be, t.dst.be, t.sport, t.dport, t.proto, 0, 0};
}

/// What a packet travelling the other way looks like, for any key ct_key makes.
inline table::CtKey ct_reversed(const table::CtKey& k) noexcept {
    table::CtKey r = k.reversed();
    if (k.proto == pkt::kProtoIcmp) {
        r.pad = k.pad == kIcmpEchoRequest ? kIcmpEchoReply : kIcmpEchoRequest;
    }
    return r;
}

/// Sends a packet of a tracked connection on its way once its NAT is done: replies to an
/// external client go straight back to its MAC; masqueraded egress is flagged for the uplink.
/// Anything else stays pending, to be routed on its (rewritten) destination.
inline void after_nat(const NodeContext& n,
                      rte_mbuf* m,
                      PacketMeta& p,
                      const table::CtEntry& e,
                      table::CtDir dir) noexcept {
    if (dir == table::CtDir::kOrig) {
        if (e.nat & kNatEgress) {
            p.aux = kAuxEgress;
        }
    } else if (e.nat & kNatExternal) {
        to_external_client(n, m, p, e);
    }
}

/// An ICMP error (destination unreachable, time exceeded, parameter problem) about a packet of a
/// tracked connection, translated back as netfilter does for RELATED ICMP (RFC 5508 §4.3): the
/// quoted header gets the addresses and ports its sender knows, with its IP checksum and (when
/// quoted) its L4 checksum patched; the outer addresses get the NAT of the direction the error
/// travels; the ICMP checksum is recomputed. Returns true when it matched (p then routes on
/// its new destination, or has been sent); false, p pending, when no tracked connection
/// matches; drops a malformed error. Errors are rare: this is off the per-packet fast path.
inline bool icmp_error_nat(Worker& w, rte_mbuf* m, PacketMeta& p) noexcept {
    uint8_t* d = rte_pktmbuf_mtod(m, uint8_t*);
    uint8_t* icmp = d + p.l4_off;
    const uint32_t len = p.l3_len - (p.l4_off - p.l3_off);
    uint8_t* in = icmp + pkt::kIcmpHdrLen;  // the quoted IPv4 header
    // The quote must hold the original IPv4 header and the 8 bytes of L4 that carry the ports
    // (RFC 792); a later fragment or a fragmented error has no such header.
    const bool whole = !(p.flags & pkt_flag::kFragment) &&
                       len >= pkt::kIcmpHdrLen + pkt::kIpv4HdrLen + 8u && (in[0] >> 4) == 4;
    const uint32_t ihl = whole ? (in[0] & 0x0f) * 4u : 0;
    if (!whole || ihl < pkt::kIpv4HdrLen || len < pkt::kIcmpHdrLen + ihl + 8u ||
        ((in[6] & 0x1f) | in[7]) != 0) [[unlikely]] {
        p.drop(DropReason::kIcmpErrorMalformed);
        return false;
    }
    uint8_t* l4 = in + ihl;
    const uint32_t l4_len = len - pkt::kIcmpHdrLen - ihl;
    Tuple4 q;
    std::memcpy(&q.src.be, in + 12, 4);
    std::memcpy(&q.dst.be, in + 16, 4);
    q.proto = in[9];
    uint8_t q_type = 0;
    switch (q.proto) {
        case pkt::kProtoTcp:
        case pkt::kProtoUdp:
        case pkt::kProtoSctp:
            std::memcpy(&q.sport, l4, 2);
            std::memcpy(&q.dport, l4 + 2, 2);
            break;
        case pkt::kProtoIcmp:
            q_type = l4[0];
            if (q_type != kIcmpEchoRequest && q_type != kIcmpEchoReply) {
                return false;  // about an error, or ICMP that is never tracked
            }
            std::memcpy(&q.sport, l4 + 4, 2);
            break;
        default:
            return false;
    }
    // The error travels against the quoted packet: look up what a packet going that way is.
    const table::Conntrack& ct = *w.node->conntrack;
    const table::CtHit hit = ct.lookup(ct_reversed(ct_key(q, q_type)));
    if (hit.index == table::kCtNone) {
        return false;
    }
    const table::CtEntry& e = ct.entry(hit.index);
    const bool back = hit.dir == table::CtDir::kReply;  // toward the connection's originator
    // The quoted packet as its sender wrote it: the originator's, or the reply's as sent.
    const table::CtKey& want = back ? e.orig : e.reply;
    Ip4 src = p.tuple.src;
    Ip4 dst = p.tuple.dst;
    if (back) {
        src = (e.nat & kNatDnat) ? Ip4{e.orig.dst} : src;
        dst = (e.nat & kNatSnat) ? Ip4{e.orig.src} : dst;
    } else {
        src = (e.nat & kNatSnat) ? Ip4{e.reply.dst} : src;
        dst = (e.nat & kNatDnat) ? Ip4{e.reply.src} : dst;
    }
    // Quoted header: addresses and their checksum.
    uint16_t c;
    std::memcpy(&c, in + 10, 2);
    c = pkt::csum_replace32(c, q.src.be, want.src);
    c = pkt::csum_replace32(c, q.dst.be, want.dst);
    std::memcpy(in + 10, &c, 2);
    std::memcpy(in + 12, &want.src, 4);
    std::memcpy(in + 16, &want.dst, 4);
    // Quoted L4: ports (identifier) and the checksum when the quote holds it.
    if (q.proto == pkt::kProtoIcmp) {
        std::memcpy(&c, l4 + 2, 2);
        c = pkt::csum_replace16(c, q.sport, want.sport);
        std::memcpy(l4 + 2, &c, 2);
        std::memcpy(l4 + 4, &want.sport, 2);
    } else {
        const uint32_t at = q.proto == pkt::kProtoTcp ? 16 : q.proto == pkt::kProtoUdp ? 6 : 0;
        std::memcpy(l4, &want.sport, 2);
        std::memcpy(l4 + 2, &want.dport, 2);
        if (at != 0 && l4_len >= at + 2) {
            std::memcpy(&c, l4 + at, 2);
            if (c != 0 || q.proto == pkt::kProtoTcp) {  // UDP zero: no checksum
                c = pkt::csum_replace32(c, q.src.be, want.src);
                c = pkt::csum_replace32(c, q.dst.be, want.dst);
                c = pkt::csum_replace16(c, q.sport, want.sport);
                c = pkt::csum_replace16(c, q.dport, want.dport);
                std::memcpy(l4 + at, &c, 2);
            }
        }
        // SCTP's CRC32c covers chunks the quote cut off: it cannot be patched, as in netfilter.
    }
    // Outer header, then the ICMP checksum over the whole message.
    uint8_t* ip = d + p.l3_off;
    std::memcpy(&c, ip + 10, 2);
    c = pkt::csum_replace32(c, p.tuple.src.be, src.be);
    c = pkt::csum_replace32(c, p.tuple.dst.be, dst.be);
    std::memcpy(ip + 10, &c, 2);
    std::memcpy(ip + 12, &src.be, 4);
    std::memcpy(ip + 16, &dst.be, 4);
    p.tuple.src = src;
    p.tuple.dst = dst;
    icmp[2] = icmp[3] = 0;
    c = pkt::csum(icmp, len);
    std::memcpy(icmp + 2, &c, 2);
    after_nat(*w.node, m, p, e, hit.dir);
    return true;
}

/// An ICMP error the node itself built in place (icmp_error) about a packet it had already
/// NATed, e.g. "fragmentation needed" for a Service packet too big for the overlay: the quote
/// shows the rewritten packet, which its sender would not recognise, so it is translated like
/// an error that arrived (RFC 5508 §4.3 asks the same of errors a NAT originates).
inline void nat_own_icmp_error(Worker& w, rte_mbuf* m, PacketMeta& p) noexcept {
    const uint8_t* ip = rte_pktmbuf_mtod(m, const uint8_t*) + p.l3_off;
    p.l3_len = static_cast<uint16_t>(ip[2] << 8 | ip[3]);
    p.l4_off = static_cast<uint16_t>(p.l3_off + pkt::kIpv4HdrLen);
    p.flags = pkt_flag::kL4;
    p.ttl = ip[8];
    p.tuple = Tuple4{};
    p.tuple.proto = pkt::kProtoIcmp;
    std::memcpy(&p.tuple.src.be, ip + 12, 4);
    std::memcpy(&p.tuple.dst.be, ip + 16, 4);
    p.icmp_type = ip[pkt::kIpv4HdrLen];
    p.icmp_code = ip[pkt::kIpv4HdrLen + 1];
    icmp_error_nat(w, m, p);
}

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
inline uint16_t affinity_pick(Worker& w,
                              const table::Service& s,
                              const table::ServiceBlock& b,
                              bool local_only,
                              Ip4 client,
                              uint16_t fresh,
                              uint32_t now_s) noexcept {
    table::Conntrack& ct = *w.node->conntrack;
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
        if (e.owner != w.index) {
            return fresh;
        }
        ct.remove(w.index, hit.index, w.qsbr != nullptr ? rte_rcu_qsbr_start(w.qsbr) : 0);
    }
    const table::ServiceBackend& be = b.backends[fresh - 1u];
    const table::CtKey record{
        be.ip.be, client.be, be.port_be, 0, s.proto, 0, table::kCtZoneAffinity};
    // A full table only costs the stickiness of this client, never its connection.
    ct.insert(w.index, key, record, now_s, [&](table::CtEntry& e) {
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

/// Conntrack and Service NAT for a parsed IPv4 packet (TCP, UDP, SCTP). `services` says whether
/// a new flow may be load-balanced here: for traffic from local pods (the client's node
/// balances), from outside the cluster on the uplink, and for pod traffic decapsulated from
/// another node that is still addressed to a ClusterIP (its node did not balance it, as
/// kube-proxy's PREROUTING rules also catch). The last picks among this node's endpoints only,
/// so that the reply comes back through this node's conntrack without SNAT. Leaves p pending
/// (to be routed) unless it rejects, drops or sends it.
inline void conntrack_nat(Worker& w,
                          const table::TableSet& t,
                          rte_mbuf* m,
                          PacketMeta& p,
                          uint32_t now_s,
                          bool services,
                          bool from_uplink = false) noexcept {
    const NodeContext& n = *w.node;
    const uint8_t proto = p.tuple.proto;
    if ((p.flags & pkt_flag::kL4) == 0) {
        return;
    }
    if (proto == pkt::kProtoIcmp) [[unlikely]] {
        if (is_icmp_error_type(p.icmp_type)) {
            // Unrelated errors from pods or other nodes are plain pod traffic (no NAT to undo),
            // judged by policy on their own; from outside the cluster they can only be about a
            // connection of ours. Related ones pass with their connection.
            if (icmp_error_nat(w, m, p)) {
                p.flags |= pkt_flag::kTracked;
            } else if (from_uplink && p.pending()) {
                p.drop(DropReason::kIcmpErrorUnrelated);
            }
            return;
        }
        if (p.icmp_type != kIcmpEchoRequest && p.icmp_type != kIcmpEchoReply) {
            return;
        }
        p.tuple.dport = p.tuple.sport;  // the identifier is both "ports" (ct_key)
    } else if (proto != pkt::kProtoTcp && proto != pkt::kProtoUdp && proto != pkt::kProtoSctp) {
        return;
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
    if (hit.index != table::kCtNone) {
        table::CtEntry& e = ct.entry(hit.index);
        DropReason why;
        if (!entry_allowed(n, t.current_policy(), e, why)) [[unlikely]] {
            p.drop(why);  // the policy changed and no longer allows the connection
            return;
        }
        p.flags |= pkt_flag::kTracked;
        if (hit.dir == table::CtDir::kOrig) {
            if (e.nat & kNatDnat) {
                const Ip4 be{e.reply.src};
                if (!t.backend_alive(e.service, be, e.reply.sport, e.backend, e.block_id))
                    [[unlikely]] {
                    if (proto == pkt::kProtoTcp && !(p.tcp_flags & 0x04) && !from_uplink) {
                        bump(w.port_counters(p.in_port)
                                 .drops[static_cast<size_t>(DropReason::kStaleBackend)]);
                        tcp_reset(n, m, p);
                    } else {
                        p.drop(DropReason::kStaleBackend);
                    }
                    return;
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
        ct.touch(hit.index, hit.dir, p.tcp_flags, now_s);
        after_nat(n, m, p, e, hit.dir);
        return;
    }
    // Not a Service: the first packet of a connection between pods (or out of the cluster),
    // judged and tracked where it is delivered, sent to another node or masqueraded (admit).
    if (proto != pkt::kProtoIcmp || p.icmp_type == kIcmpEchoRequest) {
        p.flags |= pkt_flag::kNewFlow;
    }
    if (!services || proto == pkt::kProtoIcmp) {
        return;
    }
    const table::Frontend* fe = t.find_frontend(p.tuple.dst, p.tuple.dport, proto);
    if (fe == nullptr) {
        return;
    }
    p.flags &= static_cast<uint8_t>(~pkt_flag::kNewFlow);
    // A client outside the cluster: its replies go back to the MAC it came from. It may reach
    // a ClusterIP too (routed to the node, e.g. advertised by BGP): served like a NodePort.
    const bool external = from_uplink;
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
            return;
        }
    }
    const bool overlay = !from_uplink && n.ports->port[p.in_port].kind == PortKind::kUplink;
    const MaglevChoice mc = maglev_choice(s, b, fe->kind, from_uplink, overlay, p.tuple.src, h);
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
            reject(w, m, p);  // no endpoint anywhere: refused, whoever the client
        }
        return;
    }
    uint16_t slot = table[mc.hash % size];
    if (mc.affinity) {
        slot = affinity_pick(w, s, b, local_only, p.tuple.src, slot, now_s);
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
        return;
    }
    table::CtKey reply{be.ip.be, p.tuple.src.be, be.port_be, p.tuple.sport, proto, 0, 0};
    if (snat) {
        reply.dst = n.gateway_ip.be;
        const uint16_t port = snat_port(w, ct, reply, h);
        if (port == 0) [[unlikely]] {
            p.drop(DropReason::kSnatExhausted);
            return;
        }
        reply.dport = to_be16(port);
    }
    const uint8_t* frame = rte_pktmbuf_mtod(m, const uint8_t*);
    bool remap = snat;  // the source is rewritten to reply.dst:reply.dport
    const auto track = [&](table::CtInsertFail* why) {
        return ct.insert(
            w.index, key, reply, now_s,
            [&](table::CtEntry& e) {
                e.nat = static_cast<uint8_t>(kNatDnat | (remap ? kNatSnat : 0) |
                                             (external ? kNatExternal : 0));
                e.service = s.ct_ref;
                e.backend = slot;
                e.block_id = block_id;
                e.policy.store(cached_verdict(pol, true), std::memory_order_relaxed);
                if (external) {
                    std::memcpy(e.peer_mac, frame + 6, 6);
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
        const uint16_t port = snat_port(w, ct, reply, h);
        if (port == 0) [[unlikely]] {
            p.drop(DropReason::kSnatExhausted);
            return;
        }
        reply.dport = to_be16(port);
        remap = true;
        idx = track(&why);
    }
    if (idx == table::kCtNone) [[unlikely]] {
        p.drop(insert_drop_reason(why));
        return;
    }
    p.flags |= pkt_flag::kTracked;
    ct.touch(idx, table::CtDir::kOrig, p.tcp_flags, now_s);
    rewrite_dst(m, p, be.ip, be.port_be);
    if (remap) {
        rewrite_src(m, p, Ip4{reply.dst}, reply.dport);
    }
}

/// Masquerades a new connection from a pod to outside the cluster: SNAT to the node IP on a
/// port this worker owns, tracked so that replies are un-NATed. Returns false (with p dropped)
/// when it cannot; the caller then routes the packet out of the uplink.
inline bool masquerade(
    Worker& w, const table::TableSet& t, rte_mbuf* m, PacketMeta& p, uint32_t now_s) noexcept {
    const NodeContext& n = *w.node;
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
    // (conntrack_nat has put it in both tuple ports); its replies come back as echo replies.
    const table::CtKey key = ct_key(p.tuple, p.icmp_type);
    table::CtKey reply{p.tuple.dst.be,
                       n.node_ip.be,
                       p.tuple.dport,
                       0,
                       proto,
                       uint8_t{echo ? kIcmpEchoReply : uint8_t{0}},
                       0};
    const uint16_t port = snat_port(w, ct, reply, key.hash());
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
        w.index, key, reply, now_s,
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

/// Policy for a packet conntrack_nat left untracked, before it is delivered to a pod or sent to
/// another node: the first packet of a connection (kNewFlow) is judged and tracked without NAT,
/// so that its replies pass and a policy change finds it; a packet conntrack cannot follow
/// (a later fragment, ICMP other than echo, another protocol) is judged by itself, without
/// ports. Returns false, p dropped, when policy denies it.
inline bool admit(Worker& w, const table::TableSet& t, PacketMeta& p, uint32_t now_s) noexcept {
    if (p.flags & pkt_flag::kTracked) [[likely]] {
        return true;
    }
    const NodeContext& n = *w.node;
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
        w.index, key, ct_reversed(key), now_s,
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
