// Unit tests of the gRPC server's translation and generation rules, over a real unix socket
// with a real client and an in-test Backend.
#include "api/grpc_server.h"

#include <grp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "api/fake_backend.h"
#include "api/peer_gate.h"
#include "common/version.h"
#include "kdp/v1/dataplane.grpc.pb.h"

namespace kdp::api {
namespace {

namespace fs = std::filesystem;

class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/kdp-api-test-XXXXXX";
        path_ = ::mkdtemp(tmpl);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

v1::Route route(const std::string& node, const std::string& ip, const std::string& cidr) {
    v1::Route r;
    r.set_node_name(node);
    r.set_node_ip(ip);
    r.set_pod_cidr(cidr);
    r.set_vtep_mac("0a:58:c0:a8:00:02");
    return r;
}

v1::Pod pod(const std::string& name, const std::string& ip) {
    v1::Pod p;
    p.set_name(name);
    p.set_ip(ip);
    p.set_port_name(name);
    return p;
}

v1::Service service(const std::string& name, const std::string& vip, uint32_t port) {
    v1::Service sv;
    sv.set_name(name);
    sv.set_protocol("tcp");
    auto* f = sv.add_frontends();
    f->set_kind("cluster_ip");
    f->set_ip(vip);
    f->set_port(port);
    return sv;
}

v1::Backend backend(const std::string& ip, uint32_t port, const std::string& pod) {
    v1::Backend b;
    b.set_ip(ip);
    b.set_port(port);
    b.set_pod(pod);
    b.set_node("node-a");
    b.set_ready(true);
    b.set_serving(true);
    return b;
}

class GrpcServerTest : public ::testing::Test {
protected:
    void SetUp() override {
        socket_ = dir_.path() + "/run/dataplane.sock";  // parent does not exist yet
        server_ = std::make_unique<GrpcServer>(backend_, socket_);
        server_->start();
        stub_ = v1::Dataplane::NewStub(
            grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials()));
    }

    grpc::Status sync(uint64_t gen,
                      std::vector<v1::Route> routes,
                      std::vector<v1::Pod> pods,
                      v1::SyncTablesResponse* out = nullptr) {
        v1::SyncTablesRequest req;
        req.set_generation(gen);
        for (auto& r : routes) {
            *req.add_routes() = r;
        }
        for (auto& p : pods) {
            *req.add_pods() = p;
        }
        v1::SyncTablesResponse resp;
        grpc::ClientContext ctx;
        auto s = stub_->SyncTables(&ctx, req, &resp);
        if (out != nullptr) {
            *out = resp;
        }
        return s;
    }

    grpc::Status update(const v1::UpdateTablesRequest& req, v1::UpdateTablesResponse* resp) {
        grpc::ClientContext ctx;
        return stub_->UpdateTables(&ctx, req, resp);
    }

    v1::ListRoutesResponse list_routes() {
        v1::ListRoutesResponse resp;
        grpc::ClientContext ctx;
        EXPECT_TRUE(stub_->ListRoutes(&ctx, {}, &resp).ok());
        return resp;
    }

    grpc::Status sync_services(uint64_t gen, std::vector<v1::Service> services) {
        v1::SyncTablesRequest req;
        req.set_generation(gen);
        for (auto& sv : services) {
            *req.add_services() = sv;
        }
        v1::SyncTablesResponse resp;
        grpc::ClientContext ctx;
        return stub_->SyncTables(&ctx, req, &resp);
    }

    v1::ListServicesResponse list_services() {
        v1::ListServicesResponse resp;
        grpc::ClientContext ctx;
        EXPECT_TRUE(stub_->ListServices(&ctx, {}, &resp).ok());
        return resp;
    }

    v1::ListPodsResponse list_pods() {
        v1::ListPodsResponse resp;
        grpc::ClientContext ctx;
        EXPECT_TRUE(stub_->ListPods(&ctx, {}, &resp).ok());
        return resp;
    }

