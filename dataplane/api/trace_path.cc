// The shared pieces of kdpctl trace (see trace_path.h).
#include "api/trace_path.h"

#include <cstring>

#include <fmt/format.h>
#include <rte_ip.h>
#include <rte_mbuf.h>

#include "pkt/parse.h"
#include "stage/policy.h"
#include "stage/service.h"

namespace kdp::api::tracing {

std::vector<uint8_t> craft(const Mac& dst_mac,
                           const Mac& src_mac,
                           Ip4 src,
                           Ip4 dst,
                           uint8_t proto,
                           uint16_t sport,
                           uint16_t dport,
                           bool reply) {
    const size_t l4_len = proto == 6 ? 20 : proto == 17 ? 8 : 12 + 20;
    std::vector<uint8_t> f(14 + 20 + l4_len, 0);
    std::memcpy(f.data(), dst_mac.b.data(), 6);
    std::memcpy(f.data() + 6, src_mac.b.data(), 6);
    f[12] = 0x08;
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(f.data() + 14);
    ip->version_ihl = 0x45;
    ip->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(f.size() - 14));
    ip->time_to_live = 64;
    ip->next_proto_id = proto;
    ip->src_addr = src.be;
    ip->dst_addr = dst.be;
    uint8_t* l4 = f.data() + 34;
    const uint16_t sp = rte_cpu_to_be_16(sport);
    const uint16_t dp = rte_cpu_to_be_16(dport);
    std::memcpy(l4, &sp, 2);
    std::memcpy(l4 + 2, &dp, 2);
    if (proto == 6) {
        l4[12] = 5 << 4;               // data offset
        l4[13] = reply ? 0x12 : 0x02;  // SYN-ACK | SYN
        l4[14] = 0xff;                 // window
        if (reply) {
            l4[11] = 1;  // ack 1
        }
        const uint16_t c = rte_ipv4_udptcp_cksum(ip, l4);
        std::memcpy(l4 + 16, &c, 2);
    } else if (proto == 17) {
        const uint16_t len = rte_cpu_to_be_16(8);
        std::memcpy(l4 + 4, &len, 2);
        const uint16_t c = rte_ipv4_udptcp_cksum(ip, l4);
        std::memcpy(l4 + 6, &c, 2);
    } else {
        // SCTP common header and an INIT (INIT-ACK) chunk: type, flags, length 20, initiate
        // tag, a_rwnd, streams, initial TSN. The pipeline recomputes CRC32c only when it
        // rewrites the packet, so the trace does not need a valid one.
        l4[7] = reply ? 1 : 0;  // verification tag: the INIT's initiate tag, 0 on an INIT
        l4[12] = reply ? 2 : 1;
        l4[15] = 20;
        l4[19] = 1;     // initiate tag
        l4[22] = 0xff;  // a_rwnd
        l4[25] = 1;     // outbound streams
        l4[27] = 1;     // inbound streams
    }
    ip->hdr_checksum = rte_ipv4_cksum(ip);
    return f;
}

std::vector<uint8_t> encapsulate(const std::vector<uint8_t>& inner,
                                 const dataplane::NodeContext& to,
                                 Ip4 from_ip,
                                 const Mac& from_mac) {
    std::vector<uint8_t> f(kVxlanOverhead + inner.size());
    std::memcpy(f.data() + kVxlanOverhead, inner.data(), inner.size());
    std::memcpy(f.data(), to.node_mac.b.data(), 6);
    std::memcpy(f.data() + 6, from_mac.b.data(), 6);
    f[12] = 0x08;
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(f.data() + 14);
    ip->version_ihl = 0x45;
    ip->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(f.size() - 14));
    ip->time_to_live = 64;
    ip->next_proto_id = 17;
    ip->src_addr = from_ip.be;
    ip->dst_addr = to.node_ip.be;
    ip->hdr_checksum = rte_ipv4_cksum(ip);
    uint8_t* udp = f.data() + 34;
    const uint16_t sp = rte_cpu_to_be_16(kTraceSport);
    std::memcpy(udp, &sp, 2);
    std::memcpy(udp + 2, &to.vxlan_port_be, 2);
    const uint16_t len = rte_cpu_to_be_16(static_cast<uint16_t>(8 + 8 + inner.size()));
    std::memcpy(udp + 4, &len, 2);  // checksum 0: none, as VXLAN senders do
    uint8_t* vx = udp + 8;
    vx[0] = 0x08;  // I flag: the VNI is valid
    vx[4] = static_cast<uint8_t>(to.vni >> 16);
    vx[5] = static_cast<uint8_t>(to.vni >> 8);
    vx[6] = static_cast<uint8_t>(to.vni);
    return f;
}

