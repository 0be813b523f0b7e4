// TableManager: the one writer of the forwarding tables, and the Backend the gRPC server
// serves.
//
// Threads: any non-worker thread may call it (gRPC threads, the main thread); calls are
// serialised by mu_. It validates a TableSpec whole, builds a new immutable TableSet,
// publishes it with one release store, waits for an RCU grace period (every worker has
// passed a quiescent point or is offline) and only then frees the old version. Workers are
// never stopped or locked. Lock order: mu_ only; never held by a worker.
//
// Two paths for an update (apply_update):
// - delta: every change is to existing Service ports and only to their blocks (backends,
//   loadBalancerSourceRanges), with frontends, protocol and flags unchanged: the common case,
//   an endpoint change. Validation and work are O(size of the change): each changed port gets
//   a new ServiceBlock, stored in place into its slot of the TableSet in force (one release
//   store each), then one grace period, then the old blocks are freed.
// - full: anything else (routes, pods, new or deleted Service ports, frontends, flags) merges
//   into the state in force and builds a new TableSet, reusing unchanged blocks by name.
// Both are all or nothing: nothing is published until the whole update has validated and
// built. The state in force is kept by key (Service ports in a map by name), so neither path
// copies the whole spec to apply a change.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <rte_rcu_qsbr.h>

struct rte_mempool;

#include "api/backend.h"
#include "common/thread_annotations.h"
#include "core/worker.h"
#include "stage/node_context.h"
#include "table/tables.h"

namespace kdp::api {

/// A port the dataplane owns, as the registry knows it.
struct PortEntry {
    std::string name;
    std::string kind;
    std::string devargs;
    uint16_t port_id = 0;
    int tap_keeper = -1;     // run-time TAP: the queue that keeps its interface (tap_keeper.h)
    uint32_t tun_flags = 0;  // run-time TAP: its TUN flags, recorded for a restart
};

/// How the dataplane makes and unmakes the devices of run-time pod ports (main sets it up with
/// its mempool and worker count; tests with ring ports).
struct PortFactory {
    /// Probes, configures and starts the device; fills the entry (port id, kind, devargs).
    std::function<std::optional<std::string>(const PodPortRequest&, PortEntry&)> create;
    /// Stops, closes and unplugs a device no worker touches any more.
    std::function<void(const PortEntry&)> destroy;
};

class TableManager final : public Backend {
public:
    /// `workers` may be empty (tables built and published without RCU waits: tests, trace).
    TableManager(NodeInfo info,
                 dataplane::NodeContext& node,
                 table::TableRef& ref,
                 rte_rcu_qsbr* qsbr,
                 std::vector<dataplane::Worker*> workers,
                 std::vector<PortEntry> ports);
    ~TableManager() override;

    NodeInfo node_info() const override;
    std::optional<std::string> apply_tables(const table::TableSpec& spec) override;
    std::optional<std::string> apply_update(const table::TableUpdate& u) override;
    table::TableSpec tables() const override;
    TableCounts table_counts() const override;
    std::vector<PortInfo> ports() const override;
    StatsSnapshot stats() const override;
    ConntrackListing conntrack(uint32_t limit) const override;
    ConntrackStats conntrack_stats() const override;

    /// The clock conntrack ages are measured against, in TSC ticks (default: rte_rdtsc), for
    /// tests that drive the workers' time themselves.
    void set_clock_for_test(std::function<uint64_t()> clock) { clock_ = std::move(clock); }

    std::optional<std::string> trace(const TraceQuery& q, TraceResult& out) override;
    /// The mempool trace packets come from (the dataplane's); tracing is refused without one.
    void set_trace_pool(rte_mempool* pool);

    /// Takes a port created at run time (configured and started by the caller) into service:
    /// its receive queues go to the workers polling the fewest, and pods naming it are bound
    /// to it in a new table version. Traffic on other ports is not disturbed. Errors: a name or
    /// port id already in use.
    std::optional<std::string> add_port(const PortEntry& e);
    /// Where run-time pod ports come from (AddPort); without one they are refused.
    void set_port_factory(PortFactory f);
    /// The file the run-time pod ports are recorded in: written now, then rewritten whole
    /// (atomically) after every AddPort and RemovePort, so that a restarted dataplane can
    /// bring them back.
    void set_port_state_file(std::string path);
    /// The run-time pod ports recorded in `path` by a previous process (empty if none).
    static std::vector<PodPortRequest> read_port_state(const std::string& path, std::string& err);
    std::optional<PortError> add_pod_port(const PodPortRequest& r, PortInfo& out) override;
    std::optional<PortError> remove_pod_port(const std::string& name) override;
    /// Takes a port out of service: its pods are unbound (their traffic is dropped as having
    /// no port) and no worker polls it. When it returns, no worker touches the port any more;
    /// the caller stops and closes it. Returns its id, or nothing for an unknown name.
    std::optional<uint16_t> remove_port(const std::string& name);

    /// Validation alone (no publish); the error a apply_tables would return.
    std::optional<std::string> validate(const table::TableSpec& spec) const;