    TempDir dir_;
    std::string socket_;
    testing::FakeBackend backend_;
    std::unique_ptr<GrpcServer> server_;
    std::unique_ptr<v1::Dataplane::Stub> stub_;
};

TEST_F(GrpcServerTest, SocketIsCreatedWithMode0600) {
    struct stat st {};
    ASSERT_EQ(::stat(socket_.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(GrpcServerTest, NodeInfoReportsBackend) {
    v1::NodeInfo info;
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->GetNodeInfo(&ctx, {}, &info).ok());
    EXPECT_EQ(info.node_name(), "node-a");
    EXPECT_EQ(info.node_ip(), "192.168.0.1");
    EXPECT_EQ(info.pod_cidr(), "10.244.1.0/24");
    EXPECT_EQ(info.generation(), 0u);
    EXPECT_EQ(info.started_unix_ns(), 1000u);
    // The server's own build, whatever the backend says.
    EXPECT_EQ(info.version(), kdp::version());
    EXPECT_EQ(info.api_revision(), kdp::kApiRevision);
}

TEST_F(GrpcServerTest, SyncAppliesAndListsBackSorted) {
    v1::SyncTablesResponse resp;
    ASSERT_TRUE(sync(5,
                     {route("node-c", "192.168.0.3", "10.244.3.0/24"),
                      route("node-b", "192.168.0.2", "10.244.2.0/24")},
                     {pod("ns/z", "10.244.1.9"), pod("ns/a", "10.244.1.2")}, &resp)
                    .ok());
    EXPECT_EQ(resp.generation(), 5u);

    const auto routes = list_routes();
    EXPECT_EQ(routes.generation(), 5u);
    ASSERT_EQ(routes.routes_size(), 2);
    EXPECT_EQ(routes.routes(0).node_name(), "node-b");
    EXPECT_EQ(routes.routes(0).node_ip(), "192.168.0.2");
    EXPECT_EQ(routes.routes(0).pod_cidr(), "10.244.2.0/24");
    EXPECT_EQ(routes.routes(0).vtep_mac(), "0a:58:c0:a8:00:02");
    EXPECT_EQ(routes.routes(1).node_name(), "node-c");

    const auto pods = list_pods();
    ASSERT_EQ(pods.pods_size(), 2);
    EXPECT_EQ(pods.pods(0).name(), "ns/a");
    EXPECT_EQ(pods.pods(0).ip(), "10.244.1.2");
    EXPECT_EQ(pods.pods(0).port_name(), "ns/a");
    EXPECT_EQ(pods.pods(1).name(), "ns/z");
    EXPECT_EQ(backend_.tables().generation, 5u);
}

TEST_F(GrpcServerTest, StaleGenerationIsRefusedAndChangesNothing) {
    ASSERT_TRUE(sync(5, {}, {pod("ns/a", "10.244.1.2")}).ok());
    for (uint64_t gen : {5u, 4u, 0u}) {
        const auto s = sync(gen, {}, {});
        EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << gen;
        EXPECT_NE(s.error_message().find("not newer"), std::string::npos) << s.error_message();
    }
    EXPECT_EQ(list_pods().pods_size(), 1);
    EXPECT_EQ(backend_.tables().generation, 5u);
}

TEST_F(GrpcServerTest, MalformedEntryIsRefusedByNameAndChangesNothing) {
    ASSERT_TRUE(sync(1, {route("node-b", "192.168.0.2", "10.244.2.0/24")}, {}).ok());
    const int applies = backend_.applies();

    auto s = sync(2,
                  {route("node-b", "192.168.0.2", "10.244.2.0/24"),
                   route("node-c", "192.168.0.3", "10.244.3.1/24")},
                  {});
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("routes[1] (node \"node-c\")"), std::string::npos)
        << s.error_message();
    EXPECT_NE(s.error_message().find("host bits"), std::string::npos) << s.error_message();

    s = sync(2, {}, {pod("ns/a", "10.244.1.300")});
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("pods[0] (pod \"ns/a\"): ip"), std::string::npos)
        << s.error_message();

    s = sync(2, {}, {pod("no-namespace", "10.244.1.3")});
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

    s = sync(2, {}, {pod("ns/a", "10.244.1.3"), pod("ns/a", "10.244.1.4")});
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("duplicate"), std::string::npos) << s.error_message();

    auto bad_mac = route("node-d", "192.168.0.4", "10.244.4.0/24");
    bad_mac.set_vtep_mac("zz");
    s = sync(2, {bad_mac}, {});
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("vtep_mac"), std::string::npos) << s.error_message();

    // Syntax errors never reach the backend.
    EXPECT_EQ(backend_.applies(), applies);

    // Semantic errors come from the backend, still as INVALID_ARGUMENT, nothing applied.
    s = sync(2, {}, {pod("ns/a", "10.244.9.3")});
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("outside the node pod CIDR"), std::string::npos)
        << s.error_message();

    const auto routes = list_routes();
    EXPECT_EQ(routes.generation(), 1u);
    EXPECT_EQ(routes.routes_size(), 1);
    EXPECT_EQ(list_pods().pods_size(), 0);
}

