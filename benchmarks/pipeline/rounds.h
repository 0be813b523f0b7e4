// Shared by the in-process pipeline benchmarks (service_pipeline_bench, policy_bench): how a
// round's figures are reported, and how the conntrack table is emptied off the clock.
#pragma once

#include <string>

#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <rte_cycles.h>

#include "pkt/node_harness.h"

namespace kdp::test {

/// Node `node{n}` of a benchmark cluster: pod CIDR 10.244.n.0/24, InternalIP 198.51.100.n.
inline nlohmann::json node_object(int n) {
    using nlohmann::json;
    return json{{"apiVersion", "v1"},
                {"kind", "Node"},
                {"metadata", {{"name", fmt::format("node{}", n)}}},
                {"spec", {{"podCIDR", fmt::format("10.244.{}.0/24", n)}}},
                {"status",
                 {{"addresses", json::array({{{"type", "InternalIP"},
                                              {"address", fmt::format("198.51.100.{}", n)}}})}}}};
}

/// A running pod labelled app=`app` on `node{node}`.
inline nlohmann::json pod_object(
    const std::string& ns, const std::string& name, const std::string& app, int node, Ip4 addr) {
    using nlohmann::json;
    return json{{"apiVersion", "v1"},
                {"kind", "Pod"},
                {"metadata", {{"name", name}, {"namespace", ns}, {"labels", {{"app", app}}}}},
                {"spec", {{"nodeName", fmt::format("node{}", node)}}},
                {"status", {{"podIP", addr.str()}}}};
}

/// cycles/pkt and the rate one core would reach at that cost.
inline void report(benchmark::State& state, uint64_t cycles, uint64_t packets) {
    state.counters["cycles/pkt"] = packets ? static_cast<double>(cycles) / packets : 0;
    state.counters["Mpps@core"] =
        cycles ? static_cast<double>(packets) * rte_get_tsc_hz() / cycles / 1e6 : 0;
    state.SetItemsProcessed(static_cast<int64_t>(packets));
}

/// The worker's phase counters (pkt/phase.h), to report where a case's cycles went.
struct Phases {
    uint64_t cycles[dataplane::kPhaseCount] = {};
};
inline Phases phases(const dataplane::Worker& w) {
    Phases p;
    for (size_t i = 0; i < dataplane::kPhaseCount; ++i) {
        p.cycles[i] = w.counters.phase_cycles[i].load(std::memory_order_relaxed);
    }
    return p;
}

/// As report, plus the pipeline's phases per packet (parse, classify, stages, dispatch: the
/// worker's own code; the harness's ring rx/tx and frame building are in cycles/pkt only).
inline void report(benchmark::State& state,
                   uint64_t cycles,
                   uint64_t packets,
                   const Phases& before,
                   const Phases& after) {
    report(state, cycles, packets);
    using dataplane::Phase;
    for (const Phase ph : {Phase::kParse, Phase::kClassify, Phase::kStages, Phase::kDispatch}) {
        const auto i = static_cast<size_t>(ph);
        state.counters[std::string(dataplane::kPhaseNames[i])] =
            packets ? static_cast<double>(after.cycles[i] - before.cycles[i]) / packets : 0;
    }
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
