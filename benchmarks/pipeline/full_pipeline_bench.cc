// The full pipeline of issue 8's first target, in process: a pod of another node reaches a
// ClusterIP through the overlay, and this node's worker decapsulates, looks the connection up,
// DNATs to a local backend, applies the backend's ingress NetworkPolicy and delivers to its
// port. Cycles per packet as Services, connections and policies grow, and new connections per
// second (every packet a SYN: Maglev pick, policy judgement, conntrack insert).
//
// The node is test/pkt's NodeHarness: production ports code on net_ring devices, production
// TableManager and process_burst, this thread playing the worker. A round puts 32 VXLAN frames
// on the uplink ring per burst slot (mbuf alloc + copy, like a NIC's RX), runs one worker
// iteration, then the loop's conntrack housekeeping exactly as worker_main calls it
// (conntrack_tick, on the real TSC: the expiry scan is part of the cost), and frees what the
// pod ports sent. Figures are TSC cycles of this thread's CPU time per packet, RX/TX emulation
// included.
//
//   build/benchmarks/full_pipeline_bench [--benchmark_filter=...]
#include <memory>
#include <tuple>

#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <rte_cycles.h>
#include <rte_ip.h>
#include <rte_tcp.h>

#include "common/cpu_cycles.h"
#include "common/pkt_builder.h"
#include "compile/policy.h"
#include "pipeline/rounds.h"
#include "pkt/node_harness.h"