TEST_F(GrpcServerTest, UpdateMergesUpsertsAndDeletesAtOnce) {
    ASSERT_TRUE(sync(3,
                     {route("node-b", "192.168.0.2", "10.244.2.0/24"),
                      route("node-c", "192.168.0.3", "10.244.3.0/24")},
                     {pod("ns/a", "10.244.1.2"), pod("ns/b", "10.244.1.3")})
                    .ok());
    v1::UpdateTablesRequest req;
    req.set_base_generation(3);
    req.set_generation(4);
    *req.add_upsert_routes() = route("node-c", "192.168.0.33", "10.244.3.0/24");
    *req.add_upsert_routes() = route("node-d", "192.168.0.4", "10.244.4.0/24");
    req.add_delete_routes("node-b");
    *req.add_upsert_pods() = pod("ns/c", "10.244.1.4");
    req.add_delete_pods("ns/a");
    req.add_delete_pods("ns/never-existed");
    v1::UpdateTablesResponse resp;
    ASSERT_TRUE(update(req, &resp).ok());
    EXPECT_EQ(resp.generation(), 4u);
    EXPECT_EQ(resp.routes(), 2u);
    EXPECT_EQ(resp.pods(), 2u);

    const auto routes = list_routes();
    ASSERT_EQ(routes.routes_size(), 2);
    EXPECT_EQ(routes.routes(0).node_name(), "node-c");
    EXPECT_EQ(routes.routes(0).node_ip(), "192.168.0.33");
    EXPECT_EQ(routes.routes(1).node_name(), "node-d");
    const auto pods = list_pods();
    ASSERT_EQ(pods.pods_size(), 2);
    EXPECT_EQ(pods.pods(0).name(), "ns/b");
    EXPECT_EQ(pods.pods(1).name(), "ns/c");
}

