// The hot tables alone, per operation, at the sizes the issues name: conntrack lookups (1,000
// to 1,000,000 connections, one at a time and a burst at a time with the bucket prefetch the
// worker does), Service frontend lookups (10,000 Services), pod CIDR routes (1,000 to 10,000
// nodes), Maglev table builds (what one endpoint change costs), and the per-new-connection
// operations: a conntrack insert (with the removal that keeps the table at its size), a
// Maglev pick over 10,000 Services, and a NetworkPolicy verdict at 1 to 1,000 policies' rules.
//
//   build/benchmarks/table_bench [--benchmark_filter=...]

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include <benchmark/benchmark.h>
#include <rte_cycles.h>

#include "api/policy_tables.h"
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

// A new connection's insert, at a steady table size: each iteration inserts one connection
// and removes the oldest, so the table stays at `n` connections (both counted as one op).
void BM_ConntrackInsertRemove(benchmark::State& state) {
    const auto n = static_cast<uint32_t>(state.range(0));
    Filled f(n);
    std::vector<uint32_t> live;  // a ring of the entries in insertion order
    live.reserve(n);
    for (uint32_t i = 0; i < n; ++i) {
        live.push_back(f.ct.lookup(key_of(i)).index);
    }
    uint32_t next = n, oldest = 0, failed = 0;
    uint64_t ops = 0;
    const uint64_t t0 = cpu_cycles();
    for (auto _ : state) {
        f.ct.remove(0, live[oldest], 0);
        f.ct.reclaim(0, [](uint64_t) { return true; });
        const CtKey k = key_of(next++);
        const uint32_t idx = f.ct.insert(0, k, k.reversed(), 1, [](CtEntry&) {});
        failed += idx == kCtNone;
        live[oldest] = idx;
        oldest = oldest + 1 == n ? 0 : oldest + 1;
        ++ops;
    }
    cycles_counter(state, cpu_cycles() - t0, ops);
    if (failed != 0) {
        state.SkipWithError("an insert failed at a steady table size");
    }
}

// The Maglev pick of a new connection: the Service's table at the flow hash, over 10,000
// Services of 10 endpoints each (each table 1,021 slots), Services and flows at random.
void BM_MaglevPick(benchmark::State& state) {
    const auto services = static_cast<uint32_t>(state.range(0));
    std::vector<uint64_t> keys(10);
    std::vector<std::vector<uint16_t>> tables;
    for (uint32_t sv = 0; sv < services; ++sv) {
        for (uint32_t k = 0; k < keys.size(); ++k) {
            keys[k] = frontend_key(Ip4::from_host(0x0af40000u + sv * 16 + k), to_be16(8080), 6);
        }
        tables.push_back(maglev_build(keys, {}, maglev_size(keys.size())));
    }
    std::mt19937_64 rng(4);
    // More probes than the cache holds tables' lines: each pick pays its miss, as in traffic.
    std::vector<std::pair<uint32_t, uint64_t>> probe(1u << 20);
    for (auto& [sv, h] : probe) {
        sv = static_cast<uint32_t>(rng() % services);
        h = mix64(rng());
    }
    uint64_t i = 0, ops = 0, empty = 0;
    const uint64_t t0 = cpu_cycles();
    for (auto _ : state) {
        const auto& [sv, h] = probe[i++ % probe.size()];
        const std::vector<uint16_t>& t = tables[sv];
        const uint16_t slot = t[h % t.size()];
        empty += slot == 0;
        benchmark::DoNotOptimize(slot);
        ++ops;
    }
    cycles_counter(state, cpu_cycles() - t0, ops);
    if (empty != 0) {
        state.SkipWithError("a Maglev slot was empty");
    }
}

