// What the dataplane's gRPC server needs from the running dataplane.
//
// Implemented by the dataplane process (dataplane/api/table_manager.*) over the real tables,
// ports and counters. Called from gRPC threads only, never from a worker lcore; every method
// is thread-safe. Methods that change state either apply everything or nothing.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "pkt/drop_reason.h"
#include "pkt/phase.h"
#include "spec/table_spec.h"

namespace kdp::api {

/// Wall-clock nanoseconds since the Unix epoch, for timestamps the API reports.
inline uint64_t now_unix_ns() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
}

struct NodeInfo {
    std::string node_name;
    Ip4 node_ip;
    Mac node_mac;
    Prefix4 pod_cidr;
    Ip4 gateway_ip;
    Mac gateway_mac;
    std::string vxlan_mode;  // "standard" | "flannel"
    uint16_t vxlan_port = 0;
    uint32_t vni = 0;
    Mac vtep_mac;
    uint16_t mtu = 0;
    uint16_t pod_mtu = 0;
    uint32_t workers = 0;
    uint64_t generation = 0;  // generation of the tables in force (0: none applied yet)
    uint64_t started_unix_ns = 0;
};

struct PortInfo {
    std::string name;  // "uplink" or the pod's "namespace/pod"
    std::string kind;  // "uplink" | "tap" | "vhostuser" | "devargs"
    std::string devargs;
    uint16_t port_id = 0;
    Mac mac;       // the port's own MAC
    Mac peer_mac;  // the pod's MAC as learned (zero until seen)
    uint16_t rx_queues = 0;
    uint16_t tx_queues = 0;
    bool link_up = false;
};

/// Counters of one port or one worker; drops indexed by DropReason.
struct CounterSet {
    uint64_t rx_packets = 0;
    uint64_t rx_bytes = 0;
    uint64_t tx_packets = 0;
    uint64_t tx_bytes = 0;
    uint64_t drops[dataplane::kDropReasonCount] = {};
};

struct WorkerStats {
    uint32_t worker = 0;
    uint32_t lcore = 0;
    CounterSet counters;
    uint64_t busy_cycles = 0;   // TSC cycles spent in iterations that received packets
    uint64_t total_cycles = 0;  // TSC cycles since the worker started
    uint64_t tsc_hz = 0;
    uint64_t phase_cycles[dataplane::kPhaseCount] = {};  // busy cycles by dataplane::Phase
};

struct PortStats {
    std::string name;
    uint16_t port_id = 0;
    CounterSet counters;  // summed over workers
};

struct StatsSnapshot {
    uint64_t taken_unix_ns = 0;
    std::vector<WorkerStats> workers;
    std::vector<PortStats> ports;
};

/// A crafted packet to run through the pipeline (kdpctl trace).
struct TraceQuery {
    std::string from;    // "NS/POD" (a pod on this node), "host" (the node itself, through its
                         // host interface) or an IPv4 literal (outside client)
    std::string to;      // "NS/POD" (on this node), "service:NS/NAME" or an IPv4 literal
    uint16_t port = 0;   // destination port
    uint8_t proto = 6;   // 6 TCP, 17 UDP, 132 SCTP
    uint16_t sport = 0;  // the client's port; 0: the trace's own (47000)
};

struct TraceHop {
    std::string node;
    std::string stage;   // "parse", "conntrack", "service", "snat", "route", "vxlan_encap", ...
    std::string detail;  // what it decided
};

struct TraceResult {
    std::string verdict;        // "allow" | "deny" | "reject"
    std::string backend;        // "NS/POD" chosen by a Service, "" if none
    uint16_t backend_port = 0;  // 0 if none
    std::string seen_src;       // the source address the packet carries when it leaves
    std::vector<TraceHop> hops;
    /// When the packet leaves in VXLAN for another node: that node and the inner packet as it
    /// will arrive there, for the rest of the path to be traced on that node's dataplane.
    struct Next {
        std::string node;
        Ip4 src, dst;
        uint16_t sport = 0, dport = 0;
    };
    std::optional<Next> next;
};

/// One conntrack entry as the API reports it (see ListConntrack in dataplane.proto).
struct ConntrackInfo {
    struct Tuple {
        Ip4 src;
        uint16_t sport = 0;  // host order
        Ip4 dst;
        uint16_t dport = 0;
    };
    uint8_t proto = 0;
    Tuple original;
    Tuple reply;
    std::vector<std::string> nat;  // "dnat", "snat", "egress", "external"
    std::string state;             // "new", "established", "closing", "closed"
    uint32_t expires_in_s = 0;
    bool affinity = false;
    uint32_t worker = 0;
};

struct ConntrackListing {
    uint32_t total = 0;
    uint32_t capacity = 0;
    std::vector<ConntrackInfo> entries;
};

/// One worker's share of the conntrack and what it did with it, since the dataplane started.
struct ConntrackWorkerStats {
    uint32_t worker = 0;
    uint32_t entries = 0;       // live connections in its range
    uint32_t capacity = 0;      // its range's size
    uint64_t inserts = 0;       // connections (and affinity records) tracked
    uint64_t insert_full = 0;   // refused: no room (counted as conntrack_full drops too)
    uint64_t insert_clash = 0;  // refused: another connection has one of its keys
    uint64_t insert_share = 0;  // refused: the source holds its share of unreplied connections
    uint64_t early_drops = 0;   // unreplied connections swept early from a nearly full range
    uint64_t expiries = 0;      // removed by the expiry sweep (idle, or backend gone)
    uint64_t removals = 0;      // removed for any reason, expiries included
};

struct ConntrackStats {
    uint32_t entries = 0;
    uint32_t capacity = 0;
    std::vector<ConntrackWorkerStats> workers;
};

