// The in-process cluster behind `kdpctl trace --manifests` (see cluster.h).
#include "offline/cluster.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>

#include <fmt/format.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_mbuf.h>

#include "api/table_manager.h"
#include "api/trace_path.h"
#include "compile/node_tables.h"
#include "core/worker.h"
#include "manifest/manifest.h"
#include "stage/node_context.h"
#include "table/conntrack.h"
#include "table/neighbor.h"

namespace kdp::control::offline {

namespace tracing = api::tracing;
using api::TraceHop;

namespace {

constexpr uint16_t kUplink = 0;
constexpr uint32_t kScratchConnections = 64;  // per node and probe: a probe makes a handful
constexpr int kMaxVisits = 8;                 // node visits per direction (a loop guard)
// The underlay router through which nodes reach addresses outside their subnet. Not a real
// host: an address no probe can name.
const Ip4 kRouterIp = Ip4::from_host(0xfffffffe);
const Mac kHostMac = Mac::from_ip(Ip4::from_host(0xfffffffd));  // a node's kernel on its TAP

// The smallest prefix holding every address of `hosts`, but no longer than `max_len`.
Prefix4 covering(const std::vector<uint32_t>& hosts, uint8_t max_len) {
    uint32_t diff = 0;
    for (const uint32_t h : hosts) {
        diff |= h ^ hosts.front();
    }
    uint8_t len = diff == 0 ? 32 : static_cast<uint8_t>(__builtin_clz(diff));
    len = std::min(len, max_len);
    const uint32_t mask = len == 0 ? 0 : ~uint32_t{0} << (32 - len);
    return Prefix4{Ip4::from_host(hosts.front() & mask), len};
}

uint8_t parse_protocol(std::string s, const std::string& where) {
    for (char& c : s) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    if (s == "TCP") {
        return 6;
    }
    if (s == "UDP") {
        return 17;
    }
    if (s == "SCTP") {
        return 132;
    }
    throw OfflineError(fmt::format("{}protocol: \"{}\" is not one of TCP, UDP, SCTP", where, s));
}

std::string protocol_text(uint8_t proto) {
    return proto == 6 ? "TCP" : proto == 17 ? "UDP" : "SCTP";
}

}  // namespace

void ensure_eal() {
    static bool done = false;
    if (done) {
        return;
    }
    // The lcore runs wherever this process may run: pinning a CLI to CPU 0 would be wrong on a
    // node whose CPU 0 belongs to a dataplane worker.
    cpu_set_t set;
    CPU_ZERO(&set);
    std::string cpus;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        for (int c = 0; c < CPU_SETSIZE; ++c) {
            if (CPU_ISSET(c, &set)) {
                cpus += (cpus.empty() ? "" : ",") + std::to_string(c);
            }
        }
    }
    std::vector<std::string> args = {"kdpctl",
                                     "--no-huge",
                                     "--no-pci",
                                     "--no-shconf",
                                     "--no-telemetry",
                                     "-m",
                                     "128",
                                     "--lcores",
                                     cpus.empty() ? "0" : "0@(" + cpus + ")",
                                     "--file-prefix",
                                     fmt::format("kdpctl-trace-{}", getpid()),
                                     "--log-level",
                                     "*:error"};
    std::vector<char*> argv;
    for (auto& a : args) {
        argv.push_back(a.data());
    }
    if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0 && rte_errno != EALREADY) {
        throw OfflineError(
            fmt::format("cannot start DPDK's EAL in-process: {}", rte_strerror(rte_errno)));
    }
    done = true;
}

// One node: its pipeline's state, as kdp-dataplane would hold it, on ports without devices.
struct Cluster::Node {
    std::string name;
    Ip4 ip;
    dataplane::PortTable ports;
    std::vector<std::string> port_names;    // by port id: [0] the uplink, then "NS/POD"
    std::map<uint32_t, uint16_t> pod_port;  // pod address (network order) -> port id
    std::unique_ptr<table::NeighborTable> neighbors;
    std::unique_ptr<table::Conntrack> conntrack;  // the current probe's (fresh for each)
    uint64_t probe = 0;                           // which probe `conntrack` is for
    table::TableRef ref;
    dataplane::NodeContext ctx;
    dataplane::Worker worker;
    std::unique_ptr<api::TableManager> manager;

