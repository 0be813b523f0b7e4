// Packet-level tests of the host interface (config `host`): the node's kernel reaching its
// pods, pods on other nodes and Services through a port of kind kHost, and pods reaching the
// node at the gateway address. Every rewritten field and checksum is checked.
// Topology: service_fixture.h (pods a, b, c on node1; node2's pods behind the overlay), plus a
// ring port "host" playing the kernel's TAP, whose address is the gateway's, 10.244.1.1.
#include <cstring>
#include <utility>

#include <gtest/gtest.h>

#include "service_fixture.h"

namespace kdp::test {
namespace {

using dataplane::DropReason;

using namespace svc;  // NOLINT: the fixture's names are this file's vocabulary

const Mac kHostMac = mac("02:00:00:00:0e:0e");

Mac mac_at(const Bytes& f, size_t off) {
    Mac m;
    std::memcpy(m.b.data(), &f[off], 6);
    return m;
}

class Host : public ::testing::Test {
protected:
    Host() : Host(params()) {}
    explicit Host(NodeParams p) : h(std::move(p)) {}

    static NodeParams params() {
        NodeParams p = three_pods();
        p.host_port = true;
        return p;
    }
    void apply(const table::TableSpec& s) { ASSERT_EQ(h.manager().apply_tables(s), std::nullopt); }
    Ip4 gw() const { return h.params().gateway; }
    Mac gw_mac() const { return h.params().gateway_mac; }
    Bytes from_host(Ip4 dst, L4 l4, size_t payload = 16) {
        return ether(gw_mac(), kHostMac, 0x0800, ipv4(gw(), dst, l4, payload));
    }
    // The kernel asks for `target` on its TAP, as it does for every on-link destination.
    Bytes host_arp(Ip4 target, Ip4 sender) {
        return ether(Mac{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}, kHostMac, 0x0806,
                     arp(1, kHostMac, sender, Mac{}, target));
    }
    // A frame the host port sent: addressed to the kernel's MAC, from the gateway's.
    void expect_to_host(const Bytes& f, const char* what) {
        EXPECT_EQ(mac_at(f, 0), kHostMac) << what;
        EXPECT_EQ(mac_at(f, 6), gw_mac()) << what;
        EXPECT_EQ(get32(&f[14 + 16]), gw().host()) << what << ": to the node's address";
        EXPECT_EQ(f[14 + 8], 63) << what << ": TTL decremented once";
        expect_valid(f, 14, what);
    }