const char* proto_name(uint8_t proto) {
    return proto == 6 ? "TCP" : proto == 17 ? "UDP" : proto == 132 ? "SCTP" : "ICMP";
}

std::string flow_text(uint8_t proto, Ip4 s, uint16_t sp, Ip4 d, uint16_t dp) {
    if (proto == 1) {
        return fmt::format("ICMP {} -> {}", s.str(), d.str());
    }
    return fmt::format("{} {}:{} -> {}:{}", proto_name(proto), s.str(), sp, d.str(), dp);
}

bool run_frame(dataplane::Worker& w,
               const table::TableSet* t,
               uint16_t in_port,
               const std::vector<uint8_t>& frame,
               uint64_t now,
               FrameRun& out) {
    out = FrameRun{};
    // A trace sends nothing: the budget of RST / ICMP replies (ReplyBudget) never limits one.
    w.replies = dataplane::ReplyBudget{};
    rte_mbuf* m = rte_pktmbuf_alloc(w.pool);
    if (m == nullptr) {
        return false;
    }
    std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(frame.size())), frame.data(),
                frame.size());
    // Drops are read as the change of the worker's counters over this run.
    std::array<uint64_t, dataplane::kDropReasonCount> before{};
    for (size_t r = 0; r < dataplane::kDropReasonCount; ++r) {
        for (const auto& pc : w.counters.port) {
            before[r] += pc.drops[r].load(std::memory_order_relaxed);
        }
    }
    dataplane::PortRuntime& rt = w.node->ports->port[in_port];
    const uint64_t peer_before = rt.peer_mac.load();
    w.burst.pkts[0] = m;
    w.burst.count = 1;
    dataplane::process_burst(w, t, in_port, w.burst, now);
    rt.peer_mac.store(peer_before);  // learning is not the trace's
    for (uint16_t port = 0; port < RTE_MAX_ETHPORTS; ++port) {
        dataplane::TxBuffer& tx = w.tx[port];
        for (uint16_t i = 0; i < tx.count; ++i) {
            const rte_mbuf* o = tx.pkts[i];
            const auto* d = rte_pktmbuf_mtod(o, const uint8_t*);
            out.out.push_back({port, std::vector<uint8_t>(d, d + o->data_len)});
        }
        rte_pktmbuf_free_bulk(tx.pkts, tx.count);
        tx.count = 0;
    }
    for (uint32_t i = 0; i < w.held_count; ++i) {
        rte_pktmbuf_free(w.held[i].m);
    }
    out.held = w.held_count;
    w.held_count = 0;
    for (size_t r = 1; r < dataplane::kDropReasonCount; ++r) {
        uint64_t after = 0;
        for (const auto& pc : w.counters.port) {
            after += pc.drops[r].load(std::memory_order_relaxed);
        }
        if (after != before[r]) {
            out.drop = static_cast<dataplane::DropReason>(r);
        }
    }
    return true;
}

Flow read_flow(const std::vector<uint8_t>& frame, uint16_t vxlan_port_be) {
    Flow f;
    dataplane::PacketMeta p{};
    if (pkt::parse_frame(frame.data(), static_cast<uint32_t>(frame.size()), p, {}) !=
        dataplane::DropReason::kNone) {
        return f;
    }
    if (p.ether_type == pkt::kEtherTypeArp) {
        f.arp = true;
        return f;
    }
    if (p.ether_type != pkt::kEtherTypeIpv4) {
        return f;
    }
    if (p.tuple.proto == pkt::kProtoUdp && p.tuple.dport == vxlan_port_be &&
        frame.size() > kVxlanOverhead) {
        dataplane::PacketMeta inner{};
        if (pkt::parse_frame(frame.data() + kVxlanOverhead,
                             static_cast<uint32_t>(frame.size() - kVxlanOverhead), inner,
                             {}) == dataplane::DropReason::kNone &&
            inner.ether_type == pkt::kEtherTypeIpv4) {
            f.vxlan = true;
            f.outer_dst = p.tuple.dst;
            p = inner;
        }
    }
    f.ipv4 = true;
    f.src = p.tuple.src;
    f.dst = p.tuple.dst;
    f.sport = rte_be_to_cpu_16(p.tuple.sport);
    f.dport = rte_be_to_cpu_16(p.tuple.dport);
    f.proto = p.tuple.proto;
    f.tcp_flags = p.tcp_flags;
    return f;
}

