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
#include "api/trace_path.h"
#include "core/worker.h"
#include "pkt/parse.h"
#include "stage/policy.h"

namespace kdp::api {

using tracing::craft;
using tracing::encapsulate;
using tracing::flow_text;
using tracing::kTraceSport;
using tracing::policy_detail;

void TableManager::set_trace_pool(rte_mempool* pool) {
    LockGuard lock(mu_);
    trace_pool_ = pool;
}

std::optional<std::string> TableManager::trace(const TraceQuery& q, TraceResult& out) {
    LockGuard lock(mu_);
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
    const auto pod_of = [&](const std::string& name) KDP_REQUIRES(mu_) -> const table::PodSpec* {
        for (const auto& p : pods_) {
            if (p.name == name) {
                return &p;
            }
        }
        return nullptr;
    };
    const auto port_id_of = [&](const std::string& name)
                                KDP_REQUIRES(mu_) -> std::optional<uint16_t> {
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
    } else if (q.from == "host") {
        if (!node_.has_host()) {
            return fmt::format("from: node {} has no host interface (node config `host`)", node);
        }
        src = node_.gateway_ip;  // the kernel's address on it
        in_port = node_.host_port;
        dst_mac = node_.gateway_mac;
        src_mac = Mac::unpack(node_.ports->port[in_port].peer_mac.load());
    } else {
        return fmt::format(
            "from: \"{}\" is neither an IPv4 address, host nor a pod on node {} (trace from the "
            "node that hosts the pod)",
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
                               q.port, ip_proto_name(q.proto), node);
        }
    } else if (const table::PodSpec* p = pod_of(q.to)) {
        dst = p->ip;
    } else {
        return fmt::format(
            "to: \"{}\" is neither an IPv4 address, service:NS/NAME nor a pod on node {} (a pod "
            "of another node: its address, or kdpctl trace --peer NODE=SOCKET)",
            q.to, node);
    }

    const uint16_t sport = q.sport != 0 ? q.sport : kTraceSport;
    std::vector<uint8_t> frame = craft(dst_mac, src_mac, src, dst, q.proto, sport, q.port);
    std::string arrival;
    if (in_port == node_.uplink_port) {
        // A pod of another node arrives encapsulated by its node, as the real one would.
        for (const auto& r : routes_) {
            if (r.pod_cidr.contains(src)) {
                frame =
                    encapsulate(craft(node_.vtep_mac, r.vtep_mac, src, dst, q.proto, sport, q.port),
                                node_, r.node_ip, Mac::from_ip(r.node_ip));
                arrival = fmt::format(", in VXLAN from node {} ({})", r.node_name, r.node_ip.str());
            }
        }
    }
    out = TraceResult{};
    const auto hop = [&](std::string stage, std::string detail) {
        out.hops.push_back(TraceHop{node, std::move(stage), std::move(detail)});
    };
    const std::string in_name = [&]() KDP_REQUIRES(mu_) {
        for (const auto& e : ports_) {
            if (e.port_id == in_port) {
                return e.name;
            }
        }
        return std::string("?");
    }();
    hop("parse", fmt::format("{} arriving on port {}{}",
                             flow_text(q.proto, src, sport, dst, q.port), in_name, arrival));
    const table::CtKey key{src.be, dst.be, to_be16(sport), to_be16(q.port), q.proto, 0, 0};
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
    tracing::FrameRun run;
    if (!tracing::run_frame(*w, t, in_port, frame, clock_ ? clock_() : rte_rdtsc(), run)) {
        return std::string("no mbuf free for the trace packet; try again");
    }

    // What came out.
    const table::ServiceSpec* svc = nullptr;
    const table::Frontend* fe = t->find_frontend(dst, to_be16(q.port), q.proto);
    if (fe != nullptr) {
        svc = &t->services[fe->service].current().spec;
    }
    bool sent = false;
    Ip4 pol_server = dst, pol_seen = src;  // the connection NetworkPolicy judges
    uint16_t pol_port = q.port;
    for (const tracing::Emitted& em : run.out) {
        const uint16_t port = em.port;
        {
            const tracing::Flow f = tracing::read_flow(em.frame, node_.vxlan_port_be);
            if (!f.ipv4) {
                if (f.arp) {
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
            const Ip4 isrc = f.src, idst = f.dst;
            const uint16_t isp = f.sport, idp = f.dport;
            const uint8_t iproto = f.proto;
            std::string via;
            if (f.vxlan) {
                std::string to_node = f.outer_dst.str();
                for (const auto& r : routes_) {
                    if (r.node_ip == f.outer_dst) {
                        to_node = r.node_name;
                        out.next = TraceResult::Next{r.node_name, f.src, f.dst, f.sport, f.dport};
                    }
                }
                via = fmt::format("vxlan to node {} ({}), VNI {}", to_node, f.outer_dst.str(),
                                  node_.vni);
            }
            if (port == in_port && idst == src && isrc == dst &&
                (iproto == 1 || (isp == q.port && idp == sport))) {
                // Answered back to the sender from the address and port it sent to: a reject
                // (TCP RST or ICMP unreachable). A hairpin also returns on the sender's port,
                // from the node's address, and a pod's packet to itself is not reversed.
                out.verdict = "reject";
                out.next.reset();  // back to the sender, not on to another node
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
                hop("service",
                    fmt::format("{}: backend {} {}:{} ({}, {} endpoints)", svc->name,
                                out.backend.empty() ? "-" : out.backend, idst.str(), idp,
                                tracing::maglev_slot(*t, *fe,
                                                     tracing::read_flow(frame, node_.vxlan_port_be),
                                                     in_port == node_.uplink_port, idst, idp),
                                svc->backends.size()));
            }
            if (isrc != src || isp != sport) {
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
    }
    for (uint32_t i = 0; i < run.held; ++i) {
        hop("arp_hold", "held until the next hop's MAC is resolved; it would then leave");
        out.verdict = "allow";
        sent = true;
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
        const auto& why = dataplane::kDropReasonInfo[static_cast<size_t>(run.drop)];
        hop("drop", run.drop == dataplane::DropReason::kNone
                        ? std::string("dropped")
                        : fmt::format("dropped: {} ({})", why.label, why.help));
    }
    if (!to_service.empty() && out.backend.empty() && out.verdict == "allow") {
        hop("service", fmt::format("{}: no DNAT happened", to_service));
    }
    return std::nullopt;
}

}  // namespace kdp::api
