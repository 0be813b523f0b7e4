// The push client's generation handling, against a real in-process GrpcServer over an
// in-test Backend.
#include "push/dataplane_client.h"

#include <memory>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "api/fake_backend.h"
#include "api/grpc_server.h"
#include "common/version.h"
#include "control/temp_files.h"
#include "spec/convert.h"

namespace kdp::control {
namespace {

table::RouteSpec route(const char* node, const char* ip, const char* cidr) {
    return {node, *Ip4::parse(ip), *Prefix4::parse(cidr), Mac::from_ip(*Ip4::parse(ip))};
}

table::PodSpec pod(const char* name, const char* ip) {
    return {name, *Ip4::parse(ip), name};
}

table::TableSpec desired() {
    table::TableSpec s;
    s.routes = {route("node-c", "192.168.0.3", "10.244.3.0/24"),
                route("node-b", "192.168.0.2", "10.244.2.0/24")};
    s.pods = {pod("ns/a", "10.244.1.2"), pod("ns/b", "10.244.1.3")};
    return s;
}

class PusherTest : public ::testing::Test {
protected:
    PusherTest() : server_(backend_, dir_.path() + "/dp.sock"), client_(dir_.path() + "/dp.sock") {
        server_.start();
    }

    table::TableSpec in_force_sorted() {
        auto s = backend_.tables();
        s.generation = 0;
        return s;
    }

    static table::TableSpec sorted(table::TableSpec s) {
        api::sort_spec(s);
        return s;
    }

