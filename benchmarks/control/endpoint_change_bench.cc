// Endpoint-change latency at 1,000 and 10,000 Services with 10 endpoints each, from the
// UpdateTables call to the moment every worker sees the change, with a real worker loop
// running on its own lcore (test/pkt's NodeHarness: net_ring ports, production TableManager,
// worker_main on lcore 1, busy-polling).
//
//   EndpointChangeGrpc   client -> UpdateTables over the real gRPC unix socket -> parse ->
//                        TableManager delta (validate, build one Service block, swap it in)
//                        -> RCU grace period -> reply. The reply leaves only after the grace
//                        period, so when the client has it every worker has seen the change.
//   EndpointChangeDirect the same without gRPC: apply_update (build + swap + grace period).
//   FullResyncGrpc       SyncTables of the whole state over the same socket: the full build
//                        (validate everything, new TableSet, unchanged blocks reused by spec).
//
// Each change turns one endpoint of Service 0 not ready, then ready again. Counters: p50/p99
// of the per-call latency in microseconds; memory per Service port (the worker-side tables:
// its block with both Maglev tables, backends and backend map, its Service slot and frontend
// slot; and the spec kept for the API) and per tracked connection (entry, bucket share and
// free/deferred lists).
//
//   build/benchmarks/endpoint_change_bench [--benchmark_filter=Grpc]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include "api/grpc_server.h"
#include "kdp/v1/dataplane.grpc.pb.h"
#include "pkt/node_harness.h"
#include "spec/convert.h"

namespace kdp::test {
namespace {

constexpr int kEndpoints = 10;

table::TableSpec cluster(uint32_t services) {
    table::TableSpec s;
    s.generation = 1;
    s.policy.present = true;  // managed, no NetworkPolicy: nothing isolated
    s.routes.push_back(
        {"node2", ip("198.51.100.2"), *Prefix4::parse("10.244.2.0/24"), mac("02:00:00:00:02:02")});
    s.pods = {{"default/a", ip("10.244.1.10"), "default/a"},
              {"default/b", ip("10.244.1.11"), "default/b"}};
    for (uint32_t k = 0; k < services; ++k) {
        table::ServiceSpec sv;
        sv.name = fmt::format("default/s{}:http", k);
        sv.frontends.push_back(
            {table::FrontendKind::kClusterIp, Ip4::from_host(0x0a600000u + 10 + k), 80});
        for (int e = 0; e < kEndpoints; ++e) {
            table::BackendSpec b;
            b.ip =
                Ip4::from_host(0x0af40200u + 2 +
                               (k * kEndpoints + static_cast<uint32_t>(e)) % 250);  // pods on node2
            b.port = static_cast<uint16_t>(8080 + k % 1000);
            b.pod = fmt::format("default/s{}-{}", k, e);
            b.node = "node2";
            sv.backends.push_back(std::move(b));
        }
        s.services.push_back(std::move(sv));
    }
    return s;
}

// A node with `services` Services, its worker running, its gRPC server listening.
struct Node {
    NodeHarness h;
    table::TableSpec spec;
    std::string socket;
    std::unique_ptr<api::GrpcServer> server;
    std::unique_ptr<v1::Dataplane::Stub> stub;
    uint64_t generation = 1;