    const table::TableSet* tables() const { return ref.current.load(std::memory_order_acquire); }
};

// One direction of a probe on its way through the cluster.
struct Cluster::Walk {
    enum class End { kNone, kPod, kOutside, kServed, kReject, kDrop };
    // Where it is.
    Node* node = nullptr;
    uint16_t port = 0;
    std::vector<uint8_t> frame;
    bool reply = false;
    // What happened.
    std::vector<TraceHop> hops;
    End end = End::kNone;
    Node* end_node = nullptr;
    uint16_t end_port = 0;
    tracing::Flow end_flow;
    const table::ServiceSpec* service = nullptr;  // the Service that DNATed it, if one did
};

Cluster::Cluster(const Model& model, ClusterOptions options)
    : model_(model), options_(std::move(options)) {
    ensure_eal();
    cluster_ips_ = cluster_ips(model_, options_.services);
    std::vector<uint32_t> node_ips, pod_ends;
    for (const auto& [name, n] : model_.nodes()) {
        if (n.pod_cidr && n.internal_ip) {
            node_ips.push_back(n.internal_ip->host());
            pod_ends.push_back(n.pod_cidr->addr.host());
            pod_ends.push_back(n.pod_cidr->addr.host() | ~n.pod_cidr->mask_host());
        } else {
            warnings_.push_back(fmt::format("node {}: left out (no {})", name,
                                            n.pod_cidr ? "InternalIP" : "spec.podCIDR"));
        }
    }
    if (node_ips.empty()) {
        throw OfflineError(
            "the manifests describe no Node with a spec.podCIDR and an InternalIP: "
            "there is no cluster to trace in");
    }
    const Prefix4 underlay = covering(node_ips, 24);
    const Prefix4 cluster_cidr = options_.cluster_cidr.value_or(covering(pod_ends, 32));

    static std::atomic<int> instance{0};
    pool_ = rte_pktmbuf_pool_create(fmt::format("kdp_offline_{}", instance++).c_str(), 511, 0, 0,
                                    RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    if (pool_ == nullptr) {
        throw OfflineError(
            fmt::format("cannot create the trace's packet pool: {}", rte_strerror(rte_errno)));
    }
    const uint64_t hz = rte_get_tsc_hz();
    for (const auto& [name, mn] : model_.nodes()) {
        if (!mn.pod_cidr || !mn.internal_ip) {
            continue;
        }
        auto n = std::make_unique<Node>();
        n->name = name;
        n->ip = *mn.internal_ip;
        dataplane::NodeContext& c = n->ctx;
        c.node_ip = n->ip;
        c.node_mac = Mac::from_ip(n->ip);
        c.underlay_subnet = underlay;
        c.pod_cidr = *mn.pod_cidr;
        c.gateway_ip = Ip4::from_host(mn.pod_cidr->addr.host() + 1);
        c.gateway_mac = Mac::from_ip(c.gateway_ip);
        c.cluster_cidr = cluster_cidr;
        c.vtep_mac = mn.flannel_vtep.value_or(Mac::from_ip(n->ip));
        c.vxlan_port_be = to_be16(options_.vxlan_port);
        c.vni = options_.vni;
        c.mtu = 1500;
        c.uplink_port = kUplink;
        c.workers = 1;
        c.tsc_hz = hz;
        c.arp_retry_tsc = hz / 10;
        c.arp_timeout_tsc = hz;
        c.arp_stale_tsc = UINT64_MAX / 4;  // resolved once, for the life of the process
        n->neighbors =
            std::make_unique<table::NeighborTable>(static_cast<uint32_t>(node_ips.size()) + 256);
        c.neighbors = n->neighbors.get();
        const uint32_t router = n->neighbors->slot_for(kRouterIp);
        n->neighbors->learn(router, Mac::from_ip(kRouterIp), rte_rdtsc());
        c.underlay_gateway_slot = router;
        for (const uint32_t h : node_ips) {
            const Ip4 peer = Ip4::from_host(h);
            n->neighbors->learn(n->neighbors->slot_for(peer), Mac::from_ip(peer), rte_rdtsc());
        }
        n->conntrack = std::make_unique<table::Conntrack>(kScratchConnections, 1);
        c.conntrack = n->conntrack.get();
        c.ports = &n->ports;
        c.tables = &n->ref;

        std::vector<CompileWarning> warnings;
        table::TableSpec spec;
        try {
            spec = compile_node_tables(model_, name, options_.services, &warnings);
        } catch (const std::exception& e) {
            throw OfflineError(fmt::format("node {}: {}", name, e.what()));
        }
        for (auto& w : warnings) {
            warnings_.push_back(fmt::format("node {}: {}", name, w.message));
        }
        if (spec.pods.size() + 2 > RTE_MAX_ETHPORTS) {
            throw OfflineError(fmt::format(
                "node {}: {} pods, but a kdp dataplane has {} ports: the uplink, the host "
                "interface and {} pods",
                name, spec.pods.size(), RTE_MAX_ETHPORTS, RTE_MAX_ETHPORTS - 2));
        }
        std::vector<api::PortEntry> entries = {{"uplink", "uplink", "", kUplink}};
        n->port_names = {"uplink"};
        n->ports.port[kUplink].kind = dataplane::PortKind::kUplink;
        for (const table::PodSpec& p : spec.pods) {
            const auto id = static_cast<uint16_t>(n->port_names.size());
            entries.push_back({p.port_name, "virtual", "", id});
            n->port_names.push_back(p.name);
            n->pod_port[p.ip.be] = id;
            n->ports.port[id].kind = dataplane::PortKind::kPod;
            n->ports.port[id].peer_mac.store(Mac::from_ip(p.ip).pack());
        }
        // Every node as deployed, with a host interface (node config `host`): the node's kernel
        // at the gateway address.
        const auto host = static_cast<uint16_t>(n->port_names.size());
        entries.push_back({"host", "host", "", host});
        n->port_names.push_back("host");
        n->ports.port[host].kind = dataplane::PortKind::kHost;
        n->ports.port[host].peer_mac.store(kHostMac.pack());
        c.host_port = host;
        for (uint16_t id = 0; id < n->port_names.size(); ++id) {
            n->ports.port[id].nb_rxq = 1;
            n->ports.port[id].nb_txq = 1;
        }
        n->worker.node = &n->ctx;
        n->worker.pool = pool_;
        n->worker.held.resize(4);

        api::NodeInfo info;
        info.node_name = name;
        info.node_ip = n->ip;
        info.node_mac = c.node_mac;
        info.pod_cidr = c.pod_cidr;
        info.gateway_ip = c.gateway_ip;
        info.gateway_mac = c.gateway_mac;
        info.vxlan_mode = mn.flannel_vtep ? "flannel" : "standard";
        info.vxlan_port = options_.vxlan_port;
        info.vni = options_.vni;
        info.vtep_mac = c.vtep_mac;
        info.mtu = c.mtu;
        info.pod_mtu = c.pod_mtu();
        info.workers = 1;
        n->manager = std::make_unique<api::TableManager>(
            info, n->ctx, n->ref, nullptr, std::vector<dataplane::Worker*>{}, std::move(entries));
        spec.generation = 1;
        if (const auto err = n->manager->apply_tables(spec)) {
            throw OfflineError(
                fmt::format("node {}: its dataplane would refuse the tables: {}", name, *err));
        }
        nodes_.push_back(std::move(n));
    }
}

Cluster::~Cluster() {
    for (auto& n : nodes_) {
        n->manager.reset();  // frees the tables before the node they point into
    }
    nodes_.clear();
    rte_mempool_free(pool_);
}

size_t Cluster::pod_count() const {
    size_t total = 0;
    for (const auto& n : nodes_) {
        total += n->pod_port.size();
    }
    return total;
}

Cluster::Node* Cluster::node_named(const std::string& name) const {
    for (const auto& n : nodes_) {
        if (n->name == name) {
            return n.get();
        }
    }
    return nullptr;
}

Cluster::Node* Cluster::node_with_ip(Ip4 ip) const {
    for (const auto& n : nodes_) {
        if (n->ip == ip) {
            return n.get();
        }
    }
    return nullptr;
}

// An outside host on the nodes' own subnet is reached directly: every node knows its MAC, as
// after an ARP exchange.
void Cluster::learn_outside(Ip4 ip) {
    for (const auto& n : nodes_) {
        if (!n->ctx.underlay_subnet.contains(ip) || node_with_ip(ip) != nullptr) {
            continue;
        }
        const uint32_t slot = n->neighbors->slot_for(ip);
        if (slot == table::kNoSlot) {
            throw OfflineError(fmt::format(
                "too many distinct outside addresses on the node network to model ({})", ip.str()));
        }
        n->neighbors->learn(slot, Mac::from_ip(ip), rte_rdtsc());
    }
}

void Cluster::walk(Walk& w) {
    const std::string pre = w.reply ? "reply_" : "";
    for (int visit = 0; visit < kMaxVisits; ++visit) {
        Node& n = *w.node;
        if (n.probe != probe_seq_) {
            n.conntrack = std::make_unique<table::Conntrack>(kScratchConnections, 1);
            n.ctx.conntrack = n.conntrack.get();
            n.probe = probe_seq_;
        }
        const auto hop = [&](const std::string& stage, std::string detail) {
            w.hops.push_back(TraceHop{n.name, pre + stage, std::move(detail)});
        };
        const tracing::Flow in = tracing::read_flow(w.frame, n.ctx.vxlan_port_be);
        std::string arrival = fmt::format("port {}", n.port_names[w.port]);
        if (in.vxlan) {
            const Ip4 from_ip{
                *reinterpret_cast<const uint32_t*>(w.frame.data() + 14 + 12)};  // outer source
            const Node* from = node_with_ip(from_ip);
            arrival = fmt::format("the uplink, in VXLAN from node {} ({})",
                                  from ? from->name : from_ip.str(), from_ip.str());
        }
        hop(visit == 0 ? "parse" : "decap",
            fmt::format("{} arriving on {}",
                        tracing::flow_text(in.proto, in.src, in.sport, in.dst, in.dport), arrival));
        const table::CtKey key{in.src.be, in.dst.be, to_be16(in.sport), to_be16(in.dport), in.proto,
                               0,         0};
        const table::CtHit hit = n.conntrack->lookup(key);
        hop("conntrack", hit.index == table::kCtNone ? "new connection"
                         : hit.dir == table::CtDir::kReply
                             ? "established: the reply of a connection seen here"
                             : "established");
        const table::TableSet* t = n.tables();
        const table::ServiceSpec* svc = nullptr;
        const table::Frontend* fe =
            w.reply ? nullptr : t->find_frontend(in.dst, to_be16(in.dport), in.proto);
        if (fe != nullptr) {
            svc = &t->services[fe->service].current().spec;
        }
        tracing::FrameRun run;
        if (!tracing::run_frame(n.worker, t, w.port, w.frame, rte_rdtsc(), run)) {
            throw OfflineError("no packet buffer free for the trace");
        }
        // The one frame that carries the probe on (a reject, or what goes on), ARP aside.
        const tracing::Emitted* em = nullptr;
        tracing::Flow out;
        for (const tracing::Emitted& e : run.out) {
            const tracing::Flow f = tracing::read_flow(e.frame, n.ctx.vxlan_port_be);
            if (f.ipv4) {
                em = &e;
                out = f;
                break;
            }
        }
        const bool answered = em != nullptr && out.dst == in.src && out.src == in.dst &&
                              (out.proto == 1 || (out.proto == 6 && (out.tcp_flags & 0x04) != 0));
        // The node's dataplane answering on its own (the health check server of a
        // healthCheckNodePort): the answer, from the probed address and port, back where the
        // probe came in.
        const bool served = em != nullptr && !answered && !w.reply && em->port == w.port &&
                            !out.vxlan && out.dst == in.src && out.src == in.dst &&
                            out.sport == in.dport && out.dport == in.sport;
        if (served) {
            w.end = Walk::End::kServed;
            hop("local", fmt::format("answered by node {}'s dataplane itself ({} from {}:{}): a "
                                     "port it serves, no pod behind it",
                                     n.name,
                                     out.proto == 6 && (out.tcp_flags & 0x12) == 0x12
                                         ? "SYN-ACK"
                                         : tracing::proto_name(out.proto),
                                     out.src.str(), out.sport));
            w.end_node = &n;
            w.end_port = em->port;
            w.end_flow = out;
            return;
        }
        if (em != nullptr && !answered && svc != nullptr &&
            (out.dst != in.dst || out.dport != in.dport)) {
            std::string pod = out.dst.str();
            for (const auto& b : svc->backends) {
                if (b.ip == out.dst && b.port == out.dport) {
                    pod = b.pod.empty() ? out.dst.str() : b.pod;
                }
            }
            hop("service", fmt::format("{}: backend {} {}:{} ({}, {} endpoints)", svc->name, pod,
                                       out.dst.str(), out.dport,
                                       tracing::maglev_slot(*t, *fe, in, w.port == kUplink, out.dst,
                                                            out.dport),
                                       svc->backends.size()));
            w.service = svc;
        }
        if (!w.reply && !answered) {
            const table::PolicyTables* pol = t->policy.load(std::memory_order_acquire);
            if (em != nullptr) {
                hop("policy", tracing::policy_detail(n.ctx, *pol, in.src, out.src, out.dst,
                                                     out.dport, in.proto));
            } else if ((run.drop == dataplane::DropReason::kPolicyDenied ||
                        run.drop == dataplane::DropReason::kPolicyNotSynced)) {
                hop("policy", svc != nullptr
                                  ? std::string("no rule allows this client to the backend chosen "
                                                "(judged against the backend after DNAT)")
                                  : tracing::policy_detail(n.ctx, *pol, in.src, in.src, in.dst,
                                                           in.dport, in.proto));
            }
        }
        if (em == nullptr) {
            w.end = run.held != 0 ? Walk::End::kOutside : Walk::End::kDrop;
            const auto& why = dataplane::kDropReasonInfo[static_cast<size_t>(run.drop)];
            hop(run.held != 0 ? "arp_hold" : "drop",
                run.held != 0 ? std::string("held until the next hop's MAC is resolved")
                : run.drop == dataplane::DropReason::kNone
                    ? std::string("dropped")
                    : fmt::format("dropped: {} ({})", why.label, why.help));
            w.end_node = &n;
            return;
        }
        if (answered) {
            w.end = Walk::End::kReject;
            hop("reject",
                fmt::format("{} answered from {} (no endpoint or refused)",
                            out.proto == 1 ? "ICMP unreachable" : "TCP RST", out.src.str()));
            w.end_node = &n;
            return;
        }
        if (out.src != in.src || out.sport != in.sport) {
            hop(w.reply ? "unnat" : "snat",
                fmt::format("source rewritten to {}:{}", out.src.str(), out.sport));
        }
        if (w.reply && (out.dst != in.dst || out.dport != in.dport)) {
            hop("unnat",
                fmt::format("destination translated back to {}:{}", out.dst.str(), out.dport));
        }
        const std::string flow =
            tracing::flow_text(out.proto, out.src, out.sport, out.dst, out.dport);
        if (em->port == kUplink && out.vxlan) {
            Node* next = node_with_ip(out.outer_dst);
            if (next == nullptr) {
                w.end = Walk::End::kDrop;
                hop("vxlan_encap", fmt::format("vxlan to {}, which is no node of the cluster: lost",
                                               out.outer_dst.str()));
                w.end_node = &n;
                return;
            }
            hop("vxlan_encap", fmt::format("vxlan to node {} ({}), VNI {}: {}", next->name,
                                           next->ip.str(), n.ctx.vni, flow));
            w.node = next;
            w.port = kUplink;
            w.frame = em->frame;
            continue;
        }
        w.end_node = &n;
        w.end_port = em->port;
        w.end_flow = out;
        if (em->port != kUplink) {
            w.end = Walk::End::kPod;
            hop("output", fmt::format("{} out of port {}", flow, n.port_names[em->port]));
        } else {
            w.end = Walk::End::kOutside;
            const Node* to_node = node_with_ip(out.dst);
            hop("output", fmt::format("{} leaves on the uplink for {}", flow,
                                      to_node != nullptr ? "node " + to_node->name
                                      : n.ctx.underlay_subnet.contains(out.dst)
                                          ? out.dst.str() + " on the node network"
                                          : out.dst.str() + " via the underlay router"));
        }
        return;
    }
    w.end = Walk::End::kDrop;
    w.hops.push_back(
        TraceHop{w.node->name, pre + "drop",
                 fmt::format("still in the overlay after {} nodes: a loop", kMaxVisits)});
}

ProbeResult Cluster::trace(const Probe& probe) {
    if (probe.port == 0) {
        throw OfflineError("port: 0 is not a port");
    }
    if (probe.proto != 6 && probe.proto != 17 && probe.proto != 132) {
        throw OfflineError(fmt::format("protocol: {} is not TCP, UDP or SCTP", probe.proto));
    }
    ++probe_seq_;
    const auto pod_named = [&](const std::string& key, const char* field) -> const Pod& {
        const auto it = model_.pods().find(key);
        if (it == model_.pods().end()) {
            throw OfflineError(fmt::format("{}: no pod {} in the manifests", field, key));
        }
        const Pod& p = it->second;
        if (!p.pod_ip) {
            throw OfflineError(fmt::format("{}: pod {} has no status.podIP", field, key));
        }
        return p;
    };
    const auto node_arg = [&](const std::string& name, const char* field) -> Node& {
        Node* n = node_named(name);
        if (n == nullptr) {
            throw OfflineError(
                fmt::format("{}: no node {} with a podCIDR and an InternalIP in "
                            "the manifests",
                            field, name));
        }
        return *n;
    };

    // Destination.
    Ip4 dst;
    Node* to_node = nullptr;
    if (const auto ip = Ip4::parse(probe.to)) {
        dst = *ip;
    } else if (probe.to.rfind("service:", 0) == 0) {
        const std::string key = probe.to.substr(8);
        const auto it = cluster_ips_.find(key);
        if (it == cluster_ips_.end()) {
            throw OfflineError(fmt::format(
                "to: {}", model_.services().count(key) != 0
                              ? fmt::format("Service {} has no ClusterIP (headless)", key)
                              : fmt::format("no Service {} in the manifests", key)));
        }
        dst = it->second;
    } else if (probe.to.rfind("node:", 0) == 0) {
        to_node = &node_arg(probe.to.substr(5), "to");
        dst = to_node->ip;
    } else if (probe.to.find('/') != std::string::npos) {
        dst = *pod_named(probe.to, "to").pod_ip;
    } else {
        throw OfflineError(fmt::format(
            "to: \"{}\" is neither NS/POD, service:NS/NAME, node:NAME nor an IPv4 address",
            probe.to));
    }

    // Source: where the packet enters and what it looks like there.
    Walk fwd;
    Ip4 src;
    bool outside = false;
    const auto is_cluster_ip = [&](Ip4 ip) {
        return std::any_of(cluster_ips_.begin(), cluster_ips_.end(),
                           [&](const auto& kv) { return kv.second == ip; });
    };
    if (probe.from.rfind("node:", 0) == 0) {
        Node& n = node_arg(probe.from.substr(5), "from");
        fwd.node = &n;
        if (n.ctx.cluster_cidr.contains(dst) || is_cluster_ip(dst)) {
            // The kernel routes the pod network and the Services into its host interface.
            src = n.ctx.gateway_ip;
            fwd.port = n.ctx.host_port;
            fwd.frame = tracing::craft(n.ctx.gateway_mac, kHostMac, src, dst, probe.proto,
                                       tracing::kTraceSport, probe.port);
        } else {
            src = n.ip;  // anything else leaves by the node's own uplink
            fwd.port = kUplink;
            fwd.frame = tracing::craft(n.ctx.node_mac, Mac::from_ip(kRouterIp), src, dst,
                                       probe.proto, tracing::kTraceSport, probe.port);
        }
    } else if (const auto ip = Ip4::parse(probe.from)) {
        src = *ip;
        outside = true;
        Node* at = !probe.enters_at.empty() ? &node_arg(probe.enters_at, "enters_at") : to_node;
        if (at == nullptr) {
            throw OfflineError(fmt::format(
                "enters_at: a probe from an outside address ({}) needs the node its packet "
                "arrives at",
                src.str()));
        }
        learn_outside(src);
        fwd.node = at;
        fwd.port = kUplink;
        const bool on_link = at->ctx.underlay_subnet.contains(src);
        fwd.frame = tracing::craft(at->ctx.node_mac, Mac::from_ip(on_link ? src : kRouterIp), src,
                                   dst, probe.proto, tracing::kTraceSport, probe.port);
    } else if (probe.from.find('/') != std::string::npos) {
        const Pod& p = pod_named(probe.from, "from");
        if (p.host_network) {
            throw OfflineError(
                fmt::format("from: pod {} is on its node's host network: trace it as node:{}",
                            probe.from, p.node_name));
        }
        Node* n = node_named(p.node_name);
        if (n == nullptr || n->pod_port.count(p.pod_ip->be) == 0) {
            throw OfflineError(fmt::format("from: pod {} is on no node of the cluster ({})",
                                           probe.from,
                                           p.node_name.empty() ? "not scheduled" : p.node_name));
        }
        src = *p.pod_ip;
        fwd.node = n;
        fwd.port = n->pod_port.at(p.pod_ip->be);
        fwd.frame = tracing::craft(n->ctx.gateway_mac, Mac::from_ip(src), src, dst, probe.proto,
                                   tracing::kTraceSport, probe.port);
    } else {
        throw OfflineError(fmt::format(
            "from: \"{}\" is neither NS/POD, node:NAME nor an IPv4 address", probe.from));
    }
    if (!dst.is_zero()) {
        learn_outside(dst);
    }
    Node* const src_node = fwd.node;
    const uint16_t src_port = fwd.port;

    walk(fwd);
    ProbeResult r;
    r.trace.hops = std::move(fwd.hops);
    switch (fwd.end) {
        case Walk::End::kReject:
            r.trace.verdict = "reject";
            return r;
        case Walk::End::kDrop:
        case Walk::End::kNone:
            r.trace.verdict = "deny";
            return r;
        case Walk::End::kServed:
            r.trace.verdict = "allow";
            r.trace.seen_src = src.str();
            r.reply = "allow";
            return r;
        case Walk::End::kPod:
        case Walk::End::kOutside:
            break;
    }
    r.trace.verdict = "allow";
    if (fwd.end_port == kUplink && fwd.end_flow.dst.is_zero()) {
        r.reply = "";  // held for ARP: nothing to answer from
        return r;
    }
    const tracing::Flow& got = fwd.end_flow;
    r.trace.seen_src = got.src.str();
    if (fwd.service != nullptr) {
        r.trace.backend_port = got.dport;
        if (fwd.end == Walk::End::kPod) {
            r.trace.backend = fwd.end_node->port_names[fwd.end_port];
        }
    }

    // The server's answer, back the way the connection came.
    Walk back;
    back.reply = true;
    back.node = fwd.end_node;
    back.port = fwd.end_port;
    Node& bn = *fwd.end_node;
    if (fwd.end == Walk::End::kPod) {
        back.frame = tracing::craft(bn.ctx.gateway_mac, Mac::from_ip(got.dst), got.dst, got.src,
                                    got.proto, got.dport, got.sport, true);
    } else {
        const bool on_link = bn.ctx.underlay_subnet.contains(got.dst);
        back.frame = tracing::craft(bn.ctx.node_mac, Mac::from_ip(on_link ? got.dst : kRouterIp),
                                    got.dst, got.src, got.proto, got.dport, got.sport, true);
    }
    walk(back);
    const tracing::Flow& ans = back.end_flow;
    const bool home = back.end == Walk::End::kPod
                          ? !outside && back.end_node == src_node && back.end_port == src_port
                          : back.end == Walk::End::kOutside && (outside || src_node->ip == src);
    const bool as_sent = ans.src == dst && ans.sport == probe.port && ans.dst == src &&
                         ans.dport == tracing::kTraceSport;
    r.reply = home && as_sent ? "allow" : "deny";
    if (home && !as_sent && back.end != Walk::End::kDrop) {
        back.hops.push_back(TraceHop{
            back.end_node->name, "reply_mismatch",
            fmt::format("the client sent to {}:{} but the answer comes from {}:{}: it would "
                        "not take it as the reply",
                        dst.str(), probe.port, ans.src.str(), ans.sport)});
    } else if (!home && (back.end == Walk::End::kPod || back.end == Walk::End::kOutside)) {
        back.hops.push_back(TraceHop{back.end_node->name, "reply_mismatch",
                                     "the answer does not go back to the client"});
    }
    for (auto& h : back.hops) {
        r.trace.hops.push_back(std::move(h));
    }
    return r;
}

Probe parse_probe(const nlohmann::json& j, const std::string& where) {
    if (!j.is_object()) {
        throw OfflineError(where + "a probe is an object {from, to, port, protocol}");
    }
    Probe p;
    bool has_from = false, has_to = false, has_port = false;
    for (const auto& [k, v] : j.items()) {
        const auto str = [&]() {
            if (!v.is_string() || v.get<std::string>().empty()) {
                throw OfflineError(fmt::format("{}{}: must be a non-empty string", where, k));
            }
            return v.get<std::string>();
        };
        if (k == "from") {
            p.from = str();
            has_from = true;
        } else if (k == "to") {
            p.to = str();
            has_to = true;
        } else if (k == "port") {
            if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 65535) {
                throw OfflineError(
                    fmt::format("{}port: {} is not a port number (1-65535)", where, v.dump()));
            }
            p.port = static_cast<uint16_t>(v.get<int64_t>());
            has_port = true;
        } else if (k == "protocol") {
            p.proto = parse_protocol(str(), where);
        } else if (k == "enters_at") {
            p.enters_at = str();
        } else {
            throw OfflineError(fmt::format(
                "{}unknown field \"{}\" (a probe has from, to, port, protocol, enters_at)", where,
                k));
        }
    }
    if (!has_from || !has_to || !has_port) {
        throw OfflineError(fmt::format("{}missing {}", where,
                                       !has_from ? "from"
                                       : !has_to ? "to"
                                                 : "port"));
    }
    return p;
}

