// kdpctl's commands, run in-process against a real GrpcServer over an in-test Backend.
#include <algorithm>
#include <atomic>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "api/fake_backend.h"
#include "api/grpc_server.h"
#include "common/version.h"
#include "control/temp_files.h"
#include "kdpctl/commands.h"

namespace kdp::control::kdpctl {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr const char* kManifest = R"(
apiVersion: v1
kind: Node
metadata: {name: node-a}
spec: {podCIDR: 10.244.1.0/24}
status: {addresses: [{type: InternalIP, address: 192.168.0.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-b}
spec: {podCIDR: 10.244.2.0/24}
status: {addresses: [{type: InternalIP, address: 192.168.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod}
spec: {nodeName: node-a}
status: {podIP: 10.244.1.5}
)";

class KdpctlTest : public ::testing::Test {
protected:
    KdpctlTest() : socket_(dir_.path() + "/dp.sock"), server_(backend_, socket_) {
        server_.start();
    }

    int run_cmd(std::vector<std::string> args) {
        out_.str("");
        err_.str("");
        args.insert(args.begin(), {"--dataplane", socket_});
        return run(args, out_, err_);
    }

    testing::TempDir dir_;
    std::string socket_;
    api::testing::FakeBackend backend_;
    api::GrpcServer server_;
    std::ostringstream out_;
    std::ostringstream err_;
};

TEST_F(KdpctlTest, ApplyCompilesForTheDataplanesOwnNodeAndSyncs) {
    const auto file = dir_.write("c.yaml", kManifest);
    ASSERT_EQ(run_cmd({"apply", "-f", file}), 0) << err_.str();
    EXPECT_EQ(out_.str(),
              "applied generation 1 to node node-a: 1 routes, 1 pods, 0 service ports, 0 "
              "NetworkPolicies (0 pods isolated here)\n");
    EXPECT_EQ(backend_.tables().generation, 1u);

    ASSERT_EQ(run_cmd({"get", "routes"}), 0) << err_.str();
    EXPECT_EQ(out_.str(),
              "NODE    POD-CIDR       NODE-IP      VTEP-MAC\n"
              "node-b  10.244.2.0/24  192.168.0.2  0a:58:c0:a8:00:02\n");

    ASSERT_EQ(run_cmd({"get", "pods", "-o", "json"}), 0) << err_.str();
    EXPECT_EQ(json::parse(out_.str()),
              json::parse(R"([{"name":"prod/web","ip":"10.244.1.5","port":"prod/web"}])"));

    ASSERT_EQ(run_cmd({"get", "nodes", "-o", "yaml"}), 0) << err_.str();
    EXPECT_THAT(out_.str(), HasSubstr("- name: node-a\n"));
    EXPECT_THAT(out_.str(), HasSubstr("local: true"));

    // Applying again moves the generation on; --node picks another node's view.
    ASSERT_EQ(run_cmd({"apply", "-f", file, "--node", "node-b"}), 0) << err_.str();
    EXPECT_EQ(out_.str(),
              "applied generation 2 to node node-b: 1 routes, 0 pods, 0 service ports, 0 "
              "NetworkPolicies (0 pods isolated here)\n");
    EXPECT_EQ(backend_.tables().routes.at(0).node_name, "node-a");

    // A state the dataplane refuses is one line and exit 1, nothing applied.
    const auto moved = dir_.write("moved.yaml", std::string(kManifest) + R"(---
apiVersion: v1
kind: Pod
metadata: {name: stray, namespace: prod}
spec: {nodeName: node-a}
status: {podIP: 10.9.9.9}
)");
    ASSERT_EQ(run_cmd({"apply", "-f", moved}), 1);
    EXPECT_THAT(err_.str(), HasSubstr("outside the node pod CIDR"));
    EXPECT_EQ(backend_.tables().generation, 2u);
}

TEST_F(KdpctlTest, NetworkPolicyIsAppliedAndListedWithTheRulesThatAllow) {
    const auto file = dir_.write("p.yaml", std::string(kManifest) + R"(---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: prod, labels: {app: client}}
spec: {nodeName: node-b}
status: {podIP: 10.244.2.7}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-client, namespace: prod}
spec:
  podSelector: {}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: 80}, {protocol: UDP, port: 5000, endPort: 5010}]
)");
    ASSERT_EQ(run_cmd({"get", "policy"}), 0) << err_.str();
    EXPECT_THAT(out_.str(), HasSubstr("NOT SYNCED")) << "the fake backend starts without policy";
    ASSERT_EQ(run_cmd({"apply", "-f", file}), 0) << err_.str();
    EXPECT_EQ(out_.str(),
              "applied generation 1 to node node-a: 1 routes, 1 pods, 0 service ports, 1 "
              "NetworkPolicies (1 pods isolated here)\n");
    ASSERT_EQ(run_cmd({"get", "policy"}), 0) << err_.str();
    EXPECT_THAT(out_.str(), HasSubstr("generation 1: synced; 1 isolated pods"));
    EXPECT_THAT(out_.str(), HasSubstr("prod/web  ingress   ingress  prod {app=client}  80/tcp"));
    EXPECT_THAT(out_.str(), HasSubstr("5000-5010/udp  prod/web-from-client ingress[0]"));
    ASSERT_EQ(run_cmd({"get", "policy", "-o", "json"}), 0) << err_.str();
    const json j = json::parse(out_.str());
    EXPECT_EQ(j["synced"], true);
    ASSERT_EQ(j["pods"].size(), 1u);
    EXPECT_EQ(j["pods"][0]["pod"], "prod/web");
    EXPECT_EQ(j["pods"][0]["ingress_isolated"], true);
    EXPECT_EQ(j["pods"][0]["egress_isolated"], false);
    EXPECT_EQ(j["pods"][0]["rules"].size(), 2u);
}

TEST_F(KdpctlTest, ServicesAndEndpointsFromManifests) {
    const auto file = dir_.write("s.yaml", std::string(kManifest) + R"(---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: prod, labels: {app: web}}
spec: {nodeName: node-b, containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.244.2.7}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: prod}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  selector: {app: web}
  externalTrafficPolicy: Local
  ports: [{name: http, port: 80, targetPort: http, nodePort: 30080}]
)");
    ASSERT_EQ(run_cmd({"apply", "-f", file}), 0) << err_.str();
    EXPECT_EQ(out_.str(),
              "applied generation 1 to node node-a: 1 routes, 1 pods, 1 service ports, 0 "
              "NetworkPolicies (0 pods isolated here)\n");
    ASSERT_EQ(run_cmd({"get", "services"}), 0) << err_.str();
    EXPECT_EQ(out_.str(),
              "NAME           PROTO  FRONTENDS                        READY  POLICY\n"
              "prod/web:http  tcp    10.96.0.10:80,192.168.0.1:30080  1/1    etp=Local\n");
    ASSERT_EQ(run_cmd({"get", "endpoints"}), 0) << err_.str();
    EXPECT_EQ(out_.str(),
              "SERVICE        ENDPOINT         POD         NODE    READY  SERVING  TERMINATING\n"
              "prod/web:http  10.244.2.7:8080  prod/web-2  node-b  true   true     false\n");
    ASSERT_EQ(run_cmd({"get", "svc", "-o", "json"}), 0) << err_.str();
    const json j = json::parse(out_.str());
    ASSERT_EQ(j.size(), 1u);
    EXPECT_EQ(j[0]["frontends"][1],
              json::parse(R"({"kind":"node_port","ip":"192.168.0.1","port":30080})"));
    EXPECT_EQ(j[0]["backends"][0]["port"], 8080);
    EXPECT_EQ(j[0]["external_local"], true);
}

