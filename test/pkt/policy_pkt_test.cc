// Packet-level tests of NetworkPolicy enforcement through the real pipeline on one node:
// ingress and egress isolation, replies of allowed connections, Services judged against the
// backend after DNAT, traffic decapsulated from another node, the node's own traffic, the
// window before the first sync, and policy changes applied to established connections.
// Topology: service_fixture.h (pods a, b, c on node1; node2's pods behind the overlay).
#include <gtest/gtest.h>

#include "service_fixture.h"

namespace kdp::test {
namespace {

using dataplane::DropReason;
using table::PolicyDir;

using namespace svc;  // NOLINT: the fixture's names are this file's vocabulary

constexpr uint32_t kIdA = 1;       // default/a's pod identity
constexpr uint32_t kIdC = 2;       // default/c's
constexpr uint32_t kIdRemote = 3;  // node2's pod 10.244.2.20
constexpr uint32_t kIdWorld = 4;   // 0.0.0.0/0: everything else
const Ip4 kOtherRemote = ip("10.244.2.21");

table::PolicyRuleSpec allow(
    PolicyDir dir, uint32_t id, uint8_t proto, uint16_t lo, uint16_t hi, uint32_t rule) {
    return {dir, id, proto, lo, hi, rule};
}

// The identities of every pod, and b isolated for ingress: TCP 8080 from a and from node2's
// pod 10.244.2.20 (rule 0), UDP 53 from anyone (rule 1).
table::PolicySpec b_ingress() {
    table::PolicySpec p;
    p.present = true;
    p.peers = {{kA, kIdA}, {kC, kIdC}, {kRemote, kIdRemote}};
    p.cidrs = {{*Prefix4::parse("0.0.0.0/0"), kIdWorld}};
    p.rule_names = {"default/b-web ingress[0]", "default/b-dns ingress[0]"};
    table::PodPolicySpec b{"default/b", kB, true, false, {}};
    b.rules = {allow(PolicyDir::kIngress, kIdA, 6, 8080, 8080, 0),
               allow(PolicyDir::kIngress, kIdRemote, 6, 8080, 8080, 0),
               allow(PolicyDir::kIngress, table::kIdentityAny, 17, 53, 53, 1)};
    p.pods = {b};
    return p;
}

class Policy : public ::testing::Test {
protected:
    Policy() : h(three_pods()) {}

    void apply(table::TableSpec s, const table::PolicySpec& p) {
        s.policy = p;
        ASSERT_EQ(h.manager().apply_tables(s), std::nullopt);
    }
    void update(const table::PolicySpec& p) {
        table::TableUpdate u;
        u.generation = ++gen_;
        u.policy = p;
        ASSERT_EQ(h.manager().apply_update(u), std::nullopt);
    }
    Bytes pod_frame(Ip4 src, Ip4 dst, L4 l4, const Mac& from = kMacA) {
        return ether(h.params().gateway_mac, from, 0x0800, ipv4(src, dst, l4, 16));
    }
    // Sends one frame from pod port `from` and returns what port `to` got (0 or 1 frames).
    size_t through(const std::string& from, const Bytes& f, const std::string& to) {
        h.inject(from, f);
        return h.collect(to).size();
    }
    Bytes vxlan_from_node2(Ip4 src, Ip4 dst, L4 l4) {
        const Bytes inner =
            ether(h.params().vtep_mac, Mac::from_ip(kNode2), 0x0800, ipv4(src, dst, l4, 16));
        return ether(h.params().node_mac, kNode2Mac, 0x0800,
                     vxlan(kNode2, h.params().node_ip, 55555, 4789, 1, inner));
    }

