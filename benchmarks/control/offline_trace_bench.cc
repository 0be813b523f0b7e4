// kdpctl trace --manifests --probes at scale: probes per second through the in-process cluster
// (control::offline::Cluster, every node's real pipeline), for a 9-pod cluster (the Kubernetes
// e2e NetworkPolicy model: 3 namespaces x 3 pods on 2 nodes) and a 1,000-pod one (40 nodes x
// 25 pods, 10 namespaces, 100 NodePort Services of 10 endpoints each on several nodes, half the
// namespaces isolated by a NetworkPolicy). Probes mix
// pod -> pod, pod -> Service (ClusterIP, often on another node), and NodePorts from outside,
// over TCP and UDP; each one is followed to its destination and its reply back.
//
//   build/benchmarks/offline_trace_bench [--probes N]
//
// Prints, per cluster: the time to build it (compile + tables for every node), probes per
// second over N probes (default 20,000), microseconds per probe, and how the verdicts fell
// (so that a change making every probe drop early shows up as such, not as a speed-up).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "model/model.h"
#include "offline/cluster.h"

namespace {

using kdp::control::Model;
using kdp::control::offline::Cluster;
using kdp::control::offline::Probe;
using nlohmann::json;

struct Shape {
    const char* name;
    int nodes;
    int pods_per_node;
    int namespaces;
    int pods_per_service;  // 0: no Services
};

struct Built {
    Model model;
    std::vector<std::string> pods, services, node_names;
};

Built make_cluster(const Shape& s) {
    Built b;
    for (int n = 0; n < s.nodes; ++n) {
        const std::string name = fmt::format("node{}", n + 1);
        b.node_names.push_back(name);
        b.model.upsert(json{
            {"apiVersion", "v1"},
            {"kind", "Node"},
            {"metadata", {{"name", name}}},
            {"spec", {{"podCIDR", fmt::format("10.{}.{}.0/24", 64 + n / 256, n % 256)}}},
            {"status",
             {{"addresses", json::array({{{"type", "InternalIP"},
                                          {"address", fmt::format("198.51.100.{}", n + 1)}}})}}}});
    }
    for (int ns = 0; ns < s.namespaces; ++ns) {
        const std::string name = fmt::format("ns{}", ns);
        b.model.upsert(
            json{{"apiVersion", "v1"},
                 {"kind", "Namespace"},
                 {"metadata", {{"name", name}, {"labels", {{"team", std::to_string(ns % 2)}}}}}});
        // Team 0's namespaces are isolated: ingress from their own namespace on any port, from
        // the other team's "front" pods on 80/TCP only. Team 1's take anything.
        if (ns % 2 != 0) {
            continue;
        }
        b.model.upsert(json::parse(fmt::format(
            R"({{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {{"name": "own-and-front", "namespace": "{}"}},
                "spec": {{"podSelector": {{}},
                  "ingress": [{{"from": [{{"podSelector": {{}}}}]}},
                              {{"from": [{{"namespaceSelector": {{"matchLabels": {{"team": "{}"}}}},
                                         "podSelector": {{"matchLabels": {{"tier": "front"}}}}}}],
                               "ports": [{{"port": 80}}]}}]}}}})",
            name, 1 - ns % 2)));
    }
    int i = 0;
    for (int n = 0; n < s.nodes; ++n) {
        for (int p = 0; p < s.pods_per_node; ++p, ++i) {
            const std::string ns = fmt::format("ns{}", i % s.namespaces);
            const std::string name = fmt::format("p{}", i);
            const int group = s.pods_per_service == 0 ? 0 : i / s.namespaces / s.pods_per_service;
            b.model.upsert(
                json{{"apiVersion", "v1"},
                     {"kind", "Pod"},
                     {"metadata",
                      {{"name", name},
                       {"namespace", ns},
                       {"labels",
                        {{"tier", i % 3 == 0 ? "front" : "back"}, {"g", std::to_string(group)}}}}},
                     {"spec",
                      {{"nodeName", b.node_names[static_cast<size_t>(n)]},
                       {"containers", json::array({{{"name", "c"}}})}}},
                     {"status",
                      {{"podIP", fmt::format("10.{}.{}.{}", 64 + n / 256, n % 256, 10 + p)}}}});
            b.pods.push_back(ns + "/" + name);
        }
    }
    if (s.pods_per_service > 0) {
        // Service g<k> in every namespace selects the pods of group k there: spread over nodes.
        const int groups = i / s.namespaces / s.pods_per_service;
        for (int g = 0; g < groups; ++g) {
            for (int ns = 0; ns < s.namespaces; ++ns) {
                const std::string name = fmt::format("g{}", g);
                b.model.upsert(json{
                    {"apiVersion", "v1"},
                    {"kind", "Service"},
                    {"metadata", {{"name", name}, {"namespace", fmt::format("ns{}", ns)}}},
                    {"spec",
                     {{"type", "NodePort"},
                      {"clusterIP", fmt::format("10.96.{}.{}", (g * s.namespaces + ns) / 250,
                                                (g * s.namespaces + ns) % 250 + 1)},
                      {"selector", {{"g", std::to_string(g)}}},
                      {"ports",
                       json::array({{{"name", "http"},
                                     {"port", 80},
                                     {"nodePort", 30000 + g * s.namespaces + ns}},
                                    {{"name", "dns"}, {"port", 53}, {"protocol", "UDP"}}})}}}});
                b.services.push_back(fmt::format("ns{}/{}", ns, name));
            }
        }
    }
    return b;
}