std::string policy_detail(const dataplane::NodeContext& n,
                          const table::PolicyTables& pol,
                          Ip4 client,
                          Ip4 seen,
                          Ip4 server,
                          uint16_t port,
                          uint8_t proto) {
    if (!pol.synced) {
        return "not synced: no NetworkPolicy from the control plane yet "
               "(network_policy.before_sync: deny); only the node's own traffic passes";
    }
    const auto pod_name = [&](Ip4 ip) {
        for (const auto& p : pol.spec.pods) {
            if (p.ip == ip) {
                return p.pod;
            }
        }
        return ip.str();
    };
    const auto rule_name = [&](uint32_t rule) {
        return rule != 0 && rule <= pol.spec.rule_names.size() ? pol.spec.rule_names[rule - 1]
                                                               : fmt::format("rule {}", rule);
    };
    const dataplane::stage::PolicyVerdict v =
        dataplane::stage::judge(n, pol, client, seen, server, rte_cpu_to_be_16(port), proto);
    std::string out;
    const auto add = [&](const std::string& s) { out += (out.empty() ? "" : "; ") + s; };
    const auto verdict = [&](const char* dir, Ip4 pod, uint32_t rule) {
        add(rule != 0 ? fmt::format("{} of {}: allowed by {}", dir, pod_name(pod), rule_name(rule))
                      : fmt::format("{} of {}: no rule allows it (isolated for {})", dir,
                                    pod_name(pod), dir));
    };
    const auto* from = pol.find_pod(client);
    const auto* to = pol.find_pod(server);
    if (v.egress_judged) {
        verdict("egress", client, v.egress_rule);
    } else if (from != nullptr && (from->isolation & table::PodPolicy::kEgressIsolated) != 0) {
        add(fmt::format("egress of {}: to its own node, always allowed", pod_name(client)));
    }
    if (v.ingress_judged) {
        verdict("ingress", server, v.ingress_rule);
    } else if (to != nullptr && (to->isolation & table::PodPolicy::kIngressIsolated) != 0 &&
               v.allowed) {
        add(fmt::format("ingress of {}: from its own node, always allowed", pod_name(server)));
    }
    if (out.empty()) {
        out = "no pod on this node isolated for this flow: allowed";
    }
    return out;
}

std::string maglev_slot(const table::TableSet& t,
                        const table::Frontend& fe,
                        const Flow& in,
                        bool on_uplink,
                        Ip4 backend,
                        uint16_t backend_port) {
    const table::Service& s = t.services[fe.service];
    const table::ServiceBlock& b = s.current();
    const table::CtKey key{in.src.be, in.dst.be, to_be16(in.sport), to_be16(in.dport), in.proto,
                           0,         0};
    const bool from_outside = on_uplink && !in.vxlan;
    const dataplane::stage::MaglevChoice mc = dataplane::stage::maglev_choice(
        s, b, fe.kind, from_outside, on_uplink && in.vxlan, in.src, key.hash());
    const std::vector<uint16_t>& m = *mc.table;
    const uint64_t slot = m.empty() ? 0 : mc.hash % m.size();
    if (m.empty() || b.backends[m[slot] - 1u].ip != backend ||
        b.backends[m[slot] - 1u].port_be != to_be16(backend_port)) {
        return "the client's recorded affinity";
    }
    return fmt::format("Maglev slot {} of {}{}{}", slot, m.size(),
                       mc.local_only ? " over this node's endpoints" : "",
                       mc.affinity ? ", hashed on the client address (ClientIP affinity)" : "");
}

}  // namespace kdp::api::tracing