    NodeHarness h;
    uint64_t gen_ = 10;
};

TEST_F(Policy, BeforeTheFirstSyncPodTrafficWaitsButTheNodeReachesItsPods) {
    table::TableSpec s = spec(1, {backend(kB, "default/b")});
    s.policy = {};  // no policy from any control plane yet (before_sync: deny)
    ASSERT_EQ(h.manager().apply_tables(s), std::nullopt);
    EXPECT_EQ(through("default/a", pod_frame(kA, kB, {6, 40000, 8080, 0x02}), "default/b"), 0u);
    EXPECT_EQ(h.drops("default/a", DropReason::kPolicyNotSynced), 1u)
        << h.drop_summary("default/a");
    EXPECT_EQ(through("default/a", pod_frame(kA, kVip, {6, 40001, 80, 0x02}), "default/b"), 0u)
        << "nor through a Service";
    EXPECT_EQ(h.drops("default/a", DropReason::kPolicyNotSynced), 2u);
    EXPECT_EQ(h.conntrack().size(), 0u) << "a denied first packet leaves no entry";
    // The node itself (here the gateway address, as a pod's probe to its node) is not held.
    h.inject("default/a", pod_frame(kA, h.params().node_ip, {17, 40002, 10250, 0}));
    EXPECT_EQ(h.drops("default/a", DropReason::kPolicyNotSynced), 2u)
        << "traffic to the node is not a policy matter: " << h.drop_summary("default/a");

    // The first sync opens it: the same flow passes.
    apply(spec(2, {backend(kB, "default/b")}), b_ingress());
    EXPECT_EQ(through("default/a", pod_frame(kA, kB, {6, 40000, 8080, 0x02}), "default/b"), 1u)
        << h.drop_summary("default/a");
}

TEST_F(Policy, IngressAllowsTheRuleAndItsRepliesOnly) {
    apply(spec(1, {}), b_ingress());
    // a -> b:8080/TCP is allowed; b's reply comes back through the connection's entry.
    EXPECT_EQ(through("default/a", pod_frame(kA, kB, {6, 40000, 8080, 0x02}), "default/b"), 1u)
        << h.drop_summary("default/a");
    EXPECT_EQ(through("default/b", pod_frame(kB, kA, {6, 8080, 40000, 0x12}, kMacB), "default/a"),
              1u)
        << h.drop_summary("default/b");
    EXPECT_EQ(through("default/a", pod_frame(kA, kB, {6, 40000, 8080, 0x10}), "default/b"), 1u);
    // Not from c, not to another port, not over UDP; UDP 53 from anyone.
    EXPECT_EQ(through("default/c", pod_frame(kC, kB, {6, 40000, 8080, 0x02}), "default/b"), 0u);
    EXPECT_EQ(through("default/a", pod_frame(kA, kB, {6, 40003, 8081, 0x02}), "default/b"), 0u);
    EXPECT_EQ(through("default/a", pod_frame(kA, kB, {17, 40004, 8080, 0}), "default/b"), 0u);
    EXPECT_EQ(through("default/c", pod_frame(kC, kB, {17, 40005, 53, 0}), "default/b"), 1u);
    EXPECT_EQ(h.drops("default/c", DropReason::kPolicyDenied), 1u) << h.drop_summary("default/c");
    EXPECT_EQ(h.drops("default/a", DropReason::kPolicyDenied), 2u) << h.drop_summary("default/a");
    // b itself is not isolated for egress: it opens connections to anyone, c answers.
    EXPECT_EQ(through("default/b", pod_frame(kB, kC, {6, 50000, 9000, 0x02}, kMacB), "default/c"),
              1u);
    EXPECT_EQ(through("default/c", pod_frame(kC, kB, {6, 9000, 50000, 0x12}), "default/b"), 1u)
        << "the reply of b's own connection is not new ingress";
}

TEST_F(Policy, EgressIsJudgedOnTheSourceNodeBeforeEncapsulation) {
    table::PolicySpec p = b_ingress();
    table::PodPolicySpec a{"default/a", kA, false, true, {}};
    p.rule_names.push_back("default/a-out egress[0]");
    a.rules = {allow(PolicyDir::kEgress, kIdRemote, 17, 5000, 5010, 2)};
    p.pods.push_back(a);
    apply(spec(1, {}), p);
    resolve_node2(h);
    EXPECT_EQ(through("default/a", pod_frame(kA, kRemote, {17, 40000, 5005, 0}), "uplink"), 1u)
        << h.drop_summary("default/a");
    EXPECT_EQ(through("default/a", pod_frame(kA, kRemote, {17, 40000, 5011, 0}), "uplink"), 0u);
    EXPECT_EQ(through("default/a", pod_frame(kA, kOtherRemote, {17, 40000, 5005, 0}), "uplink"),
              0u);
    EXPECT_EQ(through("default/a", pod_frame(kA, kB, {6, 40001, 8080, 0x02}), "default/b"), 0u)
        << "a may not reach b, although b would let it in";
    EXPECT_EQ(h.drops("default/a", DropReason::kPolicyDenied), 3u) << h.drop_summary("default/a");
    // The remote pod's answer to a's allowed flow comes back through the overlay.
    EXPECT_EQ(through("uplink", vxlan_from_node2(kRemote, kA, {17, 5005, 40000, 0}), "default/a"),
              1u)
        << h.drop_summary("uplink");
}

TEST_F(Policy, IngressFromAnotherNodeIsJudgedAfterDecapsulation) {
    apply(spec(1, {}), b_ingress());
    EXPECT_EQ(through("uplink", vxlan_from_node2(kRemote, kB, {6, 41000, 8080, 0x02}), "default/b"),
              1u)
        << h.drop_summary("uplink");
    EXPECT_EQ(
        through("uplink", vxlan_from_node2(kOtherRemote, kB, {6, 41000, 8080, 0x02}), "default/b"),
        0u);
    EXPECT_EQ(h.drops("uplink", DropReason::kPolicyDenied), 1u) << h.drop_summary("uplink");
}

TEST_F(Policy, AServiceIsJudgedAgainstTheBackendAfterDnat) {
    // VIP:80 -> b:8080. b lets a in on 8080 (the target port), not c.
    apply(spec(1, {backend(kB, "default/b")}), b_ingress());
    h.inject("default/a", pod_frame(kA, kVip, {6, 40000, 80, 0x02}));
    const auto out = h.collect("default/b");
    ASSERT_EQ(out.size(), 1u) << h.drop_summary("default/a");
    EXPECT_EQ(get32(&out[0][14 + 16]), kB.host());
    EXPECT_EQ(get16(&out[0][36]), 8080);
    // b's reply is un-DNATed back to the VIP, and allowed as the reply it is.
    EXPECT_EQ(through("default/b", pod_frame(kB, kA, {6, 8080, 40000, 0x12}, kMacB), "default/a"),
              1u);
    EXPECT_EQ(through("default/c", pod_frame(kC, kVip, {6, 40000, 80, 0x02}), "default/b"), 0u);
    EXPECT_EQ(h.drops("default/c", DropReason::kPolicyDenied), 1u) << h.drop_summary("default/c");
}

TEST_F(Policy, AChangeAppliesToEstablishedConnectionsOnTheirNextPacket) {
    apply(spec(1, {}), b_ingress());
    ASSERT_EQ(through("default/a", pod_frame(kA, kB, {6, 40000, 8080, 0x02}), "default/b"), 1u);
    ASSERT_EQ(through("default/b", pod_frame(kB, kA, {6, 8080, 40000, 0x12}, kMacB), "default/a"),
              1u);
    // c's UDP flow to b:53 is going too.
    ASSERT_EQ(through("default/c", pod_frame(kC, kB, {17, 40005, 53, 0}), "default/b"), 1u);

    // The web rule goes: a's established connection stops, both ways; c's DNS is untouched.
    table::PolicySpec p = b_ingress();
    p.pods[0].rules.erase(p.pods[0].rules.begin(), p.pods[0].rules.begin() + 2);
    update(p);
    EXPECT_EQ(through("default/a", pod_frame(kA, kB, {6, 40000, 8080, 0x10}), "default/b"), 0u);
    EXPECT_EQ(through("default/b", pod_frame(kB, kA, {6, 8080, 40000, 0x10}, kMacB), "default/a"),
              0u);
    EXPECT_EQ(h.drops("default/a", DropReason::kPolicyDenied), 1u) << h.drop_summary("default/a");
    EXPECT_EQ(h.drops("default/b", DropReason::kPolicyDenied), 1u) << h.drop_summary("default/b");
    EXPECT_EQ(through("default/c", pod_frame(kC, kB, {17, 40005, 53, 0}), "default/b"), 1u);

    // Back again: the same connection flows on, judged anew.
    update(b_ingress());
    EXPECT_EQ(through("default/a", pod_frame(kA, kB, {6, 40000, 8080, 0x10}), "default/b"), 1u)
        << h.drop_summary("default/a");

    // A policy that isolates a pod which had none cuts its open connections too.
    ASSERT_EQ(through("default/a", pod_frame(kA, kC, {6, 40010, 7000, 0x02}), "default/c"), 1u);
    table::PolicySpec q = b_ingress();
    q.pods.push_back({"default/c", kC, true, false, {}});  // default deny ingress for c
    update(q);
    EXPECT_EQ(through("default/a", pod_frame(kA, kC, {6, 40010, 7000, 0x10}), "default/c"), 0u);
    // And removing every policy opens everything.
    table::PolicySpec none;
    none.present = true;
    update(none);
    EXPECT_EQ(through("default/a", pod_frame(kA, kC, {6, 40010, 7000, 0x10}), "default/c"), 1u);
    EXPECT_EQ(through("default/c", pod_frame(kC, kB, {6, 40020, 1, 0x02}), "default/b"), 1u);
}

TEST_F(Policy, AMalformedPolicyIsRefusedAndChangesNothing) {
    apply(spec(1, {}), b_ingress());
    table::PolicySpec bad = b_ingress();
    bad.pods[0].rules[0].port_min = 9000;  // 9000-8080: empty
    table::TableUpdate u;
    u.generation = 2;
    u.policy = bad;
    const auto err = h.manager().apply_update(u);
    ASSERT_TRUE(err.has_value());
    EXPECT_NE(err->find("port range 9000-8080 is empty"), std::string::npos) << *err;
    bad = b_ingress();
    bad.pods[0].ip = kRemote;
    u.policy = bad;
    ASSERT_TRUE(h.manager().apply_update(u).has_value());
    EXPECT_EQ(through("default/a", pod_frame(kA, kB, {6, 40000, 8080, 0x02}), "default/b"), 1u)
        << "the policy in force is unchanged";
    EXPECT_EQ(through("default/c", pod_frame(kC, kB, {6, 40000, 8080, 0x02}), "default/b"), 0u);
}

}  // namespace
}  // namespace kdp::test