TEST_F(GrpcServerTest, UpdateWithWrongBaseIsAborted) {
    ASSERT_TRUE(sync(3, {}, {}).ok());
    v1::UpdateTablesRequest req;
    req.set_base_generation(2);
    req.set_generation(4);
    *req.add_upsert_pods() = pod("ns/c", "10.244.1.4");
    v1::UpdateTablesResponse resp;
    EXPECT_EQ(update(req, &resp).error_code(), grpc::StatusCode::ABORTED);

    req.set_base_generation(3);
    req.set_generation(3);
    EXPECT_EQ(update(req, &resp).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_EQ(list_pods().pods_size(), 0);
}

TEST_F(GrpcServerTest, UpdateBatchIsAllOrNothing) {
    ASSERT_TRUE(sync(3, {}, {pod("ns/a", "10.244.1.2")}).ok());
    v1::UpdateTablesRequest req;
    req.set_base_generation(3);
    req.set_generation(4);
    *req.add_upsert_pods() = pod("ns/b", "10.244.1.3");
    *req.add_upsert_pods() = pod("ns/c", "10.244.7.3");  // outside the pod CIDR
    req.add_delete_pods("ns/a");
    v1::UpdateTablesResponse resp;
    const auto s = update(req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("ns/c"), std::string::npos) << s.error_message();

    req.clear_upsert_pods();
    *req.add_upsert_pods() = pod("ns/a", "10.244.1.5");  // upsert and delete of one key
    EXPECT_EQ(update(req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

    const auto pods = list_pods();
    EXPECT_EQ(pods.generation(), 3u);
    ASSERT_EQ(pods.pods_size(), 1);
    EXPECT_EQ(pods.pods(0).name(), "ns/a");
}

TEST_F(GrpcServerTest, ServicesRoundTripEveryField) {
    auto web = service("ns/web:http", "10.96.0.10", 80);
    auto* np = web.add_frontends();
    np->set_kind("node_port");
    np->set_ip("192.168.0.1");
    np->set_port(30080);
    *web.add_backends() = backend("10.244.1.2", 8080, "ns/web-1");
    auto b2 = backend("10.244.2.2", 8080, "ns/web-2");
    b2.set_ready(false);
    b2.set_terminating(true);
    b2.set_node("node-b");
    *web.add_backends() = b2;
    web.set_external_local(true);
    web.set_internal_local(true);
    web.set_affinity_timeout_s(10800);
    web.add_source_ranges("203.0.113.0/24");
    web.set_health_check_node_port(32000);
    auto dns = service("kube-system/dns:dns", "10.96.0.53", 53);
    dns.set_protocol("udp");
    ASSERT_TRUE(sync_services(5, {web, dns}).ok());

    const table::TableSpec applied = backend_.tables();
    ASSERT_EQ(applied.services.size(), 2u);
    const table::ServiceSpec& got = applied.services[1];  // sorted by name
    EXPECT_EQ(got.name, "ns/web:http");
    EXPECT_EQ(got.proto, 6);
    ASSERT_EQ(got.frontends.size(), 2u);
    EXPECT_EQ(got.frontends[1].kind, table::FrontendKind::kNodePort);
    EXPECT_EQ(got.frontends[1].ip.str(), "192.168.0.1");
    EXPECT_EQ(got.frontends[1].port, 30080);
    ASSERT_EQ(got.backends.size(), 2u);
    EXPECT_EQ(got.backends[1].ip.str(), "10.244.2.2");
    EXPECT_EQ(got.backends[1].port, 8080);
    EXPECT_EQ(got.backends[1].pod, "ns/web-2");
    EXPECT_EQ(got.backends[1].node, "node-b");
    EXPECT_FALSE(got.backends[1].ready);
    EXPECT_TRUE(got.backends[1].serving);
    EXPECT_TRUE(got.backends[1].terminating);
    EXPECT_TRUE(got.external_local);
    EXPECT_TRUE(got.internal_local);
    EXPECT_EQ(got.affinity_timeout_s, 10800u);
    ASSERT_EQ(got.source_ranges.size(), 1u);
    EXPECT_EQ(got.source_ranges[0].str(), "203.0.113.0/24");
    EXPECT_EQ(got.health_check_node_port, 32000);
    EXPECT_EQ(applied.services[0].proto, 17);

    const auto listed = list_services();
    EXPECT_EQ(listed.generation(), 5u);
    ASSERT_EQ(listed.services_size(), 2);
    EXPECT_EQ(listed.services(0).name(), "kube-system/dns:dns");
    EXPECT_EQ(listed.services(0).protocol(), "udp");
    EXPECT_EQ(listed.services(1).SerializeAsString(), web.SerializeAsString());
}

TEST_F(GrpcServerTest, BadServicesAreRefusedNamingTheField) {
    const auto expect_refused = [&](v1::Service sv, const std::string& needle) {
        grpc::Status s = sync_services(9, {sv});
        EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << needle;
        EXPECT_NE(s.error_message().find(needle), std::string::npos) << s.error_message();
    };
    auto sv = service("ns/web:http", "10.96.0.10", 80);
    sv.set_protocol("icmp");
    expect_refused(sv, "services[0] (service \"ns/web:http\"): protocol: \"icmp\"");
    sv = service("ns/web:http", "10.96.0.10", 0);
    expect_refused(sv, "frontends[0].port: 0 is not a port");
    sv = service("ns/web:http", "10.96.0.10", 80);
    sv.mutable_frontends(0)->set_kind("nodeport");
    expect_refused(sv, "frontends[0].kind: \"nodeport\"");
    sv = service("ns/web:http", "10.96.0.10", 80);
    sv.clear_frontends();
    expect_refused(sv, "frontends: none");
    sv = service("ns/web:http", "10.96.0.10", 80);
    *sv.add_backends() = backend("10.244.1.2", 70000, "ns/web-1");
    expect_refused(sv, "backends[0].port: 70000");
    sv = service("ns/web:http", "10.96.0.10", 80);
    sv.add_source_ranges("203.0.113.1/24");
    expect_refused(sv, "source_ranges[0]: \"203.0.113.1/24\" has host bits set");
    sv = service("web", "10.96.0.10", 80);
    expect_refused(sv, "name: \"web\"");
    EXPECT_EQ(
        sync_services(9, {service("ns/a:x", "10.96.0.1", 80), service("ns/a:x", "10.96.0.2", 80)})
            .error_code(),
        grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(backend_.applies(), 0);
}

TEST_F(GrpcServerTest, PolicyRoundTripsAndBadPolicyIsRefusedNamingTheField) {
    v1::Policy p;
    auto* peer = p.add_peers();
    peer->set_ip("10.244.2.7");
    peer->set_identity(1);
    auto* cidr = p.add_cidrs();
    cidr->set_cidr("0.0.0.0/0");
    cidr->set_identity(2);
    auto* pod = p.add_pods();
    pod->set_pod("ns/web");
    pod->set_ip("10.244.1.5");
    pod->set_ingress_isolated(true);
    auto* r = pod->add_rules();
    r->set_direction("ingress");
    r->set_identity(1);
    r->set_protocol("tcp");
    r->set_port_min(80);
    r->set_port_max(80);
    r->set_rule(0);
    p.add_rule_names("ns/web-allow ingress[0]");
    p.add_identity_names("ns {app=client}");
    p.add_identity_names("cidr 0.0.0.0/0");

    v1::SyncTablesRequest req;
    req.set_generation(3);
    *req.mutable_policy() = p;
    v1::SyncTablesResponse resp;
    {
        grpc::ClientContext ctx;
        ASSERT_TRUE(stub_->SyncTables(&ctx, req, &resp).ok());
    }
    v1::GetPolicyResponse got;
    {
        grpc::ClientContext ctx;
        ASSERT_TRUE(stub_->GetPolicy(&ctx, {}, &got).ok());
    }
    EXPECT_EQ(got.generation(), 3u);
    EXPECT_TRUE(got.synced());
    EXPECT_EQ(got.policy().SerializeAsString(), p.SerializeAsString()) << "every field back";

    const auto expect_refused = [&](const v1::Policy& bad, const std::string& needle) {
        v1::SyncTablesRequest b;
        b.set_generation(9);
        *b.mutable_policy() = bad;
        grpc::ClientContext ctx;
        const grpc::Status s = stub_->SyncTables(&ctx, b, &resp);
        EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << needle;
        EXPECT_NE(s.error_message().find(needle), std::string::npos) << s.error_message();
    };
    v1::Policy bad = p;
    bad.mutable_pods(0)->mutable_rules(0)->set_direction("sideways");
    expect_refused(bad, "direction \"sideways\" is not ingress or egress");
    bad = p;
    bad.mutable_pods(0)->mutable_rules(0)->set_protocol("icmp");
    expect_refused(bad, "policy.pods[0] (ns/web).rules[0]");
    bad = p;
    bad.mutable_pods(0)->mutable_rules(0)->set_port_max(70000);
    expect_refused(bad, "70000");
    bad = p;
    bad.mutable_peers(0)->set_ip("10.244.2.300");
    expect_refused(bad, "policy.peers[0].ip");
    bad = p;
    bad.mutable_cidrs(0)->set_cidr("10.0.0.1/8");
    expect_refused(bad, "policy.cidrs[0].cidr");
    EXPECT_EQ(backend_.tables().generation, 3u) << "nothing refused was applied";
}

TEST_F(GrpcServerTest, UpdateUpsertsAndDeletesServices) {
    ASSERT_TRUE(
        sync_services(3, {service("ns/a:x", "10.96.0.1", 80), service("ns/b:x", "10.96.0.2", 80)})
            .ok());
    v1::UpdateTablesRequest req;
    req.set_base_generation(3);
    req.set_generation(4);
    auto a = service("ns/a:x", "10.96.0.1", 80);
    *a.add_backends() = backend("10.244.1.2", 8080, "ns/a-1");
    *req.add_upsert_services() = a;
    *req.add_upsert_services() = service("ns/c:x", "10.96.0.3", 80);
    req.add_delete_services("ns/b:x");
    v1::UpdateTablesResponse resp;
    ASSERT_TRUE(update(req, &resp).ok());
    EXPECT_EQ(resp.services(), 2u);
    const auto listed = list_services();
    ASSERT_EQ(listed.services_size(), 2);
    EXPECT_EQ(listed.services(0).name(), "ns/a:x");
    EXPECT_EQ(listed.services(0).backends_size(), 1);
    EXPECT_EQ(listed.services(1).name(), "ns/c:x");

    req.set_base_generation(4);
    req.set_generation(5);
    req.clear_upsert_services();
    *req.add_upsert_services() = service("ns/c:x", "10.96.0.3", 80);
    req.clear_delete_services();
    req.add_delete_services("ns/c:x");
    const auto s = update(req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("also in delete_services"), std::string::npos)
        << s.error_message();
    EXPECT_EQ(list_services().generation(), 4u);
}

TEST_F(GrpcServerTest, StatsRoundTrip) {
    StatsSnapshot s;
    s.taken_unix_ns = 42;
    WorkerStats w;
    w.worker = 1;
    w.lcore = 3;
    w.counters.rx_packets = 100;
    w.counters.rx_bytes = 6400;
    w.counters.tx_packets = 90;
    w.counters.tx_bytes = 5760;
    w.counters.drops[static_cast<size_t>(dataplane::DropReason::kNoRoute)] = 7;
    w.counters.drops[static_cast<size_t>(dataplane::DropReason::kTruncated)] = 3;
    w.busy_cycles = 500;
    w.total_cycles = 1000;
    w.tsc_hz = 2'000'000'000;
    WorkerStats w0;
    w0.worker = 0;
    s.workers = {w, w0};
    PortStats p;
    p.name = "uplink";
    p.port_id = 0;
    p.counters.rx_packets = 55;
    s.ports = {p};
    backend_.set_stats_for_test(s);

    v1::Stats out;
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->GetStats(&ctx, {}, &out).ok());
    EXPECT_EQ(out.taken_unix_ns(), 42u);
    ASSERT_EQ(out.workers_size(), 2);
    EXPECT_EQ(out.workers(0).worker(), 0u);  // sorted
    EXPECT_EQ(out.workers(0).counters().drops_size(), 0);
    const auto& ow = out.workers(1);
    EXPECT_EQ(ow.lcore(), 3u);
    EXPECT_EQ(ow.counters().rx_packets(), 100u);
    EXPECT_EQ(ow.counters().rx_bytes(), 6400u);
    EXPECT_EQ(ow.counters().tx_packets(), 90u);
    EXPECT_EQ(ow.counters().tx_bytes(), 5760u);
    ASSERT_EQ(ow.counters().drops_size(), 2);  // non-zero only, in .def order
    EXPECT_EQ(ow.counters().drops(0).reason(), "truncated");
    EXPECT_EQ(ow.counters().drops(0).packets(), 3u);
    EXPECT_EQ(ow.counters().drops(1).reason(), "no_route");
    EXPECT_EQ(ow.counters().drops(1).packets(), 7u);
    EXPECT_EQ(ow.busy_cycles(), 500u);
    EXPECT_EQ(ow.total_cycles(), 1000u);
    EXPECT_EQ(ow.tsc_hz(), 2'000'000'000u);
    ASSERT_EQ(out.ports_size(), 1);
    EXPECT_EQ(out.ports(0).name(), "uplink");
    EXPECT_EQ(out.ports(0).counters().rx_packets(), 55u);
}

TEST_F(GrpcServerTest, PortsAreListedByPortId) {
    PortInfo a;
    a.name = "ns/a";
    a.kind = "tap";
    a.port_id = 2;
    a.link_up = true;
    PortInfo up;
    up.name = "uplink";
    up.kind = "uplink";
    up.port_id = 0;
    up.mac = *Mac::parse("02:00:00:00:00:01");
    backend_.set_ports_for_test({a, up});
    v1::ListPortsResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->ListPorts(&ctx, {}, &resp).ok());
    ASSERT_EQ(resp.ports_size(), 2);
    EXPECT_EQ(resp.ports(0).name(), "uplink");
    EXPECT_EQ(resp.ports(0).mac(), "02:00:00:00:00:01");
    EXPECT_EQ(resp.ports(1).kind(), "tap");
    EXPECT_TRUE(resp.ports(1).link_up());
}

TEST_F(GrpcServerTest, ConntrackIsListedUpToTheLimitWithEveryField) {
    ConntrackListing l;
    l.total = 3;
    l.capacity = 1024;
    for (const uint8_t proto : {6, 1, 47}) {
        ConntrackInfo e;
        e.proto = proto;
        e.original = {*Ip4::parse("10.244.1.10"), 40000, *Ip4::parse("10.96.0.10"), 80};
        e.reply = {*Ip4::parse("10.244.2.20"), 8080, *Ip4::parse("10.244.1.10"), 40000};
        e.nat = {"dnat", "snat"};
        e.state = "established";
        e.expires_in_s = 42;
        e.affinity = proto == 47;
        e.worker = 1;
        l.entries.push_back(e);
    }
    backend_.set_conntrack_for_test(l);
    v1::ListConntrackResponse resp;
    {
        grpc::ClientContext ctx;
        ASSERT_TRUE(stub_->ListConntrack(&ctx, {}, &resp).ok()) << "limit 0: the server's cap";
    }
    EXPECT_EQ(resp.total(), 3u);
    EXPECT_EQ(resp.capacity(), 1024u);
    ASSERT_EQ(resp.entries_size(), 3);
    const v1::ConntrackEntry& e = resp.entries(0);
    EXPECT_EQ(e.protocol(), "tcp");
    EXPECT_EQ(e.original().src(), "10.244.1.10");
    EXPECT_EQ(e.original().sport(), 40000u);
    EXPECT_EQ(e.original().dst(), "10.96.0.10");
    EXPECT_EQ(e.original().dport(), 80u);
    EXPECT_EQ(e.reply().src(), "10.244.2.20");
    EXPECT_EQ(e.reply().sport(), 8080u);
    ASSERT_EQ(e.nat_size(), 2);
    EXPECT_EQ(e.nat(1), "snat");
    EXPECT_EQ(e.state(), "established");
    EXPECT_EQ(e.expires_in_s(), 42u);
    EXPECT_EQ(e.worker(), 1u);
    EXPECT_EQ(resp.entries(1).protocol(), "icmp");
    EXPECT_EQ(resp.entries(2).protocol(), "47") << "other protocols by number";
    EXPECT_TRUE(resp.entries(2).affinity());
    v1::ListConntrackRequest req;
    req.set_limit(2);
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->ListConntrack(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.entries_size(), 2);
}

TEST_F(GrpcServerTest, PortRpcsCheckTheRequestThenAskTheBackend) {
    v1::AddPortRequest req;
    {
        grpc::ClientContext ctx;
        v1::AddPortResponse resp;
        const auto s = stub_->AddPort(&ctx, req, &resp);
        EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
        EXPECT_EQ(s.error_message(), "type: must be PORT_TYPE_TAP or PORT_TYPE_VHOSTUSER");
    }
    req.set_type(v1::PORT_TYPE_TAP);
    req.set_pod_ip("10.244.1.300");
    {
        grpc::ClientContext ctx;
        v1::AddPortResponse resp;
        const auto s = stub_->AddPort(&ctx, req, &resp);
        EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
        EXPECT_EQ(s.error_message(), "pod_ip: \"10.244.1.300\" is not an IPv4 address");
    }
    req.set_pod_ip("10.244.1.30");
    {
        // This backend makes no ports: it says so.
        grpc::ClientContext ctx;
        v1::AddPortResponse resp;
        const auto s = stub_->AddPort(&ctx, req, &resp);
        EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED);
        EXPECT_NE(s.error_message().find("not created at run time"), std::string::npos);
    }
    {
        grpc::ClientContext ctx;
        v1::RemovePortResponse resp;
        EXPECT_EQ(stub_->RemovePort(&ctx, {}, &resp).error_code(), grpc::StatusCode::UNIMPLEMENTED);
    }
}

TEST_F(GrpcServerTest, TraceChecksItsArgumentsBeforeTheBackend) {
    v1::TraceRequest req;
    req.set_from("ns/a");
    req.set_to("10.96.0.10");
    req.set_port(80);
    req.set_protocol("icmp");
    v1::TraceResponse resp;
    {
        grpc::ClientContext ctx;
        const auto s = stub_->Trace(&ctx, req, &resp);
        EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
        EXPECT_NE(s.error_message().find("protocol: \"icmp\""), std::string::npos);
    }
    req.set_protocol("tcp");
    req.set_port(70000);
    {
        grpc::ClientContext ctx;
        EXPECT_EQ(stub_->Trace(&ctx, req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    }
    req.set_port(80);
    {
        // A backend that cannot trace says so; the packet-level tests trace through the real one.
        grpc::ClientContext ctx;
        const auto s = stub_->Trace(&ctx, req, &resp);
        EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
        EXPECT_NE(s.error_message().find("not supported"), std::string::npos);
    }
}

TEST_F(GrpcServerTest, BackendExceptionBecomesInternal) {
    backend_.set_throw_for_test(true);
    v1::NodeInfo info;
    grpc::ClientContext ctx;
    const auto s = stub_->GetNodeInfo(&ctx, {}, &info);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INTERNAL);
    EXPECT_NE(s.error_message().find("backend exploded"), std::string::npos);
}

TEST_F(GrpcServerTest, WatchStreamsCurrentThenAppliedEvents) {
    ASSERT_TRUE(sync(2, {}, {pod("ns/a", "10.244.1.2")}).ok());
    grpc::ClientContext ctx;
    auto reader = stub_->WatchEvents(&ctx, {});
    v1::Event e;
    ASSERT_TRUE(reader->Read(&e));
    EXPECT_EQ(e.kind(), v1::Event::KIND_CURRENT);
    EXPECT_EQ(e.generation(), 2u);
    EXPECT_EQ(e.pods(), 1u);

    ASSERT_TRUE(sync(3, {route("node-b", "192.168.0.2", "10.244.2.0/24")}, {}).ok());
    ASSERT_TRUE(reader->Read(&e));
    EXPECT_EQ(e.kind(), v1::Event::KIND_TABLES_APPLIED);
    EXPECT_EQ(e.generation(), 3u);
    EXPECT_EQ(e.routes(), 1u);
    EXPECT_EQ(e.pods(), 0u);
    EXPECT_EQ(e.source(), "sync");

    // Shutdown ends the stream cleanly.
    server_->shutdown();
    EXPECT_FALSE(reader->Read(&e));
    EXPECT_TRUE(reader->Finish().ok());
    EXPECT_FALSE(fs::exists(socket_));
}

TEST_F(GrpcServerTest, ManyWatchersGetEveryEventInOrderAndCancelCleanly) {
    constexpr int kWatchers = 3;
    constexpr uint64_t kSyncs = 20;
    std::vector<std::unique_ptr<grpc::ClientContext>> ctxs;
    std::vector<std::unique_ptr<grpc::ClientReader<v1::Event>>> readers;
    for (int i = 0; i < kWatchers; ++i) {
        ctxs.push_back(std::make_unique<grpc::ClientContext>());
        readers.push_back(stub_->WatchEvents(ctxs.back().get(), {}));
        v1::Event e;
        ASSERT_TRUE(readers.back()->Read(&e));
        ASSERT_EQ(e.kind(), v1::Event::KIND_CURRENT);
    }
    // One watcher goes away without reading: the server must carry on for the others.
    ctxs[0]->TryCancel();
    for (uint64_t g = 1; g <= kSyncs; ++g) {
        ASSERT_TRUE(sync(g, {}, {}).ok());
    }
    for (int i = 1; i < kWatchers; ++i) {
        for (uint64_t g = 1; g <= kSyncs; ++g) {
            v1::Event e;
            ASSERT_TRUE(readers[i]->Read(&e)) << "watcher " << i << " generation " << g;
            EXPECT_EQ(e.kind(), v1::Event::KIND_TABLES_APPLIED);
            EXPECT_EQ(e.generation(), g);
        }
    }
    v1::Event e;
    while (readers[0]->Read(&e)) {
    }
    EXPECT_EQ(readers[0]->Finish().error_code(), grpc::StatusCode::CANCELLED);
    // Shutdown with watchers still open ends their streams with OK.
    server_->shutdown();
    for (int i = 1; i < kWatchers; ++i) {
        EXPECT_FALSE(readers[i]->Read(&e));
        EXPECT_TRUE(readers[i]->Finish().ok());
    }
}

TEST(GrpcServerStart, ReplacesStaleSocketButNotOtherFiles) {
    TempDir dir;
    testing::FakeBackend backend;
    const std::string path = dir.path() + "/dp.sock";

    // A crashed dataplane leaves its bound socket file behind.
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ::close(fd);
    ASSERT_TRUE(fs::is_socket(path));

    GrpcServer server(backend, path);
    EXPECT_NO_THROW(server.start());
    server.shutdown();

    const std::string regular = dir.path() + "/not-a-socket";
    std::ofstream(regular) << "keep me";
    GrpcServer refused(backend, regular);
    EXPECT_THROW(refused.start(), std::runtime_error);
    EXPECT_TRUE(fs::exists(regular));
}

// ---- Who may call: the caller's kernel credentials, whatever the socket's mode ----

namespace peer {

TEST(PeerPolicy, RootAndSelfMayCallOthersAreRefusedByName) {
    const PeerPolicy p(std::nullopt, /*self=*/1000);
    EXPECT_EQ(p.refuse_reason({42, 0, 0}), "");
    EXPECT_EQ(p.refuse_reason({42, 1000, 1000}), "");
    const std::string why = p.refuse_reason({42, 65534, 65534});
    EXPECT_NE(why.find("pid 42"), std::string::npos) << why;
    EXPECT_NE(why.find("uid 65534"), std::string::npos) << why;
}

TEST(PeerPolicy, GroupMembersMayCall) {
    const PeerPolicy p(gid_t{4242}, /*self=*/0);
    EXPECT_EQ(p.refuse_reason({7, 5000, 4242}), "");  // primary gid
    EXPECT_NE(p.refuse_reason({7, 5000, 4243}), "");  // another group, no user entry
    EXPECT_NE(p.describe().find("gid 4242"), std::string::npos);
    // uid 0's user entry (root) is in group 0: a group rule admits root's group members.
    const PeerPolicy root_group(gid_t{0}, /*self=*/1);
    EXPECT_EQ(root_group.refuse_reason({7, 0, 0}), "");
}

// The calling side of the credential tests runs in a child process (this binary re-executed
// with a filter, so no gRPC state is shared across fork): it drops to uid/gid 65534 and calls
// GetNodeInfo on KDP_PEER_SOCKET, printing the status code on stdout.
TEST(PeerCredChild, CallAsNobody) {
    const char* path = std::getenv("KDP_PEER_SOCKET");
    if (path == nullptr) {
        GTEST_SKIP() << "only run as the child of PeerCredentials tests";
    }
    ASSERT_EQ(::setgroups(0, nullptr), 0);
    ASSERT_EQ(::setgid(65534), 0);
    ASSERT_EQ(::setuid(65534), 0);
    auto stub = v1::Dataplane::NewStub(
        grpc::CreateChannel(std::string("unix:") + path, grpc::InsecureChannelCredentials()));
    v1::NodeInfo info;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    const grpc::Status s = stub->GetNodeInfo(&ctx, {}, &info);
    std::printf("status=%d message=%s\n", static_cast<int>(s.error_code()),
                s.error_message().c_str());
    std::fflush(stdout);
}

// Runs the child test as uid 65534 against `socket`; returns its stdout.
std::string call_as_nobody(const std::string& socket) {
    const std::string cmd = fmt::format(
        "KDP_PEER_SOCKET='{}' /proc/{}/exe --gtest_filter=PeerCredChild.CallAsNobody 2>&1", socket,
        ::getpid());
    std::string out;
    FILE* f = ::popen(cmd.c_str(), "r");
    if (f == nullptr) {
        return out;
    }
    char buf[512];
    while (std::fgets(buf, sizeof(buf), f) != nullptr) {
        out += buf;
    }
    ::pclose(f);
    return out;
}

class PeerCredentialsTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) {
            GTEST_SKIP() << "needs root to run a caller as another user";
        }
        ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);  // uid 65534 must reach the socket
        socket_ = dir_.path() + "/dataplane.sock";
    }
    TempDir dir_;
    std::string socket_;
    testing::FakeBackend backend_;
};

