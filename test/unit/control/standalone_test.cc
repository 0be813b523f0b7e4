// kdp-control's run loop in-process: --once, --watch (file change -> incremental update,
// dataplane restart -> full sync), bad input, and argument handling.
#include "standalone/standalone.h"

#include <sstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "api/fake_backend.h"
#include "api/grpc_server.h"
#include "control/temp_files.h"

namespace kdp::control::standalone {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr const char* kNodes = R"(
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata: {name: node-a}
  spec: {podCIDR: 10.244.1.0/24}
  status: {addresses: [{type: InternalIP, address: 192.168.0.1}]}
- apiVersion: v1
  kind: Node
  metadata: {name: node-b}
  spec: {podCIDR: 10.244.2.0/24}
  status: {addresses: [{type: InternalIP, address: 192.168.0.2}]}
)";

std::string pod_yaml(const std::string& name, const std::string& ip) {
    return "---\napiVersion: v1\nkind: Pod\nmetadata: {name: " + name +
           ", namespace: prod}\nspec: {nodeName: node-a}\nstatus: {podIP: " + ip + "}\n";
}

// Polls `pred` for up to 10 s.
template <typename P>
bool eventually(P pred) {
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < until) {
        if (pred()) {
            return true;
        }
        std::this_thread::sleep_for(10ms);
    }
    return pred();
}

class StandaloneTest : public ::testing::Test {
protected:
    StandaloneTest() : socket_(dir_.path() + "/dp.sock"), server_(backend_, socket_) {
        server_.start();
        options_.node = "node-a";
        options_.socket = socket_;
        options_.poll = 20ms;
        options_.max_backoff = 100ms;
        options_.once_timeout = 2000ms;
        options_.serve.healthz_address = "127.0.0.1:0";  // never a fixed port in tests
        options_.serve.metrics_address = "127.0.0.1:0";
    }

    testing::TempDir dir_;
    std::string socket_;
    api::testing::FakeBackend backend_;
    api::GrpcServer server_;
    Options options_;
    std::atomic<bool> stop_{false};
};

TEST_F(StandaloneTest, OncePushesFullStateAtTheNextGeneration) {
    options_.manifests = {dir_.write("nodes.yaml", kNodes),
                          dir_.write("pods.yaml", pod_yaml("web", "10.244.1.5"))};
    EXPECT_EQ(run(options_, stop_), 0);
    const auto t = backend_.tables();
    EXPECT_EQ(t.generation, 1u);
    ASSERT_EQ(t.routes.size(), 1u);
    EXPECT_EQ(t.routes[0].node_name, "node-b");
    ASSERT_EQ(t.pods.size(), 1u);
    EXPECT_EQ(t.pods[0].name, "prod/web");
}

TEST_F(StandaloneTest, OnceWithBadManifestPushesNothing) {
    options_.manifests = {dir_.write("nodes.yaml", kNodes),
                          dir_.write("pods.yaml", pod_yaml("web", "10.244.1.500"))};
    EXPECT_EQ(run(options_, stop_), 1);
    EXPECT_EQ(backend_.applies(), 0);
}

TEST_F(StandaloneTest, OnceGivesUpOnAnUnreachableDataplane) {
    options_.manifests = {dir_.write("nodes.yaml", kNodes)};
    options_.socket = dir_.path() + "/nobody.sock";
    options_.once_timeout = 300ms;
    EXPECT_EQ(run(options_, stop_), 1);
}

TEST_F(StandaloneTest, WatchPushesChangesAsUpdatesAndResyncsAfterARestart) {
    dir_.write("nodes.yaml", kNodes);
    dir_.write("pods.yaml", pod_yaml("web", "10.244.1.5"));
    options_.manifests = {dir_.path()};  // a directory: every manifest in it
    options_.watch = true;
    std::thread runner([&] { EXPECT_EQ(run(options_, stop_), 0); });

    EXPECT_TRUE(eventually([&] { return backend_.tables().generation == 1; }));
    EXPECT_EQ(backend_.tables().pods.size(), 1u);

    // A file change goes out as one update with the next generation.
    std::this_thread::sleep_for(20ms);
    dir_.write("pods.yaml", pod_yaml("web", "10.244.1.5") + pod_yaml("api", "10.244.1.6"));
    EXPECT_TRUE(eventually([&] { return backend_.tables().pods.size() == 2; }));
    EXPECT_EQ(backend_.tables().generation, 2u);

    // A bad edit keeps the last good state in force.
    dir_.write("pods.yaml", pod_yaml("web", "nope"));
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(backend_.tables().generation, 2u);
    EXPECT_EQ(backend_.tables().pods.size(), 2u);

    // The dataplane restarts with empty tables: full state goes back at generation 1.
    backend_.restart_for_test();
    EXPECT_TRUE(eventually([&] { return backend_.tables().routes.size() == 1; }));
    EXPECT_EQ(backend_.tables().generation, 1u);
    EXPECT_EQ(backend_.tables().pods.size(), 2u);

    stop_ = true;
    runner.join();
}

TEST(StandaloneArgs, ParsesAndRefusesBadUsage) {
    std::ostringstream out, err;
    auto r = parse_args(
        {"--node", "n", "--manifests", "a.yaml", "b/", "--watch", "--dataplane", "/tmp/x.sock"},
        out, err);
    ASSERT_TRUE(std::holds_alternative<Options>(r));
    const auto& o = std::get<Options>(r);
    EXPECT_EQ(o.node, "n");
    EXPECT_EQ(o.manifests, (std::vector<std::string>{"a.yaml", "b/"}));
    EXPECT_TRUE(o.watch);
    EXPECT_EQ(o.socket, "/tmp/x.sock");

    for (const auto& bad : std::vector<std::vector<std::string>>{
             {"--manifests", "a.yaml"},
             {"--node", "n"},
             {"--node", "n", "--manifests", "a", "--watch", "--once"},
             {"--node", "n", "--manifests", "a", "--kubeconfig", "k"},
             {"--node", "n", "--manifests", "a", "--bogus"},
         }) {
        err.str("");
        r = parse_args(bad, out, err);
        ASSERT_TRUE(std::holds_alternative<int>(r));
        EXPECT_EQ(std::get<int>(r), 2);
        EXPECT_THAT(err.str(), HasSubstr("kdp-control: "));
    }
    EXPECT_EQ(std::get<int>(parse_args({"--help"}, out, err)), 0);
}

TEST(StandaloneArgs, KubernetesSourceIsNotBuiltYet) {
    std::ostringstream out, err;
    auto r = parse_args({"--node", "n", "--in-cluster"}, out, err);
    ASSERT_TRUE(std::holds_alternative<Options>(r));
    std::atomic<bool> stop{false};
    EXPECT_EQ(run(std::get<Options>(r), stop), 1);
}

}  // namespace
}  // namespace kdp::control::standalone