namespace kdp::test {
namespace {

using kdp::bench::cpu_cycles;
using nlohmann::json;

constexpr int kBackendPods = 16;  // on this node (node1): 10.244.1.10..25, namespace default
constexpr int kBackends = 10;     // per Service
constexpr int kBursts = 8;        // bursts of 32 per round
constexpr uint16_t kSportBase = 1024;
constexpr uint32_t kSports = 64000;
constexpr uint32_t kClients = 250;  // pods of node2: 10.244.2.2..251
// The inner TCP header in a frame: outer Ethernet, IPv4, UDP, VXLAN, inner Ethernet, IPv4.
constexpr size_t kInnerTcp = 14 + 20 + 8 + 8 + 14 + 20;

Ip4 backend_ip(int i) {
    return Ip4::from_host(0x0af40100u + 10 + static_cast<uint32_t>(i));
}
Ip4 client_ip(uint32_t i) {
    return Ip4::from_host(0x0af40200u + 2 + i % kClients);
}
Ip4 vip(uint32_t s) {
    return Ip4::from_host(0x0a600000u + 10 + s);  // 10.96.0.10+s
}
const Ip4 kNode2 = ip("198.51.100.2");
const Mac kNode2Mac = mac("02:00:00:00:02:02");

NodeParams params(uint32_t conntrack, bool syn) {
    ensure_eal();  // for the TSC frequency
    NodeParams p;
    p.source_share = 100;  // one generator, many unreplied flows: no per-source share
    p.pod_ports.clear();
    for (int i = 0; i < kBackendPods; ++i) {
        p.pod_ports.push_back(fmt::format("default/b{}", i));
    }
    p.conntrack = conntrack;
    p.tsc_hz = rte_get_tsc_hz();  // conntrack seconds are real: the loop's expiry pacing is
    if (syn) {
        // A SYN flood's half-open entries go after 1 s (run.sh: 2). The established case keeps
        // the default: its connections see no replies, so they stay half-open too.
        p.timeouts.tcp_syn = 1;
    }
    return p;
}

// node1 (the backends, app=backend), node2 (the clients, namespace clients), and `policies`
// NetworkPolicies in default selecting every backend for ingress; policy 0 allows the clients'
// namespace on 8080/TCP, the others other namespaces and ports.
control::Model cluster(int policies) {
    control::Model m;
    for (int n = 1; n <= 2; ++n) {
        m.upsert(node_object(n));
    }
    for (const char* ns : {"default", "clients"}) {
        m.upsert(json{{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", ns}}}});
    }
    const auto pod = [&](const std::string& ns, const std::string& name, const std::string& app,
                         int node, Ip4 addr) { m.upsert(pod_object(ns, name, app, node, addr)); };
    for (int i = 0; i < kBackendPods; ++i) {
        pod("default", fmt::format("b{}", i), "backend", 1, backend_ip(i));
    }
    for (uint32_t i = 0; i < kClients; ++i) {
        pod("clients", fmt::format("c{}", i), "client", 2, client_ip(i));
    }
    for (int p = 0; p < policies; ++p) {
        const std::string from_ns = p == 0 ? "clients" : fmt::format("other{}", p);
        m.upsert(json{
            {"apiVersion", "networking.k8s.io/v1"},
            {"kind", "NetworkPolicy"},
            {"metadata", {{"name", fmt::format("ingress-{}", p)}, {"namespace", "default"}}},
            {"spec",
             {{"podSelector", {{"matchLabels", {{"app", "backend"}}}}},
              {"ingress",
               json::array(
                   {{{"from", json::array({{{"namespaceSelector",
                                             {{"matchLabels",
                                               {{"kubernetes.io/metadata.name", from_ns}}}}}}})},
                     {"ports", json::array({{{"port", p == 0 ? 8080 : 9000 + p}}})}}})}}}});
    }
    return m;
}

table::TableSpec spec(uint32_t services, int policies) {
    table::TableSpec s;
    s.generation = 1;
    s.routes.push_back({"node2", kNode2, *Prefix4::parse("10.244.2.0/24"), kNode2Mac});
    for (int i = 0; i < kBackendPods; ++i) {
        const std::string name = fmt::format("default/b{}", i);
        s.pods.push_back({name, backend_ip(i), name});
    }
    for (uint32_t k = 0; k < services; ++k) {
        table::ServiceSpec sv;
        sv.name = fmt::format("default/s{}:http", k);
        sv.frontends.push_back({table::FrontendKind::kClusterIp, vip(k), 80});
        for (int b = 0; b < kBackends; ++b) {
            const int pod = static_cast<int>((k + static_cast<uint32_t>(b)) % kBackendPods);
            sv.backends.push_back(
                {backend_ip(pod), 8080, fmt::format("default/b{}", pod), "node1"});
        }
        s.services.push_back(std::move(sv));
    }
    if (policies > 0) {
        s.policy = control::compile_policy(cluster(policies), "node1");
    } else {
        s.policy.present = true;  // managed, no NetworkPolicy: nothing isolated
    }
    return s;
}

struct Bench {
    NodeHarness h;
    std::vector<Bytes> frames;
    uint64_t flows;
    uint32_t services;
    bool syn;
    std::vector<uint16_t> backend_ports;  // the pod ports' ids, looked up once
    uint16_t uplink = 0;

    Bench(uint32_t services_, int policies, uint64_t flows_, uint32_t conntrack, bool syn_)
        : h(params(conntrack, syn_)), flows(flows_), services(services_), syn(syn_) {
        if (auto e = h.manager().apply_tables(spec(services, policies))) {
            std::fprintf(stderr, "apply: %s\n", e->c_str());
            std::abort();
        }
        for (int i = 0; i < kBackendPods; ++i) {
            backend_ports.push_back(h.port(fmt::format("default/b{}", i)));
        }
        uplink = h.port("uplink");
        frames.reserve(flows);
        for (uint64_t f = 0; f < flows; ++f) {
            const auto client = static_cast<uint32_t>(f % kClients);
            const uint64_t per_client = f / kClients;
            const auto sport = static_cast<uint16_t>(kSportBase + per_client % kSports);
            const auto svc = static_cast<uint32_t>((per_client / kSports + f) % services);
            const Bytes inner =
                ether(mac("02:00:00:00:ee:01"), Mac::from_ip(client_ip(client)), 0x0800,
                      ipv4(client_ip(client), vip(svc),
                           {6, sport, 80, static_cast<uint8_t>(syn ? 0x02 : 0x10)}, 0));
            frames.push_back(
                ether(h.params().node_mac, kNode2Mac, 0x0800,
                      vxlan(kNode2, h.params().node_ip, static_cast<uint16_t>(49152 + f % 16384),
                            4789, 1, inner)));
        }
    }

    // One worker iteration over kBursts bursts of frames from `at`, then the housekeeping.
    size_t round(uint64_t at) {
        size_t in = 0;
        const uint64_t now = rte_rdtsc();
        for (int k = 0; k < kBursts * 32; ++k) {
            const uint64_t seq = at + static_cast<uint64_t>(k);
            Bytes& f = frames[seq % frames.size()];
            if (syn) {
                // Packet `seq` of the flood: client seq % 250, the next source port of that
                // client, a Service in turn. (client, port) pairs recur after 16M packets, so
                // no two live connections share a reply tuple at any Service count.
                const uint64_t per_client = seq / kClients;
                const Ip4 src = client_ip(static_cast<uint32_t>(seq % kClients));
                const Ip4 dst = vip(static_cast<uint32_t>((per_client / kSports + seq) % services));
                const auto sport =
                    to_be16(static_cast<uint16_t>(kSportBase + per_client % kSports));
                auto* iph = reinterpret_cast<rte_ipv4_hdr*>(f.data() + kInnerTcp - 20);
                auto* tcp = reinterpret_cast<rte_tcp_hdr*>(f.data() + kInnerTcp);
                iph->src_addr = src.be;
                iph->dst_addr = dst.be;
                iph->hdr_checksum = 0;
                iph->hdr_checksum = rte_ipv4_cksum(iph);
                tcp->src_port = sport;
                tcp->cksum = 0;
                tcp->cksum = rte_ipv4_udptcp_cksum(iph, tcp);
            }
            in += h.enqueue(uplink, f, 1);
        }
        // The harness polls each port once per iteration: one burst of 32 per run.
        for (int k = 0; k < kBursts; ++k) {
            h.run(now);
        }
        dataplane::Worker& w = h.worker();
        dataplane::bump(w.counters.loops);
        dataplane::conntrack_tick(w, h.node().tables->current.load(std::memory_order_acquire), now);
        size_t out = 0;
        for (const uint16_t port : backend_ports) {
            out += h.drain(port);
        }
        return out >= in ? in : 0;
    }
};

// Google Benchmark runs a case several times while it sizes the iteration count; the frames
// of millions of flows take seconds to build, so the last case's node is kept for its reruns.
Bench& cached(uint32_t services, int policies, uint64_t flows, uint32_t conntrack, bool syn) {
    static std::unique_ptr<Bench> b;
    static std::tuple<uint32_t, int, uint64_t, uint32_t, bool> key;
    const auto want = std::make_tuple(services, policies, flows, conntrack, syn);
    if (b == nullptr || key != want) {
        b.reset();
        b = std::make_unique<Bench>(services, policies, flows, conntrack, syn);
        key = want;
    }
    return *b;
}

// The measured rounds, until Google Benchmark has enough; any packet lost ends the case.
void measure(benchmark::State& state, Bench& b) {
    uint64_t cycles = 0, packets = 0, at = 0;
    const Phases before = phases(b.h.worker());
    for (auto _ : state) {
        const uint64_t t0 = cpu_cycles();
        const size_t n = b.round(at);
        cycles += cpu_cycles() - t0;
        if (n == 0) {
            const std::string why = "packets were lost: " + b.h.drop_summary("uplink");
            state.SkipWithError(why.c_str());
            return;
        }
        packets += n;
        at += kBursts * 32;
    }
    report(state, cycles, packets, before, phases(b.h.worker()));
}

// Packets of tracked connections: every flow's first packet went through, then rounds replay.
void BM_FullEstablished(benchmark::State& state) {
    const auto services = static_cast<uint32_t>(state.range(0));
    const auto flows = static_cast<uint64_t>(state.range(1));
    const auto policies = static_cast<int>(state.range(2));
    Bench& b =
        cached(services, policies, flows, static_cast<uint32_t>(flows + flows / 4 + 4096), false);
    for (uint64_t at = 0; at < flows; at += kBursts * 32) {
        b.round(at);
    }
    if (b.h.conntrack().size() < flows * 99 / 100) {
        const std::string why = "not all tracked: " + b.h.drop_summary("uplink");
        state.SkipWithError(why.c_str());
        return;
    }
    measure(state, b);
}

// New connections: every packet a SYN of a tuple not seen for longer than the half-open
// timeout (1 s), which the loop's own expiry must keep removing: nothing is emptied off the
// clock, so the figure holds only if expiry keeps up with the insert rate.
void BM_FullNewConnections(benchmark::State& state) {
    const auto services = static_cast<uint32_t>(state.range(0));
    const auto policies = static_cast<int>(state.range(1));
    // One frame, rewritten for each packet (round): a tuple recurs after 16M packets, long
    // after its half-open entry expired. The table holds about rate x (timeout + sweep), 3.4 M
    // entries at 1.7 M/s: 8 M leave room (4 M ran full once a round was that fast).
    Bench& b = cached(services, policies, 1, 1u << 23, true);
    measure(state, b);
    state.counters["conntrack"] = static_cast<double>(b.h.conntrack().size());
}

}  // namespace
}  // namespace kdp::test

using kdp::test::BM_FullEstablished;
using kdp::test::BM_FullNewConnections;
BENCHMARK(BM_FullEstablished)
    ->ArgNames({"services", "connections", "policies"})
    ->Args({1, 1000, 1})
    ->Args({1, 100000, 1})
    ->Args({1000, 100000, 1})
    ->Args({10000, 100000, 1})
    ->Args({1, 1000000, 1})
    ->Args({10000, 1000000, 1})
    ->Args({1, 100000, 100})
    ->Args({1, 100000, 1000})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FullNewConnections)
    ->ArgNames({"services", "policies"})
    ->Args({1, 1})
    ->Args({10000, 1})
    ->Args({1, 1000})
    ->MinTime(3)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
