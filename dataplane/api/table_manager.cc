#include "api/table_manager.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <rte_cycles.h>
#include <rte_ethdev.h>

#include "api/policy_tables.h"
#include "api/spec_check.h"
#include "stage/nat.h"
#include "table/maglev.h"

namespace kdp::api {

void add_counters(const dataplane::PortCounters& from, CounterSet& to) {
    constexpr auto r = std::memory_order_relaxed;
    to.rx_packets += from.rx_packets.load(r);
    to.rx_bytes += from.rx_bytes.load(r);
    to.tx_packets += from.tx_packets.load(r);
    to.tx_bytes += from.tx_bytes.load(r);
    for (size_t i = 0; i < dataplane::kDropReasonCount; ++i) {
        to.drops[i] += from.drops[i].load(r);
    }
}

TableManager::TableManager(NodeInfo info,
                           dataplane::NodeContext& node,
                           table::TableRef& ref,
                           rte_rcu_qsbr* qsbr,
                           std::vector<dataplane::Worker*> workers,
                           std::vector<PortEntry> ports)
    : info_(std::move(info)),
      node_(node),
      ref_(ref),
      qsbr_(qsbr),
      workers_(std::move(workers)),
      ports_(std::move(ports)),
      empty_block_(std::make_shared<const table::ServiceBlock>()) {
    info_.started_unix_ns = now_unix_ns();
    policy_ = make_policy(table::PolicySpec{});
}

std::shared_ptr<const table::PolicyTables> TableManager::make_policy(
    const table::PolicySpec& spec) {
    policy_epoch_ = policy_epoch_ % 0x7fffffffu + 1;  // 31 bits: CtEntry::policy keeps one more
    return build_policy(spec, policy_epoch_);
}

TableManager::~TableManager() {
    ref_.current.store(nullptr, std::memory_order_release);
}

NodeInfo TableManager::node_info() const {
    LockGuard lock(mu_);
    NodeInfo i = info_;
    i.generation = generation_;
    return i;
}

table::TableSpec TableManager::tables() const {
    LockGuard lock(mu_);
    return tables_locked();
}

table::TableSpec TableManager::tables_locked() const {
    table::TableSpec s;
    s.generation = generation_;
    s.routes = routes_;
    s.pods = pods_;
    s.service_cidrs = service_cidrs_;
    s.services.reserve(services_.size());
    for (const auto& [name, port] : services_) {
        s.services.push_back(port.block->spec);
    }
    s.policy = policy_->spec;
    return s;
}

TableCounts TableManager::table_counts() const {
    LockGuard lock(mu_);
    return TableCounts{generation_, static_cast<uint32_t>(routes_.size()),
                       static_cast<uint32_t>(pods_.size()),
                       static_cast<uint32_t>(services_.size())};
}

TableManager::PathCounts TableManager::path_counts() const {
    LockGuard lock(mu_);
    return paths_;
}

std::optional<std::string> TableManager::validate(const table::TableSpec& spec) const {
    LockGuard lock(mu_);
    return validate_locked(spec);
}

std::optional<std::string> TableManager::validate_locked(const table::TableSpec& spec) const {
    return check_spec(spec, generation_, node_);
}

namespace {

// The endpoints among `candidates` (indices into sv.backends) that new connections may go to,
// as kube-proxy's CategorizeEndpoints (pkg/proxy/topology.go) picks them for each traffic
// policy: the ready ones; only when none is ready, the serving-and-terminating ones. The
// cluster-wide set and the node-local set are chosen each on its own, so that a node whose only
// local endpoint is terminating still serves externalTrafficPolicy: Local traffic with it while
// ready endpoints elsewhere take the cluster's.
std::vector<uint16_t> usable_among(const table::ServiceSpec& sv,
                                   const std::vector<uint16_t>& candidates) {
    std::vector<uint16_t> out;
    for (const uint16_t i : candidates) {
        if (sv.backends[i].ready && !sv.backends[i].terminating) {
            out.push_back(i);
        }
    }
    if (out.empty()) {
        for (const uint16_t i : candidates) {
            if (sv.backends[i].serving && sv.backends[i].terminating) {
                out.push_back(i);
            }
        }
    }
    return out;
}

// Sorted by address and port, duplicates (the same address and port twice) removed, so that
// the same endpoints give the same Maglev table on every node whatever order they came in.
void sort_unique(const table::ServiceSpec& sv, std::vector<uint16_t>& v) {
    const auto key = [&](uint16_t i) {
        return std::pair(sv.backends[i].ip.host(), sv.backends[i].port);
    };
    std::sort(v.begin(), v.end(), [&](uint16_t a, uint16_t b) { return key(a) < key(b); });
    v.erase(
        std::unique(v.begin(), v.end(), [&](uint16_t a, uint16_t b) { return key(a) == key(b); }),
        v.end());
}

// A Maglev table over `members` (indices into b.backends), its entries backends index + 1.
std::vector<uint16_t> maglev_over(const std::vector<uint64_t>& keys,
                                  const std::vector<uint16_t>& members) {
    if (members.empty()) {
        return {};
    }
    std::vector<uint64_t> set_keys;
    for (const uint16_t k : members) {
        set_keys.push_back(keys[k]);
    }
    std::vector<uint16_t> m = table::maglev_build(set_keys, {}, table::maglev_size(members.size()));
    for (uint16_t& e : m) {
        e = static_cast<uint16_t>(members[e - 1u] + 1u);
    }
    return m;
}

}  // namespace

std::shared_ptr<const table::ServiceBlock> TableManager::make_block(
    const table::ServiceSpec& sv) const {
    auto b = std::make_shared<table::ServiceBlock>();
    next_block_id_ = static_cast<uint16_t>(next_block_id_ == 0xffff ? 1 : next_block_id_ + 1);
    b->id = next_block_id_;
    // Cluster traffic: every endpoint but those topology hints keep away from this node.
    // Local endpoints: those in this node's pod CIDR.
    std::vector<uint16_t> all, local;
    for (size_t i = 0; i < sv.backends.size(); ++i) {
        if (!sv.backends[i].topology_excluded) {
            all.push_back(static_cast<uint16_t>(i));
        }
        if (node_.pod_cidr.contains(sv.backends[i].ip)) {
            local.push_back(static_cast<uint16_t>(i));
        }
    }
    std::vector<uint16_t> cluster_set = usable_among(sv, all);
    std::vector<uint16_t> local_set = usable_among(sv, local);
    sort_unique(sv, cluster_set);
    sort_unique(sv, local_set);
    std::vector<uint16_t> use = cluster_set;
    use.insert(use.end(), local_set.begin(), local_set.end());
    sort_unique(sv, use);
    // Both sets index one `backends` array, so that one pick path serves both tables.
    std::vector<uint64_t> keys;
    std::vector<std::pair<uint64_t, uint16_t>> slots;
    std::vector<uint16_t> cluster_members, local_members;
    const auto key = [&](uint16_t i) {
        return std::pair(sv.backends[i].ip.host(), sv.backends[i].port);
    };
    const auto in = [&](const std::vector<uint16_t>& set, uint16_t u) {  // set: sort_unique'd
        return std::binary_search(set.begin(), set.end(), u,
                                  [&](uint16_t x, uint16_t y) { return key(x) < key(y); });
    };
    for (const uint16_t u : use) {
        const table::BackendSpec& be = sv.backends[u];
        const auto k = static_cast<uint16_t>(b->backends.size());
        uint8_t sets = 0;
        if (in(cluster_set, u)) {
            sets |= table::ServiceBackend::kCluster;
            cluster_members.push_back(k);
        }
        if (in(local_set, u)) {
            sets |= table::ServiceBackend::kLocal;
            local_members.push_back(k);
            b->local_backends += (be.ready && !be.terminating) ? 1u : 0u;
        }
        b->backends.push_back(table::ServiceBackend{be.ip, to_be16(be.port), u, sets});
        keys.push_back(table::frontend_key(be.ip, to_be16(be.port), sv.proto));
        slots.emplace_back(keys.back(), static_cast<uint16_t>(keys.size()));
    }
    b->backend_slots = table::FlatMap<uint16_t>(slots);
    b->maglev = maglev_over(keys, cluster_members);
    b->local_maglev = maglev_over(keys, local_members);
    b->source_ranges = sv.source_ranges;
    b->spec = sv;
    return b;
}

std::unique_ptr<table::TableSet> TableManager::build(const table::TableSpec& spec,
                                                     ServiceMap& services,
                                                     std::string& err) {
    auto t = std::make_unique<table::TableSet>();
    std::vector<std::pair<Prefix4, table::Route>> routes;
    for (size_t i = 0; i < spec.routes.size(); ++i) {
        const table::RouteSpec& r = spec.routes[i];
        const bool on_link = node_.underlay_subnet.contains(r.node_ip);
        const uint32_t slot =
            on_link ? node_.neighbors->slot_for(r.node_ip) : node_.underlay_gateway_slot;
        if (slot == table::kNoSlot) {
            err = fmt::format("routes[{}] ({}): the neighbour table is full (limits.max_routes)", i,
                              r.node_name);
            return nullptr;
        }
        routes.push_back(
            {r.pod_cidr, table::Route{r.node_ip, r.vtep_mac, slot, static_cast<uint32_t>(i)}});
    }
    t->routes = table::PrefixTable<table::Route>(routes);
    std::unordered_map<std::string, uint16_t> port_ids;
    for (const PortEntry& p : ports_) {
        port_ids.emplace(p.name, p.port_id);
    }
    std::vector<std::pair<uint64_t, table::LocalPod>> pods;
    for (size_t i = 0; i < spec.pods.size(); ++i) {
        const table::PodSpec& p = spec.pods[i];
        const auto it = port_ids.find(p.port_name);
        const uint16_t port = it == port_ids.end() ? table::kNoPort : it->second;
        pods.push_back({p.ip.be, table::LocalPod{p.ip, port, static_cast<uint32_t>(i)}});
        if (port != table::kNoPort) {
            t->port_pod_ip[port] = p.ip;
        }
    }
    t->pods = table::FlatMap<table::LocalPod>(pods);

    // Slots: a Service port keeps the slot it has (conntrack entries refer to it); a new one
    // takes the lowest free slot. Blocks are reused when the port's spec is unchanged.
    services.clear();
    std::vector<bool> taken;
    std::vector<const table::ServiceSpec*> fresh;
    for (const table::ServiceSpec& sv : spec.services) {
        const auto it = services_.find(sv.name);
        if (it == services_.end()) {
            fresh.push_back(&sv);
            continue;
        }
        const uint32_t slot = it->second.slot;
        taken.resize(std::max<size_t>(taken.size(), slot + 1u), false);
        taken[slot] = true;
        services.emplace(sv.name, ServicePort{slot, it->second.block->spec == sv ? it->second.block
                                                                                 : make_block(sv)});
    }
    size_t cursor = 0;
    for (const table::ServiceSpec* sv : fresh) {
        while (cursor < taken.size() && taken[cursor]) {
            ++cursor;
        }
        if (cursor == taken.size()) {
            taken.push_back(true);
        } else {
            taken[cursor] = true;
        }
        services.emplace(sv->name, ServicePort{static_cast<uint32_t>(cursor), make_block(*sv)});
    }
    if (taken.size() > table::kMaxServiceSlots) {
        err = fmt::format("more than {} service port slots in use", table::kMaxServiceSlots);
        return nullptr;
    }
    t->service_count = static_cast<uint32_t>(taken.size());
    t->services = std::make_unique<table::Service[]>(taken.size());
    t->blocks.assign(taken.size(), empty_block_);
    for (size_t i = 0; i < taken.size(); ++i) {
        t->services[i].block.store(empty_block_.get(), std::memory_order_relaxed);
    }

    std::vector<std::pair<uint64_t, table::Frontend>> frontends;
    std::vector<std::pair<uint64_t, uint8_t>> cluster_ips;
    std::vector<std::pair<uint64_t, uint32_t>> health_checks;
    std::set<uint16_t> health_ports;
    for (const table::ServiceSpec& sv : spec.services) {
        const ServicePort& port = services.at(sv.name);
        table::Service& s = t->services[port.slot];
        s.proto = sv.proto;
        s.flags =
            static_cast<uint8_t>((sv.external_local ? table::Service::kExternalLocal : 0) |
                                 (sv.internal_local ? table::Service::kInternalLocal : 0) |
                                 (sv.affinity_timeout_s != 0 ? table::Service::kAffinity : 0));
        s.affinity_timeout_s = sv.affinity_timeout_s;
        s.affinity_id = static_cast<uint32_t>(table::mix64(std::hash<std::string>{}(sv.name)));
        s.ct_ref = table::ct_service_ref(port.slot, s.affinity_id);
        s.block.store(port.block.get(), std::memory_order_relaxed);
        s.block_id.store(port.block->id, std::memory_order_relaxed);
        t->blocks[port.slot] = port.block;
        for (const table::FrontendSpec& fe : sv.frontends) {
            frontends.emplace_back(table::frontend_key(fe.ip, to_be16(fe.port), sv.proto),
                                   table::Frontend{port.slot, fe.kind});
            if (fe.kind == table::FrontendKind::kClusterIp) {
                cluster_ips.emplace_back(fe.ip.be, uint8_t{1});
            }
        }
        if (sv.external_local && sv.health_check_node_port != 0 &&
            health_ports.insert(sv.health_check_node_port).second) {
            health_checks.emplace_back(sv.health_check_node_port, port.slot);
        }
    }
    t->health_checks = table::FlatMap<uint32_t>(health_checks);
    t->frontends = table::FlatMap<table::Frontend>(frontends);
    std::sort(cluster_ips.begin(), cluster_ips.end());
    cluster_ips.erase(std::unique(cluster_ips.begin(), cluster_ips.end()), cluster_ips.end());
    t->cluster_ips = table::FlatMap<uint8_t>(cluster_ips);
    t->service_cidrs = spec.service_cidrs;
    // A spec that carries no policy keeps the one in force.
    t->policy_owner = spec.policy.present ? make_policy(spec.policy) : policy_;
    t->policy.store(t->policy_owner.get(), std::memory_order_relaxed);
    return t;
}

void TableManager::synchronize() {
    if (qsbr_ != nullptr) {
        // Every worker passes a quiescent point (or is offline) before old memory goes. This
        // is rte_rcu_qsbr_synchronize for a thread that is no reader, written with the inline
        // calls it makes: their acquire loads of the workers' counters are then compiled here,
        // where ThreadSanitizer sees them pair with the workers' reports (DPDK's library is not
        // instrumented, so through it every freed table looked raced).
        const uint64_t token = rte_rcu_qsbr_start(qsbr_);
        rte_rcu_qsbr_check(qsbr_, token, true);
    }
}

std::optional<std::string> TableManager::apply_full(const table::TableSpec& spec) {
    if (auto err = validate_locked(spec)) {
        return err;
    }
    std::string err;
    ServiceMap services;
    std::unique_ptr<table::TableSet> next = build(with_port_pods(spec), services, err);
    if (!next) {
        return err;
    }
    std::vector<table::RouteSpec> routes = spec.routes;
    std::vector<table::PodSpec> pods = spec.pods;
    ref_.current.store(next.get(), std::memory_order_release);
    synchronize();
    // The old version and the blocks only it used are freed here, after the grace period.
    current_ = std::move(next);
    policy_ = current_->policy_owner;
    services_.swap(services);
    routes_.swap(routes);
    pods_.swap(pods);
    service_cidrs_ = spec.service_cidrs;
    generation_ = spec.generation;
    ++paths_.full;
    return std::nullopt;
}

std::optional<std::string> TableManager::apply_tables(const table::TableSpec& spec) {
    LockGuard lock(mu_);
    return apply_full(spec);
}

bool TableManager::try_delta(const table::TableUpdate& u, std::optional<std::string>& err) {
    if (!current_ || u.policy || u.upsert_services.empty() || !u.upsert_routes.empty() ||
        !u.delete_routes.empty() || !u.upsert_pods.empty() || !u.delete_pods.empty() ||
        !u.delete_services.empty()) {
        return false;
    }
    struct Change {
        ServicePort* port;
        std::shared_ptr<const table::ServiceBlock> block;
    };
    std::vector<Change> changes;
    for (size_t i = 0; i < u.upsert_services.size(); ++i) {
        const table::ServiceSpec& sv = u.upsert_services[i];
        const auto it = services_.find(sv.name);
        if (it == services_.end() || !same_structure(it->second.block->spec, sv)) {
            return false;  // a new port, or new frontends or flags: a full build
        }
        if (it->second.block->spec == sv) {
            continue;
        }
        if (auto e = check_backends(sv, fmt::format("upsert_services[{}] ({})", i, sv.name))) {
            err = std::move(e);
            return true;
        }
        changes.push_back(Change{&it->second, make_block(sv)});
    }
    // Nothing below allocates or fails: from here the update is in force.
    std::vector<std::shared_ptr<const table::ServiceBlock>> retired;
    retired.reserve(changes.size());
    for (Change& c : changes) {
        const uint32_t slot = c.port->slot;
        current_->services[slot].block.store(c.block.get(), std::memory_order_release);
        current_->services[slot].block_id.store(c.block->id, std::memory_order_release);
        retired.push_back(std::move(current_->blocks[slot]));
        current_->blocks[slot] = c.block;
        c.port->block = std::move(c.block);
    }
    synchronize();
    generation_ = u.generation;
    ++paths_.delta;
    return true;  // `retired` goes now, after the grace period
}

std::optional<std::string> TableManager::apply_update(const table::TableUpdate& u) {
    LockGuard lock(mu_);
    if (u.generation <= generation_) {
        return stale_generation(u.generation, generation_);
    }
    std::optional<std::string> err;
    if (try_delta(u, err)) {
        return err;
    }
    if (current_ && u.policy && u.policy->present && u.upsert_routes.empty() &&
        u.delete_routes.empty() && u.upsert_pods.empty() && u.delete_pods.empty() &&
        u.upsert_services.empty() && u.delete_services.empty()) {
        return apply_policy(u);
    }
    return apply_full(merge_update(tables_locked(), u));
}

std::optional<std::string> TableManager::apply_policy(const table::TableUpdate& u) {
    if (auto e = check_policy(*u.policy, node_.pod_cidr)) {
        return e;
    }
    std::shared_ptr<const table::PolicyTables> next = make_policy(*u.policy);
    current_->policy.store(next.get(), std::memory_order_release);
    synchronize();
    current_->policy_owner = next;
    policy_ = std::move(next);  // the old version goes here, after the grace period
    generation_ = u.generation;
    ++paths_.policy;
    return std::nullopt;
}

std::vector<PortInfo> TableManager::ports() const {
    LockGuard lock(mu_);
    return ports_locked();
}

std::vector<PortInfo> TableManager::ports_locked() const {
    std::vector<PortInfo> out;
    for (const PortEntry& e : ports_) {
        PortInfo p;
        p.name = e.name;
        p.kind = e.kind;
        p.devargs = e.devargs;
        p.port_id = e.port_id;
        rte_ether_addr a{};
        if (rte_eth_macaddr_get(e.port_id, &a) == 0) {
            std::copy(std::begin(a.addr_bytes), std::end(a.addr_bytes), p.mac.b.begin());
        }
        const dataplane::PortRuntime& rt = node_.ports->port[e.port_id];
        p.peer_mac = Mac::unpack(rt.peer_mac.load(std::memory_order_relaxed));
        p.rx_queues = rt.nb_rxq;
        p.tx_queues = rt.nb_txq;
        rte_eth_link link{};
        if (rte_eth_link_get_nowait(e.port_id, &link) == 0) {
            p.link_up = link.link_status == RTE_ETH_LINK_UP;
        }
        out.push_back(std::move(p));
    }
    return out;
}

ConntrackStats TableManager::conntrack_stats() const {
    ConntrackStats out;
    const table::Conntrack* ct = node_.conntrack;
    if (ct == nullptr) {
        return out;
    }
    // No lock: counters each worker writes alone, read relaxed.
    out.capacity = ct->capacity();
    for (uint32_t w = 0; w < ct->workers(); ++w) {
        const table::CtWorkerStats s = ct->worker_stats(w);
        out.entries += s.entries;
        out.workers.push_back(ConntrackWorkerStats{w, s.entries, s.capacity, s.inserts,
                                                   s.insert_full, s.insert_clash, s.insert_share,
                                                   s.early_drops, s.expiries, s.removals});
    }
    return out;
}

ConntrackListing TableManager::conntrack(uint32_t limit) const {
    ConntrackListing out;
    const table::Conntrack* ct = node_.conntrack;
    if (ct == nullptr) {
        return out;
    }
    // No lock: the table is read as the workers see it, racy by nature (an entry may be
    // removed, or reused after its grace period, while it is copied); a snapshot for people.
    out.total = ct->size();
    out.capacity = ct->capacity();
    const uint64_t tsc = clock_ ? clock_() : rte_rdtsc();
    const auto now_s = static_cast<uint32_t>(tsc / node_.tsc_hz);
    const auto tuple = [](const table::CtKey& k) {
        return ConntrackInfo::Tuple{Ip4{k.src}, from_be16(k.sport), Ip4{k.dst}, from_be16(k.dport)};
    };
    static constexpr const char* kStates[] = {"new", "established", "closing", "closed"};
    const uint32_t cap = std::min(limit, kConntrackListCap);
    ct->for_each([&](uint32_t, const table::CtEntry& e) {
        if (out.entries.size() >= cap) {
            return;
        }
        ConntrackInfo i;
        i.proto = e.orig.proto;
        i.original = tuple(e.orig);
        i.reply = tuple(e.reply);
        i.affinity = e.orig.zone == table::kCtZoneAffinity;
        if (i.affinity) {
            i.original.dst = Ip4{};  // the key's Service port id is no address
            i.original.sport = i.original.dport = 0;
        }
        const std::pair<uint8_t, const char*> kinds[] = {
            {dataplane::stage::kNatDnat, "dnat"},
            {dataplane::stage::kNatSnat, "snat"},
            {dataplane::stage::kNatEgress, "egress"},
            {dataplane::stage::kNatExternal, "external"}};
        for (const auto& [bit, name] : kinds) {
            if (e.nat & bit) {
                i.nat.emplace_back(name);
            }
        }
        const uint8_t st = e.state.load(std::memory_order_relaxed);
        i.state = st < 4 ? kStates[st] : "?";
        const uint32_t last = e.last_seen.load(std::memory_order_relaxed);
        const uint32_t idle = now_s >= last ? now_s - last : 0;  // a worker's clock may lead
        const uint32_t timeout = ct->timeout_of(e);
        i.expires_in_s = idle >= timeout ? 0 : timeout - idle;
        i.worker = e.owner;
        out.entries.push_back(std::move(i));
    });
    return out;
}

StatsSnapshot TableManager::stats() const {
    LockGuard lock(mu_);
    StatsSnapshot s;
    s.taken_unix_ns = now_unix_ns();
    constexpr auto r = std::memory_order_relaxed;
    for (const dataplane::Worker* w : workers_) {
        WorkerStats ws;
        ws.worker = w->index;
        ws.lcore = w->lcore;
        for (const dataplane::PortCounters& pc : w->counters.port) {
            add_counters(pc, ws.counters);
        }
        ws.busy_cycles = w->counters.busy_cycles.load(r);
        ws.total_cycles = w->counters.total_cycles.load(r);
        for (size_t i = 0; i < dataplane::kPhaseCount; ++i) {
            ws.phase_cycles[i] = w->counters.phase_cycles[i].load(r);
        }
        ws.tsc_hz = rte_get_tsc_hz();
        s.workers.push_back(ws);
    }
    for (const PortEntry& e : ports_) {
        PortStats ps;
        ps.name = e.name;
        ps.port_id = e.port_id;
        for (const dataplane::Worker* w : workers_) {
            add_counters(w->counters.port[e.port_id], ps.counters);
        }
        s.ports.push_back(std::move(ps));
    }
    return s;
}

}  // namespace kdp::api