std::vector<Probe> read_probes(const std::string& path) {
    std::vector<nlohmann::json> docs;
    try {
        docs = read_documents(path);
    } catch (const std::exception& e) {
        throw OfflineError(e.what());
    }
    std::vector<Probe> out;
    for (size_t d = 0; d < docs.size(); ++d) {
        const nlohmann::json& doc = docs[d];
        if (doc.is_null()) {
            continue;
        }
        const nlohmann::json* list = &doc;
        if (doc.is_object()) {
            if (!doc.contains("probes") || doc.size() != 1) {
                throw OfflineError(
                    fmt::format("{}: document {}: expected a list of probes or {{probes: [...]}}",
                                path, d + 1));
            }
            list = &doc["probes"];
        }
        if (!list->is_array()) {
            throw OfflineError(fmt::format("{}: document {}: probes must be a list", path, d + 1));
        }
        for (size_t i = 0; i < list->size(); ++i) {
            out.push_back(
                parse_probe((*list)[i], fmt::format("{}: probe {}: ", path, out.size() + 1)));
        }
    }
    if (out.empty()) {
        throw OfflineError(fmt::format("{}: no probes", path));
    }
    return out;
}

nlohmann::ordered_json result_json(const Probe& p, const ProbeResult& r) {
    nlohmann::ordered_json j;
    j["from"] = p.from;
    j["to"] = p.to;
    j["port"] = p.port;
    j["protocol"] = protocol_text(p.proto);
    if (!p.enters_at.empty()) {
        j["enters_at"] = p.enters_at;
    }
    j["verdict"] = r.trace.verdict;
    j["backend"] = r.trace.backend.empty() ? nlohmann::ordered_json(nullptr)
                                           : nlohmann::ordered_json(r.trace.backend);
    j["backend_port"] = r.trace.backend_port;
    j["seen_src"] = r.trace.seen_src;
    j["reply"] =
        r.reply.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(r.reply);
    nlohmann::ordered_json hops = nlohmann::ordered_json::array();
    for (const auto& h : r.trace.hops) {
        hops.push_back({{"node", h.node}, {"stage", h.stage}, {"detail", h.detail}});
    }
    j["hops"] = std::move(hops);
    return j;
}

}  // namespace kdp::control::offline