TEST_F(KdpctlTest, ApplyWithBadManifestPushesNothing) {
    const auto file = dir_.write("bad.yaml", "apiVersion: v1\nkind: Foo\nmetadata: {name: x}\n");
    EXPECT_EQ(run_cmd({"apply", "-f", file}), 1);
    EXPECT_EQ(err_.str(), "kdpctl: " + file + ": document 1: unknown kind \"Foo\"\n");
    EXPECT_EQ(backend_.applies(), 0);
}

TEST_F(KdpctlTest, StatsShowsRatesDropsAndBusy) {
    api::StatsSnapshot s;
    api::WorkerStats w;
    w.worker = 0;
    w.lcore = 1;
    w.counters.rx_packets = 1000;
    w.counters.drops[static_cast<size_t>(dataplane::DropReason::kNoRoute)] = 4;
    w.busy_cycles = 25;
    w.total_cycles = 100;
    s.workers = {w};
    api::PortStats p;
    p.name = "uplink";
    s.ports = {p};
    backend_.set_stats_for_test(s);
    ASSERT_EQ(run_cmd({"stats", "--interval-ms", "10"}), 0) << err_.str();
    EXPECT_THAT(out_.str(), HasSubstr("PORT"));
    EXPECT_THAT(out_.str(), HasSubstr("uplink"));
    EXPECT_THAT(out_.str(), HasSubstr("no_route=4"));
    EXPECT_THAT(out_.str(), HasSubstr("25.000"));  // busy %: no progress, so since start

    ASSERT_EQ(run_cmd({"stats", "--interval-ms", "10", "-o", "json"}), 0) << err_.str();
    const auto j = json::parse(out_.str());
    EXPECT_EQ(j["workers"][0]["drops"]["no_route"], 4);
    EXPECT_EQ(j["ports"][0]["name"], "uplink");
}

