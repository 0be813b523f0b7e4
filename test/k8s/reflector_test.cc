// The reflector against test/k8s/fake_apiserver.py over real TLS: paging, watch events, bookmarks,
// 410 Gone and relist, reconnect with backoff, TLS and auth failures.
//
// Each test starts its own server (its own CA, ephemeral port) as a subprocess and drives it
// through stdin/stdout commands; the reflector runs on an io_context in a second thread and
// reports to a RecordingSink that the test thread waits on.
#include "control/k8s/reflector.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/core.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/k8s/client.h"
#include "control/k8s/kubeconfig.h"
#include "test/k8s/fake_apiserver.h"

namespace kdp::control::k8s {
namespace {

namespace asio = boost::asio;
using nlohmann::json;
using std::chrono::milliseconds;
using ::testing::HasSubstr;

using test::FakeApiServer;
using test::kToken;
using test::kWait;
using test::read_text;

struct Record {
    EventType type;
    std::string key;
    std::string rv;
    json object;
};

class RecordingSink : public EventSink {
public:
    void on_event(const ResourceSpec& /*r*/, EventType type, const json& obj) override {
        std::lock_guard lock(mu_);
        events_.push_back(
            {type, object_key(obj), obj["metadata"].value("resourceVersion", ""), obj});
        cv_.notify_all();
    }
    void on_synced(const ResourceSpec& /*r*/) override {
        std::lock_guard lock(mu_);
        synced_events_.push_back(events_.size());
        cv_.notify_all();
    }
    void on_error(const ResourceSpec& /*r*/, const std::string& message) override {
        std::lock_guard lock(mu_);
        errors_.push_back(message);
        cv_.notify_all();
    }

    bool wait(const std::function<bool()>& pred) {
        std::unique_lock lock(mu_);
        return cv_.wait_for(lock, kWait, pred);
    }
    bool wait_events(size_t n) {
        return wait([&] { return events_.size() >= n; });
    }
    bool wait_synced(size_t n) {
        return wait([&] { return synced_events_.size() >= n; });
    }
    bool wait_errors(size_t n) {
        return wait([&] { return errors_.size() >= n; });
    }
    std::vector<Record> events() {
        std::lock_guard lock(mu_);
        return events_;
    }
    std::vector<size_t> synced() {
        std::lock_guard lock(mu_);
        return synced_events_;
    }
    std::vector<std::string> errors() {
        std::lock_guard lock(mu_);
        return errors_;
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<Record> events_;
    std::vector<size_t> synced_events_;  // events_.size() at each on_synced
    std::vector<std::string> errors_;
};

// A reflector running on its own io_context thread.
class Running {
public:
    Running(ClusterConfig cfg, ResourceSpec spec, RecordingSink& sink, unsigned page_size = 2)
        : client_(ioc_.get_executor(), std::move(cfg)) {
        ReflectorOptions opts;
        opts.page_size = page_size;
        opts.watch_timeout = std::chrono::seconds(30);
        opts.request_timeout = std::chrono::seconds(5);
        opts.backoff = {milliseconds(20), milliseconds(200), 2.0, 0.5};
        opts.seed = 1;
        opts.sleep = [this](milliseconds d) -> asio::awaitable<void> {
            {
                std::lock_guard lock(mu_);
                sleeps_.push_back(d);
            }
            asio::steady_timer t(co_await asio::this_coro::executor, d);
            co_await t.async_wait(asio::use_awaitable);
        };
        reflector_ = std::make_unique<Reflector>(client_, std::move(spec), sink, std::move(opts));
        asio::co_spawn(
            ioc_,
            [this]() -> asio::awaitable<void> {
                co_await reflector_->run();
                done_.set_value();
            },
            asio::detached);
        thread_ = std::thread([this] { ioc_.run(); });
    }
    ~Running() {
        asio::post(ioc_, [this] { reflector_->stop(); });
        if (done_.get_future().wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
            ADD_FAILURE() << "reflector did not stop within 5 s";
            ioc_.stop();
        }
        thread_.join();
    }

