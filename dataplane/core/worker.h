// Worker: one poll-mode loop per worker lcore, run to completion.
//
// Each worker owns its rx (port, queue) pairs, its TX queue index on every port, its TX
// buffers, its pending-ARP queue and its counters; none of these are touched by another
// thread except the counters, which the stats reader loads (counters.h). Shared state is
// reached through NodeContext. Tables are read under RCU: the loop acquire-loads the TableSet
// once per iteration and reports quiescent at the end of every iteration; it goes offline
// before sleeping when idle, so a table update never waits for a sleeping worker.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include <rte_cycles.h>
#include <rte_rcu_qsbr.h>

#include "pkt/burst.h"
#include "pkt/counters.h"
#include "stage/context.h"
#include "stage/node_context.h"

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
    // Conntrack expiry pacing (conntrack_tick): when entries were last credited, and how many
    // are due but not yet scanned (fractions carried over).
    uint64_t ct_scan_tsc = 0;
    double ct_scan_due = 0;
    /// When the current phase began (lap). The loop sets it at the start of an iteration; a
    /// caller of process_burst that wants its phases measured sets it just before.
    uint64_t lap_tsc = 0;
    /// The `now` of the burst being processed (process_burst sets it): for stages that pace.
    uint64_t now_tsc = 0;
    ReplyBudget replies;  // RST / ICMP unreachable sent for refused packets

    PortCounters& port_counters(uint16_t port) noexcept { return counters.port[port]; }

    /// What the stages may use of this worker for a burst processed at `now` (stage/context.h).
    stage::Context stage_context(uint64_t now) noexcept {
        return stage::Context{
            *node,
            index,
            qsbr,
            pool,
            counters,
            tx,
            stage::HeldQueue{held.data(), static_cast<uint32_t>(held.size()), held_count},
            replies,
            now,
            static_cast<uint32_t>(now / node->tsc_hz)};
    }

    /// Ends phase `ph` now: its cycles since the last lap are counted and the next one starts.
    void lap(Phase ph) noexcept {
        const uint64_t now = rte_rdtsc();
        bump(counters.phase_cycles[static_cast<size_t>(ph)], now - lap_tsc);
        lap_tsc = now;
    }
};

/// rte_eal_remote_launch entry point; `arg` is a Worker*. Returns 0 when *stop is set.
int worker_main(void* arg);

/// One loop iteration's packet work on one received burst, exposed for the packet-level tests
/// and the trace path: parse, run the stages, dispatch. `b.count` mbufs from `port`.
void process_burst(Worker& w, const table::TableSet* t, uint16_t port, Burst& b, uint64_t now);

/// Releases or expires held packets (called every iteration while any are held).
void service_held(Worker& w, uint64_t now);

/// Entries one conntrack_maintenance call examines unless told otherwise (tests sweep a small
/// table with a few calls).
inline constexpr uint32_t kConntrackScanBudget = 256;

/// The conntrack expiry pace: a worker examines each entry of its range once per sweep, so an
/// idle connection is gone at most this long after its timeout and the table holds about
/// insert rate x (timeout + sweep). The scan is paced by time, not by loop iterations: a busy
/// worker pays a few cycles per packet for it at any rate (a 1M-entry range swept per second is
/// 1M entry reads per second, sequential and prefetched), and an idle one still keeps up.
inline constexpr uint64_t kConntrackSweepMs = 1000;
/// When fewer than 1/8 of a range's entries are free the sweep runs this many times faster.
inline constexpr uint32_t kConntrackPressureSpeedup = 4;
/// Bounds of one scan call: fewer entries due than kConntrackScanMin wait for the next
/// iteration (one RCU token per batch); at most kConntrackScanMax per call so that no
/// iteration stalls (a worker that fell behind catches up over the next iterations).
inline constexpr uint32_t kConntrackScanMin = 64;
inline constexpr uint32_t kConntrackScanMax = 4096;

/// Expires up to `budget` of this worker's idle or stale connections from where its scan
/// stopped, and reuses entries whose grace period has passed.
void conntrack_maintenance(Worker& w,
                           const table::TableSet* t,
                           uint64_t now,
                           uint32_t budget = kConntrackScanBudget);

/// The loop's conntrack housekeeping, once per iteration (after the bursts): the entries due
/// since the last call at the sweep pace, scanned in batches. The in-process benchmarks call it
/// as the loop does.
void conntrack_tick(Worker& w, const table::TableSet* t, uint64_t now);

/// Transmits everything buffered; what a port does not take is dropped as kTxFull.
void flush_tx(Worker& w);

}  // namespace kdp::dataplane
