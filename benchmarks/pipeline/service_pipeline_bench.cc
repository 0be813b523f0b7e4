// The Service path of the real worker pipeline, in process: cycles per packet for packets of
// established connections (conntrack hit -> DNAT -> VXLAN encap to the backend's node) and for
// new connections (conntrack miss -> frontend lookup -> Maglev -> conntrack insert -> DNAT ->
// encap), as the number of Services and of tracked connections grows.
//
// The node is test/pkt's NodeHarness: production ports code on net_ring devices, production
// TableManager and process_burst; this thread plays the worker. Each measured round puts 32
// frames on each client pod's ring (mbuf alloc + copy, like a NIC's RX), runs one worker
// iteration and frees what the uplink sent; the figure is TSC cycles per packet for the whole
// round, so it includes that RX/TX emulation (CPU time of this thread, in TSC cycles). The
// "forward" case (pod to a remote pod, no Service) is the same round without the Service work: the
// difference is what Services cost.
//
//   build/benchmarks/service_pipeline_bench [--benchmark_filter=...]

#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <rte_cycles.h>

#include "common/cpu_cycles.h"
#include "common/pkt_builder.h"
#include "pipeline/rounds.h"
#include "pkt/node_harness.h"

namespace kdp::test {
namespace {

using kdp::bench::cpu_cycles;

constexpr int kClientPods = 16;  // clients a0..a15 on this node, 10.244.1.10..25
constexpr int kBackends = 10;    // per Service, pods on node2
constexpr uint16_t kSportBase = 1024;
constexpr uint32_t kSports = 64000;

Ip4 client_ip(int i) {
    return Ip4::from_host(0x0af40100u + 10 + static_cast<uint32_t>(i));  // 10.244.1.10+i
}
Ip4 vip(uint32_t s) {
    return Ip4::from_host(0x0a600000u + 10 + s);  // 10.96.0.10+s
}

NodeParams params(uint32_t conntrack) {
    NodeParams p;
    p.source_share = 100;  // one generator, many unreplied flows: no per-source share
    p.pod_ports.clear();
    for (int i = 0; i < kClientPods; ++i) {
        p.pod_ports.push_back(fmt::format("default/a{}", i));
    }
    p.conntrack = conntrack;
    return p;
}

table::TableSpec spec(uint32_t services) {
    table::TableSpec s;
    s.generation = 1;
    s.policy.present = true;  // managed, no NetworkPolicy: nothing isolated
    s.routes.push_back(
        {"node2", ip("198.51.100.2"), *Prefix4::parse("10.244.2.0/24"), mac("02:00:00:00:02:02")});
    for (int i = 0; i < kClientPods; ++i) {
        const std::string name = fmt::format("default/a{}", i);
        s.pods.push_back({name, client_ip(i), name});
    }
    for (uint32_t k = 0; k < services; ++k) {
        table::ServiceSpec sv;
        sv.name = fmt::format("default/s{}:http", k);
        sv.frontends.push_back({table::FrontendKind::kClusterIp, vip(k), 80});
        for (int b = 0; b < kBackends; ++b) {
            // Backends on node2, spread over its /24 so that Services share few addresses.
            const uint32_t host =
                0x0af40200u + 2 + (k * kBackends + static_cast<uint32_t>(b)) % 250;
            sv.backends.push_back(
                {Ip4::from_host(host), static_cast<uint16_t>(8080 + k % 1000), "", "node2"});
        }
        s.services.push_back(std::move(sv));
    }
    return s;
}

// One node set up with `services` Services and the frames of `flows` distinct connections
// spread over the client pods and the Services.
struct Bench {
    NodeHarness h;
    std::vector<std::vector<Bytes>> frames;  // per client pod
    explicit Bench(uint32_t services, uint64_t flows, uint32_t conntrack, bool to_services = true)
        : h(params(conntrack)) {
        if (h.manager().apply_tables(spec(services)) != std::nullopt) {
            std::abort();
        }
        // node2's VTEP resolved, as it is after the first packet in a running node.
        h.inject("uplink", ether(h.params().node_mac, mac("02:00:00:00:02:02"), 0x0806,
                                 arp(2, mac("02:00:00:00:02:02"), ip("198.51.100.2"),
                                     h.params().node_mac, h.params().node_ip)));
        frames.resize(kClientPods);
        for (uint64_t f = 0; f < flows; ++f) {
            const int pod = static_cast<int>(f % kClientPods);
            const uint64_t per_pod = f / kClientPods;
            const auto sport = static_cast<uint16_t>(kSportBase + per_pod % kSports);
            const auto svc = static_cast<uint32_t>((per_pod / kSports + f) % services);
            const Ip4 dst = to_services ? vip(svc) : Ip4::from_host(0x0af40200u + 2 + f % 250);
            frames[pod].push_back(ether(h.params().gateway_mac, mac("02:00:00:00:0a:01"), 0x0800,
                                        ipv4(client_ip(pod), dst, {6, sport, 80, 0x10}, 0)));
        }
    }

