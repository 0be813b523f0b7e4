// Unit tests of the TableManager's two update paths: the delta path (an endpoint change swaps
// one Service port's block in place) and the full build it falls back to. The tables are the
// real ones the workers read; no EAL, no workers (the RCU wait is then empty; the packet test
// delta_pkt_test.cc runs a delta against a real worker lcore).
#include "api/table_manager.h"

#include <unistd.h>

#include <cstdio>
#include <optional>
#include <set>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "api/grpc_server.h"
#include "kdp/v1/dataplane.grpc.pb.h"
#include "spec/convert.h"
#include "table/maglev.h"

namespace kdp::api {
namespace {

Ip4 ip(const char* s) {
    return *Ip4::parse(s);
}

table::BackendSpec backend(const char* at, uint16_t port = 8080, bool ready = true) {
    table::BackendSpec b;
    b.ip = ip(at);
    b.port = port;
    b.pod = std::string("default/") + at;
    b.ready = ready;
    return b;
}

table::ServiceSpec service(const std::string& name,
                           const char* vip,
                           std::vector<table::BackendSpec> backends) {
    table::ServiceSpec sv;
    sv.name = name;
    sv.frontends.push_back({table::FrontendKind::kClusterIp, ip(vip), 80});
    sv.backends = std::move(backends);
    return sv;
}

// Three Service ports with a few endpoints each, on this node (10.244.1.0/24) and node2.
table::TableSpec base_spec(uint64_t gen) {
    table::TableSpec s;
    s.generation = gen;
    s.routes.push_back({"node2", ip("198.51.100.2"), *Prefix4::parse("10.244.2.0/24"),
                        Mac::from_ip(ip("198.51.100.2"))});
    s.pods.push_back({"default/a", ip("10.244.1.10"), "default/a"});
    s.services.push_back(
        service("default/api:http", "10.96.0.10",
                {backend("10.244.1.11"), backend("10.244.1.12"), backend("10.244.2.11")}));
    s.services.push_back(
        service("default/db:sql", "10.96.0.20", {backend("10.244.2.21"), backend("10.244.2.22")}));
    s.services.push_back(service("default/web:http", "10.96.0.30", {backend("10.244.1.31")}));
    return s;
}

class Manager {
public:
    Manager() {
        node_.node_ip = ip("198.51.100.1");
        node_.underlay_subnet = *Prefix4::parse("198.51.100.0/24");
        node_.pod_cidr = *Prefix4::parse("10.244.1.0/24");
        node_.gateway_ip = ip("10.244.1.1");
        node_.neighbors = &neighbors_;
        node_.ports = &ports_;
        node_.tables = &ref_;
        NodeInfo info;
        info.node_name = "node1";
        info.pod_cidr = node_.pod_cidr;
        manager_ = std::make_unique<TableManager>(info, node_, ref_, nullptr,
                                                  std::vector<dataplane::Worker*>{},
                                                  std::vector<PortEntry>{});
    }
    TableManager& operator*() { return *manager_; }
    TableManager* operator->() { return manager_.get(); }
    const table::TableSet& tables() const { return *ref_.current.load(); }
    const table::TableSet* published() const { return ref_.current.load(); }
    /// The Service port a worker finds behind vip:80/TCP, and its block.
    const table::Service& service_at(const char* vip) const {
        const table::Frontend* fe = tables().find_frontend(ip(vip), to_be16(80), 6);
        EXPECT_NE(fe, nullptr) << vip;
        return tables().services[fe->service];
    }

private:
    dataplane::PortTable ports_;
    table::NeighborTable neighbors_{64};
    table::TableRef ref_;
    dataplane::NodeContext node_;
    std::unique_ptr<TableManager> manager_;
};

table::TableUpdate endpoints_of(uint64_t gen,
                                const table::ServiceSpec& sv,
                                std::vector<table::BackendSpec> backends) {
    table::TableUpdate u;
    u.generation = gen;
    u.upsert_services.push_back(sv);
    u.upsert_services.back().backends = std::move(backends);
    return u;
}

// What a worker reads for every frontend of `spec`: protocol, flags, backends, both Maglev
// tables and source ranges. Two managers that agree here forward every packet alike.
void expect_same_worker_view(const Manager& a, const Manager& b, const table::TableSpec& spec) {
    for (const table::ServiceSpec& sv : spec.services) {
        for (const table::FrontendSpec& f : sv.frontends) {
            const table::Frontend* fa = a.tables().find_frontend(f.ip, to_be16(f.port), sv.proto);
            const table::Frontend* fb = b.tables().find_frontend(f.ip, to_be16(f.port), sv.proto);
            ASSERT_NE(fa, nullptr) << sv.name;
            ASSERT_NE(fb, nullptr) << sv.name;
            EXPECT_EQ(fa->kind, fb->kind);
            const table::Service& sa = a.tables().services[fa->service];
            const table::Service& sb = b.tables().services[fb->service];
            EXPECT_EQ(sa.proto, sb.proto) << sv.name;
            EXPECT_EQ(sa.flags, sb.flags) << sv.name;
            EXPECT_EQ(sa.affinity_id, sb.affinity_id) << sv.name;
            const table::ServiceBlock& ba = sa.current();
            const table::ServiceBlock& bb = sb.current();
            EXPECT_EQ(ba.maglev, bb.maglev) << sv.name;
            EXPECT_EQ(ba.local_maglev, bb.local_maglev) << sv.name;
            EXPECT_EQ(ba.local_backends, bb.local_backends) << sv.name;
            EXPECT_EQ(ba.source_ranges, bb.source_ranges) << sv.name;
            ASSERT_EQ(ba.backends.size(), bb.backends.size()) << sv.name;
            for (size_t i = 0; i < ba.backends.size(); ++i) {
                EXPECT_EQ(ba.backends[i].ip, bb.backends[i].ip) << sv.name;
                EXPECT_EQ(ba.backends[i].port_be, bb.backends[i].port_be) << sv.name;
            }
        }
    }
}

TEST(TableManagerDelta, AnEndpointChangeSwapsOneBlockInPlace) {
    Manager m;
    const table::TableSpec s = base_spec(1);
    ASSERT_EQ(m->apply_tables(s), std::nullopt);
    const table::TableSet* before = m.published();
    const table::ServiceBlock* db_block = &m.service_at("10.96.0.20").current();
    const table::ServiceBlock* web_block = &m.service_at("10.96.0.30").current();

    // One endpoint of default/api:http leaves, another arrives.
    ASSERT_EQ(m->apply_update(endpoints_of(
                  2, s.services[0],
                  {backend("10.244.1.11"), backend("10.244.2.11"), backend("10.244.2.12")})),
              std::nullopt);
    EXPECT_EQ(m->path_counts().delta, 1u);
    EXPECT_EQ(m->path_counts().full, 1u) << "only the first apply was a full build";
    EXPECT_EQ(m.published(), before) << "no new TableSet: the block was swapped in place";
    const table::ServiceBlock& api = m.service_at("10.96.0.10").current();
    ASSERT_EQ(api.backends.size(), 3u);
    EXPECT_EQ(api.backends[0].ip, ip("10.244.1.11"));
    EXPECT_EQ(api.backends[1].ip, ip("10.244.2.11"));
    EXPECT_EQ(api.backends[2].ip, ip("10.244.2.12"));
    EXPECT_EQ(api.local_backends, 1u);
    EXPECT_EQ(api.maglev.size(), table::maglev_size(3));
    EXPECT_EQ(&m.service_at("10.96.0.20").current(), db_block) << "untouched ports keep theirs";
    EXPECT_EQ(&m.service_at("10.96.0.30").current(), web_block);

    const table::TableSpec now = m->tables();
    EXPECT_EQ(now.generation, 2u);
    EXPECT_EQ(m->table_counts().generation, 2u);
    EXPECT_EQ(m->node_info().generation, 2u);
    ASSERT_EQ(now.services.size(), 3u);
    EXPECT_EQ(now.services[0].backends.size(), 3u);
    EXPECT_EQ(now.services[0].backends[2].ip, ip("10.244.2.12"));
    EXPECT_EQ(now.services[1], s.services[1]);

    // Backend conditions are block fields too: one turns not ready, it leaves the Maglev table.
    ASSERT_EQ(m->apply_update(endpoints_of(3, s.services[0],
                                           {backend("10.244.1.11", 8080, false),
                                            backend("10.244.2.11"), backend("10.244.2.12")})),
              std::nullopt);
    EXPECT_EQ(m->path_counts().delta, 2u);
    EXPECT_EQ(m.service_at("10.96.0.10").current().backends.size(), 2u);
    EXPECT_EQ(m.service_at("10.96.0.10").current().local_backends, 0u);
}

// kube-proxy's CategorizeEndpoints (pkg/proxy/topology_test.go, TestCategorizeEndpoints case
// "iTP: Cluster, eTP: Local, PTE enabled, with terminating endpoints"): the cluster set and the
// node-local set each take ready endpoints if any, else serving-and-terminating ones. Here a
// remote endpoint is ready, a local one not serving, a local and a remote one terminating.
TEST(TableManagerBlock, EachLocalityFallsBackToTerminatingEndpointsOnItsOwn) {
    Manager m;
    table::TableSpec s = base_spec(1);
    table::BackendSpec not_serving = backend("10.244.1.41", 8080, false);
    not_serving.serving = false;
    table::BackendSpec local_term = backend("10.244.1.42", 8080, false);
    local_term.terminating = true;
    table::BackendSpec remote_term = backend("10.244.2.43", 8080, false);
    remote_term.terminating = true;
    s.services[2].backends = {backend("10.244.2.40"), not_serving, local_term, remote_term};
    s.services[2].external_local = true;
    ASSERT_EQ(m->apply_tables(s), std::nullopt);
    const table::ServiceBlock& b = m.service_at("10.96.0.30").current();
    // backends: the union of both sets, sorted by address.
    ASSERT_EQ(b.backends.size(), 2u);
    EXPECT_EQ(b.backends[0].ip, ip("10.244.1.42"));
    EXPECT_EQ(b.backends[0].sets, table::ServiceBackend::kLocal);
    EXPECT_EQ(b.backends[1].ip, ip("10.244.2.40"));
    EXPECT_EQ(b.backends[1].sets, table::ServiceBackend::kCluster);
    for (const uint16_t e : b.maglev) {
        ASSERT_EQ(e, 2u) << "the cluster set is the ready endpoint only";
    }
    ASSERT_FALSE(b.local_maglev.empty());
    for (const uint16_t e : b.local_maglev) {
        ASSERT_EQ(e, 1u) << "the local set falls back to the local terminating endpoint";
    }
    EXPECT_EQ(b.local_backends, 0u) << "the health check counts ready local endpoints only";
    // Stale detection knows both sets' backends, and no other.
    const table::Service& svc = m.service_at("10.96.0.30");
    EXPECT_TRUE(m.tables().backend_alive(svc.ct_ref, ip("10.244.1.42"), to_be16(8080), 0));
    EXPECT_TRUE(m.tables().backend_alive(svc.ct_ref, ip("10.244.2.40"), to_be16(8080), 0));
    EXPECT_FALSE(m.tables().backend_alive(svc.ct_ref, ip("10.244.2.43"), to_be16(8080), 0));
    EXPECT_FALSE(m.tables().backend_alive(svc.ct_ref, ip("10.244.1.41"), to_be16(8080), 0));

    // Once every endpoint terminates, both sets fall back: each its own terminating ones
    // (TestCategorizeEndpoints "Cluster traffic policy, PTE enabled, all endpoints are
    // terminating").
    table::BackendSpec remote_term2 = remote_term;
    remote_term2.ip = ip("10.244.2.40");
    ASSERT_EQ(m->apply_update(endpoints_of(2, s.services[2], {local_term, remote_term2})),
              std::nullopt);
    const table::ServiceBlock& c = m.service_at("10.96.0.30").current();
    ASSERT_EQ(c.backends.size(), 2u);
    EXPECT_EQ(c.backends[0].sets, table::ServiceBackend::kCluster | table::ServiceBackend::kLocal);
    EXPECT_EQ(c.backends[1].sets, table::ServiceBackend::kCluster);
    std::set<uint16_t> in_cluster(c.maglev.begin(), c.maglev.end());
    EXPECT_EQ(in_cluster, (std::set<uint16_t>{1, 2}));
}

// pkg/proxy/topology_test.go TestCategorizeEndpoints, the cases without topology hints, on the
// blocks a worker reads: `maglev`
// must pick exactly clusterEndpoints and `local_maglev` exactly localEndpoints, where upstream
// computes them (nil there: the policy does not use that set, not checked). Upstream's
// IsLocal is kdp's "in this node's pod CIDR": local endpoints are 10.244.1.x, remote 10.244.2.x.
struct CategorizeCase {
    const char* name;
    bool itp_local, etp_local;
    struct Ep {
        const char* ip;
        bool ready, serving, terminating;
    };
    std::vector<Ep> endpoints;
    std::optional<std::set<std::string>> cluster, local;  // nullopt: upstream's nil
};

std::set<std::string> picked(const table::ServiceBlock& b, const std::vector<uint16_t>& maglev) {
    std::set<std::string> out;
    for (const uint16_t e : maglev) {
        out.insert(b.backends[e - 1u].ip.str());
    }
    return out;
}

TEST(TableManagerBlock, CategorizesEndpointsAsKubeProxy) {
    using S = std::set<std::string>;
    const std::vector<CategorizeCase> cases = {
        {"internalTrafficPolicy: Local, with empty endpoints", true, false, {}, std::nullopt, S{}},
        {"internalTrafficPolicy: Local, but all endpoints are remote",
         true,
         false,
         {{"10.244.2.10", true, true, false}, {"10.244.2.11", true, true, false}},
         std::nullopt,
         S{}},
        {"internalTrafficPolicy: Local, all endpoints are local",
         true,
         false,
         {{"10.244.1.10", true, true, false}, {"10.244.1.11", true, true, false}},
         std::nullopt,
         S{"10.244.1.10", "10.244.1.11"}},
        {"internalTrafficPolicy: Local, some endpoints are local",
         true,
         false,
         {{"10.244.1.10", true, true, false}, {"10.244.2.11", true, true, false}},
         std::nullopt,
         S{"10.244.1.10"}},
        {"Cluster traffic policy, endpoints not Ready",
         false,
         false,
         {{"10.244.1.10", false, false, false}, {"10.244.2.11", false, false, false}},
         S{},
         std::nullopt},
        {"Cluster traffic policy, some endpoints are Ready",
         false,
         false,
         {{"10.244.1.10", false, false, false}, {"10.244.2.11", true, true, false}},
         S{"10.244.2.11"},
         std::nullopt},
        {"Cluster traffic policy, PTE enabled, all endpoints are terminating",
         false,
         false,
         {{"10.244.1.10", false, true, true}, {"10.244.2.11", false, true, true}},
         S{"10.244.1.10", "10.244.2.11"},
         std::nullopt},
        {"iTP: Local, eTP: Cluster, some endpoints local",
         true,
         false,
         {{"10.244.1.10", true, true, false}, {"10.244.2.11", true, true, false}},
         S{"10.244.1.10", "10.244.2.11"},
         S{"10.244.1.10"}},
        {"iTP: Cluster, eTP: Local, some endpoints local",
         false,
         true,
         {{"10.244.1.10", true, true, false}, {"10.244.2.11", true, true, false}},
         S{"10.244.1.10", "10.244.2.11"},
         S{"10.244.1.10"}},
        {"iTP: Local, eTP: Local, some endpoints local",
         true,
         true,
         {{"10.244.1.10", true, true, false}, {"10.244.2.11", true, true, false}},
         S{"10.244.1.10", "10.244.2.11"},
         S{"10.244.1.10"}},
        {"iTP: Local, eTP: Local, all endpoints remote",
         true,
         true,
         {{"10.244.2.10", true, true, false}, {"10.244.2.11", true, true, false}},
         S{"10.244.2.10", "10.244.2.11"},
         S{}},
        {"iTP: Local, eTP: Local, PTE enabled, all endpoints remote and terminating",
         true,
         true,
         {{"10.244.2.10", false, true, true}, {"10.244.2.11", false, true, true}},
         S{"10.244.2.10", "10.244.2.11"},
         S{}},
        {"iTP: Cluster, eTP: Local, PTE enabled, with terminating endpoints",
         false,
         true,
         {{"10.244.2.10", true, true, false},
          {"10.244.1.11", false, false, false},
          {"10.244.1.12", false, true, true},
          {"10.244.2.13", false, true, true}},
         S{"10.244.2.10"},
         S{"10.244.1.12"}},
        {"externalTrafficPolicy ignored if not externally accessible",
         false,
         true,
         {{"10.244.2.10", true, true, false}, {"10.244.1.11", true, true, false}},
         S{"10.244.1.11", "10.244.2.10"},
         std::nullopt},
        {"no cluster endpoints for iTP:Local internal-only service",
         true,
         false,
         {{"10.244.2.10", true, true, false}, {"10.244.1.11", true, true, false}},
         std::nullopt,
         S{"10.244.1.11"}},
    };
    uint64_t gen = 1;
    for (const CategorizeCase& c : cases) {
        Manager m;
        table::TableSpec s = base_spec(gen++);
        table::ServiceSpec& sv = s.services[2];
        sv.internal_local = c.itp_local;
        sv.external_local = c.etp_local;
        sv.backends.clear();
        for (const auto& e : c.endpoints) {
            table::BackendSpec b = backend(e.ip, 8080, e.ready);
            b.serving = e.serving;
            b.terminating = e.terminating;
            sv.backends.push_back(b);
        }
        ASSERT_EQ(m->apply_tables(s), std::nullopt) << c.name;
        const table::ServiceBlock& b = m.service_at("10.96.0.30").current();
        if (c.cluster) {
            EXPECT_EQ(picked(b, b.maglev), *c.cluster) << c.name;
        }
        if (c.local) {
            EXPECT_EQ(picked(b, b.local_maglev), *c.local) << c.name;
        }
    }
}

TEST(TableManagerDelta, ABadChangeChangesNothing) {
    Manager m;
    const table::TableSpec s = base_spec(1);
    ASSERT_EQ(m->apply_tables(s), std::nullopt);
    const table::ServiceBlock* api = &m.service_at("10.96.0.10").current();

    // A good change to one port and a bad backend in another: neither applies.
    table::TableUpdate u = endpoints_of(2, s.services[0], {backend("10.244.1.11")});
    u.upsert_services.push_back(s.services[1]);
    u.upsert_services.back().backends.push_back(backend("10.244.2.23", 0));
    const auto err = m->apply_update(u);
    ASSERT_TRUE(err.has_value());
    EXPECT_NE(err->find("default/db:sql"), std::string::npos) << *err;
    EXPECT_NE(err->find("is not an address and port"), std::string::npos) << *err;
    EXPECT_EQ(&m.service_at("10.96.0.10").current(), api);
    EXPECT_EQ(m->tables(), s);
    EXPECT_EQ(m->path_counts().delta, 0u);

    // A stale generation is refused before anything else.
    const auto stale = m->apply_update(endpoints_of(1, s.services[0], {backend("10.244.1.11")}));
    ASSERT_TRUE(stale.has_value());
    EXPECT_NE(stale->find("not newer"), std::string::npos) << *stale;
    EXPECT_EQ(m->tables(), s);

    // A structural change that is invalid (a frontend another port owns) fails in the full
    // build it falls back to, and changes nothing either.
    table::TableUpdate clash = endpoints_of(3, s.services[0], {backend("10.244.1.11")});
    clash.upsert_services[0].frontends[0].ip = ip("10.96.0.20");
    const auto clash_err = m->apply_update(clash);
    ASSERT_TRUE(clash_err.has_value());
    EXPECT_NE(clash_err->find("used by another service port"), std::string::npos) << *clash_err;
    EXPECT_EQ(m->tables(), s);
    EXPECT_EQ(&m.service_at("10.96.0.10").current(), api);
}

// The same final state reached by updates (deltas where possible, full builds otherwise) and
// by one full sync gives the same spec and the same worker view.
TEST(TableManagerDelta, UpdatesGiveTheSameTablesAsAFullSync) {
    Manager updated;
    table::TableSpec s = base_spec(1);
    ASSERT_EQ(updated->apply_tables(s), std::nullopt);
    uint64_t gen = 1;
    std::vector<table::TableUpdate> steps;
    // Delta: endpoints and source ranges of existing ports.
    steps.push_back(endpoints_of(++gen, s.services[1], {backend("10.244.2.21")}));
    steps.push_back(endpoints_of(++gen, s.services[2], {}));
    {
        table::TableUpdate u = endpoints_of(++gen, s.services[0], {backend("10.244.1.12")});
        u.upsert_services[0].source_ranges.push_back(*Prefix4::parse("192.0.2.0/24"));
        steps.push_back(u);
    }
    // Structural: a new port, a flag, a deleted port, a route, a frontend moved.
    {
        table::TableUpdate u;
        u.generation = ++gen;
        u.upsert_services.push_back(service("default/aaa:first", "10.96.0.40",
                                            {backend("10.244.1.41"), backend("10.244.2.41")}));
        steps.push_back(u);
    }
    {
        table::TableUpdate u = endpoints_of(++gen, s.services[1], {backend("10.244.2.21")});
        u.upsert_services[0].affinity_timeout_s = 600;
        steps.push_back(u);
    }
    {
        table::TableUpdate u;
        u.generation = ++gen;
        u.delete_services.push_back("default/web:http");
        u.upsert_routes.push_back({"node3", ip("198.51.100.3"), *Prefix4::parse("10.244.3.0/24"),
                                   Mac::from_ip(ip("198.51.100.3"))});
        steps.push_back(u);
    }
    {
        table::ServiceSpec moved = s.services[0];
        moved.frontends[0].ip = ip("10.96.0.11");
        moved.backends = {backend("10.244.1.12"), backend("10.244.3.5")};
        moved.source_ranges.push_back(*Prefix4::parse("192.0.2.0/24"));
        table::TableUpdate u;
        u.generation = ++gen;
        u.upsert_services.push_back(moved);
        steps.push_back(u);
    }
    // And a delta again on top of the rebuilt tables.
    {
        table::TableUpdate u;
        u.generation = ++gen;
        u.upsert_services.push_back(service("default/aaa:first", "10.96.0.40",
                                            {backend("10.244.2.41"), backend("10.244.2.42")}));
        steps.push_back(u);
    }
    table::TableSpec expected = s;
    for (const table::TableUpdate& u : steps) {
        ASSERT_EQ(updated->apply_update(u), std::nullopt) << "generation " << u.generation;
        expected = merge_update(expected, u);
    }
    EXPECT_EQ(updated->path_counts().delta, 4u);
    EXPECT_EQ(updated->path_counts().full, 5u);

    Manager synced;
    ASSERT_EQ(synced->apply_tables(expected), std::nullopt);
    EXPECT_EQ(updated->tables(), expected);
    EXPECT_EQ(synced->tables(), expected);
    expect_same_worker_view(updated, synced, expected);
    EXPECT_EQ(updated.tables().frontends.size(), synced.tables().frontends.size());
    EXPECT_EQ(updated.tables().find_frontend(ip("10.96.0.10"), to_be16(80), 6), nullptr);
    EXPECT_EQ(updated.tables().find_frontend(ip("10.96.0.30"), to_be16(80), 6), nullptr);
}

// Conntrack entries name their Service port (CtEntry::service) and backend slot; after a delta
// the port's new block decides whether the backend is still usable.
TEST(TableManagerDelta, StaleDetectionFollowsTheSwappedBlock) {
    Manager m;
    const table::TableSpec s = base_spec(1);
    ASSERT_EQ(m->apply_tables(s), std::nullopt);
    const table::Service& api = m.service_at("10.96.0.10");
    const uint32_t ref = api.ct_ref;
    const auto alive = [&](uint32_t service, const char* at, uint32_t hint) {
        return m.tables().backend_alive(service, ip(at), to_be16(8080), hint);
    };
    // Backends sort by address: 10.244.1.11 (slot 1), 10.244.1.12 (2), 10.244.2.11 (3).
    EXPECT_TRUE(alive(ref, "10.244.1.12", 2));
    EXPECT_TRUE(alive(ref, "10.244.2.11", 3));
    EXPECT_FALSE(alive(ref, "10.244.2.21", 0)) << "a backend of another port is not this one's";
    EXPECT_FALSE(alive(0, "10.244.1.12", 2)) << "no Service port named";

    ASSERT_EQ(m->apply_update(
                  endpoints_of(2, s.services[0], {backend("10.244.1.11"), backend("10.244.2.11")})),
              std::nullopt);
    ASSERT_EQ(m->path_counts().delta, 1u);
    EXPECT_FALSE(alive(ref, "10.244.1.12", 2)) << "its backend left: stale";
    EXPECT_TRUE(alive(ref, "10.244.2.11", 3)) << "moved to slot 2: found past the old hint";
    EXPECT_TRUE(alive(ref, "10.244.1.11", 1));

    // The port is deleted (full build); a new port takes its slot: the old entries stay stale
    // even though the new port has the same backend.
    table::TableUpdate del;
    del.generation = 3;
    del.delete_services.push_back("default/api:http");
    ASSERT_EQ(m->apply_update(del), std::nullopt);
    EXPECT_FALSE(alive(ref, "10.244.2.11", 2)) << "its Service port is gone";
    table::TableUpdate add;
    add.generation = 4;
    add.upsert_services.push_back(
        service("default/other:http", "10.96.0.50", {backend("10.244.2.11")}));
    ASSERT_EQ(m->apply_update(add), std::nullopt);
    const table::Service& other = m.service_at("10.96.0.50");
    EXPECT_EQ(&other, &m.tables().services[(ref & table::kMaxServiceSlots) - 1])
        << "the new port reuses the freed slot";
    EXPECT_TRUE(alive(other.ct_ref, "10.244.2.11", 1));
    EXPECT_FALSE(alive(ref, "10.244.2.11", 1)) << "the old port's entries do not pass for it";
}

// A Service port keeps its slot when others come and go, so conntrack entries keep meaning.
TEST(TableManagerDelta, ServicePortsKeepTheirSlotAcrossFullBuilds) {
    Manager m;
    table::TableSpec s = base_spec(1);
    ASSERT_EQ(m->apply_tables(s), std::nullopt);
    const uint32_t db = m.service_at("10.96.0.20").ct_ref;
    s.generation = 2;
    s.services.insert(s.services.begin(), service("default/aaa:x", "10.96.0.5", {}));
    s.services.erase(s.services.begin() + 1);  // default/api:http goes
    ASSERT_EQ(m->apply_tables(s), std::nullopt);
    EXPECT_EQ(m.service_at("10.96.0.20").ct_ref, db);
    EXPECT_EQ(m.tables().service_count, 3u) << "the new port filled the freed slot";
}

// UpdateTables over the real gRPC server reaches the delta path: the server hands the parsed
// change to the Backend instead of copying and merging the whole spec.
TEST(TableManagerDelta, UpdateTablesOverGrpcTakesTheDeltaPath) {
    Manager m;
    const std::string socket = "/tmp/kdp-tm-test-" + std::to_string(getpid()) + ".sock";
    GrpcServer server(*m, socket);
    server.start();
    auto stub = v1::Dataplane::NewStub(
        grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()));
    const table::TableSpec s = base_spec(1);
    ASSERT_EQ(m->apply_tables(s), std::nullopt);