/// The most entries one ListConntrack returns: about 10 MB of messages.
inline constexpr uint32_t kConntrackListCap = 100000;

/// The size of the tables in force, as the API reports it after an apply.
struct TableCounts {
    uint64_t generation = 0;
    uint32_t routes = 0;
    uint32_t pods = 0;
    uint32_t services = 0;
};

/// `base` with `u` applied: upserts replace or add by key, deletes of absent keys are no-ops;
/// the result has u.generation and is sorted (routes by node name, pods and services by name).
inline table::TableSpec merge_update(const table::TableSpec& base, const table::TableUpdate& u) {
    const auto merge = [](const auto& items, const auto& upserts, const auto& deletes, auto key) {
        using Spec = typename std::decay_t<decltype(items)>::value_type;
        std::map<std::string, Spec> m;
        for (const Spec& x : items) {
            m.emplace(key(x), x);
        }
        for (const Spec& x : upserts) {
            m.insert_or_assign(key(x), x);
        }
        for (const std::string& k : deletes) {
            m.erase(k);
        }
        std::vector<Spec> out;
        out.reserve(m.size());
        for (auto& [_, x] : m) {
            out.push_back(std::move(x));
        }
        return out;
    };
    table::TableSpec out;
    out.generation = u.generation;
    out.routes = merge(base.routes, u.upsert_routes, u.delete_routes,
                       [](const table::RouteSpec& r) { return r.node_name; });
    out.pods = merge(base.pods, u.upsert_pods, u.delete_pods,
                     [](const table::PodSpec& p) { return p.name; });
    out.services = merge(base.services, u.upsert_services, u.delete_services,
                         [](const table::ServiceSpec& sv) { return sv.name; });
    out.policy = u.policy ? *u.policy : base.policy;
    return out;
}

/// Queue pairs a run-time vhost-user pod port may have (as pods[i].queues in the node config).
inline constexpr uint32_t kMaxPodQueues = 64;

/// A pod port to create at run time (AddPort; the CNI plugin's ADD).
struct PodPortRequest {
    std::string name;           // the pod's "namespace/pod": the port's name
    std::string type;           // "tap" | "vhostuser"
    std::string iface;          // tap: the interface to create (1-15 characters)
    std::string socket_path;    // vhostuser: the socket the dataplane creates (absolute)
    std::optional<Ip4> pod_ip;  // bound to the port at once, until the control plane says more
    uint16_t mtu = 0;           // 0: the node's pod MTU
    // tap: where the caller moves the TAP (the pod's namespace, a path, and the interface's
    // name there), so that a restarted dataplane finds it again; empty: it stays here.
    std::string netns;
    std::string netns_iface;
    uint32_t queues = 0;  // vhostuser: queue pairs, 1..64 (0: 1)
    // Kept by the dataplane in its port record, not from the API: the TAP's TUN flags, set
    // when a restarted dataplane takes back the interface of an earlier process.
    uint32_t tun_flags = 0;
};

/// Why a port operation failed, for the API's status code.
struct PortError {
    enum class Kind : uint8_t { kInvalid, kExists, kNotFound, kFailed, kUnsupported };
    Kind kind = Kind::kInvalid;
    std::string message;
};

class Backend {
public:
    virtual ~Backend() = default;

    virtual NodeInfo node_info() const = 0;

    /// Validates `spec` whole, builds new tables and publishes them to every worker at once.
    /// Returns an error message and changes nothing if any entry is invalid or if
    /// spec.generation is not greater than the generation in force.
    virtual std::optional<std::string> apply_tables(const table::TableSpec& spec) = 0;

    /// Applies an incremental change on top of the tables in force, all or nothing, with the
    /// same rules as apply_tables (the result must be valid as a whole, u.generation newer
    /// than the generation in force). This default merges into tables() and applies the whole
    /// result; a dataplane overrides it to apply small changes without copying everything.
    virtual std::optional<std::string> apply_update(const table::TableUpdate& u) {
        return apply_tables(merge_update(tables(), u));
    }

    /// The spec of the tables in force (generation 0 and empty before the first apply).
    virtual table::TableSpec tables() const = 0;

    /// The generation and entry counts of the tables in force, without copying them.
    virtual TableCounts table_counts() const {
        const table::TableSpec s = tables();
        return TableCounts{s.generation, static_cast<uint32_t>(s.routes.size()),
                           static_cast<uint32_t>(s.pods.size()),
                           static_cast<uint32_t>(s.services.size())};
    }

    virtual std::vector<PortInfo> ports() const = 0;
    virtual StatsSnapshot stats() const = 0;

    /// Runs a crafted packet through the real pipeline without touching ports, conntrack or
    /// counters. Returns an error message (bad query, nothing to trace) or fills `out`.
    virtual std::optional<std::string> trace(const TraceQuery&, TraceResult&) {
        return std::string("tracing is not supported by this dataplane");
    }
    /// Up to `limit` (at most kConntrackListCap) conntrack entries, read without disturbing
    /// the workers.
    virtual ConntrackListing conntrack(uint32_t limit) const = 0;
    /// Conntrack size and per-worker activity counters, without listing entries.
    virtual ConntrackStats conntrack_stats() const { return {}; }

    /// Creates a pod port and puts it in service; fills `out` with the port as created.
    virtual std::optional<PortError> add_pod_port(const PodPortRequest&, PortInfo& out) {
        (void)out;
        return PortError{PortError::Kind::kUnsupported,
                         "pod ports are not created at run time here"};
    }
    /// Takes a pod port out of service and destroys it.
    virtual std::optional<PortError> remove_pod_port(const std::string& name) {
        (void)name;
        return PortError{PortError::Kind::kUnsupported,
                         "pod ports are not removed at run time here"};
    }
};

}  // namespace kdp::api
