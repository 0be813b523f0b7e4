// TableManager::trace: one crafted packet through the real pipeline, leaving no state behind.
//
// The packet goes through process_burst, the function every worker runs, on a private Worker
// whose NodeContext is a copy of the node's with one difference: a scratch conntrack, so that
// the connection the packet would create is not added to the real table. Its counters are its
// own (the node's stats do not move) and its transmit buffers are never flushed: whatever the
// pipeline would have sent is read back from them and freed. The real conntrack is only read,
// to say whether the flow is already established.
#include <cstring>

#include <fmt/format.h>
#include <rte_ip.h>
#include <rte_mbuf.h>

#include "api/table_manager.h"
#include "core/worker.h"
#include "pkt/parse.h"
#include "stage/policy.h"

namespace kdp::api {
namespace {

constexpr uint16_t kTraceSport = 47000;  // the client port of the crafted packet

// What NetworkPolicy says of a connection from `client` to `server`:`port` (after DNAT), seen
// by the server as coming from `seen`: which policy rule allowed each isolated side, or that
// none did. The same judge() the workers run on a connection's first packet.
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

// Ethernet + IPv4 + a TCP SYN or an 8-byte UDP/SCTP-less header, checksums filled in.
std::vector<uint8_t> craft(
    const Mac& dst_mac, const Mac& src_mac, Ip4 src, Ip4 dst, uint8_t proto, uint16_t dport) {
    const size_t l4_len = proto == 6 ? 20 : proto == 17 ? 8 : 12;
    std::vector<uint8_t> f(14 + 20 + l4_len + (proto == 132 ? 16 : 0), 0);
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
    const uint16_t sp = rte_cpu_to_be_16(kTraceSport);
    const uint16_t dp = rte_cpu_to_be_16(dport);
    std::memcpy(l4, &sp, 2);
    std::memcpy(l4 + 2, &dp, 2);
    if (proto == 6) {
        l4[12] = 5 << 4;  // data offset
        l4[13] = 0x02;    // SYN
        l4[14] = 0xff;    // window
        const uint16_t c = rte_ipv4_udptcp_cksum(ip, l4);
        std::memcpy(l4 + 16, &c, 2);
    } else if (proto == 17) {
        const uint16_t len = rte_cpu_to_be_16(8);
        std::memcpy(l4 + 4, &len, 2);
        const uint16_t c = rte_ipv4_udptcp_cksum(ip, l4);
        std::memcpy(l4 + 6, &c, 2);
    } else {
        // SCTP common header and an INIT chunk header; the pipeline recomputes CRC32c only
        // when it rewrites the packet, so the trace does not need a valid one.
        l4[12] = 1;  // INIT
        l4[15] = 16;
    }
    ip->hdr_checksum = rte_ipv4_cksum(ip);
    return f;
}

// `inner` (an Ethernet frame) as a VXLAN packet from node `from_ip` to this node.
std::vector<uint8_t> encapsulate(const std::vector<uint8_t>& inner,
                                 const dataplane::NodeContext& n,
                                 Ip4 from_ip,
                                 const Mac& from_mac) {
    constexpr size_t kOuter = 14 + 20 + 8 + 8;
    std::vector<uint8_t> f(kOuter + inner.size());
    std::memcpy(f.data() + kOuter, inner.data(), inner.size());
    std::memcpy(f.data(), n.node_mac.b.data(), 6);
    std::memcpy(f.data() + 6, from_mac.b.data(), 6);
    f[12] = 0x08;
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(f.data() + 14);
    ip->version_ihl = 0x45;
    ip->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(f.size() - 14));
    ip->time_to_live = 64;
    ip->next_proto_id = 17;
    ip->src_addr = from_ip.be;
    ip->dst_addr = n.node_ip.be;
    ip->hdr_checksum = rte_ipv4_cksum(ip);
    uint8_t* udp = f.data() + 34;
    const uint16_t sp = rte_cpu_to_be_16(kTraceSport);
    std::memcpy(udp, &sp, 2);
    std::memcpy(udp + 2, &n.vxlan_port_be, 2);
    const uint16_t len = rte_cpu_to_be_16(static_cast<uint16_t>(8 + 8 + inner.size()));
    std::memcpy(udp + 4, &len, 2);  // checksum 0: none, as VXLAN senders do
    uint8_t* vx = udp + 8;
    vx[0] = 0x08;  // I flag: the VNI is valid
    vx[4] = static_cast<uint8_t>(n.vni >> 16);
    vx[5] = static_cast<uint8_t>(n.vni >> 8);
    vx[6] = static_cast<uint8_t>(n.vni);
    return f;
}

std::string flow_text(uint8_t proto, Ip4 s, uint16_t sp, Ip4 d, uint16_t dp) {
    return fmt::format("{} {}:{} -> {}:{}",
                       proto == 6    ? "TCP"
                       : proto == 17 ? "UDP"
                                     : "SCTP",
                       s.str(), sp, d.str(), dp);
}

}  // namespace