// A connection's NetworkPolicy verdict (the first packet's cost) for 16 isolated pods over a
// cluster of 10,000 peer pods in 100 identities, with `policies` rules per pod (each allowing
// one identity a port) and a few ipBlock prefixes; half the probes allowed, half not.
void BM_PolicyVerdict(benchmark::State& state) {
    const auto policies = static_cast<uint32_t>(state.range(0));
    PolicySpec spec;
    spec.present = true;
    for (uint32_t p = 0; p < 10000; ++p) {
        spec.peers.push_back({Ip4::from_host(0x0af40000u + p), 1 + p % 100});
    }
    spec.cidrs.push_back({*Prefix4::parse("0.0.0.0/0"), 101});
    spec.cidrs.push_back({*Prefix4::parse("192.0.2.0/24"), 102});
    spec.cidrs.push_back({*Prefix4::parse("198.51.100.0/25"), 103});
    for (uint32_t r = 0; r < policies; ++r) {
        spec.rule_names.push_back("default/p" + std::to_string(r) + " ingress[0]");
    }
    for (uint32_t pod = 0; pod < 16; ++pod) {
        PodPolicySpec pp;
        pp.pod = "default/server" + std::to_string(pod);
        pp.ip = Ip4::from_host(0x0af40100u + pod);
        pp.ingress_isolated = true;
        for (uint32_t r = 0; r < policies; ++r) {
            const auto port = static_cast<uint16_t>(80 + r % 50);
            pp.rules.push_back({PolicyDir::kIngress, 1 + r % 100, 6, port, port, r});
        }
        spec.pods.push_back(pp);
    }
    if (auto e = kdp::api::check_policy(spec, *Prefix4::parse("10.244.1.0/24"))) {
        state.SkipWithError(e->c_str());
        return;
    }
    const auto tables = kdp::api::build_policy(spec, 1);
    std::mt19937 rng(5);
    struct Probe {
        Ip4 pod, peer;
        uint16_t port;
    };
    std::vector<Probe> probe(4096);
    for (size_t k = 0; k < probe.size(); ++k) {
        Probe& q = probe[k];
        q.pod = Ip4::from_host(0x0af40100u + rng() % 16);
        if (k % 2 == 0) {  // a peer and port that rule r allows
            const uint32_t r = rng() % policies;
            q.peer = Ip4::from_host(0x0af40000u + r % 100 + 100 * (rng() % 100));
            q.port = static_cast<uint16_t>(80 + r % 50);
        } else {  // a port no rule names
            q.peer = Ip4::from_host(0x0af40000u + rng() % 10000);
            q.port = static_cast<uint16_t>(200 + rng() % 100);
        }
    }
    uint64_t i = 0, ops = 0, allowed = 0;
    const uint64_t t0 = cpu_cycles();
    for (auto _ : state) {
        const Probe& q = probe[i++ % probe.size()];
        const PodPolicy* pod = tables->find_pod(q.pod);
        allowed += pod != nullptr && tables->match(*pod, PolicyDir::kIngress, q.peer, 6, q.port);
        ++ops;
    }
    cycles_counter(state, cpu_cycles() - t0, ops);
    state.counters["allowed"] = ops ? static_cast<double>(allowed) / ops : 0;
}

}  // namespace

BENCHMARK(BM_ConntrackLookup)->Arg(1000)->Arg(100000)->Arg(1000000);
BENCHMARK(BM_ConntrackLookupBurst)->Arg(1000)->Arg(100000)->Arg(1000000);
BENCHMARK(BM_FrontendLookup)->Arg(100)->Arg(10000);
BENCHMARK(BM_RouteLookup)->Arg(1000)->Arg(10000);
BENCHMARK(BM_ConntrackInsertRemove)->Arg(1000)->Arg(100000)->Arg(1000000);
BENCHMARK(BM_MaglevPick)->Arg(1)->Arg(10000);
BENCHMARK(BM_PolicyVerdict)->Arg(1)->Arg(100)->Arg(1000);
BENCHMARK(BM_MaglevBuild)->Arg(10)->Arg(100)->Arg(1000)->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
