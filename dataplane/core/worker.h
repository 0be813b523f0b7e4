// Worker: one poll-mode loop per worker lcore, run to completion.
//
// Each worker owns its rx (port, queue) pairs, its TX queue index on every port, its TX
// buffers, its pending-ARP queue and its counters; none of these are touched by another
// thread except the counters, which the stats reader loads (counters.h). Shared state is
// reached through NodeContext. Tables are read under RCU: the loop acquire-loads the TableSet
// once per iteration and reports quiescent at the end of every iteration; it goes offline
// before sleeping when idle, so a table update never waits for a sleeping worker.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include <rte_rcu_qsbr.h>

#include "core/burst.h"
#include "core/counters.h"
#include "core/node_context.h"

struct rte_mempool;

namespace kdp::dataplane {

struct RxQueue {
    uint16_t port;
    uint16_t queue;
};

struct IdlePolicy {
    uint32_t spin_polls = 256;
    uint32_t sleep_us = 50;
    uint32_t max_sleep_us = 1000;
};

struct TxBuffer {
    uint16_t count = 0;
    rte_mbuf* pkts[kBurstSize];
};

/// A packet whose underlay next hop is being resolved; already fully encapsulated except for
/// the outer destination MAC.
struct HeldPacket {
    rte_mbuf* m;
    uint64_t since_tsc;
    uint32_t slot;
    uint16_t in_port;
};

struct Worker {
    // Set up by the main thread before launch.
    uint32_t index = 0;
    unsigned lcore = 0;
    std::vector<RxQueue> rxqs;
    /// The queues to poll once ports come and go at run time: published by the TableManager
    /// (RCU: the old list is freed after a grace period); null means `rxqs`.
    std::atomic<const std::vector<RxQueue>*> live_rxqs{nullptr};
    rte_mempool* pool = nullptr;  // for packets the worker originates (ARP requests)
    const NodeContext* node = nullptr;
    rte_rcu_qsbr* qsbr = nullptr;
    IdlePolicy idle;
    const std::atomic<bool>* stop = nullptr;

    // Owned by the worker while it runs.
    WorkerCounters counters;
    TxBuffer tx[RTE_MAX_ETHPORTS];
    std::vector<HeldPacket> held;  // capacity fixed at set-up (limits.arp_pending); never grows
    uint32_t held_count = 0;
    Burst burst;

    PortCounters& port_counters(uint16_t port) noexcept { return counters.port[port]; }
};

/// rte_eal_remote_launch entry point; `arg` is a Worker*. Returns 0 when *stop is set.
int worker_main(void* arg);

/// One loop iteration's packet work on one received burst, exposed for the packet-level tests
/// and the trace path: parse, run the stages, dispatch. `b.count` mbufs from `port`.
void process_burst(Worker& w, const table::TableSet* t, uint16_t port, Burst& b, uint64_t now);

/// Releases or expires held packets (called every iteration while any are held).
void service_held(Worker& w, uint64_t now);

/// Entries the conntrack expiry scan examines per call (every 16th loop iteration): at about
/// 1 us per idle iteration a 1M-entry range is swept in ~60 ms, and at most a few hundred ns
/// are spent per call, so a busy worker never stalls on expiry.
inline constexpr uint32_t kConntrackScanBudget = 256;

/// Expires this worker's idle or stale connections and reuses entries whose grace period
/// has passed. Called from the loop every 16 iterations.
void conntrack_maintenance(Worker& w, const table::TableSet* t, uint64_t now);

/// Transmits everything buffered; what a port does not take is dropped as kTxFull.
void flush_tx(Worker& w);

}  // namespace kdp::dataplane
