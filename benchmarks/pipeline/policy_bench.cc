// NetworkPolicy cost in the real worker pipeline, in process, with 0, 1, 100 and 1,000
// policies over a 10,000-pod cluster compiled by kdp-control's compiler:
//
// - PolicyFirstPacket: every packet opens a connection, so every packet is judged (pod lookup,
//   peer identity, CIDR identity, rule-map probes) before its conntrack insert;
// - PolicyEstablished: packets of tracked connections, which read the verdict cached in their
//   conntrack entry;
// - PolicyChange: one policy changed and applied to the node (check, build, swap, grace
//   period): the latency of a policy change, and the memory of the node's policy tables.
//
// The node is test/pkt's NodeHarness (production ports code on net_ring devices, production
// TableManager and process_burst); this thread plays the worker. 16 client pods on node1 send
// TCP to 250 pods of node2 through the overlay; every client pod is isolated for egress by
// every policy (each names other peers and ports; one allows the traffic sent). Rounds are as
// in service_pipeline_bench: 32 frames per client pod, one iteration, uplink drained; the
// figure includes that RX/TX emulation. The 0-policy row is the baseline.
//
//   build/benchmarks/policy_bench [--benchmark_filter=...]
#include <malloc.h>

#include <chrono>

#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <rte_cycles.h>

#include "api/policy_tables.h"
#include "common/cpu_cycles.h"
#include "common/pkt_builder.h"
#include "compile/policy.h"
#include "pipeline/rounds.h"
#include "pkt/node_harness.h"

