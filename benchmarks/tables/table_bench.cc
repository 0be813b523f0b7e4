// The hot tables alone, per operation, at the sizes the issues name: conntrack lookups (1,000
// to 1,000,000 connections, one at a time and a burst at a time with the bucket prefetch the
// worker does), Service frontend lookups (10,000 Services), pod CIDR routes (1,000 to 10,000
// nodes), and Maglev table builds (what one endpoint change costs).
//
//   build/benchmarks/table_bench [--benchmark_filter=...]

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include <benchmark/benchmark.h>
#include <rte_cycles.h>

#include "common/cpu_cycles.h"
#include "table/conntrack.h"
#include "table/flat_map.h"
#include "table/maglev.h"
#include "table/prefix_table.h"
#include "table/tables.h"

namespace {

using kdp::bench::cpu_cycles;

using namespace kdp;
using namespace kdp::table;

CtKey key_of(uint32_t i) {
    // Clients 10.244.x.y:port to a few Service VIPs, as a node sees them.
    return CtKey{to_be32(0x0af40000u + (i >> 12)),
                 to_be32(0x0a600000u + (i % 97)),
                 to_be16(static_cast<uint16_t>(1024 + (i & 0xfff))),
                 to_be16(80),
                 6,
                 0,
                 0};
}

void cycles_counter(benchmark::State& state, uint64_t cycles, uint64_t ops) {
    state.counters["cycles/op"] = ops ? static_cast<double>(cycles) / ops : 0;
    state.SetItemsProcessed(static_cast<int64_t>(ops));
}

struct Filled {
    explicit Filled(uint32_t n) : ct(n + n / 4, 1) {
        for (uint32_t i = 0; i < n; ++i) {
            const CtKey k = key_of(i);
            ct.insert(0, k, k.reversed(), 1, [](CtEntry&) {});
        }
        order.resize(n);
        std::iota(order.begin(), order.end(), 0u);
        std::shuffle(order.begin(), order.end(), std::mt19937(1));
    }
    Conntrack ct;
    std::vector<uint32_t> order;
};

// One lookup after another, random connections: each one waits for its own cache misses.
void BM_ConntrackLookup(benchmark::State& state) {
    Filled f(static_cast<uint32_t>(state.range(0)));
    uint64_t i = 0, ops = 0, found = 0;
    const uint64_t t0 = cpu_cycles();
    for (auto _ : state) {
        const CtKey k = key_of(f.order[i++ % f.order.size()]);
        found += f.ct.lookup(k).index != kCtNone;
        ++ops;
    }
    cycles_counter(state, cpu_cycles() - t0, ops);
    if (found != ops) {
        state.SkipWithError("a tracked connection was not found");
    }
}

// 32 at a time, buckets prefetched first as the worker does for a burst.
void BM_ConntrackLookupBurst(benchmark::State& state) {
    Filled f(static_cast<uint32_t>(state.range(0)));
    uint64_t i = 0, ops = 0, found = 0;
    CtKey keys[32];
    uint64_t hashes[32];
    const uint64_t t0 = cpu_cycles();
    for (auto _ : state) {
        for (int k = 0; k < 32; ++k) {
            keys[k] = key_of(f.order[i++ % f.order.size()]);
            hashes[k] = keys[k].hash();
            f.ct.prefetch(hashes[k]);
        }
        for (int k = 0; k < 32; ++k) {
            found += f.ct.lookup(keys[k], hashes[k]).index != kCtNone;
        }
        ops += 32;
    }
    cycles_counter(state, cpu_cycles() - t0, ops);
    if (found != ops) {
        state.SkipWithError("a tracked connection was not found");
    }
    state.counters["bytes/conn"] = static_cast<double>(f.ct.memory_bytes()) / f.ct.capacity();
}

// Service frontends: (VIP, port, protocol) -> service, 10,000 Services with 3 frontends each.
void BM_FrontendLookup(benchmark::State& state) {
    const auto n = static_cast<uint32_t>(state.range(0));
    std::vector<std::pair<uint64_t, uint32_t>> items;
    for (uint32_t s = 0; s < n; ++s) {
        for (uint16_t p : {80, 443, 8080}) {
            items.emplace_back(frontend_key(Ip4::from_host(0x0a600000u + s), to_be16(p), 6), s);
        }
    }
    const FlatMap<uint32_t> map(items);
    std::vector<uint64_t> probe;
    for (const auto& [k, _] : items) {
        probe.push_back(k);
    }
    std::shuffle(probe.begin(), probe.end(), std::mt19937(2));
    uint64_t i = 0, ops = 0, found = 0;
    const uint64_t t0 = cpu_cycles();
    for (auto _ : state) {
        found += map.find(probe[i++ % probe.size()]) != nullptr;
        ++ops;
    }
    cycles_counter(state, cpu_cycles() - t0, ops);
    if (found != ops) {
        state.SkipWithError("a frontend was not found");
    }
}

// Remote pod CIDRs, one /24 per node.
void BM_RouteLookup(benchmark::State& state) {
    const auto n = static_cast<uint32_t>(state.range(0));
    std::vector<std::pair<Prefix4, uint32_t>> routes;
    for (uint32_t r = 0; r < n; ++r) {
        routes.push_back({Prefix4{Ip4::from_host(0x0a000000u + (r << 8)), 24}, r});
    }
    const PrefixTable<uint32_t> table(routes);
    std::mt19937 rng(3);
    std::vector<Ip4> probe;
    for (int k = 0; k < 4096; ++k) {
        probe.push_back(Ip4::from_host(0x0a000000u + ((rng() % n) << 8) + 7));
    }
    uint64_t i = 0, ops = 0, found = 0;
    const uint64_t t0 = cpu_cycles();
    for (auto _ : state) {
        found += table.lookup(probe[i++ % probe.size()]) != nullptr;
        ++ops;
    }
    cycles_counter(state, cpu_cycles() - t0, ops);
    if (found != ops) {
        state.SkipWithError("a route was not found");
    }
}

// One Service's Maglev table, as an endpoint change rebuilds it.
void BM_MaglevBuild(benchmark::State& state) {
    const auto n = static_cast<size_t>(state.range(0));
    std::vector<uint64_t> keys(n);
    for (size_t k = 0; k < n; ++k) {
        keys[k] =
            frontend_key(Ip4::from_host(0x0af40200u + static_cast<uint32_t>(k)), to_be16(80), 6);
    }
    const uint32_t size = maglev_size(n);
    for (auto _ : state) {
        benchmark::DoNotOptimize(maglev_build(keys, {}, size).data());
    }
    state.counters["entries"] = size;
    state.counters["bytes"] = size * 2.0;
}

}  // namespace

BENCHMARK(BM_ConntrackLookup)->Arg(1000)->Arg(100000)->Arg(1000000);
BENCHMARK(BM_ConntrackLookupBurst)->Arg(1000)->Arg(100000)->Arg(1000000);
BENCHMARK(BM_FrontendLookup)->Arg(100)->Arg(10000);
BENCHMARK(BM_RouteLookup)->Arg(1000)->Arg(10000);
BENCHMARK(BM_MaglevBuild)->Arg(10)->Arg(100)->Arg(1000)->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