TEST_F(KdpctlTest, GetConntrackShowsBothTuplesNatStateAndExpiry) {
    api::ConntrackListing l;
    l.total = 3;
    l.capacity = 4096;
    api::ConntrackInfo dnat;
    dnat.proto = 6;
    dnat.original = {*Ip4::parse("10.244.1.10"), 40000, *Ip4::parse("10.96.0.10"), 80};
    dnat.reply = {*Ip4::parse("10.244.2.20"), 8080, *Ip4::parse("10.244.1.10"), 40000};
    dnat.nat = {"dnat"};
    dnat.state = "established";
    dnat.expires_in_s = 86399;
    api::ConntrackInfo ping;
    ping.proto = 1;
    ping.original = {*Ip4::parse("10.244.1.10"), 7, *Ip4::parse("203.0.113.9"), 7};
    ping.reply = {*Ip4::parse("203.0.113.9"), 32769, *Ip4::parse("192.168.0.1"), 32769};
    ping.nat = {"snat", "egress"};
    ping.state = "new";
    ping.expires_in_s = 29;
    api::ConntrackInfo affinity;
    affinity.proto = 6;
    affinity.affinity = true;
    affinity.original = {*Ip4::parse("10.244.1.10"), 0, Ip4{}, 0};
    affinity.reply = {*Ip4::parse("10.244.2.20"), 8080, *Ip4::parse("10.244.1.10"), 0};
    affinity.nat = {"dnat"};
    affinity.state = "new";
    affinity.expires_in_s = 10799;
    l.entries = {dnat, ping, affinity};
    backend_.set_conntrack_for_test(l);

    ASSERT_EQ(run_cmd({"get", "conntrack"}), 0) << err_.str();
    const std::string t = out_.str();
    EXPECT_THAT(t, HasSubstr("PROTO"));
    EXPECT_THAT(t, HasSubstr("EXPIRES"));
    EXPECT_THAT(t, HasSubstr("10.244.1.10:40000 -> 10.96.0.10:80"));
    EXPECT_THAT(t, HasSubstr("10.244.2.20:8080 -> 10.244.1.10:40000"));
    EXPECT_THAT(t, HasSubstr("established"));
    EXPECT_THAT(t, HasSubstr("86399s"));
    EXPECT_THAT(t, HasSubstr("snat,egress"));
    EXPECT_THAT(t, HasSubstr("tcp/affinity"));
    EXPECT_THAT(t, HasSubstr("backend 10.244.2.20:8080"));

    ASSERT_EQ(run_cmd({"get", "conntrack", "-o", "json", "--limit", "2"}), 0) << err_.str();
    const auto j = json::parse(out_.str());
    ASSERT_EQ(j.size(), 2u) << "--limit";
    EXPECT_EQ(j[0]["protocol"], "tcp");
    EXPECT_EQ(j[0]["original"]["dst"], "10.96.0.10");
    EXPECT_EQ(j[0]["original"]["dport"], 80);
    EXPECT_EQ(j[0]["reply"]["src"], "10.244.2.20");
    EXPECT_EQ(j[0]["reply"]["sport"], 8080);
    EXPECT_EQ(j[0]["nat"], json::array({"dnat"}));
    EXPECT_EQ(j[0]["expires_in_s"], 86399);
    EXPECT_EQ(j[1]["protocol"], "icmp");
    EXPECT_EQ(j[1]["affinity"], false);

    ASSERT_EQ(run_cmd({"get", "conntrack", "--limit", "1"}), 0) << err_.str();
    EXPECT_THAT(out_.str(), HasSubstr("(1 of 3 entries shown; --limit N for more)"));
    EXPECT_EQ(run_cmd({"get", "conntrack", "--limit", "0"}), 2);
    EXPECT_EQ(err_.str(), "kdpctl: --limit: \"0\" is not in 1..100000 (see kdpctl --help)\n");
}

