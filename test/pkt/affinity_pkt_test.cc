// Packet-level tests of sessionAffinity: ClientIP with its timeout, as kube-proxy does it:
// a client's new connections follow its first one's backend while it keeps using the Service
// within the timeout and that backend stays usable, whatever Maglev would pick meanwhile.
//
//   clients 203.0.113.1..20 --> node1 198.51.100.1:30080 (NodePort) --> b 10.244.1.11:8080
//                                                                   \-> c 10.244.1.12:8080
#include <map>

#include <gtest/gtest.h>

#include "service_fixture.h"

namespace kdp::test {
namespace {

using namespace svc;  // NOLINT: the fixture's names are this file's vocabulary

constexpr uint32_t kTimeout = 10;  // s
constexpr uint64_t kSecond = 1000000;
const Mac kRouterMac = mac("02:00:00:00:0e:0e");

table::TableSpec affinity_spec(uint64_t gen, std::vector<table::BackendSpec> backends) {
    table::TableSpec s = spec(gen, std::move(backends));
    s.services[0].frontends.push_back({table::FrontendKind::kNodePort, ip("198.51.100.1"), 30080});
    s.services[0].affinity_timeout_s = kTimeout;
    return s;
}

class Affinity : public ::testing::Test {
protected:
    Affinity() : h(three_pods()) {}

    void apply(const table::TableSpec& s) { ASSERT_EQ(h.manager().apply_tables(s), std::nullopt); }
    static Ip4 client(int i) { return Ip4::from_host(ip("203.0.113.0").host() + 1 + i); }
    // A new connection (a SYN from a port not used before) from client i at second t; returns
    // the backend pod that got it ("" if none).
    std::string connect(int i, uint64_t t) {
        const auto sport = static_cast<uint16_t>(20000 + next_port_++);
        h.inject("uplink",
                 ether(h.params().node_mac, kRouterMac, 0x0800,
                       ipv4(client(i), h.params().node_ip, {6, sport, 30080, 0x02}, 0)),
                 t * kSecond);
        for (const char* p : {"default/b", "default/c"}) {
            const auto out = h.collect(p);
            if (out.size() == 1) {
                EXPECT_EQ(get32(&out[0][14 + 12]), client(i).host()) << "client IP preserved";
                return p;
            }
        }
        ADD_FAILURE() << "client " << i << ": not delivered; " << h.drop_summary("uplink");
        return "";
    }

    NodeHarness h;
    int next_port_ = 0;
};

constexpr int kClients = 20;

TEST_F(Affinity, NewConnectionsFollowTheRecordedBackendUntilTheTimeout) {
    apply(affinity_spec(1, {backend(kB, "default/b")}));
    for (int i = 0; i < kClients; ++i) {
        ASSERT_EQ(connect(i, 1), "default/b");
    }
    // c joins: Maglev now sends about half of these clients to c, but each has a record.
    apply(affinity_spec(2, {backend(kB, "default/b"), backend(kC, "default/c")}));
    for (int i = 0; i < kClients; ++i) {
        EXPECT_EQ(connect(i, 5), "default/b") << "client " << i << " within the timeout";
    }
    // Every use refreshes the record: 5 + 9 s is still within 10 s of the last use.
    for (int i = 0; i < kClients; ++i) {
        EXPECT_EQ(connect(i, 14), "default/b") << "client " << i << " refreshed";
    }
    // Past the timeout the choice is fresh: Maglev's, which moves some clients to c (all 20
    // staying on b has odds of 2^-20) and is then recorded and kept.
    std::map<int, std::string> fresh;
    int on_c = 0;
    for (int i = 0; i < kClients; ++i) {
        fresh[i] = connect(i, 14 + kTimeout + 1);
        on_c += fresh[i] == "default/c";
    }
    EXPECT_GT(on_c, 0);
    EXPECT_LT(on_c, kClients);
    for (int i = 0; i < kClients; ++i) {
        EXPECT_EQ(connect(i, 30), fresh[i]) << "client " << i << " keeps its new backend";
    }
}

TEST_F(Affinity, ARecordedBackendThatLeftIsReplaced) {
    apply(affinity_spec(1, {backend(kB, "default/b")}));
    ASSERT_EQ(connect(0, 1), "default/b");
    apply(affinity_spec(2, {backend(kC, "default/c")}));
    EXPECT_EQ(connect(0, 2), "default/c") << "b is gone: a fresh choice";
    apply(affinity_spec(3, {backend(kB, "default/b"), backend(kC, "default/c")}));
    EXPECT_EQ(connect(0, 3), "default/c") << "and that choice is what is recorded now";
    // A backend that stays but stops being usable (not ready) is left too.
    apply(affinity_spec(4, {backend(kB, "default/b"), backend(kC, "default/c", false)}));
    EXPECT_EQ(connect(0, 4), "default/b");
}

TEST_F(Affinity, RecordsAreConntrackEntriesWithTheServiceTimeout) {
    apply(affinity_spec(1, {backend(kB, "default/b")}));
    ASSERT_EQ(connect(0, 1), "default/b");
    ASSERT_EQ(connect(1, 1), "default/b");
    // Two connections and two records; unreplied SYNs live 120 s, the records 10 s.
    EXPECT_EQ(h.conntrack().size(), 4u);
    h.expire(1 * kSecond + kTimeout * kSecond);
    EXPECT_EQ(h.conntrack().size(), 4u) << "10 s idle: not yet";
    h.expire(1 * kSecond + (kTimeout + 1) * kSecond);
    EXPECT_EQ(h.conntrack().size(), 2u) << "records gone, connections kept";
    // Without affinity nothing is recorded.
    table::TableSpec none = affinity_spec(2, {backend(kB, "default/b")});
    none.services[0].affinity_timeout_s = 0;
    apply(none);
    ASSERT_EQ(connect(2, 12), "default/b");
    EXPECT_EQ(h.conntrack().size(), 3u);
}

}  // namespace
}  // namespace kdp::test