namespace kdp::api {

std::optional<std::string> TableManager::republish_locked() {
    if (!current_) {
        return std::nullopt;  // nothing published yet: the first apply binds the ports
    }
    const table::TableSpec spec = with_port_pods(tables_locked());
    std::string err;
    ServiceMap services;
    std::unique_ptr<table::TableSet> next = build(spec, services, err);
    if (!next) {
        return err;
    }
    ref_.current.store(next.get(), std::memory_order_release);
    synchronize();
    current_ = std::move(next);
    policy_ = current_->policy_owner;
    services_.swap(services);
    return std::nullopt;
}

void TableManager::publish_rx_locked(std::vector<std::vector<dataplane::RxQueue>> lists) {
    std::vector<std::unique_ptr<const std::vector<dataplane::RxQueue>>> next;
    for (size_t i = 0; i < workers_.size(); ++i) {
        next.push_back(
            std::make_unique<const std::vector<dataplane::RxQueue>>(std::move(lists[i])));
        workers_[i]->live_rxqs.store(next.back().get(), std::memory_order_release);
    }
    synchronize();
    rx_lists_.swap(next);  // the lists replaced are freed here, after the grace period
}

std::optional<std::string> TableManager::add_port(const PortEntry& e) {
    LockGuard lock(mu_);
    return add_port_locked(e);
}

std::optional<std::string> TableManager::add_port_locked(const PortEntry& e) {
    for (const PortEntry& p : ports_) {
        if (p.name == e.name) {
            return fmt::format("port {}: a port of that name exists (id {})", e.name, p.port_id);
        }
        if (p.port_id == e.port_id) {
            return fmt::format("port {}: id {} is already port {}", e.name, e.port_id, p.name);
        }
    }
    if (e.port_id >= RTE_MAX_ETHPORTS) {
        return fmt::format("port {}: id {} out of range", e.name, e.port_id);
    }
    ports_.push_back(e);
    if (!workers_.empty()) {
        std::vector<std::vector<dataplane::RxQueue>> lists;
        for (const dataplane::Worker* w : workers_) {
            const auto* live = w->live_rxqs.load(std::memory_order_relaxed);
            lists.push_back(live != nullptr ? *live : w->rxqs);
        }
        const uint16_t nb_rxq = std::max<uint16_t>(node_.ports->port[e.port_id].nb_rxq, 1);
        for (uint16_t q = 0; q < nb_rxq; ++q) {
            auto fewest = std::min_element(lists.begin(), lists.end(),
                                           [](auto& a, auto& b) { return a.size() < b.size(); });
            fewest->push_back(dataplane::RxQueue{e.port_id, q});
        }
        publish_rx_locked(std::move(lists));
    }
    if (auto err = republish_locked()) {
        return fmt::format("port {}: added, but its pods could not be bound: {}", e.name, *err);
    }
    return std::nullopt;
}

std::optional<uint16_t> TableManager::remove_port(const std::string& name) {
    LockGuard lock(mu_);
    return remove_port_locked(name);
}

std::optional<uint16_t> TableManager::remove_port_locked(const std::string& name) {
    const auto it = std::find_if(ports_.begin(), ports_.end(),
                                 [&](const PortEntry& p) { return p.name == name; });
    if (it == ports_.end()) {
        return std::nullopt;
    }
    const uint16_t id = it->port_id;
    ports_.erase(it);
    // First nothing is sent to it (tables without it), then nothing polls it.
    (void)republish_locked();  // the same spec built before: it cannot fail now
    if (!workers_.empty()) {
        std::vector<std::vector<dataplane::RxQueue>> lists;
        for (const dataplane::Worker* w : workers_) {
            const auto* live = w->live_rxqs.load(std::memory_order_relaxed);
            std::vector<dataplane::RxQueue> l = live != nullptr ? *live : w->rxqs;
            std::erase_if(l, [&](const dataplane::RxQueue& q) { return q.port == id; });
            lists.push_back(std::move(l));
        }
        publish_rx_locked(std::move(lists));
        // No worker touches the port now: its counters start again from zero for the next
        // port that gets this id.
        for (dataplane::Worker* w : workers_) {
            for (auto& c : w->counters.port[id].drops) {
                c.store(0, std::memory_order_relaxed);
            }
            auto& pc = w->counters.port[id];
            pc.rx_packets.store(0, std::memory_order_relaxed);
            pc.rx_bytes.store(0, std::memory_order_relaxed);
            pc.tx_packets.store(0, std::memory_order_relaxed);
            pc.tx_bytes.store(0, std::memory_order_relaxed);
        }
    }
    return id;
}

table::TableSpec TableManager::with_port_pods(const table::TableSpec& spec) const {
    if (port_pods_.empty()) {
        return spec;
    }
    table::TableSpec s = spec;
    std::set<std::string> names;
    std::set<uint32_t> ips;
    for (const table::PodSpec& p : spec.pods) {
        names.insert(p.name);
        ips.insert(p.ip.be);
    }
    for (const auto& [name, p] : port_pods_) {
        // The control plane's word wins: a pod it names (or an address it gives another pod)
        // replaces what AddPort said.
        if (!names.contains(name) && !ips.contains(p.ip.be)) {
            s.pods.push_back(p);
        }
    }
    return s;
}

void TableManager::set_port_factory(PortFactory f) {
    LockGuard lock(mu_);
    factory_ = std::move(f);
}

void TableManager::set_port_state_file(std::string path) {
    LockGuard lock(mu_);
    port_state_file_ = std::move(path);
    save_port_state_locked();  // what is in service now, from here on kept up to date
}

void TableManager::save_port_state_locked() {
    if (port_state_file_.empty()) {
        return;
    }
    nlohmann::json ports = nlohmann::json::array();
    for (const auto& [name, r] : port_requests_) {
        ports.push_back({{"name", r.name},
                         {"type", r.type},
                         {"iface", r.iface},
                         {"socket_path", r.socket_path},
                         {"pod_ip", r.pod_ip ? r.pod_ip->str() : ""},
                         {"mtu", r.mtu},
                         {"netns", r.netns},
                         {"netns_iface", r.netns_iface},
                         {"queues", r.queues},
                         {"tun_flags", r.tun_flags}});
    }
    const std::string tmp = port_state_file_ + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << nlohmann::json{{"ports", ports}}.dump(2) << "\n";
        if (!out) {
            fmt::print(stderr,
                       "kdp-dataplane: cannot write {}: the ports will not come back "
                       "after a restart\n",
                       tmp);
            return;
        }
    }
    if (std::rename(tmp.c_str(), port_state_file_.c_str()) != 0) {
        fmt::print(stderr, "kdp-dataplane: cannot replace {}: {}\n", port_state_file_,
                   std::strerror(errno));
    }
}