TEST_F(KdpctlTest, InfoShowsNodeGenerationAndVersions) {
    ASSERT_EQ(run_cmd({"info"}), 0) << err_.str();
    EXPECT_THAT(out_.str(), HasSubstr("node          node-a\n"));
    EXPECT_THAT(out_.str(), HasSubstr("generation    0\n"));
    EXPECT_THAT(out_.str(), HasSubstr(fmt::format("api_revision  {}\n", kApiRevision)));
    ASSERT_EQ(run_cmd({"info", "-o", "json"}), 0) << err_.str();
    const auto j = json::parse(out_.str());
    EXPECT_EQ(j["pod_cidr"], "10.244.1.0/24");
    EXPECT_EQ(j["started"], "1970-01-01T00:00:00.000Z");  // the fake started at 1000 ns
    EXPECT_EQ(j["version"], version());  // the server's build, whatever its backend
}

TEST_F(KdpctlTest, VersionNamesTheBuildAndApiRevision) {
    ASSERT_EQ(run_cmd({"--version"}), 0) << err_.str();
    EXPECT_EQ(out_.str(), version_line("kdpctl") + "\n");
}

TEST_F(KdpctlTest, EventsStreamsCurrentThenApplied) {
    const auto file = dir_.write("c.yaml", kManifest);
    // Apply repeatedly until the watch is done: whenever it subscribed, the next apply follows.
    std::atomic<bool> done{false};
    std::thread applier([&] {
        while (!done) {
            std::ostringstream o, e;
            run({"--dataplane", socket_, "apply", "-f", file}, o, e);
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    });
    const int rc = run_cmd({"events", "--count", "2", "-o", "json"});
    done = true;
    applier.join();
    ASSERT_EQ(rc, 0) << err_.str();
    std::istringstream lines(out_.str());
    std::string line;
    std::vector<json> got;
    while (std::getline(lines, line)) {
        got.push_back(json::parse(line));
    }
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0]["kind"], "current");
    EXPECT_EQ(got[1]["kind"], "tables_applied");
    EXPECT_EQ(got[1]["generation"], got[0]["generation"].get<uint64_t>() + 1);
    EXPECT_EQ(got[1]["pods"], 1);
    EXPECT_EQ(got[1]["source"], "sync");
}

TEST_F(KdpctlTest, BadArgumentsExitTwoWithOneLine) {
    EXPECT_EQ(run_cmd({"get", "widgets"}), 2);
    EXPECT_EQ(err_.str(),
              "kdpctl: get: unknown resource \"widgets\" (nodes, routes, pods, ports, services, "
              "endpoints, policy, conntrack) (see kdpctl --help)\n");
    EXPECT_EQ(run_cmd({"frobnicate"}), 2);
    EXPECT_EQ(run_cmd({"get", "pods", "-o", "xml"}), 2);
    EXPECT_EQ(run_cmd({"apply"}), 2);
    EXPECT_EQ(run_cmd({}), 2);
    EXPECT_EQ(run_cmd({"--help"}), 0);
    EXPECT_THAT(out_.str(), HasSubstr("usage: kdpctl"));
}

TEST(Kdpctl, UnreachableDataplaneIsOneLineExitOne) {
    testing::TempDir dir;
    std::ostringstream out, err;
    EXPECT_EQ(run({"--dataplane", dir.path() + "/none.sock", "get", "pods"}, out, err), 1);
    EXPECT_THAT(err.str(), HasSubstr("kdpctl: cannot reach the dataplane at"));
    const std::string text = err.str();
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1);
}

