// kdp-control's health and metrics: the pure rules (kube-proxy's node health, readiness,
// liveness, the text format) and the real HTTP server over a real dataplane API (GrpcServer
// over an in-test Backend).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "api/fake_backend.h"
#include "api/grpc_server.h"
#include "common/version.h"
#include "control/temp_files.h"
#include "pkt/drop_reason.h"
#include "serve/metrics.h"
#include "serve/server.h"
#include "serve/status.h"

namespace kdp::control::serve {
namespace {

using namespace std::chrono_literals;

const WallClock::time_point kT0 = WallClock::time_point(std::chrono::seconds(1'800'000'000));

TEST(NodeHealth, HealthyBeforeAnythingWasQueuedAsKubeProxyIs) {
    const Status s(kT0);
    const NodeHealth h = node_health(s.snapshot(), kT0 + 1h, {});
    EXPECT_TRUE(h.healthy);
    EXPECT_NE(h.json.find(R"("nodeHealthy": true)"), std::string::npos) << h.json;
    EXPECT_NE(h.json.find(R"("lastUpdated": "0001-01-01T00:00:00Z")"), std::string::npos);
}

TEST(NodeHealth, UnhealthyOnceAChangeWaitsLongerThanTheTimeout) {
    Status s(kT0);
    s.queued(kT0);
    HealthPolicy p;
    p.node_health_timeout = 60s;
    EXPECT_TRUE(node_health(s.snapshot(), kT0 + 59s, p).healthy);
    const NodeHealth late = node_health(s.snapshot(), kT0 + 61s, p);
    EXPECT_FALSE(late.healthy);
    EXPECT_NE(late.json.find(R"("nodeHealthy": false)"), std::string::npos) << late.json;
    s.pushed(kT0 + 62s, true, true, 1, 5ms);
    const NodeHealth again = node_health(s.snapshot(), kT0 + 63s, p);
    EXPECT_TRUE(again.healthy);
    EXPECT_NE(again.json.find(R"("lastUpdated": "2027-01-15T08:01:02.000Z")"), std::string::npos)
        << again.json;
    EXPECT_NE(again.json.find(R"("currentTime": "2027-01-15T08:01:03.000Z")"), std::string::npos)
        << again.json;
}

TEST(Readiness, NeedsListsADataplaneAndAFirstSync) {
    Status s(kT0);
    EXPECT_FALSE(readiness(s.snapshot()).ready);
    s.lists_complete();
    s.push_failed("GetNodeInfo: UNAVAILABLE: no socket", false);
    const Readiness r = readiness(s.snapshot());
    EXPECT_FALSE(r.ready);
    EXPECT_NE(r.text.find("[+]api-lists ok"), std::string::npos) << r.text;
    EXPECT_NE(r.text.find("[-]dataplane failed: GetNodeInfo: UNAVAILABLE"), std::string::npos)
        << r.text;
    s.pushed(kT0, true, true, 3, 1ms);
    const Readiness ok = readiness(s.snapshot());
    EXPECT_TRUE(ok.ready) << ok.text;
    EXPECT_NE(ok.text.find("[+]first-sync ok (generation 3)"), std::string::npos) << ok.text;
}

TEST(Liveness, FailsWhenTheLoopStopsIterating) {
    Status s(kT0);
    HealthPolicy p;
    p.liveness_timeout = 30s;
    EXPECT_TRUE(live(s.snapshot(), kT0 + 29s, p));
    EXPECT_FALSE(live(s.snapshot(), kT0 + 31s, p));
    s.heartbeat(kT0 + 40s);
    EXPECT_TRUE(live(s.snapshot(), kT0 + 41s, p));
}

TEST(Metrics, SyncHistogramIsCumulativeWithKubeProxysBuckets) {
    Status s(kT0);
    s.pushed(kT0, true, true, 1, 3ms);   // le 0.004
    s.pushed(kT0, true, false, 2, 3ms);  // le 0.004
    s.pushed(kT0, false, false, 2, 1s);  // nothing changed: not a sync
    const std::string page = render_metrics(s.snapshot(), std::nullopt, "node-a");
    const std::string h = "kubeproxy_sync_proxy_rules_duration_seconds";
    EXPECT_NE(page.find("# TYPE " + h + " histogram"), std::string::npos);
    EXPECT_NE(page.find(h + "_bucket{le=\"0.002\"} 0\n"), std::string::npos) << page;
    EXPECT_NE(page.find(h + "_bucket{le=\"0.004\"} 2\n"), std::string::npos) << page;
    EXPECT_NE(page.find(h + "_bucket{le=\"16.384\"} 2\n"), std::string::npos) << page;
    EXPECT_NE(page.find(h + "_bucket{le=\"+Inf\"} 2\n"), std::string::npos) << page;
    EXPECT_NE(page.find(h + "_count 2\n"), std::string::npos) << page;
    EXPECT_NE(page.find("kubeproxy_sync_proxy_rules_last_timestamp_seconds 1800000000\n"),
              std::string::npos)
        << page;
    EXPECT_NE(page.find("kdp_table_pushes_total{kind=\"sync\"} 1\n"), std::string::npos);
    EXPECT_NE(page.find("kdp_table_pushes_total{kind=\"update\"} 1\n"), std::string::npos);
    EXPECT_NE(page.find("kdp_dataplane_up 0\n"), std::string::npos);
    EXPECT_EQ(page.find("kdp_port_"), std::string::npos) << "no dataplane, no port families";
}

TEST(Rfc3339, ParsesWhatTheEndpointSliceControllerWrites) {
    EXPECT_EQ(parse_rfc3339("2027-01-15T08:00:00Z"), kT0);
    EXPECT_EQ(parse_rfc3339("2027-01-15T08:00:00.250Z"), kT0 + 250ms);
    EXPECT_EQ(parse_rfc3339("2027-01-15T09:30:00+01:30"), kT0);
    EXPECT_EQ(parse_rfc3339("2027-01-15T06:00:00.5-02:00"), kT0 + 500ms);
    EXPECT_EQ(parse_rfc3339("2027-01-15 08:00:00Z"), std::nullopt);
    EXPECT_EQ(parse_rfc3339("2027-01-15T08:00:00"), std::nullopt);
    EXPECT_EQ(parse_rfc3339("2027-01-15T08:00:00Zjunk"), std::nullopt);
    EXPECT_EQ(parse_rfc3339(""), std::nullopt);
}

TEST(Metrics, NetworkProgrammingCountsEachTriggerAndNeverANegativeDelay) {
    Status s(kT0);
    s.programmed(kT0 + 3s, {kT0, kT0 + 2750ms, kT0 + 10s});  // 3 s, 0.25 s, skewed: 0 s
    const std::string page = render_metrics(s.snapshot(), std::nullopt, "node-a");
    const std::string h = "kubeproxy_network_programming_duration_seconds";
    EXPECT_NE(page.find("# TYPE " + h + " histogram"), std::string::npos);
    EXPECT_NE(page.find(h + "_bucket{le=\"0.25\"} 2\n"), std::string::npos) << page;
    EXPECT_NE(page.find(h + "_bucket{le=\"2\"} 2\n"), std::string::npos) << page;
    EXPECT_NE(page.find(h + "_bucket{le=\"3\"} 3\n"), std::string::npos) << page;
    EXPECT_NE(page.find(h + "_bucket{le=\"300\"} 3\n"), std::string::npos) << page;
    EXPECT_NE(page.find(h + "_sum 3.25\n"), std::string::npos) << page;
    EXPECT_NE(page.find(h + "_count 3\n"), std::string::npos) << page;
}

TEST(Metrics, ObjectsNotHonouredCountEveryKindAndOnlyInKubernetesMode) {
    Status s(kT0);
    EXPECT_EQ(render_metrics(s.snapshot(), std::nullopt, "n").find("kdp_objects_not_honoured"),
              std::string::npos)
        << "manifest mode has no such counters";
    s.source_stats({{"NetworkPolicy", 2}}, 1, 1);
    const std::string page = render_metrics(s.snapshot(), std::nullopt, "n");
    EXPECT_NE(page.find("kdp_objects_not_honoured_total{kind=\"NetworkPolicy\"} 2\n"),
              std::string::npos)
        << page;
    EXPECT_NE(page.find("kdp_objects_not_honoured_total{kind=\"Service\"} 0\n"), std::string::npos);
    EXPECT_NE(page.find("kdp_events_total{result=\"posted\"} 1\n"), std::string::npos);
    EXPECT_NE(page.find("kdp_events_total{result=\"failed\"} 1\n"), std::string::npos);
}

TEST(Metrics, LabelValuesAreEscaped) {
    EXPECT_EQ(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

// A blocking HTTP/1.0 GET to 127.0.0.1:port; returns the status line's code and the body.
std::pair<int, std::string> http_get(uint16_t port, const std::string& path) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return {0, "connect failed"};
    }
    const std::string req = "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
    if (::write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
        ::close(fd);
        return {0, "write failed"};
    }
    std::string resp;
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) {
        resp.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    const size_t body = resp.find("\r\n\r\n");
    if (resp.size() < 12 || body == std::string::npos) {
        return {0, resp};
    }
    return {std::stoi(resp.substr(9, 3)), resp.substr(body + 4)};
}

TEST(Readiness, AWorkerWhoseLoopStoodStillIsNamedAndTheOthersAreNot) {
    const std::vector<WorkerSample> before{{0, 1, 100}, {1, 2, 500}};
    const std::vector<WorkerSample> after{{0, 1, 180}, {1, 2, 500}};
    EXPECT_EQ(stalled_workers(before, after, 150ms),
              "worker 1 (lcore 2) made no progress in 150 ms");
    EXPECT_EQ(stalled_workers(before, before, 150ms),
              "worker 0 (lcore 1) made no progress in 150 ms; worker 1 (lcore 2) made no progress "
              "in 150 ms");
    EXPECT_EQ(stalled_workers({}, after, 150ms), "");
    Status s;
    s.lists_complete();
    s.pushed(WallClock::now(), true, true, 1, 2ms);
    EXPECT_TRUE(readiness(s.snapshot(), "").ready);
    EXPECT_FALSE(readiness(s.snapshot(), std::nullopt).ready);
    const Readiness r = readiness(s.snapshot(), stalled_workers(before, after, 150ms));
    EXPECT_FALSE(r.ready);
    EXPECT_NE(r.text.find("[-]workers failed: worker 1 (lcore 2)"), std::string::npos) << r.text;
}

class ServerTest : public ::testing::Test {
protected:
    ServerTest() : socket_(dir_.path() + "/dp.sock"), grpc_(backend_, socket_) {
        grpc_.start();
        options_.healthz_address = "127.0.0.1:0";
        options_.metrics_address = "127.0.0.1:0";
    }

    testing::TempDir dir_;
    std::string socket_;
    api::testing::FakeBackend backend_;
    api::GrpcServer grpc_;
    ServeOptions options_;
    Status status_;
};

TEST_F(ServerTest, ServesHealthReadinessAndTheDataplanesCounters) {
    api::StatsSnapshot stats;
    api::PortStats uplink;
    uplink.name = "uplink";
    uplink.counters.rx_packets = 7;
    uplink.counters.rx_bytes = 700;
    uplink.counters.drops[static_cast<size_t>(dataplane::DropReason::kNoRoute)] = 3;
    stats.ports.push_back(uplink);
    api::WorkerStats worker;
    worker.worker = 0;
    worker.tsc_hz = 1'000'000'000;
    worker.total_cycles = 4'000'000'000;
    worker.busy_cycles = 1'000'000'000;
    stats.workers.push_back(worker);
    backend_.set_stats_for_test(stats);
    backend_.set_conntrack_for_test({.total = 5, .capacity = 4096, .entries = {}});

    const Server server(options_, status_, socket_, "node-a");
    ASSERT_TRUE(server.errors().empty());
    ASSERT_NE(server.healthz_port(), 0);
    ASSERT_NE(server.metrics_port(), 0);

    EXPECT_EQ(http_get(server.metrics_port(), "/readyz").first, 503);
    EXPECT_EQ(http_get(server.metrics_port(), "/healthz").first, 200);
    const auto node = http_get(server.healthz_port(), "/healthz");
    EXPECT_EQ(node.first, 200);
    EXPECT_NE(node.second.find("\"nodeHealthy\": true"), std::string::npos) << node.second;
    EXPECT_EQ(http_get(server.healthz_port(), "/metrics").first, 404);

    status_.lists_complete();
    status_.pushed(WallClock::now(), true, true, 1, 2ms);
    // The worker's loop counter stands still: the node is not ready, and /readyz says why.
    const auto stuck = http_get(server.metrics_port(), "/readyz?verbose");
    EXPECT_EQ(stuck.first, 503) << stuck.second;
    EXPECT_NE(stuck.second.find("[-]workers failed: worker 0 (lcore 0) made no progress in "),
              std::string::npos)
        << stuck.second;
    {
        // Now it iterates, as a live worker does: ready.
        std::atomic<bool> done{false};
        std::thread loop([&] {
            api::StatsSnapshot s = stats;
            while (!done) {
                s.workers[0].total_cycles += 1'000'000;
                backend_.set_stats_for_test(s);
                std::this_thread::sleep_for(2ms);
            }
        });
        const auto ready = http_get(server.metrics_port(), "/readyz?verbose");
        done = true;
        loop.join();
        EXPECT_EQ(ready.first, 200) << ready.second;
        EXPECT_NE(ready.second.find("[+]workers ok\n"), std::string::npos) << ready.second;
    }
    stats.workers[0].total_cycles = 4'000'000'000;
    backend_.set_stats_for_test(stats);

    const auto m = http_get(server.metrics_port(), "/metrics");
    ASSERT_EQ(m.first, 200);
    for (const std::string& want : std::vector<std::string>{
             "kdp_dataplane_up 1\n",
             "kdp_port_receive_packets_total{port=\"uplink\"} 7\n",
             "kdp_port_receive_bytes_total{port=\"uplink\"} 700\n",
             "kdp_port_drops_total{port=\"uplink\",reason=\"no_route\"} 3\n",
             "kdp_conntrack_entries 5\n",
             "kdp_conntrack_capacity 4096\n",
             "kdp_table_generation 0\n",
             "kdp_worker_busy_seconds_total{worker=\"0\"} 1\n",
             "kdp_worker_seconds_total{worker=\"0\"} 4\n",
             std::string("kdp_dataplane_build_info{version=\"") + version() + "\",api_revision=\"" +
                 std::to_string(kApiRevision) + "\"} 1\n",
         }) {
        EXPECT_NE(m.second.find(want), std::string::npos) << "missing " << want << m.second;
    }
}

TEST_F(ServerTest, AnAddressInUseIsReportedAndTheOtherListenerServes) {
    const Server first(options_, status_, socket_, "node-a");
    options_.healthz_address = "127.0.0.1:" + std::to_string(first.healthz_port());
    const Server second(options_, status_, socket_, "node-a");
    ASSERT_EQ(second.errors().size(), 1u);
    EXPECT_NE(second.errors()[0].find(options_.healthz_address), std::string::npos)
        << second.errors()[0];
    EXPECT_EQ(http_get(second.metrics_port(), "/healthz").first, 200);
}

TEST_F(ServerTest, ABadAddressIsReported) {
    options_.metrics_address = "localhost:http";
    const Server server(options_, status_, socket_, "node-a");
    ASSERT_EQ(server.errors().size(), 1u);
    EXPECT_NE(server.errors()[0].find("localhost:http"), std::string::npos);
}

}  // namespace
}  // namespace kdp::control::serve