std::vector<PodPortRequest> TableManager::read_port_state(const std::string& path,
                                                          std::string& err) {
    std::vector<PodPortRequest> out;
    std::ifstream in(path);
    if (!in) {
        return out;  // no earlier process, or it had no run-time ports
    }
    try {
        const nlohmann::json j = nlohmann::json::parse(in);
        for (const auto& p : j.at("ports")) {
            PodPortRequest r;
            r.name = p.at("name").get<std::string>();
            r.type = p.at("type").get<std::string>();
            r.iface = p.value("iface", "");
            r.socket_path = p.value("socket_path", "");
            if (const std::string ip = p.value("pod_ip", ""); !ip.empty()) {
                r.pod_ip = Ip4::parse(ip);
            }
            r.mtu = p.value("mtu", uint16_t{0});
            r.netns = p.value("netns", "");
            r.netns_iface = p.value("netns_iface", "");
            r.queues = p.value("queues", uint32_t{0});
            r.tun_flags = p.value("tun_flags", uint32_t{0});
            out.push_back(std::move(r));
        }
    } catch (const std::exception& e) {
        err = fmt::format("{}: {}", path, e.what());
        out.clear();
    }
    return out;
}

namespace {

bool valid_iface(const std::string& s) {
    if (s.empty() || s.size() > 15 || s == "." || s == "..") {
        return false;
    }
    return std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    });
}

}  // namespace