    // Runs `f` on the reflector's thread and returns its result.
    template <class F>
    auto on_io(F f) {
        std::packaged_task<decltype(f())()> task(std::move(f));
        auto fut = task.get_future();
        asio::post(ioc_, [&task] { task(); });
        return fut.get();
    }
    std::string rv() {
        return on_io([this] { return reflector_->resource_version(); });
    }
    Reflector::Stats stats() {
        return on_io([this] { return reflector_->stats(); });
    }
    std::vector<milliseconds> sleeps() {
        std::lock_guard lock(mu_);
        return sleeps_;
    }

private:
    asio::io_context ioc_;
    Client client_;
    std::unique_ptr<Reflector> reflector_;
    std::promise<void> done_;
    std::thread thread_;
    std::mutex mu_;
    std::vector<milliseconds> sleeps_;
};

bool wait_until(const std::function<bool()>& pred) {
    const auto until = std::chrono::steady_clock::now() + kWait;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > until) {
            return false;
        }
        std::this_thread::sleep_for(milliseconds(5));
    }
    return true;
}

const ResourceSpec kNodes{"nodes", "/api/v1/nodes", "", ""};

json node(const std::string& name, const std::string& cidr = "10.244.0.0/24") {
    return {{"metadata", {{"name", name}, {"labels", {{"kubernetes.io/hostname", name}}}}},
            {"spec", {{"podCIDR", cidr}}}};
}

std::vector<json> watch_requests(const json& log) {
    std::vector<json> out;
    for (const auto& r : log) {
        if (r["query"].value("watch", "") == "true") {
            out.push_back(r);
        }
    }
    return out;
}

TEST(Reflector, PagedListThenWatchDeliversAddModifyDeleteInOrder) {
    FakeApiServer server;
    for (const char* n : {"n3", "n1", "n5", "n2", "n4"}) {
        server.create(kNodes.path, node(n));
    }
    RecordingSink sink;
    Running run(server.config(), kNodes, sink, /*page_size=*/2);
    ASSERT_TRUE(sink.wait_synced(1));
    auto ev = sink.events();
    ASSERT_EQ(ev.size(), 5u);
    for (size_t i = 0; i < 5; ++i) {
        EXPECT_EQ(ev[i].type, EventType::kAdded);
        EXPECT_EQ(ev[i].key, fmt::format("n{}", i + 1));
        // List items come without kind/apiVersion; the reflector fills them in.
        EXPECT_EQ(ev[i].object["kind"], "Node");
        EXPECT_EQ(ev[i].object["apiVersion"], "v1");
    }
    EXPECT_EQ(sink.synced(), std::vector<size_t>{5});

    ASSERT_TRUE(server.wait_watchers(1));
    const json log = server.requests();
    ASSERT_GE(log.size(), 4u);
    EXPECT_EQ(log[0]["query"]["limit"], "2");
    EXPECT_FALSE(log[0]["query"].contains("continue"));
    EXPECT_TRUE(log[1]["query"].contains("continue"));
    EXPECT_TRUE(log[2]["query"].contains("continue"));
    EXPECT_EQ(log[0]["auth"], "token");
    const auto watches = watch_requests(log);
    ASSERT_EQ(watches.size(), 1u);
    EXPECT_EQ(watches[0]["query"]["resourceVersion"], "105");  // 100 + five creates
    EXPECT_EQ(watches[0]["query"]["allowWatchBookmarks"], "true");
    EXPECT_EQ(watches[0]["query"]["timeoutSeconds"], "30");

    server.create(kNodes.path, node("n6"));
    server.cmd({{"op", "update"}, {"path", kNodes.path}, {"object", node("n1", "10.244.9.0/24")}});
    server.cmd({{"op", "delete"}, {"path", kNodes.path}, {"name", "n2"}});
    // Events cut into 3-byte HTTP chunks must come out whole.
    server.cmd({{"op", "set"}, {"chunk_size", 3}});
    server.create(kNodes.path, node("n7"));
    ASSERT_TRUE(sink.wait_events(9));
    ev = sink.events();
    EXPECT_EQ(ev[5].type, EventType::kAdded);
    EXPECT_EQ(ev[5].key, "n6");
    EXPECT_EQ(ev[6].type, EventType::kModified);
    EXPECT_EQ(ev[6].key, "n1");
    EXPECT_EQ(ev[6].object["spec"]["podCIDR"], "10.244.9.0/24");
    EXPECT_EQ(ev[7].type, EventType::kDeleted);
    EXPECT_EQ(ev[7].key, "n2");
    EXPECT_EQ(ev[8].type, EventType::kAdded);
    EXPECT_EQ(ev[8].key, "n7");
    EXPECT_EQ(ev[8].rv, "109");
    EXPECT_EQ(run.rv(), "109");
    EXPECT_EQ(run.on_io([&] { return 0; }), 0);
    EXPECT_TRUE(sink.errors().empty());
}

TEST(Reflector, ExpiredContinueTokenFallsBackToOneUnpagedList) {
    FakeApiServer server;
    for (const char* n : {"n1", "n2", "n3", "n4", "n5"}) {
        server.create(kNodes.path, node(n));
    }
    server.cmd({{"op", "set"}, {"expire_continue_after", 1}});
    RecordingSink sink;
    Running run(server.config(), kNodes, sink, /*page_size=*/2);
    ASSERT_TRUE(sink.wait_synced(1));
    EXPECT_EQ(sink.synced(), std::vector<size_t>{5});  // one sync, with everything, no dups
    const json log = server.requests();
    ASSERT_GE(log.size(), 3u);
    EXPECT_EQ(log[1]["status"], 410);
    EXPECT_TRUE(log[1]["query"].contains("continue"));
    EXPECT_FALSE(log[2]["query"].contains("limit"));
    EXPECT_TRUE(sink.errors().empty());
}

TEST(Reflector, PodsOfThisNodeOnlyThroughTheFieldSelector) {
    FakeApiServer server;
    const std::string pods = "/api/v1/pods";
    server.create(pods, {{"metadata", {{"name", "a"}, {"namespace", "web"}}},
                         {"spec", {{"nodeName", "node-a"}}}});
    server.create(pods, {{"metadata", {{"name", "b"}, {"namespace", "web"}}},
                         {"spec", {{"nodeName", "node-b"}}}});
    RecordingSink sink;
    const ResourceSpec spec = pods_on_node("node-a");
    Running run(server.config(), spec, sink);
    ASSERT_TRUE(sink.wait_synced(1));
    ASSERT_TRUE(server.wait_watchers(1));
    server.create(pods, {{"metadata", {{"name", "c"}, {"namespace", "web"}}},
                         {"spec", {{"nodeName", "node-b"}}}});
    server.create(pods, {{"metadata", {{"name", "d"}, {"namespace", "db"}}},
                         {"spec", {{"nodeName", "node-a"}}}});
    ASSERT_TRUE(sink.wait_events(2));
    const auto ev = sink.events();
    ASSERT_EQ(ev.size(), 2u);
    EXPECT_EQ(ev[0].key, "web/a");
    EXPECT_EQ(ev[0].object["kind"], "Pod");
    EXPECT_EQ(ev[1].key, "db/d");
    for (const auto& r : server.requests()) {
        EXPECT_EQ(r["query"]["fieldSelector"], "spec.nodeName=node-a");
    }
}

TEST(Reflector, BookmarkAdvancesResourceVersionAndReconnectResumesFromIt) {
    FakeApiServer server;
    server.create(kNodes.path, node("n1"));
    RecordingSink sink;
    Running run(server.config(), kNodes, sink);
    ASSERT_TRUE(sink.wait_synced(1));
    ASSERT_TRUE(server.wait_watchers(1));
    const std::string bookmark_rv = server.cmd({{"op", "bookmark"}})["resourceVersion"];
    EXPECT_TRUE(wait_until([&] { return run.rv() == bookmark_rv; })) << run.rv();
    EXPECT_EQ(sink.events().size(), 1u);  // a bookmark is not an event for the consumer

    EXPECT_EQ(server.cmd({{"op", "drop"}})["watchers"], 1);
    ASSERT_TRUE(server.wait_cmd({{"op", "requests"}}, [](const json& r) {
        return watch_requests(r["requests"]).size() == 2;
    }));
    const auto watches = watch_requests(server.requests());
    EXPECT_EQ(watches[1]["query"]["resourceVersion"], bookmark_rv);
    ASSERT_TRUE(server.wait_watchers(1));
    ASSERT_TRUE(wait_until([&] { return run.stats().watches == 2; }));
    EXPECT_EQ(run.stats().lists, 1u);  // resumed, not relisted
    ASSERT_EQ(run.sleeps().size(), 1u);
    EXPECT_LE(run.sleeps()[0], milliseconds(20));
    EXPECT_GE(run.sleeps()[0], milliseconds(10));
    ASSERT_EQ(sink.errors().size(), 1u);
    EXPECT_THAT(sink.errors()[0], HasSubstr("connection closed before the response ended"));
    server.create(kNodes.path, node("n2"));
    ASSERT_TRUE(sink.wait_events(2));
    EXPECT_EQ(sink.events()[1].key, "n2");
}

TEST(Reflector, ReconnectBacksOffExponentiallyAndKeepsTheLastState) {
    FakeApiServer server;
    server.create(kNodes.path, node("n1"));
    RecordingSink sink;
    Running run(server.config(), kNodes, sink);
    ASSERT_TRUE(sink.wait_synced(1));
    ASSERT_TRUE(server.wait_watchers(1));
    server.cmd({{"op", "fail"}, {"count", 2}, {"status", 503}});
    server.cmd({{"op", "drop"}});
    ASSERT_TRUE(sink.wait_errors(3));
    ASSERT_TRUE(server.wait_watchers(1));
    server.cmd({{"op", "fail"}, {"count", 1}, {"status", 0}});  // a hang-up after TLS
    server.cmd({{"op", "drop"}});
    ASSERT_TRUE(sink.wait_errors(5));
    ASSERT_TRUE(server.wait_watchers(1));

    const auto sleeps = run.sleeps();
    ASSERT_EQ(sleeps.size(), 5u);
    // First outage: drop, 503, 503 -> 20, 40, 80 ms bases with up to 50% jitter off.
    const int bases[] = {20, 40, 80, 20, 40};  // the working watch in between reset the backoff
    for (size_t i = 0; i < 5; ++i) {
        EXPECT_LE(sleeps[i].count(), bases[i]) << i;
        EXPECT_GE(sleeps[i].count(), bases[i] / 2) << i;
    }
    const auto errors = sink.errors();
    EXPECT_THAT(errors[1], HasSubstr("HTTP 503"));
    EXPECT_THAT(errors[2], HasSubstr("HTTP 503"));
    // The consumer was never told to forget anything.
    ASSERT_EQ(sink.events().size(), 1u);
    EXPECT_EQ(run.stats().lists, 1u);
}

TEST(Reflector, GoneWatchRelistsAndReportsTheDifferenceAsSyntheticEvents) {
    FakeApiServer server;
    for (const char* n : {"n1", "n2", "n3", "n4"}) {
        server.create(kNodes.path, node(n));
    }
    RecordingSink sink;
    Running run(server.config(), kNodes, sink);
    ASSERT_TRUE(sink.wait_synced(1));
    ASSERT_TRUE(server.wait_watchers(1));
    // Changes whose events are lost to compaction.
    server.cmd({{"op", "delete"}, {"path", kNodes.path}, {"name", "n1"}, {"silent", true}});
    server.cmd({{"op", "update"},
                {"path", kNodes.path},
                {"object", node("n2", "10.244.7.0/24")},
                {"silent", true}});
    server.cmd({{"op", "create"}, {"path", kNodes.path}, {"object", node("n5")}, {"silent", true}});
    server.cmd({{"op", "expire"}});  // the open watch gets ERROR 410 Expired
    ASSERT_TRUE(sink.wait_synced(2));
    auto ev = sink.events();
    ASSERT_EQ(ev.size(), 7u);
    EXPECT_EQ(ev[4].type, EventType::kDeleted);
    EXPECT_EQ(ev[4].key, "n1");
    EXPECT_EQ(ev[4].rv, "101");  // the last state the consumer saw
    EXPECT_EQ(ev[5].type, EventType::kModified);
    EXPECT_EQ(ev[5].key, "n2");
    EXPECT_EQ(ev[5].object["spec"]["podCIDR"], "10.244.7.0/24");
    EXPECT_EQ(ev[6].type, EventType::kAdded);
    EXPECT_EQ(ev[6].key, "n5");
    EXPECT_EQ(sink.synced(), (std::vector<size_t>{4, 7}));
    const auto stats = run.stats();
    EXPECT_EQ(stats.gone, 1u);
    EXPECT_EQ(stats.lists, 2u);
    EXPECT_TRUE(run.sleeps().empty());  // the first 410 relists at once
    EXPECT_EQ(run.on_io([&] { return 0; }), 0);

    ASSERT_TRUE(server.wait_watchers(1));
    server.create(kNodes.path, node("n6"));
    ASSERT_TRUE(sink.wait_events(8));
    EXPECT_EQ(sink.events()[7].key, "n6");
}

TEST(Reflector, HttpGoneOnWatchRelists) {
    FakeApiServer server;
    server.create(kNodes.path, node("n1"));
    RecordingSink sink;
    Running run(server.config(), kNodes, sink);
    ASSERT_TRUE(sink.wait_synced(1));
    ASSERT_TRUE(server.wait_watchers(1));
    server.cmd({{"op", "gone_http"}, {"count", 1}});
    server.cmd({{"op", "drop"}});
    ASSERT_TRUE(sink.wait_synced(2));
    EXPECT_EQ(sink.events().size(), 1u);  // nothing changed, so the relist reports nothing
    EXPECT_EQ(run.stats().gone, 1u);
    ASSERT_TRUE(server.wait_watchers(1));
}

TEST(Reflector, WrongCaIsRefusedWithAClearError) {
    FakeApiServer server;
    server.create(kNodes.path, node("n1"));
    ClusterConfig cfg = server.config();
    cfg.ca_pem = read_text(server.file("wrong_ca"));
    RecordingSink sink;
    Running run(cfg, kNodes, sink);
    ASSERT_TRUE(sink.wait_errors(2));  // and it keeps retrying
    EXPECT_THAT(sink.errors()[0], HasSubstr("TLS handshake failed: certificate verify failed"));
    EXPECT_TRUE(sink.events().empty());
    EXPECT_TRUE(sink.synced().empty());
}

TEST(Reflector, CertificateNotNamingTheHostIsRefused) {
    FakeApiServer server({"--server-san", "DNS:apiserver.example"}, /*own_certs=*/true);
    RecordingSink sink;
    Running run(server.config(), kNodes, sink);
    ASSERT_TRUE(sink.wait_errors(1));
    EXPECT_THAT(sink.errors()[0], HasSubstr("certificate verify failed: IP address mismatch"));
    EXPECT_TRUE(sink.synced().empty());
}

TEST(Reflector, MissingOrWrongTokenSurfaces401AndARotatedTokenFileRecovers) {
    FakeApiServer server;
    server.create(kNodes.path, node("n1"));
    ClusterConfig cfg = server.config();
    cfg.token.clear();
    cfg.token_file = server.dir() / "token";
    std::ofstream(cfg.token_file) << "wrong\n";
    RecordingSink sink;
    Running run(cfg, kNodes, sink);
    ASSERT_TRUE(sink.wait_errors(2));
    EXPECT_THAT(sink.errors()[0], HasSubstr("HTTP 401 Unauthorized"));
    EXPECT_TRUE(sink.synced().empty());
    std::ofstream(cfg.token_file) << kToken << "\n";  // the kubelet rotates the projected token
    ASSERT_TRUE(sink.wait_synced(1));
    EXPECT_EQ(sink.events().size(), 1u);
}

TEST(Reflector, ClientCertificateAuthenticates) {
    FakeApiServer server;
    server.create(kNodes.path, node("n1"));
    ClusterConfig cfg = server.config();
    cfg.token.clear();
    cfg.client_cert_pem = read_text(server.file("client_cert"));
    cfg.client_key_pem = read_text(server.file("client_key"));
    RecordingSink sink;
    Running run(cfg, kNodes, sink);
    ASSERT_TRUE(sink.wait_synced(1));
    EXPECT_EQ(server.requests()[0]["auth"], "cert");
}

TEST(Client, RejectsAKeyThatIsNotPem) {
    asio::io_context ioc;
    ClusterConfig cfg;
    parse_server_url("https://127.0.0.1:1", cfg);
    cfg.client_cert_pem = "not a certificate";
    cfg.client_key_pem = "not a key";
    try {
        Client c(ioc.get_executor(), cfg);
        ADD_FAILURE() << "accepted a bogus client certificate";
    } catch (const ConfigError& e) {
        EXPECT_THAT(e.what(), HasSubstr("client-certificate"));
    }
}

}  // namespace
}  // namespace kdp::control::k8s