    /// How many updates took each path since start (tests, benchmarks).
    struct PathCounts {
        uint64_t delta = 0;
        uint64_t full = 0;
        uint64_t policy = 0;  // policy-only updates, swapped in place
    };
    PathCounts path_counts() const;

private:
    /// A Service port in force: its stable slot in TableSet::services and its block (whose
    /// `spec` is the port's spec).
    struct ServicePort {
        uint32_t slot = 0;
        std::shared_ptr<const table::ServiceBlock> block;
    };
    using ServiceMap = std::map<std::string, ServicePort>;

    std::optional<std::string> validate_locked(const table::TableSpec& spec) const
        KDP_REQUIRES(mu_);
    std::optional<std::string> apply_full(const table::TableSpec& spec) KDP_REQUIRES(mu_);
    /// The delta path; returns false (nothing changed) when `u` is not a block-only change.
    bool try_delta(const table::TableUpdate& u, std::optional<std::string>& err) KDP_REQUIRES(mu_);
    std::unique_ptr<table::TableSet> build(const table::TableSpec& spec,
                                           ServiceMap& services,
                                           std::string& err) KDP_REQUIRES(mu_);
    std::shared_ptr<const table::ServiceBlock> make_block(const table::ServiceSpec& sv) const
        KDP_REQUIRES(mu_);
    /// The tables of a new policy version (the next epoch).
    std::shared_ptr<const table::PolicyTables> make_policy(const table::PolicySpec& spec)
        KDP_REQUIRES(mu_);
    /// The policy-only path of an update: swapped in place, one grace period.
    std::optional<std::string> apply_policy(const table::TableUpdate& u) KDP_REQUIRES(mu_);
    table::TableSpec tables_locked() const KDP_REQUIRES(mu_);
    void synchronize();
    /// Rebuilds the tables in force (same spec and generation) after the ports changed.
    std::optional<std::string> republish_locked() KDP_REQUIRES(mu_);
    std::optional<std::string> add_port_locked(const PortEntry& e) KDP_REQUIRES(mu_);
    std::optional<uint16_t> remove_port_locked(const std::string& name) KDP_REQUIRES(mu_);
    /// `spec` with the pods of run-time ports that the spec does not name (by name or address).
    table::TableSpec with_port_pods(const table::TableSpec& spec) const KDP_REQUIRES(mu_);
    std::vector<PortInfo> ports_locked() const KDP_REQUIRES(mu_);
    /// Publishes each worker's receive-queue list and waits until every worker polls its own.
    void publish_rx_locked(std::vector<std::vector<dataplane::RxQueue>> lists) KDP_REQUIRES(mu_);

    mutable Mutex mu_;
    NodeInfo info_;
    dataplane::NodeContext& node_;
    table::TableRef& ref_;
    rte_rcu_qsbr* qsbr_;
    std::vector<dataplane::Worker*> workers_;
    std::vector<PortEntry> ports_ KDP_GUARDED_BY(mu_);
    PortFactory factory_ KDP_GUARDED_BY(mu_);
    std::string port_state_file_ KDP_GUARDED_BY(mu_);
    std::map<std::string, PodPortRequest> port_requests_
        KDP_GUARDED_BY(mu_);  // run-time ports, by name
    void save_port_state_locked() KDP_REQUIRES(mu_);
    std::map<std::string, table::PodSpec> port_pods_
        KDP_GUARDED_BY(mu_);  // pods bound by AddPort, by name
    // Each worker's receive queues as published (live_rxqs); empty until a port is added.
    std::vector<std::unique_ptr<const std::vector<dataplane::RxQueue>>> rx_lists_
        KDP_GUARDED_BY(mu_);
    std::unique_ptr<table::TableSet> current_
        KDP_GUARDED_BY(mu_);  // owned copy of what ref_ points to
    // The state in force, by key. Service blocks are reused as they are by a full build when
    // a port's spec is unchanged.
    uint64_t generation_ KDP_GUARDED_BY(mu_) = 0;
    std::vector<table::RouteSpec> routes_ KDP_GUARDED_BY(mu_);
    std::vector<table::PodSpec> pods_ KDP_GUARDED_BY(mu_);
    std::vector<Prefix4> service_cidrs_ KDP_GUARDED_BY(mu_);
    ServiceMap services_ KDP_GUARDED_BY(mu_);
    std::shared_ptr<const table::ServiceBlock> empty_block_
        KDP_GUARDED_BY(mu_);  // what free slots point at
    mutable uint16_t next_block_id_ KDP_GUARDED_BY(mu_) =
        0;  // ServiceBlock::id of the last block made (under mu_)
    // NetworkPolicy in force: until a control plane sends one, a version that allows nothing.
    std::shared_ptr<const table::PolicyTables> policy_ KDP_GUARDED_BY(mu_);
    uint32_t policy_epoch_ KDP_GUARDED_BY(mu_) = 0;
    PathCounts paths_ KDP_GUARDED_BY(mu_);
    rte_mempool* trace_pool_ KDP_GUARDED_BY(mu_) = nullptr;
    std::function<uint64_t()> clock_;  // set_clock_for_test: before any other thread uses this
};

/// Sums a worker's counters into a CounterSet (all ports) or for one port.
void add_counters(const dataplane::PortCounters& from, CounterSet& to);

}  // namespace kdp::api