    static NodeParams params() {
        NodeParams p;
        p.source_share = 100;  // one generator, many unreplied flows: no per-source share
        p.real_worker = true;
        p.conntrack = 1 << 20;
        return p;
    }
    explicit Node(uint32_t services) : h(params()), spec(cluster(services)) {
        if (h.manager().apply_tables(spec) != std::nullopt) {
            std::abort();
        }
        h.launch();
        socket = fmt::format("/tmp/kdp-bench-ec-{}-{}.sock", static_cast<int>(getpid()), services);
        server = std::make_unique<api::GrpcServer>(h.manager(), socket);
        server->start();
        grpc::ChannelArguments args;
        args.SetMaxSendMessageSize(api::kMaxMessageBytes);
        stub = v1::Dataplane::NewStub(
            grpc::CreateCustomChannel("unix:" + socket, grpc::InsecureChannelCredentials(), args));
    }
    ~Node() {
        server->shutdown();
        h.stop();
    }
    // Service 0 with its first endpoint ready or not.
    table::ServiceSpec service0(bool ready) const {
        table::ServiceSpec sv = spec.services[0];
        sv.backends[0].ready = ready;
        return sv;
    }
};

double percentile(std::vector<double> v, double p) {
    if (v.empty()) {
        return 0;
    }
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

void report(benchmark::State& state, const std::vector<double>& us) {
    state.counters["p50_us"] = percentile(us, 0.50);
    state.counters["p99_us"] = percentile(us, 0.99);
    state.counters["max_us"] = percentile(us, 1.0);
}

// Memory of the tables a worker reads, per Service port, and of the spec kept for the API.
void report_memory(benchmark::State& state, const Node& n) {
    const table::TableSet& t = *n.h.node().tables->current.load();
    size_t blocks = 0;
    size_t spec = 0;
    for (uint32_t i = 0; i < t.service_count; ++i) {
        const table::ServiceBlock& b = t.services[i].current();
        blocks += b.table_bytes() - sizeof(table::ServiceSpec);
        spec += sizeof(table::ServiceSpec) + b.spec.name.capacity() +
                b.spec.frontends.capacity() * sizeof(table::FrontendSpec) +
                b.spec.backends.capacity() * sizeof(table::BackendSpec);
        for (const table::BackendSpec& be : b.spec.backends) {
            spec += be.pod.capacity() > 15 ? be.pod.capacity() + 1 : 0;  // beyond SSO
            spec += be.node.capacity() > 15 ? be.node.capacity() + 1 : 0;
        }
    }
    const double services = t.service_count;
    state.counters["block_B_per_svc"] = static_cast<double>(blocks) / services;
    state.counters["worker_B_per_svc"] =
        (static_cast<double>(blocks) + services * sizeof(table::Service) +
         static_cast<double>(t.frontends.memory_bytes())) /
        services;
    state.counters["spec_B_per_svc"] = static_cast<double>(spec) / services;
    const table::Conntrack& ct = *n.h.node().conntrack;
    state.counters["ct_B_per_conn"] =
        static_cast<double>(ct.memory_bytes()) / static_cast<double>(ct.capacity());
}

void EndpointChangeGrpc(benchmark::State& state) {
    ensure_eal("0@(0-1),1@(0-1)");
    Node n(static_cast<uint32_t>(state.range(0)));
    v1::UpdateTablesRequest req[2];
    for (int k = 0; k < 2; ++k) {
        api::service_to_proto(n.service0(k == 1), req[k].add_upsert_services());
    }
    const uint64_t delta_before = n.h.manager().path_counts().delta;
    std::vector<double> us;
    bool ready = true;
    for (auto _ : state) {
        ready = !ready;
        v1::UpdateTablesRequest& r = req[ready ? 1 : 0];
        r.set_base_generation(n.generation);
        r.set_generation(++n.generation);
        grpc::ClientContext ctx;
        v1::UpdateTablesResponse resp;
        const auto t0 = std::chrono::steady_clock::now();
        const grpc::Status st = n.stub->UpdateTables(&ctx, r, &resp);
        const auto t1 = std::chrono::steady_clock::now();
        if (!st.ok()) {
            state.SkipWithError(st.error_message().c_str());
            return;
        }
        us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
    if (n.h.manager().path_counts().delta - delta_before != us.size()) {
        state.SkipWithError("an update did not take the delta path");
        return;
    }
    report(state, us);
    report_memory(state, n);
    state.counters["services"] = static_cast<double>(state.range(0));
}

void EndpointChangeDirect(benchmark::State& state) {
    ensure_eal("0@(0-1),1@(0-1)");
    Node n(static_cast<uint32_t>(state.range(0)));
    std::vector<double> us;
    bool ready = true;
    for (auto _ : state) {
        ready = !ready;
        table::TableUpdate u;
        u.generation = ++n.generation;
        u.upsert_services.push_back(n.service0(ready));
        const auto t0 = std::chrono::steady_clock::now();
        const auto err = n.h.manager().apply_update(u);
        const auto t1 = std::chrono::steady_clock::now();
        if (err) {
            state.SkipWithError(err->c_str());
            return;
        }
        us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
    report(state, us);
}

void FullResyncGrpc(benchmark::State& state) {
    ensure_eal("0@(0-1),1@(0-1)");
    Node n(static_cast<uint32_t>(state.range(0)));
    v1::SyncTablesRequest req[2];
    for (int k = 0; k < 2; ++k) {
        table::TableSpec s = n.spec;
        s.services[0] = n.service0(k == 1);
        api::spec_to_proto(s, &req[k]);
    }
    std::vector<double> us;
    bool ready = true;
    for (auto _ : state) {
        ready = !ready;
        v1::SyncTablesRequest& r = req[ready ? 1 : 0];
        r.set_generation(++n.generation);
        grpc::ClientContext ctx;
        v1::SyncTablesResponse resp;
        const auto t0 = std::chrono::steady_clock::now();
        const grpc::Status st = n.stub->SyncTables(&ctx, r, &resp);
        const auto t1 = std::chrono::steady_clock::now();
        if (!st.ok()) {
            state.SkipWithError(st.error_message().c_str());
            return;
        }
        us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
    report(state, us);
}

BENCHMARK(EndpointChangeGrpc)->Arg(1000)->Arg(10000)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(EndpointChangeDirect)
    ->Arg(1000)
    ->Arg(10000)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(FullResyncGrpc)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace kdp::test

BENCHMARK_MAIN();