TEST_F(PeerCredentialsTest, AnotherUserIsRefusedEvenWhenTheSocketModeLetsItIn) {
    GrpcServer server(backend_, socket_);
    server.start();
    ASSERT_EQ(::chmod(socket_.c_str(), 0666), 0);  // an operator's mistake: the mode lets all in
    const std::string out = call_as_nobody(socket_);
    EXPECT_NE(
        out.find(fmt::format("status={}", static_cast<int>(grpc::StatusCode::PERMISSION_DENIED))),
        std::string::npos)
        << out;
    EXPECT_NE(out.find("refuses this caller"), std::string::npos) << out;
    EXPECT_EQ(server.connections_refused(), 1u);

    // Root still gets in, on the same socket, after the refusal.
    auto stub = v1::Dataplane::NewStub(
        grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials()));
    v1::NodeInfo info;
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->GetNodeInfo(&ctx, {}, &info).ok());
    EXPECT_EQ(info.node_name(), "node-a");
    EXPECT_GE(server.connections_accepted(), 1u);
}

TEST_F(PeerCredentialsTest, MembersOfTheConfiguredGroupMayCall) {
    GrpcServer server(backend_, socket_, gid_t{65534});
    server.start();
    struct stat st {};
    ASSERT_EQ(::stat(socket_.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0660u);
    EXPECT_EQ(st.st_gid, 65534u);
    const std::string out = call_as_nobody(socket_);
    EXPECT_NE(out.find("status=0 "), std::string::npos) << out;
    EXPECT_EQ(server.connections_refused(), 0u);
}

}  // namespace peer

}  // namespace
}  // namespace kdp::api