    NodeHarness h;
};

TEST_F(Host, TheKernelsArpIsAnsweredForAnyAddressButItsOwn) {
    apply(spec(1, {}));
    h.inject("host", host_arp(kA, gw()));
    const auto out = h.collect("host");
    ASSERT_EQ(out.size(), 1u) << h.drop_summary("host");
    const Bytes& r = out[0];
    EXPECT_EQ(get16(&r[12]), 0x0806);
    EXPECT_EQ(mac_at(r, 0), kHostMac);
    EXPECT_EQ(get16(&r[14 + 6]), 2) << "a reply";
    EXPECT_EQ(mac_at(r, 14 + 8), gw_mac()) << "the pod's address is at the gateway MAC";
    EXPECT_EQ(get32(&r[14 + 14]), kA.host());
    EXPECT_EQ(mac_at(r, 14 + 18), kHostMac);
    EXPECT_EQ(get32(&r[14 + 24]), gw().host());
    EXPECT_EQ(h.node().ports->port[h.port("host")].peer_mac.load(), kHostMac.pack())
        << "the kernel's MAC is learned from its ARP";

    h.inject("host", host_arp(gw(), gw()));             // its own address
    h.inject("host", host_arp(kA, ip("10.244.1.99")));  // not from the node's address
    EXPECT_TRUE(h.collect("host").empty());
    EXPECT_EQ(h.drops("host", DropReason::kArpIgnored), 2u);
}

TEST_F(Host, TheNodeReachesALocalPodAndThePodAnswersTheNode) {
    apply(spec(1, {}));
    h.inject("host", host_arp(kA, gw()));
    (void)h.collect("host");
    h.inject("host", from_host(kA, {6, 40000, 80, 0x02}));
    const auto to_a = h.collect("default/a");
    ASSERT_EQ(to_a.size(), 1u) << h.drop_summary("host");
    const Bytes& f = to_a[0];
    EXPECT_EQ(mac_at(f, 6), gw_mac());
    EXPECT_EQ(get32(&f[14 + 12]), gw().host()) << "the node's address, untouched";
    EXPECT_EQ(get32(&f[14 + 16]), kA.host());
    EXPECT_EQ(get16(&f[34]), 40000);
    EXPECT_EQ(get16(&f[36]), 80);
    EXPECT_EQ(f[14 + 8], 63);
    expect_valid(f, 14, "node -> pod");
    EXPECT_EQ(h.conntrack().size(), 1u) << "tracked like a pod's connection";

    h.inject("default/a", ether(gw_mac(), kMacA, 0x0800, ipv4(kA, gw(), {6, 80, 40000, 0x12}, 16)));
    const auto back = h.collect("host");
    ASSERT_EQ(back.size(), 1u) << h.drop_summary("default/a");
    expect_to_host(back[0], "pod -> node");
    EXPECT_EQ(get32(&back[0][14 + 12]), kA.host());
    EXPECT_EQ(get16(&back[0][34]), 80);
    EXPECT_EQ(get16(&back[0][36]), 40000);
    EXPECT_EQ(h.conntrack().size(), 1u) << "the reply is the same connection";

    // A ping from the pod to its gateway goes to the kernel, which answers it.
    h.inject("default/a",
             ether(gw_mac(), kMacA, 0x0800, ipv4(kA, gw(), L4{1, 0, 0, 0, 8, 0x77}, 16)));
    const auto ping = h.collect("host");
    ASSERT_EQ(ping.size(), 1u) << h.drop_summary("default/a");
    EXPECT_EQ(ping[0][14 + 20], 8) << "an echo request, for the kernel to answer";
    EXPECT_TRUE(h.collect("default/a").empty()) << "not answered by the dataplane";
}

TEST_F(Host, TheNodeReachesAServiceAndTheReplyComesFromTheVip) {
    apply(spec(1, {backend(kB, "default/b")}));
    h.inject("host", from_host(kVip, {6, 41000, 80, 0x02}));
    const auto to_b = h.collect("default/b");
    ASSERT_EQ(to_b.size(), 1u) << h.drop_summary("host");
    EXPECT_EQ(get32(&to_b[0][14 + 12]), gw().host()) << "no SNAT: replies come back here";
    EXPECT_EQ(get32(&to_b[0][14 + 16]), kB.host());
    EXPECT_EQ(get16(&to_b[0][36]), 8080);
    expect_valid(to_b[0], 14, "DNATed");

    h.inject("default/b",
             ether(gw_mac(), kMacB, 0x0800, ipv4(kB, gw(), {6, 8080, 41000, 0x12}, 0)));
    const auto back = h.collect("host");
    ASSERT_EQ(back.size(), 1u) << h.drop_summary("default/b");
    expect_to_host(back[0], "un-DNATed reply");
    EXPECT_EQ(get32(&back[0][14 + 12]), kVip.host());
    EXPECT_EQ(get16(&back[0][34]), 80);
    EXPECT_EQ(get16(&back[0][36]), 41000);
}

TEST_F(Host, TheNodeReachesARemotePodOverTheOverlay) {
    apply(spec(1, {}));
    resolve_node2(h);
    h.inject("host", from_host(kRemote, {17, 42000, 53, 0}));
    const auto up = h.collect("uplink");
    ASSERT_EQ(up.size(), 1u) << h.drop_summary("host");
    const Bytes& f = up[0];
    EXPECT_EQ(get32(&f[14 + 16]), kNode2.host()) << "to node2's VTEP";
    EXPECT_EQ(get16(&f[36]), 4789);
    EXPECT_EQ(get32(&f[50 + 14 + 12]), gw().host()) << "inner source: the node's address";
    EXPECT_EQ(get32(&f[50 + 14 + 16]), kRemote.host());
    expect_valid(f, 50 + 14, "inner");

    // node2's pod answers the node: back over the overlay, to the host port.
    const Bytes inner = ether(h.params().vtep_mac, Mac::from_ip(kNode2), 0x0800,
                              ipv4(kRemote, gw(), {17, 53, 42000, 0}, 16));
    h.inject("uplink", ether(h.params().node_mac, kNode2Mac, 0x0800,
                             vxlan(kNode2, h.params().node_ip, 50000, 4789, 1, inner)));
    const auto back = h.collect("host");
    ASSERT_EQ(back.size(), 1u) << h.drop_summary("uplink");
    EXPECT_EQ(get32(&back[0][14 + 12]), kRemote.host());
    EXPECT_EQ(get16(&back[0][36]), 42000);
    EXPECT_EQ(get32(&back[0][14 + 16]), gw().host());
    expect_valid(back[0], 14, "decapsulated reply");
}

// Kubernetes: a pod and its own node may always talk, whatever the policy (kubelet probes).
TEST_F(Host, PolicyNeverStandsBetweenAPodAndItsOwnNode) {
    table::TableSpec s = spec(1, {});
    s.policy.present = true;
    s.policy.peers = {{kA, 1}, {kB, 2}, {kC, 3}};
    s.policy.pods = {table::PodPolicySpec{"default/b", kB, true, true, {}}};  // deny all
    apply(s);
    h.inject("default/a", ether(gw_mac(), kMacA, 0x0800, ipv4(kA, kB, {6, 43000, 8080, 0x02}, 0)));
    EXPECT_TRUE(h.collect("default/b").empty());
    EXPECT_EQ(h.drops("default/a", DropReason::kPolicyDenied), 1u) << "b is isolated";

    h.inject("host", from_host(kB, {6, 43001, 8080, 0x02}));
    EXPECT_EQ(h.collect("default/b").size(), 1u) << h.drop_summary("host");
    h.inject("default/b", ether(gw_mac(), kMacB, 0x0800, ipv4(kB, gw(), {6, 9000, 22, 0x02}, 0)));
    EXPECT_EQ(h.collect("host").size(), 1u) << h.drop_summary("default/b");
}

TEST_F(Host, BadFramesFromTheHostAreDroppedByReason) {
    apply(spec(1, {}));
    h.inject("host",
             ether(gw_mac(), kHostMac, 0x0800, ipv4(ip("10.244.1.50"), kA, {6, 1, 80, 2}, 0)));
    EXPECT_EQ(h.drops("host", DropReason::kSourceMismatch), 1u);
    h.inject("host",
             ether(mac("02:00:00:00:99:99"), kHostMac, 0x0800, ipv4(gw(), kA, {6, 1, 80, 2}, 0)));
    EXPECT_EQ(h.drops("host", DropReason::kNotForUs), 1u);
    h.inject("host", from_host(ip("10.244.1.77"), {6, 1, 80, 2}));
    EXPECT_EQ(h.drops("host", DropReason::kNoPod), 1u);
    h.inject("host", from_host(ip("203.0.113.5"), {6, 1, 80, 2}));
    EXPECT_EQ(h.drops("host", DropReason::kNoRoute), 1u) << "only the pod network comes here";
    EXPECT_TRUE(h.collect("uplink").empty());
    EXPECT_TRUE(h.collect("default/a").empty());
    EXPECT_EQ(h.total_drops("host"), 4u);
}

TEST_F(Host, TraceFromTheHostFollowsTheRealPath) {
    apply(spec(1, {backend(kB, "default/b")}));
    api::TraceResult r;
    ASSERT_EQ(h.manager().trace({"host", "service:default/web", 80, 6}, r), std::nullopt);
    EXPECT_EQ(r.verdict, "allow");
    EXPECT_EQ(r.backend, "default/b");
    EXPECT_EQ(r.seen_src, gw().str()) << "the node's address in the pod network";
    EXPECT_EQ(h.conntrack().size(), 0u) << "the trace left a connection behind";

    NodeHarness bare(three_pods());
    ASSERT_EQ(bare.manager().apply_tables(spec(1, {})), std::nullopt);
    api::TraceResult none;
    EXPECT_EQ(bare.manager().trace({"host", "default/a", 80, 6}, none),
              "from: node node1 has no host interface (node config `host`)");
}

// host.node_address: the kernel also holds the node's underlay address, and the dataplane is its
// way to the underlay (the NIC is the dataplane's): its ARP for underlay neighbours is proxied,
// its packets leave unchanged, and what the uplink brings for the node that the dataplane does
// not serve itself goes to it.
class HostNodeAddress : public Host {
protected:
    HostNodeAddress() : Host(params()) {}
    static NodeParams params() {
        NodeParams p = Host::params();
        p.host_node_address = true;
        return p;
    }
};

TEST_F(HostNodeAddress, TheNodeReachesTheUnderlayAndTheUnderlayReachesTheNode) {
    apply(spec(1, {}));
    const Ip4 node = h.params().node_ip;
    const Ip4 peer = ip("198.51.100.50");
    const Mac peer_mac = mac("02:00:00:00:50:50");
    h.inject("host", host_arp(peer, node));
    auto arp_reply = h.collect("host");
    ASSERT_EQ(arp_reply.size(), 1u) << h.drop_summary("host");
    EXPECT_EQ(mac_at(arp_reply[0], 14 + 8), gw_mac()) << "the neighbour is at the gateway MAC";

    // Out: the node's own SYN, resolved by the dataplane's ARP and sent unchanged.
    h.inject("host", ether(gw_mac(), kHostMac, 0x0800, ipv4(node, peer, {6, 40100, 443, 0x02}, 0)));
    const auto req = h.collect("uplink");
    ASSERT_EQ(req.size(), 1u) << h.drop_summary("host");
    EXPECT_EQ(get16(&req[0][12]), 0x0806) << "the dataplane asks for the neighbour first";
    h.inject("uplink", ether(h.params().node_mac, peer_mac, 0x0806,
                             arp(2, peer_mac, peer, h.params().node_mac, node)));
    const auto out = h.collect("uplink");
    ASSERT_EQ(out.size(), 1u) << h.drop_summary("host");
    EXPECT_EQ(mac_at(out[0], 0), peer_mac);
    EXPECT_EQ(mac_at(out[0], 6), h.params().node_mac);
    EXPECT_EQ(get32(&out[0][14 + 12]), node.host()) << "no masquerade: it is the node's own";
    EXPECT_EQ(get16(&out[0][34]), 40100);
    EXPECT_EQ(out[0][14 + 8], 63);
    expect_valid(out[0], 14, "node -> underlay");
    EXPECT_EQ(h.conntrack().size(), 1u) << "tracked, so that masquerade avoids its port";

    // Back: the answer, and a connection the underlay opens to the node (SSH, say).
    for (const uint16_t dport : {40100, 22}) {
        h.inject("uplink",
                 ether(h.params().node_mac, peer_mac, 0x0800,
                       ipv4(peer, node,
                            {6, dport == 22 ? uint16_t{50000} : uint16_t{443}, dport, 0x12}, 0)));
        const auto in = h.collect("host");
        ASSERT_EQ(in.size(), 1u) << dport << ": " << h.drop_summary("uplink");
        EXPECT_EQ(mac_at(in[0], 0), kHostMac);
        EXPECT_EQ(get32(&in[0][14 + 16]), node.host());
        EXPECT_EQ(get16(&in[0][36]), dport);
        expect_valid(in[0], 14, "underlay -> node");
    }
    EXPECT_EQ(h.drops("uplink", DropReason::kHostPath), 0u);
}

// Without a host interface the gateway answers pings itself, and other traffic for the node
// is dropped as host_path (the service_pkt/icmp tests cover the rest of that path).
TEST(NoHost, TheGatewayAnswersPingsItself) {
    NodeHarness h(three_pods());
    ASSERT_EQ(h.manager().apply_tables(spec(1, {})), std::nullopt);
    const Ip4 gw = h.params().gateway;
    h.inject("default/a", ether(h.params().gateway_mac, kMacA, 0x0800,
                                ipv4(kA, gw, L4{1, 0, 0, 0, 8, 0x77}, 16)));
    const auto r = h.collect("default/a");
    ASSERT_EQ(r.size(), 1u) << h.drop_summary("default/a");
    EXPECT_EQ(r[0][14 + 20], 0) << "an echo reply";
    EXPECT_EQ(get32(&r[0][14 + 12]), gw.host());
}

}  // namespace
}  // namespace kdp::test