std::optional<PortError> TableManager::add_pod_port(const PodPortRequest& r, PortInfo& out) {
    using K = PortError::Kind;
    LockGuard lock(mu_);
    if (!factory_.create) {
        return PortError{K::kUnsupported, "this dataplane creates no ports at run time"};
    }
    const auto slash = r.name.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == r.name.size() ||
        r.name.find('/', slash + 1) != std::string::npos || r.name.size() > 253) {
        return PortError{K::kInvalid, fmt::format("name: \"{}\" is not \"namespace/pod\"", r.name)};
    }
    if (r.type == "tap") {
        for (const auto& [field, value] :
             {std::pair{"iface", &r.iface}, std::pair{"netns_iface", &r.netns_iface}}) {
            if (!valid_iface(*value) && (value == &r.iface || !value->empty())) {
                return PortError{K::kInvalid,
                                 fmt::format("{}: \"{}\" is not an interface name (1-15 of "
                                             "A-Z a-z 0-9 - _ .)",
                                             field, *value)};
            }
        }
        if (!r.netns.empty() && (r.netns[0] != '/' || r.netns_iface.empty())) {
            return PortError{K::kInvalid,
                             fmt::format("netns: \"{}\" must be an absolute path, given with "
                                         "netns_iface",
                                         r.netns)};
        }
        if (r.netns.empty() && !r.netns_iface.empty()) {
            return PortError{K::kInvalid, "netns_iface: given without netns"};
        }
    } else if (r.type == "vhostuser") {
        if (r.socket_path.empty() || r.socket_path[0] != '/' || r.socket_path.size() > 107) {
            return PortError{K::kInvalid,
                             fmt::format("socket_path: \"{}\" is not an absolute path of at "
                                         "most 107 bytes",
                                         r.socket_path)};
        }
    } else {
        return PortError{K::kInvalid, fmt::format("type: \"{}\" is not tap or vhostuser", r.type)};
    }
    if (r.mtu != 0 && (r.mtu < 576 || r.mtu > 9000)) {
        return PortError{K::kInvalid, fmt::format("mtu: {} is not in 576..9000", r.mtu)};
    }
    if (r.queues > kMaxPodQueues) {
        return PortError{K::kInvalid,
                         fmt::format("queues: {} is not in 1..{}", r.queues, kMaxPodQueues)};
    }
    if (r.queues > 1 && r.type != "vhostuser") {
        return PortError{K::kInvalid, "queues: only a vhostuser port has several queue pairs"};
    }
    if (r.pod_ip) {
        if (!node_.pod_cidr.contains(*r.pod_ip) || *r.pod_ip == node_.gateway_ip ||
            *r.pod_ip == node_.pod_cidr.addr) {
            return PortError{K::kInvalid, fmt::format("pod_ip: {} is not a pod address of {}",
                                                      r.pod_ip->str(), node_.pod_cidr.str())};
        }
        const auto clash = [&](const table::PodSpec& p) {
            return p.ip == *r.pod_ip && p.name != r.name;
        };
        if (std::any_of(pods_.begin(), pods_.end(), clash) ||
            std::any_of(port_pods_.begin(), port_pods_.end(),
                        [&](const auto& kv) { return clash(kv.second); })) {
            return PortError{K::kExists,
                             fmt::format("pod_ip: {} belongs to another pod", r.pod_ip->str())};
        }
    }
    for (const PortEntry& e : ports_) {
        if (e.name == r.name) {
            return PortError{K::kExists, fmt::format("port {} exists (id {}, {})", r.name,
                                                     e.port_id, e.devargs)};
        }
    }
    PortEntry e;
    e.name = r.name;
    if (auto err = factory_.create(r, e)) {
        return PortError{K::kFailed, *err};
    }
    if (r.pod_ip) {
        port_pods_[r.name] = table::PodSpec{r.name, *r.pod_ip, r.name};
    }
    if (auto err = add_port_locked(e)) {
        port_pods_.erase(r.name);
        (void)remove_port_locked(r.name);
        factory_.destroy(e);
        return PortError{K::kFailed, *err};
    }
    port_requests_[r.name] = r;
    port_requests_[r.name].tun_flags = e.tun_flags;
    save_port_state_locked();
    for (PortInfo& p : ports_locked()) {
        if (p.name == r.name) {
            out = std::move(p);
        }
    }
    return std::nullopt;
}

std::optional<PortError> TableManager::remove_pod_port(const std::string& name) {
    using K = PortError::Kind;
    LockGuard lock(mu_);
    const auto it = std::find_if(ports_.begin(), ports_.end(),
                                 [&](const PortEntry& p) { return p.name == name; });
    if (it == ports_.end()) {
        return PortError{K::kNotFound, fmt::format("no port {}", name)};
    }
    if (it->kind == "uplink" || it->kind == "host") {
        return PortError{K::kInvalid,
                         fmt::format("the {} is not a pod port",
                                     it->kind == "host" ? "host interface" : "uplink")};
    }
    if (!factory_.destroy) {
        return PortError{K::kUnsupported, "this dataplane removes no ports at run time"};
    }
    const PortEntry e = *it;
    port_pods_.erase(name);
    (void)remove_port_locked(name);  // unbinds and stops polling before the device goes
    factory_.destroy(e);
    port_requests_.erase(name);
    save_port_state_locked();
    return std::nullopt;
}

}  // namespace kdp::api