namespace kdp::test {
namespace {

using kdp::bench::cpu_cycles;
using nlohmann::json;

constexpr int kClientPods = 16;  // on node1: 10.244.1.10..25
constexpr int kClusterPods = 10000;
constexpr int kNodes = 41;  // node1 and 40 others of 250 pods
constexpr int kNamespaces = 20;
constexpr uint16_t kSportBase = 1024;

Ip4 client_ip(int i) {
    return Ip4::from_host(0x0af40100u + 10 + static_cast<uint32_t>(i));
}
Ip4 pod_ip(int node, int i) {  // node 2..41, i 0..249
    return Ip4::from_host(0x0af40000u + (static_cast<uint32_t>(node) << 8) + 2 +
                          static_cast<uint32_t>(i));
}

// The cluster: node1 with the 16 clients (namespace default, app=client), nodes 2..40 with
// the other pods in 20 namespaces and 100 apps; `policies` policies in default selecting the
// clients for egress. Policy 0 allows what the benchmark sends (to ns0/app0 on 80/TCP: every
// pod of node2); the others allow other namespaces, apps and ports.
control::Model cluster(int policies) {
    control::Model m;
    for (int n = 1; n <= kNodes; ++n) {
        m.upsert(node_object(n));
    }
    for (int ns = 0; ns < kNamespaces; ++ns) {
        m.upsert(json{{"apiVersion", "v1"},
                      {"kind", "Namespace"},
                      {"metadata", {{"name", fmt::format("ns{}", ns)}}}});
    }
    const auto pod = [&](const std::string& ns, const std::string& name, const std::string& app,
                         int node, Ip4 addr) { m.upsert(pod_object(ns, name, app, node, addr)); };
    for (int i = 0; i < kClientPods; ++i) {
        pod("default", fmt::format("a{}", i), "client", 1, client_ip(i));
    }
    int made = kClientPods;
    for (int n = 2; n <= kNodes + 1 && made < kClusterPods; ++n) {
        for (int i = 0; i < 250 && made < kClusterPods; ++i, ++made) {
            // node2's pods are the ones the clients talk to: all ns0/app0.
            const int ns = n == 2 ? 0 : made % kNamespaces;
            const int app = n == 2 ? 0 : made % 100;
            pod(fmt::format("ns{}", ns), fmt::format("p{}", made), fmt::format("app{}", app), n,
                pod_ip(n, i));
        }
    }
    for (int p = 0; p < policies; ++p) {
        m.upsert(
            json{{"apiVersion", "networking.k8s.io/v1"},
                 {"kind", "NetworkPolicy"},
                 {"metadata", {{"name", fmt::format("egress-{}", p)}, {"namespace", "default"}}},
                 {"spec",
                  {{"podSelector", {{"matchLabels", {{"app", "client"}}}}},
                   {"policyTypes", json::array({"Egress"})},
                   {"egress",
                    json::array(
                        {{{"to",
                           json::array(
                               {{{"namespaceSelector",
                                  {{"matchLabels",
                                    {{"kubernetes.io/metadata.name",
                                      fmt::format("ns{}", p % kNamespaces)}}}}},
                                 {"podSelector",
                                  {{"matchLabels", {{"app", fmt::format("app{}", p % 100)}}}}}},
                                {{"ipBlock", {{"cidr", fmt::format("203.0.{}.0/24", p % 256)}}}}})},
                          {"ports", json::array({{{"port", 80 + p % 7}},
                                                 {{"protocol", "UDP"},
                                                  {"port", 5000 + p},
                                                  {"endPort", 5000 + p + 10}}})}}})}}}});
    }
    return m;
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

struct Bench {
    NodeHarness h;
    std::vector<std::vector<Bytes>> frames;  // per client pod
    table::TableSpec spec;
    control::Model model;

    Bench(int policies, uint64_t flows, uint32_t conntrack)
        : h(params(conntrack)), model(cluster(policies)) {
        spec.generation = 1;
        for (int n = 2; n <= kNodes; ++n) {
            const Ip4 nip = Ip4::from_host(0xc6336400u + static_cast<uint32_t>(n));
            spec.routes.push_back({fmt::format("node{}", n), nip,
                                   *Prefix4::parse(fmt::format("10.244.{}.0/24", n)),
                                   Mac::from_ip(nip)});
        }
        for (int i = 0; i < kClientPods; ++i) {
            const std::string name = fmt::format("default/a{}", i);
            spec.pods.push_back({name, client_ip(i), name});
        }
        spec.policy = control::compile_policy(model, "node1");
        if (auto e = h.manager().apply_tables(spec)) {
            std::fprintf(stderr, "apply: %s\n", e->c_str());
            std::abort();
        }
        const Mac node2_mac = Mac::from_ip(ip("198.51.100.2"));
        h.inject("uplink", ether(h.params().node_mac, node2_mac, 0x0806,
                                 arp(2, node2_mac, ip("198.51.100.2"), h.params().node_mac,
                                     h.params().node_ip)));
        frames.resize(kClientPods);
        for (uint64_t f = 0; f < flows; ++f) {
            const int p = static_cast<int>(f % kClientPods);
            const uint64_t per_pod = f / kClientPods;
            const auto sport = static_cast<uint16_t>(kSportBase + per_pod % 64000);
            const Ip4 dst = pod_ip(2, static_cast<int>((per_pod / 64000 + f) % 250));
            frames[p].push_back(ether(h.params().gateway_mac, mac("02:00:00:00:0a:01"), 0x0800,
                                      ipv4(client_ip(p), dst, {6, sport, 80, 0x02}, 0)));
        }
    }

    size_t round(uint64_t at, uint64_t now) {
        size_t in = 0;
        for (int p = 0; p < kClientPods; ++p) {
            const auto& fs = frames[p];
            const uint16_t port = h.port(fmt::format("default/a{}", p));
            for (int k = 0; k < 32; ++k) {
                in += h.enqueue(port, fs[(at + static_cast<uint64_t>(k)) % fs.size()], 1);
            }
        }
        h.run(now);
        return h.drain("uplink") >= in ? in : 0;
    }
};

void BM_PolicyEstablished(benchmark::State& state) {
    const int policies = static_cast<int>(state.range(0));
    constexpr uint64_t kFlows = 16384;
    Bench b(policies, kFlows, kFlows * 2);
    for (uint64_t at = 0; at < kFlows / kClientPods; at += 32) {
        b.round(at, 1);
    }
    if (b.h.conntrack().size() < kFlows * 99 / 100) {
        const std::string why = "not all tracked: " + b.h.drop_summary("default/a0");
        state.SkipWithError(why.c_str());
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
    state.counters["isolated_pods"] = static_cast<double>(b.spec.policy.pods.size());
}

void BM_PolicyFirstPacket(benchmark::State& state) {
    const int policies = static_cast<int>(state.range(0));
    constexpr uint64_t kFlows = 1u << 17;
    Bench b(policies, kFlows, kFlows + kFlows / 4);
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

// One policy's port changes; the node's new policy is compiled, then applied as an update
// (check, build, swap in place, RCU grace period). Reported: compile and apply, in µs, and
// the heap the node's policy tables take (spec kept for the API included).
void BM_PolicyChange(benchmark::State& state) {
    const int policies = static_cast<int>(state.range(0));
    Bench b(policies, 64, 4096);
    uint64_t gen = 1;
    double compile_us = 0, apply_us = 0;
    uint64_t n = 0;
    for (auto _ : state) {
        const auto t0 = std::chrono::steady_clock::now();
        table::PolicySpec next = control::compile_policy(b.model, "node1");
        if (!next.pods.empty() && !next.pods[0].rules.empty()) {
            next.pods[0].rules[0].port_max = static_cast<uint16_t>(80 + (gen % 2));
        }
        const auto t1 = std::chrono::steady_clock::now();
        table::TableUpdate u;
        u.generation = ++gen;
        u.policy = std::move(next);
        if (auto e = b.h.manager().apply_update(u)) {
            state.SkipWithError(e->c_str());
            return;
        }
        const auto t2 = std::chrono::steady_clock::now();
        compile_us += std::chrono::duration<double, std::micro>(t1 - t0).count();
        apply_us += std::chrono::duration<double, std::micro>(t2 - t1).count();
        ++n;
    }
    state.counters["compile_us"] = compile_us / static_cast<double>(n);
    state.counters["apply_us"] = apply_us / static_cast<double>(n);
    // Memory: the heap one more build of the same tables takes.
    const size_t before = mallinfo2().uordblks;
    auto extra = api::build_policy(b.spec.policy, 0x7ffffff0u);
    const size_t after = mallinfo2().uordblks;
    state.counters["tables_KiB"] = static_cast<double>(after - before) / 1024.0;
    state.counters["B/policy"] = policies ? static_cast<double>(after - before) / policies : 0.0;
    state.counters["identities"] = static_cast<double>(b.spec.policy.identity_names.size());
    state.counters["rule_entries"] = static_cast<double>(extra->ranges.size());
}

}  // namespace
}  // namespace kdp::test

using kdp::test::BM_PolicyChange;
using kdp::test::BM_PolicyEstablished;
using kdp::test::BM_PolicyFirstPacket;

BENCHMARK(BM_PolicyEstablished)
    ->ArgNames({"policies"})
    ->Arg(0)
    ->Arg(1)
    ->Arg(100)
    ->Arg(1000)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_PolicyFirstPacket)
    ->ArgNames({"policies"})
    ->Arg(0)
    ->Arg(1)
    ->Arg(100)
    ->Arg(1000)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_PolicyChange)
    ->ArgNames({"policies"})
    ->Arg(1)
    ->Arg(100)
    ->Arg(1000)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5);
BENCHMARK_MAIN();