    v1::UpdateTablesRequest req;
    req.set_base_generation(1);
    req.set_generation(2);
    table::ServiceSpec changed = s.services[1];
    changed.backends.push_back(backend("10.244.2.23"));
    service_to_proto(changed, req.add_upsert_services());
    grpc::ClientContext ctx;
    v1::UpdateTablesResponse resp;
    const grpc::Status st = stub->UpdateTables(&ctx, req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(resp.generation(), 2u);
    EXPECT_EQ(resp.services(), 3u);
    EXPECT_EQ(resp.routes(), 1u);
    EXPECT_EQ(resp.pods(), 1u);
    EXPECT_EQ(m->path_counts().delta, 1u);
    EXPECT_EQ(m.service_at("10.96.0.20").current().backends.size(), 3u);

    grpc::ClientContext lctx;
    v1::ListServicesResponse list;
    ASSERT_TRUE(stub->ListServices(&lctx, v1::ListServicesRequest{}, &list).ok());
    ASSERT_EQ(list.services_size(), 3);
    EXPECT_EQ(list.generation(), 2u);
    EXPECT_EQ(list.services(1).backends_size(), 3);
    server.shutdown();
}

// A run-time TAP's record says where its interface went (the pod's namespace and its name
// there) and its TUN flags, so that a restarted dataplane can take the same interface back.
TEST(TableManagerPorts, TapRecordsKeepTheirNamespaceAndFlagsAndBadOnesAreRefused) {
    Manager m;
    int created = 0;
    m->set_port_factory(PortFactory{
        [&](const PodPortRequest& r, PortEntry& e) -> std::optional<std::string> {
            ++created;
            e.kind = r.type;
            e.devargs = "net_tap_test,iface=" + r.iface;
            e.port_id = static_cast<uint16_t>(created);
            e.tun_flags = 0x1002;  // IFF_TAP | IFF_MULTI_QUEUE, as the factory found them
            return std::nullopt;
        },
        [](const PortEntry&) {}});
    const std::string state = ::testing::TempDir() + "/kdp-ports-" + std::to_string(::getpid());
    m->set_port_state_file(state);

    PodPortRequest r;
    r.name = "default/k1";
    r.type = "tap";
    r.iface = "kdpc1234";
    r.pod_ip = ip("10.244.1.20");
    PortInfo out;
    const auto refused = [&](PodPortRequest bad, const char* why) {
        const auto e = m->add_pod_port(bad, out);
        ASSERT_TRUE(e.has_value()) << why;
        EXPECT_EQ(e->kind, PortError::Kind::kInvalid) << why;
        EXPECT_NE(e->message.find(why), std::string::npos) << e->message;
    };
    PodPortRequest bad = r;
    bad.netns = "var/run/netns/k1";
    bad.netns_iface = "eth0";
    refused(bad, "netns: \"var/run/netns/k1\" must be an absolute path");
    bad.netns = "/var/run/netns/k1";
    bad.netns_iface = "a/b";
    refused(bad, "netns_iface: \"a/b\" is not an interface name");
    bad.netns = "";
    bad.netns_iface = "eth0";
    refused(bad, "netns_iface: given without netns");
    bad.netns = "/var/run/netns/k1";
    bad.netns_iface = "";
    refused(bad, "given with netns_iface");
    bad = r;
    bad.queues = 2;
    refused(bad, "queues: only a vhostuser port has several queue pairs");
    bad.type = "vhostuser";
    bad.socket_path = "/run/kdp/k1.sock";
    bad.queues = 65;
    refused(bad, "queues: 65 is not in 1..64");
    EXPECT_EQ(created, 0) << "a refused request makes no device";

    r.netns = "/var/run/netns/k1";
    r.netns_iface = "eth0";
    ASSERT_EQ(m->add_pod_port(r, out), std::nullopt);
    std::string err;
    const std::vector<PodPortRequest> saved = TableManager::read_port_state(state, err);
    EXPECT_EQ(err, "");
    ASSERT_EQ(saved.size(), 1u);
    EXPECT_EQ(saved[0].name, "default/k1");
    EXPECT_EQ(saved[0].type, "tap");
    EXPECT_EQ(saved[0].iface, "kdpc1234");
    EXPECT_EQ(saved[0].netns, "/var/run/netns/k1");
    EXPECT_EQ(saved[0].netns_iface, "eth0");
    EXPECT_EQ(saved[0].tun_flags, 0x1002u) << "the flags the factory found, for the restart";
    EXPECT_EQ(saved[0].pod_ip, ip("10.244.1.20"));

    // A vhost-user port keeps its queue pairs for the restart.
    PodPortRequest v;
    v.name = "default/v1";
    v.type = "vhostuser";
    v.socket_path = "/run/kdp/v1.sock";
    v.queues = 4;
    ASSERT_EQ(m->add_pod_port(v, out), std::nullopt);
    const auto both = TableManager::read_port_state(state, err);
    const auto vs = std::find_if(both.begin(), both.end(),
                                 [](const PodPortRequest& p) { return p.name == "default/v1"; });
    ASSERT_NE(vs, both.end());
    EXPECT_EQ(vs->queues, 4u);
    ASSERT_EQ(m->remove_pod_port("default/v1"), std::nullopt);

    ASSERT_EQ(m->remove_pod_port("default/k1"), std::nullopt);
    EXPECT_TRUE(TableManager::read_port_state(state, err).empty()) << "removed: no record";
    std::remove(state.c_str());
}

}  // namespace
}  // namespace kdp::api
