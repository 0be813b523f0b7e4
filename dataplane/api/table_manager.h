// TableManager: the one writer of the forwarding tables, and the Backend the gRPC server
// serves.
//
// Threads: any non-worker thread may call it (gRPC threads, the main thread); calls are
// serialised by mu_. It validates a TableSpec whole, builds a new immutable TableSet,
// publishes it with one release store, waits for an RCU grace period (every worker has
// passed a quiescent point or is offline) and only then frees the old version. Workers are
// never stopped or locked. Lock order: mu_ only; never held by a worker.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <rte_rcu_qsbr.h>

struct rte_mempool;

#include "api/backend.h"
#include "core/node_context.h"
#include "core/worker.h"
#include "table/tables.h"

namespace kdp::api {

/// A port the dataplane owns, as the registry knows it.
struct PortEntry {
    std::string name;
    std::string kind;
    std::string devargs;
    uint16_t port_id = 0;
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
    table::TableSpec tables() const override;
    std::vector<PortInfo> ports() const override;
    StatsSnapshot stats() const override;
    ConntrackListing conntrack(uint32_t limit) const override;

    /// The clock conntrack ages are measured against, in TSC ticks (default: rte_rdtsc), for
    /// tests that drive the workers' time themselves.
    void set_clock_for_test(std::function<uint64_t()> clock) { clock_ = std::move(clock); }

    std::optional<std::string> trace(const TraceQuery& q, TraceResult& out) override;
    /// The mempool trace packets come from (the dataplane's); tracing is refused without one.
    void set_trace_pool(rte_mempool* pool);

    /// Validation alone (no publish); the error a apply_tables would return.
    std::optional<std::string> validate(const table::TableSpec& spec) const;

private:
    std::unique_ptr<table::TableSet> build(const table::TableSpec& spec, std::string& err);

    mutable std::mutex mu_;
    NodeInfo info_;
    dataplane::NodeContext& node_;
    table::TableRef& ref_;
    rte_rcu_qsbr* qsbr_;
    std::vector<dataplane::Worker*> workers_;
    std::vector<PortEntry> ports_;
    std::unique_ptr<const table::TableSet> current_;  // owned copy of what ref_ points to
    /// The blocks of the version in force, by service port name, with the spec they were
    /// built from: reused as they are when a new version has the same spec for that name.
    std::unordered_map<std::string,
                       std::pair<table::ServiceSpec, std::shared_ptr<const table::ServiceBlock>>>
        blocks_;
    decltype(blocks_) next_blocks_;  // built with the version being applied
    rte_mempool* trace_pool_ = nullptr;
    std::function<uint64_t()> clock_;
};

/// Sums a worker's counters into a CounterSet (all ports) or for one port.
void add_counters(const dataplane::PortCounters& from, CounterSet& to);

}  // namespace kdp::api
