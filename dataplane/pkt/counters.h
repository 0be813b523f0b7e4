// Per-worker counters. Each worker writes only its own (single writer, relaxed load+store,
// which compiles to a plain add on x86); stats readers on the control thread sum them with
// relaxed loads. Cache-line aligned per port so that workers never share a line.
#pragma once

#include <atomic>
#include <cstdint>

#include <rte_build_config.h>

#include "pkt/drop_reason.h"
#include "pkt/phase.h"

namespace kdp::dataplane {

using Counter = std::atomic<uint64_t>;

inline void bump(Counter& c, uint64_t n = 1) noexcept {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

struct alignas(64) PortCounters {
    Counter rx_packets{0};
    Counter rx_bytes{0};
    Counter tx_packets{0};
    Counter tx_bytes{0};
    Counter drops[kDropReasonCount] = {};
};

struct WorkerCounters {
    PortCounters port[RTE_MAX_ETHPORTS];
    alignas(64) Counter busy_cycles{0};  // TSC cycles of iterations that received packets
    Counter total_cycles{0};
    Counter loops{0};
    Counter phase_cycles[kPhaseCount] = {};  // TSC cycles by Phase, busy iterations only
};

}  // namespace kdp::dataplane