std::vector<Probe> make_probes(const Built& b, size_t count, uint32_t seed) {
    std::mt19937 rng(seed);
    const auto pick = [&](const std::vector<std::string>& v) -> const std::string& {
        return v[rng() % v.size()];
    };
    std::vector<Probe> out;
    out.reserve(count);
    for (size_t k = 0; k < count; ++k) {
        Probe p;
        p.from = pick(b.pods);
        p.proto = rng() % 4 == 0 ? 17 : 6;
        p.port = p.proto == 17 ? 53 : (rng() % 2 == 0 ? 80 : 81);
        const unsigned kind = b.services.empty() ? 0 : rng() % 10;
        if (kind < 5) {
            p.to = pick(b.pods);
        } else if (kind < 9) {
            p.to = "service:" + pick(b.services);
            p.port = p.proto == 17 ? 53 : 80;
        } else {
            // A NodePort from outside the cluster, at a random node.
            const size_t svc = rng() % b.services.size();
            p.from = fmt::format("203.0.113.{}", 1 + rng() % 250);
            p.to = "node:" + pick(b.node_names);
            p.proto = 6;
            p.port = static_cast<uint16_t>(30000 + svc);
        }
        out.push_back(std::move(p));
    }
    return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
    size_t count = 20'000;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--probes" && i + 1 < argc) {
            count = std::strtoul(argv[++i], nullptr, 10);
        } else {
            std::fprintf(stderr, "usage: offline_trace_bench [--probes N]\n");
            return 2;
        }
    }
    if (count == 0) {
        std::fprintf(stderr, "offline_trace_bench: --probes must be positive\n");
        return 2;
    }
    kdp::control::offline::ensure_eal();
    const Shape shapes[] = {
        {"9 pods (e2e model)", 2, 0, 3, 0},
        {"1,000 pods", 40, 25, 10, 10},
    };
    std::printf("%-20s %6s %6s %9s %9s %9s %12s %9s  %s\n", "cluster", "nodes", "pods", "services",
                "build_ms", "probes", "probes/s", "us/probe", "verdicts");
    for (const Shape& s : shapes) {
        Built b = make_cluster(s);
        if (s.pods_per_node == 0) {
            // The e2e model's pods: ns0/a on node1, ns0/b on node2, ... alternately.
            int i = 0;
            for (const char* ns : {"ns0", "ns1", "ns2"}) {
                for (const char* name : {"a", "b", "c"}) {
                    const int n = i % 2;
                    b.model.upsert(
                        json{{"apiVersion", "v1"},
                             {"kind", "Pod"},
                             {"metadata",
                              {{"name", name},
                               {"namespace", ns},
                               {"labels", {{"tier", i % 3 == 0 ? "front" : "back"}}}}},
                             {"spec", {{"nodeName", b.node_names[static_cast<size_t>(n)]}}},
                             {"status", {{"podIP", fmt::format("10.64.{}.{}", n, 10 + i)}}}});
                    b.pods.push_back(fmt::format("{}/{}", ns, name));
                    ++i;
                }
            }
        }
        const auto t0 = std::chrono::steady_clock::now();
        Cluster cluster(b.model);
        const double build = seconds_since(t0);
        const std::vector<Probe> probes = make_probes(b, count, 7);
        std::map<std::string, size_t> verdicts;
        const auto t1 = std::chrono::steady_clock::now();
        for (const Probe& p : probes) {
            const auto r = cluster.trace(p);
            ++verdicts[r.trace.verdict + (r.reply == "deny" ? "(reply lost)" : "")];
        }
        const double run = seconds_since(t1);
        std::string mix;
        for (const auto& [v, n] : verdicts) {
            mix += fmt::format("{}{} {}", mix.empty() ? "" : ", ", v, n);
        }
        std::printf("%-20s %6zu %6zu %9zu %9.1f %9zu %12.0f %9.1f  %s\n", s.name,
                    cluster.node_count(), cluster.pod_count(), b.services.size(), build * 1e3,
                    probes.size(), static_cast<double>(probes.size()) / run,
                    run * 1e6 / static_cast<double>(probes.size()), mix.c_str());
    }
    return 0;
}
