// kdpctl trace --manifests: the cluster of config/cluster/demo.yaml (two nodes; a1 and a2 on
// node1, b1 on node2; Services web, web-local, nobody, web-lb) built in-process by
// control::offline::Cluster, and the CLI around it run in-process (kdpctl::run). Each Service
// case is the one the e2e service test sends real connections through; here the offline trace
// must reach the same backend, show the same source address to it, and bring the answer back.
// The NetworkPolicy matrix of the Kubernetes e2e model is compared with real packets in
// policy_matrix_test.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "kdpctl/commands.h"
#include "manifest/manifest.h"
#include "offline/cluster.h"

namespace kdp::test {
namespace {

using control::offline::Cluster;
using control::offline::Probe;
using control::offline::ProbeResult;
using nlohmann::json;

const std::string kDemo = std::string(KDP_CLUSTER_DIR) + "/demo.yaml";
const std::string kPolicy = std::string(KDP_CLUSTER_DIR) + "/policy.yaml";

control::Model demo_model(std::vector<std::string> files = {kDemo}) {
    control::Model m;
    const auto errors = control::load_manifests(files, m);
    EXPECT_TRUE(errors.empty()) << errors.front();
    return m;
}

// A file in a directory of the test's own, removed with it.
class Files {
public:
    Files() {
        char tmpl[] = "/tmp/kdp-offline-XXXXXX";
        dir_ = mkdtemp(tmpl);
    }
    ~Files() {
        for (const auto& f : made_) {
            std::remove(f.c_str());
        }
        rmdir(dir_.c_str());
    }
    std::string write(const std::string& name, const std::string& text) {
        const std::string path = dir_ + "/" + name;
        std::ofstream(path) << text;
        made_.push_back(path);
        return path;
    }

private:
    std::string dir_;
    std::vector<std::string> made_;
};

struct CliRun {
    int code;
    std::string out, err;
};

CliRun kdpctl(std::vector<std::string> args) {
    std::ostringstream out, err;
    const int code = control::kdpctl::run(args, out, err);
    return {code, out.str(), err.str()};
}

// The objects of `-o json` output that has one a line.
std::vector<json> json_lines(const std::string& out) {
    std::istringstream lines(out);
    std::string line;
    std::vector<json> all;
    while (std::getline(lines, line)) {
        all.push_back(json::parse(line));
    }
    return all;
}

class OfflineTrace : public ::testing::Test {
protected:
    static void SetUpTestSuite() { cluster_ = new Cluster(demo_model()); }
    static void TearDownTestSuite() {
        delete cluster_;
        cluster_ = nullptr;
    }
    static ProbeResult trace(const std::string& from,
                             const std::string& to,
                             uint16_t port,
                             uint8_t proto = 6,
                             const std::string& enters_at = "") {
        return cluster_->trace(Probe{from, to, port, proto, enters_at});
    }
    static std::vector<std::string> stages(const ProbeResult& r) {
        std::vector<std::string> s;
        for (const auto& h : r.trace.hops) {
            s.push_back(h.node + ":" + h.stage);
        }
        return s;
    }
    static inline Cluster* cluster_ = nullptr;
};

TEST_F(OfflineTrace, BuildsEveryNodeOfTheManifests) {
    EXPECT_EQ(cluster_->node_count(), 2u);
    EXPECT_EQ(cluster_->pod_count(), 3u);
}

TEST_F(OfflineTrace, ClusterIpToALocalBackendAndBack) {
    const ProbeResult r = trace("default/a1", "service:default/web", 80);
    EXPECT_EQ(r.trace.verdict, "allow");
    EXPECT_EQ(r.reply, "allow");
    EXPECT_TRUE(r.trace.backend == "default/a2" || r.trace.backend == "default/b1")
        << r.trace.backend;
    EXPECT_EQ(r.trace.backend_port, 80);  // targetPort: http, the pods' named port
    EXPECT_EQ(r.trace.seen_src, "10.244.1.10") << "a ClusterIP keeps the client's address";
    const auto s = stages(r);
    EXPECT_EQ(s.front(), "node1:parse");
    EXPECT_EQ(s.back(), "node1:reply_output");
    // The Maglev slot that leads to the backend (maglev_slot checks that it does).
    const auto svc = std::find(s.begin(), s.end(), "node1:service");
    ASSERT_NE(svc, s.end());
    EXPECT_NE(r.trace.hops[static_cast<size_t>(svc - s.begin())].detail.find("(Maglev slot "),
              std::string::npos)
        << r.trace.hops[static_cast<size_t>(svc - s.begin())].detail;
}

TEST_F(OfflineTrace, ClusterIpAcrossTheOverlayBothWays) {
    // b1 (node2) to web's UDP port, targetPort 5353: whichever backend, when it is a2 the probe
    // crosses to node1 and the answer comes back un-NATed from 10.96.0.10:53.
    const ProbeResult r = trace("default/b1", "service:default/web", 53, 17);
    ASSERT_EQ(r.trace.verdict, "allow");
    EXPECT_EQ(r.reply, "allow");
    EXPECT_EQ(r.trace.backend_port, 5353);
    EXPECT_EQ(r.trace.seen_src, "10.244.2.10");
    const auto s = stages(r);
    if (r.trace.backend == "default/a2") {
        EXPECT_NE(std::find(s.begin(), s.end(), "node2:vxlan_encap"), s.end());
        EXPECT_NE(std::find(s.begin(), s.end(), "node1:decap"), s.end());
        EXPECT_NE(std::find(s.begin(), s.end(), "node1:reply_vxlan_encap"), s.end());
        EXPECT_NE(std::find(s.begin(), s.end(), "node2:reply_unnat"), s.end());
    } else {
        EXPECT_EQ(r.trace.backend, "default/b1");  // itself: hairpinned from node2's gateway
    }
    // Every client of node1 through node1: the backends are the Service's two, both used.
    std::set<std::string> used;
    for (int i = 0; i < 40; ++i) {
        const ProbeResult c = trace(fmt::format("198.51.100.{}", 100 + i), "node:node1", 30080);
        EXPECT_EQ(c.reply, "allow");
        used.insert(c.trace.backend);
    }
    EXPECT_EQ(used, (std::set<std::string>{"default/a2", "default/b1"}));
}

// A node's kernel reaches the pod network through its host interface, from its gateway
// address: its own pods, pods on other nodes, and Services, and the answers come back to it.
TEST_F(OfflineTrace, TheNodeReachesPodsAndServicesThroughItsHostInterface) {
    const ProbeResult local = trace("node:node1", "default/a2", 80);
    EXPECT_EQ(local.trace.verdict, "allow");
    EXPECT_EQ(local.reply, "allow");
    EXPECT_EQ(local.trace.seen_src, "10.244.1.1");
    const ProbeResult remote = trace("node:node1", "default/b1", 80);
    EXPECT_EQ(remote.trace.verdict, "allow");
    EXPECT_EQ(remote.reply, "allow");
    EXPECT_EQ(remote.trace.seen_src, "10.244.1.1") << "no SNAT: the reply comes back by overlay";
    const ProbeResult svc = trace("node:node2", "service:default/web", 80);
    EXPECT_EQ(svc.trace.verdict, "allow");
    EXPECT_EQ(svc.reply, "allow");
    EXPECT_TRUE(svc.trace.backend == "default/a2" || svc.trace.backend == "default/b1")
        << svc.trace.backend;
    EXPECT_EQ(svc.trace.seen_src, "10.244.2.1");
}

TEST_F(OfflineTrace, NodePortMasqueradesOnlyWhenForwardedToAnotherNode) {
    // externalTrafficPolicy Cluster: a backend on the entry node sees the client, one on the
    // other node sees the entry node's gateway (the reply must come back through it).
    int local = 0, remote = 0;
    for (int i = 0; i < 40; ++i) {
        const std::string client = fmt::format("198.51.100.{}", 100 + i);
        const ProbeResult r = trace(client, "node:node2", 30080);
        ASSERT_EQ(r.trace.verdict, "allow") << client;
        EXPECT_EQ(r.reply, "allow") << client;
        if (r.trace.backend == "default/b1") {
            EXPECT_EQ(r.trace.seen_src, client);
            ++local;
        } else {
            EXPECT_EQ(r.trace.backend, "default/a2");
            EXPECT_EQ(r.trace.seen_src, "10.244.2.1");
            ++remote;
        }
    }
    EXPECT_GT(local, 0);
    EXPECT_GT(remote, 0);
}

TEST_F(OfflineTrace, ExternalTrafficPolicyLocalKeepsTheClientOnItsNode) {
    for (const auto& [node, pod] : {std::pair{"node1", "default/a2"}, {"node2", "default/b1"}}) {
        const ProbeResult r = trace("203.0.113.5", fmt::format("node:{}", node), 30081);
        EXPECT_EQ(r.trace.verdict, "allow");
        bool local_table = false;
        for (const auto& h : r.trace.hops) {
            local_table |= h.stage == "service" &&
                           h.detail.find(" over this node's endpoints") != std::string::npos;
        }
        EXPECT_TRUE(local_table) << "externalTrafficPolicy Local picks in the local table";
        EXPECT_EQ(r.trace.backend, pod);
        EXPECT_EQ(r.trace.seen_src, "203.0.113.5");
        EXPECT_EQ(r.reply, "allow");
        // The LoadBalancer's ingress address, entering at either node.
        const ProbeResult lb = trace("203.0.113.5", "203.0.113.10", 80, 6, node);
        EXPECT_EQ(lb.trace.backend, pod);
        EXPECT_EQ(lb.trace.seen_src, "203.0.113.5");
        EXPECT_EQ(lb.reply, "allow");
    }
}

TEST_F(OfflineTrace, NoEndpointsIsRejectedAtTheClientsNode) {
    const ProbeResult r = trace("default/a1", "service:default/nobody", 80);
    EXPECT_EQ(r.trace.verdict, "reject");
    EXPECT_EQ(r.trace.backend, "");
    EXPECT_EQ(r.trace.hops.back().stage, "reject");
    EXPECT_EQ(r.trace.hops.back().node, "node1");
}

TEST_F(OfflineTrace, EgressIsMasqueradedToTheNodesAddress) {
    const ProbeResult a = trace("default/a1", "198.51.100.201", 8000);
    EXPECT_EQ(a.trace.verdict, "allow");
    EXPECT_EQ(a.trace.seen_src, "198.51.100.1");
    EXPECT_EQ(a.reply, "allow") << "the answer is translated back to a1";
    const ProbeResult b = trace("default/b1", "192.0.2.7", 443);
    EXPECT_EQ(b.trace.seen_src, "198.51.100.2");
    EXPECT_EQ(b.reply, "allow");
}

TEST_F(OfflineTrace, HealthCheckNodePortIsAnsweredByTheDataplane) {
    const ProbeResult r = trace("203.0.113.9", "node:node2", 32000);
    EXPECT_EQ(r.trace.verdict, "allow");
    EXPECT_EQ(r.reply, "allow");
    EXPECT_EQ(r.trace.hops.back().stage, "local");
    EXPECT_EQ(trace("203.0.113.9", "node:node2", 32001).trace.verdict, "deny");
}

TEST_F(OfflineTrace, AProbeLeavesNothingBehind) {
    // The same probe twice: a new connection both times (scratch conntrack per probe).
    const ProbeResult a = trace("default/a1", "default/b1", 80);
    const ProbeResult b = trace("default/a1", "default/b1", 80);
    ASSERT_GE(a.trace.hops.size(), 2u);
    EXPECT_EQ(a.trace.hops[1].detail, "new connection");
    EXPECT_EQ(b.trace.hops[1].detail, "new connection");
    EXPECT_EQ(stages(a), stages(b));
}

TEST_F(OfflineTrace, ProbesNamingNothingAreErrors) {
    const auto error = [](const Probe& p) -> std::string {
        try {
            cluster_->trace(p);
        } catch (const control::offline::OfflineError& e) {
            return e.what();
        }
        return "";
    };
    EXPECT_EQ(error({"default/zz", "default/a1", 80, 6, ""}),
              "from: no pod default/zz in the manifests");
    EXPECT_EQ(error({"default/a1", "service:default/none", 80, 6, ""}),
              "to: no Service default/none in the manifests");
    EXPECT_EQ(error({"node:node9", "default/a1", 80, 6, ""}),
              "from: no node node9 with a podCIDR and an InternalIP in the manifests");
    EXPECT_NE(error({"203.0.113.5", "10.96.0.10", 80, 6, ""}).find("enters_at"), std::string::npos);
    EXPECT_NE(error({"default/a1", "default/b1", 0, 6, ""}), "");
    EXPECT_NE(error({"default/a1", "nowhere", 80, 6, ""}).find("neither"), std::string::npos);
}

// The CLI, in-process.

TEST(OfflineTraceCli, OneProbeAsAHopListingAndAsJson) {
    const CliRun t = kdpctl({"trace", "--manifests", kDemo, "--from", "default/a1", "--to",
                             "web.default", "--port", "80"});
    ASSERT_EQ(t.code, 0) << t.err;
    EXPECT_NE(t.out.find("NODE   STAGE"), std::string::npos) << t.out;
    EXPECT_NE(t.out.find("verdict: allow, backend default/"), std::string::npos) << t.out;
    EXPECT_NE(t.out.find("reply returns"), std::string::npos) << t.out;

    const CliRun j =
        kdpctl({"trace", "--manifests", kDemo, "--from", "default/a1", "--to",
                "service:default/web", "--port", "53", "--proto", "udp", "-o", "json"});
    ASSERT_EQ(j.code, 0) << j.err;
    const json r = json::parse(j.out);
    EXPECT_EQ(r["verdict"], "allow");
    EXPECT_EQ(r["protocol"], "UDP");
    EXPECT_EQ(r["backend_port"], 5353);
    EXPECT_EQ(r["seen_src"], "10.244.1.10");
    EXPECT_TRUE(r["backend"].is_string());
    EXPECT_TRUE(r["hops"].is_array());
    EXPECT_GT(r["hops"].size(), 4u);
}

TEST(OfflineTraceCli, BatchPrintsOneJsonObjectPerProbeInOrder) {
    Files f;
    std::string list = "probes:\n";
    std::vector<std::string> want;
    for (int i = 0; i < 300; ++i) {
        const char* to = i % 3 == 0   ? "default/b1"
                         : i % 3 == 1 ? "service:default/web"
                                      : "web.default";
        list += fmt::format("  - {{from: default/a1, to: {}, port: {}, protocol: {}}}\n", to,
                            i % 2 == 0 ? 80 : 53, i % 2 == 0 ? "TCP" : "UDP");
        want.push_back(i % 3 == 0 ? "default/b1" : "service:default/web");
    }
    const CliRun r = kdpctl(
        {"trace", "--manifests", kDemo, "--probes", f.write("probes.yaml", list), "-o", "json"});
    ASSERT_EQ(r.code, 0) << r.err;
    std::istringstream lines(r.out);
    std::string line;
    size_t n = 0;
    while (std::getline(lines, line)) {
        const json j = json::parse(line);
        ASSERT_LT(n, want.size());
        EXPECT_EQ(j["to"], want[n]) << "probe " << n;
        EXPECT_EQ(j["port"], n % 2 == 0 ? 80 : 53);
        EXPECT_EQ(j["verdict"], "allow");
        for (const char* k : {"backend", "backend_port", "seen_src", "reply", "hops"}) {
            EXPECT_TRUE(j.contains(k)) << k;
        }
        ++n;
    }
    EXPECT_EQ(n, want.size());

    // The same as a table with a summary.
    const CliRun t =
        kdpctl({"trace", "--manifests", kDemo, "--probes",
                f.write("p.json",
                        R"([{"from": "default/a1", "to": "service:default/nobody", "port": 80},
            {"from": "default/b1", "to": "default/a2", "port": 80}])")});
    ASSERT_EQ(t.code, 0) << t.err;
    EXPECT_NE(t.out.find("reject"), std::string::npos) << t.out;
    EXPECT_NE(t.out.find("2 probes: 1 connect, 1 do not"), std::string::npos) << t.out;
}

TEST(OfflineTraceCli, LaterManifestsReplaceEarlierObjects) {
    // An update: nobody gets a selector (targetPort left out: the port itself) and a policy
    // lets only a1 into the web pods.
    Files f;
    const std::string update = f.write("update.yaml", R"(
apiVersion: v1
kind: Service
metadata: {name: nobody, namespace: default}
spec:
  clusterIP: 10.96.0.99
  selector: {app: web}
  ports: [{port: 80}]
)");
    const auto verdict = [&](std::vector<std::string> files, const std::string& from,
                             const std::string& to) {
        std::vector<std::string> args = {"trace", "--manifests"};
        args.insert(args.end(), files.begin(), files.end());
        for (const char* a :
             {"--from", from.c_str(), "--to", to.c_str(), "--port", "80", "-o", "json"}) {
            args.push_back(a);
        }
        const CliRun r = kdpctl(args);
        EXPECT_EQ(r.code, 0) << r.err;
        return r.code == 0 ? json::parse(r.out) : json();
    };
    EXPECT_EQ(verdict({kDemo}, "default/a1", "service:default/nobody")["verdict"], "reject");
    const json after = verdict({kDemo, update}, "default/a1", "service:default/nobody");
    EXPECT_EQ(after["verdict"], "allow");
    EXPECT_EQ(after["backend_port"], 80);
    EXPECT_EQ(verdict({kDemo, kPolicy}, "default/b1", "default/a2")["verdict"], "deny");
    EXPECT_EQ(verdict({kDemo, kPolicy}, "default/a1", "default/a2")["verdict"], "allow");
}

TEST(OfflineTraceCli, WhatIfListsTheProbesAPolicyWouldBreak) {
    Files f;
    const std::string probes = f.write("probes.yaml", R"(
- {from: default/a1, to: service:default/web, port: 80}
- {from: default/b1, to: default/a2, port: 80}
- {from: 198.51.100.200, to: node:node1, port: 30081}
- {from: default/a1, to: default/b1, port: 5353, protocol: UDP}
- {from: default/a2, to: default/a1, port: 22}
)");
    const CliRun t =
        kdpctl({"trace", "--manifests", kDemo, "--probes", probes, "--what-if", kPolicy});
    ASSERT_EQ(t.code, 0) << t.err;
    EXPECT_NE(t.out.find("5 probes: 2 would be broken, 0 opened, 0 changed otherwise, 3 as now"),
              std::string::npos)
        << t.out;
    EXPECT_NE(t.out.find("ingress of default/a2: no rule allows it"), std::string::npos) << t.out;

    const CliRun j = kdpctl(
        {"trace", "--manifests", kDemo, "--probes", probes, "--what-if", kPolicy, "-o", "json"});
    ASSERT_EQ(j.code, 0) << j.err;
    const std::vector<json> changed = json_lines(j.out);
    ASSERT_EQ(changed.size(), 2u);
    EXPECT_EQ(changed[0]["from"], "default/b1");
    EXPECT_EQ(changed[1]["from"], "198.51.100.200");
    for (const json& c : changed) {
        EXPECT_EQ(c["change"], "broken");
        EXPECT_EQ(c["verdict"], "deny");
        EXPECT_EQ(c["before"]["verdict"], "allow");
    }
}

// Deletions: the objects a file names (only kind, namespace and name are read, so the manifest
// as applied will do) are removed before the probes run again.
TEST(OfflineTraceCli, WhatIfDeleteListsTheProbesADeletionWouldChange) {
    Files f;
    const std::string probes = f.write("probes.yaml", R"(
- {from: default/a1, to: service:default/web, port: 80}
- {from: default/b1, to: default/a2, port: 80}
- {from: default/a1, to: default/b1, port: 5353, protocol: UDP}
)");
    // The policy taken away again: what it broke opens.
    const CliRun un = kdpctl({"trace", "--manifests", kDemo, kPolicy, "--probes", probes,
                              "--what-if-delete", kPolicy, "-o", "json"});
    ASSERT_EQ(un.code, 0) << un.err;
    const std::vector<json> changed = json_lines(un.out);
    ASSERT_EQ(changed.size(), 1u) << un.out;
    EXPECT_EQ(changed[0]["from"], "default/b1");
    EXPECT_EQ(changed[0]["change"], "opened");
    EXPECT_EQ(changed[0]["verdict"], "allow");

    // The Service deleted: the probe through it no longer connects.
    const std::string svc = f.write("svc.yaml", R"(
kind: Service
metadata: {name: web, namespace: default}
)");
    const CliRun gone =
        kdpctl({"trace", "--manifests", kDemo, "--probes", probes, "--what-if-delete", svc});
    ASSERT_EQ(gone.code, 0) << gone.err;
    EXPECT_NE(gone.out.find("3 probes: 1 would be broken, 0 opened, 0 changed otherwise, 2 as now"),
              std::string::npos)
        << gone.out;

    // A whole namespace: its pods go with it, so every probe between them changes.
    const std::string ns = f.write("ns.yaml", "kind: Namespace\nmetadata: {name: default}\n");
    const CliRun all =
        kdpctl({"trace", "--manifests", kDemo, "--probes", probes, "--what-if-delete", ns});
    ASSERT_EQ(all.code, 0) << all.err;
    EXPECT_NE(all.out.find("3 probes: 3 would be broken"), std::string::npos) << all.out;

    // Deleting what is not there is an error, and nothing is printed.
    const std::string absent = f.write("absent.yaml", R"(
kind: Service
metadata: {name: missing, namespace: default}
)");
    const CliRun bad =
        kdpctl({"trace", "--manifests", kDemo, "--probes", probes, "--what-if-delete", absent});
    EXPECT_EQ(bad.code, 1);
    EXPECT_EQ(bad.out, "");
    EXPECT_NE(bad.err.find("Service default/missing: not in the manifests, nothing to delete"),
              std::string::npos)
        << bad.err;
}

TEST(OfflineTraceCli, BadInputIsAClearErrorAndNoOutput) {
    Files f;
    const auto fails = [&](std::vector<std::string> args, int code, const std::string& msg) {
        const CliRun r = kdpctl(args);
        EXPECT_EQ(r.code, code) << r.out;
        EXPECT_EQ(r.out, "");
        EXPECT_NE(r.err.find(msg), std::string::npos) << r.err;
    };
    const std::string bad_proto =
        f.write("a.yaml", "- {from: default/a1, to: default/b1, port: 80, protocol: ICMP}\n");
    fails({"trace", "--manifests", kDemo, "--probes", bad_proto}, 1,
          "probe 1: protocol: \"ICMP\" is not one of TCP, UDP, SCTP");
    const std::string unknown_field = f.write("b.yaml",
                                              "- {from: default/a1, to: default/b1, port: 80}\n"
                                              "- {from: default/a1, to: default/b1, prot: 80}\n");
    fails({"trace", "--manifests", kDemo, "--probes", unknown_field}, 1,
          "probe 2: unknown field \"prot\"");
    const std::string unknown_pod = f.write("c.yaml",
                                            "- {from: default/a1, to: default/b1, port: 80}\n"
                                            "- {from: default/zz, to: default/b1, port: 80}\n");
    fails({"trace", "--manifests", kDemo, "--probes", unknown_pod}, 1,
          "probe 2 (default/zz -> default/b1): from: no pod default/zz in the manifests");
    const std::string no_entry =
        f.write("d.yaml", "- {from: 192.0.2.9, to: 10.96.0.10, port: 80}\n");
    fails({"trace", "--manifests", kDemo, "--probes", no_entry}, 1, "enters_at");
    fails({"trace", "--manifests", kDemo, "--probes", f.write("e.yaml", "[]\n")}, 1, "no probes");
    fails({"trace", "--manifests", kDemo, "--probes",
           f.write("g.yaml", "- {from: default/a1, to: default/b1, port: 70000}\n")},
          1, "port: 70000 is not a port number");
    const std::string bad_manifest =
        f.write("m.yaml",
                "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: default}\n"
                "spec: {ports: [{port: 99999}]}\n");
    fails({"trace", "--manifests", kDemo, bad_manifest, "--from", "default/a1", "--to",
           "default/b1", "--port", "80"},
          1, "m.yaml");
    fails({"trace", "--manifests", kDemo}, 2, "needs either --from");
    fails({"trace", "--manifests", kDemo, "--probes", bad_proto, "--from", "default/a1"}, 2,
          "needs either");
    fails({"trace", "--manifests", "/nonexistent/x.yaml", "--from", "default/a1", "--to",
           "default/b1", "--port", "80"},
          1, "/nonexistent/x.yaml");
    fails({"get", "pods", "--manifests", kDemo}, 2, "options of trace");
}

}  // namespace
}  // namespace kdp::test