    testing::TempDir dir_;
    api::testing::FakeBackend backend_;
    api::GrpcServer server_;
    DataplaneClient client_;
};

TEST_F(PusherTest, FirstPushSyncsAtTheNextGeneration) {
    // Someone already wrote generation 7.
    table::TableSpec other;
    other.generation = 7;
    ASSERT_FALSE(backend_.apply_tables(other));

    Pusher pusher(client_);
    const auto r = pusher.push(desired());
    EXPECT_EQ(r.action, Pusher::Action::kSync);
    EXPECT_EQ(r.generation, 8u);
    EXPECT_EQ(backend_.tables().generation, 8u);
    EXPECT_EQ(in_force_sorted(), sorted(desired()));
}

TEST_F(PusherTest, UnchangedStateSendsNothing) {
    Pusher pusher(client_);
    pusher.push(desired());
    const int applies = backend_.applies();
    const auto r = pusher.push(desired());
    EXPECT_EQ(r.action, Pusher::Action::kNone);
    EXPECT_EQ(r.generation, 1u);
    EXPECT_EQ(backend_.applies(), applies);
}

TEST_F(PusherTest, ChangesGoAsOneIncrementalUpdate) {
    Pusher pusher(client_);
    pusher.push(desired());
    auto next = desired();
    next.pods.erase(next.pods.begin());                    // delete ns/a
    next.pods.push_back(pod("ns/c", "10.244.1.4"));        // add ns/c
    next.routes[0].node_ip = *Ip4::parse("192.168.0.33");  // change node-c
    const auto r = pusher.push(next);
    EXPECT_EQ(r.action, Pusher::Action::kUpdate);
    EXPECT_EQ(r.generation, 2u);
    EXPECT_EQ(r.changes, 3u);
    EXPECT_EQ(in_force_sorted(), sorted(next));
}

TEST_F(PusherTest, AnotherWriterForcesAFullSync) {
    Pusher pusher(client_);
    pusher.push(desired());
    table::TableSpec other;
    other.generation = 5;
    ASSERT_FALSE(backend_.apply_tables(other));  // e.g. `kdpctl apply` in between

    const auto r = pusher.push(desired());
    EXPECT_EQ(r.action, Pusher::Action::kSync);
    EXPECT_EQ(r.generation, 6u);
    EXPECT_EQ(in_force_sorted(), sorted(desired()));
}

TEST_F(PusherTest, DataplaneRestartForcesAFullSync) {
    Pusher pusher(client_);
    pusher.push(desired());
    pusher.push(desired());
    backend_.restart_for_test();  // tables gone, generation 0, new start time

    const auto r = pusher.push(desired());
    EXPECT_EQ(r.action, Pusher::Action::kSync);
    EXPECT_EQ(r.reason, "dataplane restarted");
    EXPECT_EQ(r.generation, 1u);
    EXPECT_EQ(in_force_sorted(), sorted(desired()));
}

TEST_F(PusherTest, RefusedStateThrowsAndChangesNothing) {
    Pusher pusher(client_);
    pusher.push(desired());
    auto bad = desired();
    bad.pods.push_back(pod("ns/out", "10.9.9.9"));  // outside the node's pod CIDR
    try {
        pusher.push(bad);
        FAIL() << "expected RpcError";
    } catch (const RpcError& e) {
        EXPECT_EQ(e.code(), grpc::StatusCode::INVALID_ARGUMENT);
        EXPECT_NE(std::string(e.what()).find("ns/out"), std::string::npos) << e.what();
    }
    EXPECT_EQ(backend_.tables().generation, 1u);
    EXPECT_EQ(in_force_sorted(), sorted(desired()));
    // The next push starts over with a full sync.
    EXPECT_EQ(pusher.push(desired()).action, Pusher::Action::kSync);
}

TEST(Pusher, UnreachableDataplaneIsUnavailable) {
    testing::TempDir dir;
    DataplaneClient client(dir.path() + "/nobody.sock", std::chrono::milliseconds(500));
    Pusher pusher(client);
    try {
        pusher.push(desired());
        FAIL() << "expected RpcError";
    } catch (const RpcError& e) {
        EXPECT_TRUE(e.code() == grpc::StatusCode::UNAVAILABLE ||
                    e.code() == grpc::StatusCode::DEADLINE_EXCEEDED)
            << e.what();
    }
}

TEST_F(PusherTest, TheDataplaneReportsTheApiRevisionThisBuildSpeaks) {
    const v1::NodeInfo info = client_.node_info();
    EXPECT_EQ(info.api_revision(), kApiRevision);
    EXPECT_EQ(info.version(), version());
    EXPECT_NO_THROW(check_api_revision(info, client_.socket_path(), "kdp-control"));
}

TEST(ApiRevision, AnotherRevisionIsRefusedWithBothVersionsNamed) {
    v1::NodeInfo info;
    info.set_version("9.9.9 (git v9.9.9)");
    info.set_api_revision(kApiRevision + 1);
    try {
        check_api_revision(info, "/run/kdp/dp.sock", "kdp-cni");
        FAIL() << "expected ApiRevisionError";
    } catch (const ApiRevisionError& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("9.9.9 (git v9.9.9)"), std::string::npos) << m;
        EXPECT_NE(m.find(version()), std::string::npos) << m;
        EXPECT_NE(m.find(fmt::format("revision {}", kApiRevision + 1)), std::string::npos) << m;
        EXPECT_NE(m.find("kdp-cni"), std::string::npos) << m;
        EXPECT_NE(m.find("/run/kdp/dp.sock"), std::string::npos) << m;
    }
}

TEST(ApiRevision, ADataplaneOlderThanTheFieldIsRefused) {
    v1::NodeInfo info;  // revision 0, no version: what a dataplane before the field sends
    EXPECT_THROW(check_api_revision(info, "dp.sock", "kdp-control"), ApiRevisionError);
}

TEST(DiffTables, ListsUpsertsAndDeletesInKeyOrder) {
    auto from = desired();
    auto to = desired();
    to.routes.erase(to.routes.begin() + 1);         // delete node-b
    to.pods[1].ip = *Ip4::parse("10.244.1.30");     // change ns/b
    to.pods.push_back(pod("ns/0", "10.244.1.40"));  // add ns/0
    const auto d = diff_tables(from, to);
    EXPECT_EQ(d.upsert_routes_size(), 0);
    ASSERT_EQ(d.delete_routes_size(), 1);
    EXPECT_EQ(d.delete_routes(0), "node-b");
    ASSERT_EQ(d.upsert_pods_size(), 2);
    EXPECT_EQ(d.upsert_pods(0).name(), "ns/0");
    EXPECT_EQ(d.upsert_pods(1).name(), "ns/b");
    EXPECT_EQ(d.upsert_pods(1).ip(), "10.244.1.30");
    EXPECT_EQ(d.delete_pods_size(), 0);
    EXPECT_EQ(diff_tables(from, from).ByteSizeLong(), 0u);
}

}  // namespace
}  // namespace kdp::control
