// Shared by the in-process pipeline benchmarks (service_pipeline_bench, policy_bench): how a
// round's figures are reported, and how the conntrack table is emptied off the clock.
#pragma once

#include <benchmark/benchmark.h>
#include <rte_cycles.h>

#include "pkt/node_harness.h"

namespace kdp::test {

/// cycles/pkt and the rate one core would reach at that cost.
inline void report(benchmark::State& state, uint64_t cycles, uint64_t packets) {
    state.counters["cycles/pkt"] = packets ? static_cast<double>(cycles) / packets : 0;
    state.counters["Mpps@core"] =
        cycles ? static_cast<double>(packets) * rte_get_tsc_hz() / cycles / 1e6 : 0;
    state.SetItemsProcessed(static_cast<int64_t>(packets));
}

/// Moves `now` past every conntrack timeout and expires every entry, so that the next packets
/// open connections again.
inline void expire_all(NodeHarness& h, uint64_t& now) {
    now += 100'000'000'000ull;  // 1e5 s later
    for (int i = 0; i < 1'000'000 && h.conntrack().size() != 0; ++i) {
        dataplane::conntrack_maintenance(h.worker(), nullptr, now);
    }
}

}  // namespace kdp::test