    // One round: 32 frames per client pod from position `at`, one iteration, uplink drained.
    size_t round(uint64_t at, uint64_t now) {
        size_t in = 0;
        for (int p = 0; p < kClientPods; ++p) {
            const auto& fs = frames[p];
            if (fs.empty()) {
                continue;
            }
            const uint16_t port = h.port(fmt::format("default/a{}", p));
            for (int k = 0; k < 32; ++k) {
                in += h.enqueue(port, fs[(at + static_cast<uint64_t>(k)) % fs.size()], 1);
            }
        }
        h.run(now);
        // The first rounds may also carry an ARP refresh for node2's VTEP.
        return h.drain("uplink") >= in ? in : 0;
    }
};

// Established: every connection is tracked first (its SYN went through), then rounds replay
// packets of those connections.
void BM_ServiceEstablished(benchmark::State& state) {
    const auto services = static_cast<uint32_t>(state.range(0));
    const auto flows = static_cast<uint64_t>(state.range(1));
    Bench b(services, flows, static_cast<uint32_t>(flows + flows / 4 + 4096));
    const uint64_t per_pod = (flows + kClientPods - 1) / kClientPods;
    for (uint64_t at = 0; at < per_pod; at += 32) {
        b.round(at, 1);
    }
    if (b.h.conntrack().size() < flows * 99 / 100) {
        state.SkipWithError("the connections did not all get tracked");
        return;
    }
    uint64_t cycles = 0, packets = 0, at = 0;
    const Phases before = phases(b.h.worker());
    for (auto _ : state) {
        const uint64_t t0 = cpu_cycles();
        const size_t n = b.round(at, 2);
        cycles += cpu_cycles() - t0;
        if (n == 0) {
            state.SkipWithError("packets were lost");
            return;
        }
        packets += n;
        at += 32;
    }
    report(state, cycles, packets, before, phases(b.h.worker()));
}

// New connections: every packet is the first of its connection. The table is emptied (off
// the clock) whenever the next rounds would run out of distinct flows.
void BM_ServiceNewConnections(benchmark::State& state) {
    const auto services = static_cast<uint32_t>(state.range(0));
    constexpr uint64_t kFlows = 1u << 18;
    Bench b(services, kFlows, kFlows + kFlows / 4);
    uint64_t cycles = 0, packets = 0, at = 0, now = 1;
    const uint64_t per_pod = kFlows / kClientPods;
    const Phases before = phases(b.h.worker());
    for (auto _ : state) {
        if (at + 32 > per_pod) {
            state.PauseTiming();
            expire_all(b.h, now);
            at = 0;
            state.ResumeTiming();
        }
        const uint64_t t0 = cpu_cycles();
        const size_t n = b.round(at, now);
        cycles += cpu_cycles() - t0;
        if (n == 0) {
            const std::string why = "packets were lost: " + b.h.drop_summary("default/a0");
            state.SkipWithError(why.c_str());
            return;
        }
        packets += n;
        at += 32;
    }
    report(state, cycles, packets, before, phases(b.h.worker()));
}

// The same rounds to remote pods without a Service: parse, route, encap.
void BM_PodForward(benchmark::State& state) {
    Bench b(1, 4096, 4096, /*to_services=*/false);
    uint64_t cycles = 0, packets = 0, at = 0;
    const Phases before = phases(b.h.worker());
    for (auto _ : state) {
        const uint64_t t0 = cpu_cycles();
        const size_t n = b.round(at, 1);
        cycles += cpu_cycles() - t0;
        packets += n;
        at += 32;
    }
    report(state, cycles, packets, before, phases(b.h.worker()));
}

}  // namespace
}  // namespace kdp::test

using kdp::test::BM_PodForward;
using kdp::test::BM_ServiceEstablished;
using kdp::test::BM_ServiceNewConnections;

BENCHMARK(BM_PodForward)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ServiceEstablished)
    ->ArgNames({"services", "connections"})
    ->Args({1, 1000})
    ->Args({100, 1000})
    ->Args({10000, 1000})
    ->Args({10000, 100000})
    ->Args({10000, 1000000})
    ->Args({1, 1000000})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ServiceNewConnections)
    ->ArgNames({"services"})
    ->Arg(1)
    ->Arg(100)
    ->Arg(10000)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