TEST(Kdpctl, TableColumnsAreAligned) {
    const auto rows = Json::parse(R"([{"a":"x","b":1},{"a":"longer","b":null}])");
    EXPECT_EQ(render_table(rows, {{"A", "a"}, {"BEE", "b"}, {"C", "c"}}),
              "A       BEE  C\n"
              "x       1    -\n"
              "longer  -    -\n");
}

TEST(Kdpctl, StatsReportComputesMppsAndBusyOverTheSample) {
    v1::Stats a, b;
    a.set_taken_unix_ns(1'000'000'000);
    b.set_taken_unix_ns(3'000'000'000);  // 2 s apart; the wall clock given is ignored
    auto* wa = a.add_workers();
    wa->mutable_counters()->set_rx_packets(1'000'000);
    wa->set_busy_cycles(100);
    wa->set_total_cycles(1000);
    auto* wb = b.add_workers();
    wb->mutable_counters()->set_rx_packets(5'000'000);
    wb->mutable_counters()->set_tx_packets(2'000'000);
    wb->set_busy_cycles(400);
    wb->set_total_cycles(2000);
    const auto r = stats_report(a, b, 99.0);
    EXPECT_DOUBLE_EQ(r["interval_s"].get<double>(), 2.0);
    EXPECT_DOUBLE_EQ(r["workers"][0]["rx_mpps"].get<double>(), 2.0);
    EXPECT_DOUBLE_EQ(r["workers"][0]["tx_mpps"].get<double>(), 1.0);
    EXPECT_DOUBLE_EQ(r["workers"][0]["busy_pct"].get<double>(), 30.0);
}

TEST(Kdpctl, StatsReportGivesCyclesPerPacketByPhaseOverTheSample) {
    v1::Stats a, b;
    a.set_taken_unix_ns(1'000'000'000);
    b.set_taken_unix_ns(2'000'000'000);
    auto* wa = a.add_workers();
    wa->mutable_counters()->set_rx_packets(1'000);
    auto* wb = b.add_workers();
    wb->mutable_counters()->set_rx_packets(3'000);
    const std::pair<const char*, std::pair<uint64_t, uint64_t>> phases[] = {
        {"rx", {10'000, 110'000}}, {"stages", {50'000, 650'000}}, {"tx", {0, 90'000}}};
    for (const auto& [name, cycles] : phases) {
        auto* pa = wa->add_phases();
        pa->set_phase(name);
        pa->set_cycles(cycles.first);
        auto* pb = wb->add_phases();
        pb->set_phase(name);
        pb->set_cycles(cycles.second);
    }
    const auto r = stats_report(a, b, 1.0);
    const auto& per = r["workers"][0]["cycles_per_packet"];
    EXPECT_DOUBLE_EQ(per["rx"].get<double>(), 50.0);  // 100,000 cycles over 2,000 packets
    EXPECT_DOUBLE_EQ(per["stages"].get<double>(), 300.0);
    EXPECT_DOUBLE_EQ(per["tx"].get<double>(), 45.0);
    EXPECT_DOUBLE_EQ(per["total"].get<double>(), 395.0);

    // No packet in the sample: the figures since the worker started.
    const auto idle = stats_report(b, b, 1.0);
    EXPECT_DOUBLE_EQ(idle["workers"][0]["cycles_per_packet"]["stages"].get<double>(), 216.7);
    // A worker that has received nothing has no figures.
    v1::Stats fresh;
    fresh.add_workers()->add_phases()->set_phase("rx");
    EXPECT_FALSE(stats_report(fresh, fresh, 1.0)["workers"][0].contains("cycles_per_packet"));
}

TEST(Kdpctl, YamlQuotesStringsThatWouldReadBackAsOtherTypes) {
    EXPECT_EQ(render_yaml(Json{{"a", "true"}, {"b", "12"}, {"c", "x"}, {"d", 3}}),
              "a: \"true\"\nb: \"12\"\nc: x\nd: 3\n");
}

}  // namespace
}  // namespace kdp::control::kdpctl