void TableManager::set_trace_pool(rte_mempool* pool) {
    std::lock_guard lock(mu_);
    trace_pool_ = pool;
}

std::optional<std::string> TableManager::trace(const TraceQuery& q, TraceResult& out) {
    std::lock_guard lock(mu_);
    if (trace_pool_ == nullptr) {
        return std::string("tracing is not set up in this dataplane");
    }
    const table::TableSet* t = current_.get();
    if (t == nullptr) {
        return std::string("no tables applied yet: nothing to trace");
    }
    if (q.port == 0) {
        return std::string("port: 0 is not a port");
    }
    const std::string& node = info_.node_name;
    const auto pod_of = [&](const std::string& name) -> const table::PodSpec* {
        for (const auto& p : pods_) {
            if (p.name == name) {
                return &p;
            }
        }
        return nullptr;
    };
    const auto port_id_of = [&](const std::string& name) -> std::optional<uint16_t> {
        for (const auto& e : ports_) {
            if (e.name == name) {
                return e.port_id;
            }
        }
        return std::nullopt;
    };

    // Where the packet enters and what it looks like.
    Ip4 src;
    uint16_t in_port = node_.uplink_port;
    Mac src_mac = Mac::from_ip(Ip4::from_host(0xc0000201));  // 192.0.2.1's, for outside clients
    Mac dst_mac = node_.node_mac;
    if (const auto ip = Ip4::parse(q.from)) {
        src = *ip;
    } else if (const table::PodSpec* p = pod_of(q.from)) {
        const auto id = port_id_of(p->port_name);
        if (!id) {
            return fmt::format("from: pod {}'s port {} is not up on this node", q.from,
                               p->port_name);
        }
        src = p->ip;
        in_port = *id;
        dst_mac = node_.gateway_mac;
        src_mac = Mac::unpack(node_.ports->port[in_port].peer_mac.load());
        if (src_mac.is_zero()) {
            src_mac = Mac::from_ip(src);
        }
    } else {
        return fmt::format(
            "from: \"{}\" is neither an IPv4 address nor a pod on node {} (trace from the node "
            "that hosts the pod)",
            q.from, node);
    }
    Ip4 dst;
    std::string to_service;
    if (const auto ip = Ip4::parse(q.to)) {
        dst = *ip;
    } else if (q.to.rfind("service:", 0) == 0) {
        const std::string want = q.to.substr(8);
        for (const auto& [name, port] : services_) {
            const table::ServiceSpec& sv = port.block->spec;
            const std::string base = sv.name.substr(0, sv.name.find(':'));
            if (base != want || sv.proto != q.proto) {
                continue;
            }
            for (const auto& fe : sv.frontends) {
                if (fe.kind == table::FrontendKind::kClusterIp && fe.port == q.port) {
                    dst = fe.ip;
                    to_service = sv.name;
                }
            }
        }
        if (dst.is_zero()) {
            return fmt::format("to: service {} has no ClusterIP port {}/{} on node {}", want,
                               q.port,
                               q.proto == 6    ? "tcp"
                               : q.proto == 17 ? "udp"
                                               : "sctp",
                               node);
        }
    } else if (const table::PodSpec* p = pod_of(q.to)) {
        dst = p->ip;
    } else {
        return fmt::format(
            "to: \"{}\" is neither an IPv4 address, service:NS/NAME nor a pod on node {}", q.to,
            node);
    }

    std::vector<uint8_t> frame = craft(dst_mac, src_mac, src, dst, q.proto, q.port);
    std::string arrival;
    if (in_port == node_.uplink_port) {
        // A pod of another node arrives encapsulated by its node, as the real one would.
        for (const auto& r : routes_) {
            if (r.pod_cidr.contains(src)) {
                frame = encapsulate(craft(node_.vtep_mac, r.vtep_mac, src, dst, q.proto, q.port),
                                    node_, r.node_ip, Mac::from_ip(r.node_ip));
                arrival = fmt::format(", in VXLAN from node {} ({})", r.node_name, r.node_ip.str());
            }
        }
    }
    rte_mbuf* m = rte_pktmbuf_alloc(trace_pool_);
    if (m == nullptr) {
        return std::string("no mbuf free for the trace packet; try again");
    }
    std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(frame.size())), frame.data(),
                frame.size());

    out = TraceResult{};
    const auto hop = [&](std::string stage, std::string detail) {
        out.hops.push_back(TraceHop{node, std::move(stage), std::move(detail)});
    };
    const std::string in_name = [&] {
        for (const auto& e : ports_) {
            if (e.port_id == in_port) {
                return e.name;
            }
        }
        return std::string("?");
    }();
    hop("parse", fmt::format("{} arriving on port {}{}",
                             flow_text(q.proto, src, kTraceSport, dst, q.port), in_name, arrival));
    const table::CtKey key{src.be, dst.be, to_be16(kTraceSport), to_be16(q.port), q.proto, 0, 0};
    const table::CtHit hit = node_.conntrack->lookup(key);
    hop("conntrack", hit.index == table::kCtNone
                         ? "new connection (looked up in the real table, which the trace "
                           "leaves unchanged)"
                         : fmt::format("established: entry {}", hit.index));

    // The pipeline itself, on a private worker, scratch conntrack and scratch neighbours (an
    // unresolved or stale next hop would otherwise have its ARP request marked as sent, and
    // the workers' own request held back a retry interval, for a request that never leaves).
    dataplane::NodeContext tn = node_;
    table::Conntrack scratch(64 * tn.workers, tn.workers);
    tn.conntrack = &scratch;
    const std::unique_ptr<table::NeighborTable> neighbors =
        table::NeighborTable::copy_of(*node_.neighbors);
    tn.neighbors = neighbors.get();
    // The flow's connection and the client's affinity records, copied into the scratch table,
    // so that an established connection keeps its backend (or is reset when that backend left)
    // and a recorded affinity is followed, as for the real packet.
    const auto seed = [&](const table::CtEntry& e) {
        scratch.insert(0, e.orig, e.reply, e.last_seen.load(), [&](table::CtEntry& c) {
            c.state.store(e.state.load());
            c.flags.store(e.flags.load());
            c.nat = e.nat;
            c.service = e.service;
            c.backend = e.backend;
            c.policy.store(e.policy.load());
            std::memcpy(c.peer_mac, e.peer_mac, sizeof c.peer_mac);
            c.timeout_s = e.timeout_s;
        });
    };
    if (hit.index != table::kCtNone) {
        seed(node_.conntrack->entry(hit.index));
    }
    node_.conntrack->for_each([&](uint32_t, const table::CtEntry& e) {
        if (e.orig.zone == table::kCtZoneAffinity && e.orig.src == src.be) {
            seed(e);
        }
    });
    auto w = std::make_unique<dataplane::Worker>();
    w->node = &tn;
    w->pool = trace_pool_;
    w->held.resize(4);
    const uint64_t peer_before = node_.ports->port[in_port].peer_mac.load();
    w->burst.pkts[0] = m;
    w->burst.count = 1;
    dataplane::process_burst(*w, t, in_port, w->burst, clock_ ? clock_() : rte_rdtsc());
    node_.ports->port[in_port].peer_mac.store(peer_before);  // learning is not the trace's

    // What came out.
    const table::ServiceSpec* svc = nullptr;
    if (const table::Frontend* fe = t->find_frontend(dst, to_be16(q.port), q.proto)) {
        svc = &t->services[fe->service].current().spec;
    }
    bool sent = false;
    Ip4 pol_server = dst, pol_seen = src;  // the connection NetworkPolicy judges
    uint16_t pol_port = q.port;
    for (uint16_t port = 0; port < RTE_MAX_ETHPORTS; ++port) {
        dataplane::TxBuffer& tx = w->tx[port];
        for (uint16_t i = 0; i < tx.count; ++i) {
            rte_mbuf* o = tx.pkts[i];
            dataplane::PacketMeta p{};
            const uint8_t* d = rte_pktmbuf_mtod(o, const uint8_t*);
            if (pkt::parse_frame(d, o->data_len, p, {}) != dataplane::DropReason::kNone ||
                p.ether_type != pkt::kEtherTypeIpv4) {
                if (p.ether_type == pkt::kEtherTypeArp) {
                    hop("arp", "the next hop is being resolved (ARP request)");
                }
                continue;
            }
            std::string port_name = "?";
            for (const auto& e : ports_) {
                if (e.port_id == port) {
                    port_name = e.name;
                }
            }
            Ip4 isrc = p.tuple.src, idst = p.tuple.dst;
            uint16_t isp = rte_be_to_cpu_16(p.tuple.sport), idp = rte_be_to_cpu_16(p.tuple.dport);
            uint8_t iproto = p.tuple.proto;
            std::string via;
            if (port == node_.uplink_port && iproto == 17 && p.tuple.dport == node_.vxlan_port_be) {
                // Encapsulated: read the inner packet (outer 14 + 20 + 8 + VXLAN 8).
                std::string to_node = p.tuple.dst.str();
                for (const auto& r : routes_) {
                    if (r.node_ip == p.tuple.dst) {
                        to_node = r.node_name;
                    }
                }
                via = fmt::format("vxlan to node {} ({}), VNI {}", to_node, p.tuple.dst.str(),
                                  node_.vni);
                dataplane::PacketMeta inner{};
                const size_t off = 14 + 20 + 8 + 8;
                if (o->data_len > off &&
                    pkt::parse_frame(d + off, static_cast<uint16_t>(o->data_len - off), inner,
                                     {}) == dataplane::DropReason::kNone) {
                    isrc = inner.tuple.src;
                    idst = inner.tuple.dst;
                    isp = rte_be_to_cpu_16(inner.tuple.sport);
                    idp = rte_be_to_cpu_16(inner.tuple.dport);
                    iproto = inner.tuple.proto;
                }
            }
            if (port == in_port && idst == src && isrc == dst &&
                (iproto == 1 || (isp == q.port && idp == kTraceSport))) {
                // Answered back to the sender from the address and port it sent to: a reject
                // (TCP RST or ICMP unreachable). A hairpin also returns on the sender's port,
                // from the node's address, and a pod's packet to itself is not reversed.
                out.verdict = "reject";
                hop("reject",
                    fmt::format("{} answered from {} (no endpoint or refused)",
                                iproto == 1 ? "ICMP port unreachable" : "TCP RST", isrc.str()));
                sent = true;
                continue;
            }
            if (svc != nullptr && (idst != dst || idp != q.port)) {
                for (const auto& b : svc->backends) {
                    if (b.ip == idst && b.port == idp) {
                        out.backend = b.pod;
                    }
                }
                out.backend_port = idp;
                hop("service", fmt::format("{}: backend {} {}:{} (Maglev over {} endpoints)",
                                           svc->name, out.backend.empty() ? "-" : out.backend,
                                           idst.str(), idp, svc->backends.size()));
            }
            if (isrc != src || isp != kTraceSport) {
                hop("snat", fmt::format("source rewritten to {}:{}", isrc.str(), isp));
            }
            out.seen_src = isrc.str();
            pol_server = idst;
            pol_port = idp;
            pol_seen = isrc;
            hop(via.empty() ? "output" : "vxlan_encap",
                via.empty() ? fmt::format("{} out of port {}",
                                          flow_text(iproto, isrc, isp, idst, idp), port_name)
                            : fmt::format("{}: {}", via, flow_text(iproto, isrc, isp, idst, idp)));
            out.verdict = out.verdict.empty() ? "allow" : out.verdict;
            sent = true;
        }
        rte_pktmbuf_free_bulk(tx.pkts, tx.count);
        tx.count = 0;
    }
    for (uint32_t i = 0; i < w->held_count; ++i) {
        hop("arp_hold", "held until the next hop's MAC is resolved; it would then leave");
        out.verdict = "allow";
        sent = true;
        rte_pktmbuf_free(w->held[i].m);
    }
    if (out.verdict != "reject") {
        // Judged after DNAT (and SNAT), before the packet leaves: shown in that place.
        const table::PolicyTables* pol = t->policy.load(std::memory_order_acquire);
        std::string detail;
        if (svc != nullptr && pol_server == dst && !sent) {
            detail = fmt::format("{} (judged against the backend after DNAT)",
                                 pol->synced ? "no rule allows this client to the backend chosen"
                                             : "not synced: no NetworkPolicy from the control "
                                               "plane yet");
        } else {
            detail = policy_detail(tn, *pol, src, pol_seen, pol_server, pol_port, q.proto);
        }
        auto at = out.hops.begin();
        while (at != out.hops.end() &&
               (at->stage == "parse" || at->stage == "conntrack" || at->stage == "service")) {
            ++at;
        }
        out.hops.insert(at, TraceHop{node, "policy", std::move(detail)});
    }
    if (!sent) {
        out.verdict = "deny";
        std::string why = "dropped";
        for (size_t r = 0; r < dataplane::kDropReasonCount; ++r) {
            if (w->counters.port[in_port].drops[r].load() != 0) {
                why = fmt::format("dropped: {} ({})", dataplane::kDropReasonInfo[r].label,
                                  dataplane::kDropReasonInfo[r].help);
            }
        }
        hop("drop", why);
    }
    if (!to_service.empty() && out.backend.empty() && out.verdict == "allow") {
        hop("service", fmt::format("{}: no DNAT happened", to_service));
    }
    return std::nullopt;
}

}  // namespace kdp::api
