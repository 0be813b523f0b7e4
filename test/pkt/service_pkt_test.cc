// Packet-level tests of Service load balancing on one node: DNAT, reverse NAT, Maglev choice,
// conntrack pinning, rejects and stale backends, every rewritten field and checksum checked.
// Topology: service_fixture.h.
#include <map>

#include <gtest/gtest.h>

#include "pkt/crc32c.h"
#include "service_fixture.h"

namespace kdp::test {
namespace {

using dataplane::DropReason;

using namespace svc;  // NOLINT: the fixture's names are this file's vocabulary

class Services : public ::testing::Test {
protected:
    // One test client opens thousands of connections that no reply answers: the per-source
    // share of unreplied connections (tested on its own below) is lifted here.
    Services() : h(unshared(three_pods())) {}
    static NodeParams unshared(NodeParams p) {
        p.source_share = 100;
        return p;
    }

    void apply(const table::TableSpec& s) { ASSERT_EQ(h.manager().apply_tables(s), std::nullopt); }
    Bytes client(uint16_t sport, uint8_t proto = 6, uint8_t tcp_flags = 0x02, size_t payload = 0) {
        L4 l4{proto, sport, 80, tcp_flags};
        return ether(h.params().gateway_mac, kMacA, 0x0800, ipv4(kA, kVip, l4, payload));
    }
    Bytes from_backend(Ip4 src, const char* port_name, uint16_t dport, uint8_t proto = 6) {
        (void)port_name;
        L4 l4{proto, 8080, dport, 0x12};
        return ether(h.params().gateway_mac, mac("02:00:00:00:0b:0b"), 0x0800,
                     ipv4(src, kA, l4, 16));
    }
    // Which backend port received the packet, and the packet.
    std::pair<std::string, Bytes> delivered() {
        for (const char* p : {"default/b", "default/c", "uplink"}) {
            auto out = h.collect(p);
            if (!out.empty()) {
                EXPECT_EQ(out.size(), 1u);
                return {p, out[0]};
            }
        }
        return {"", {}};
    }

    NodeHarness h;
};

TEST(Crc32c, KnownVector) {
    const char* s = "123456789";
    EXPECT_EQ(~pkt::crc32c(s, 9), 0xe3069283u);  // RFC 3720 B.4 check value
    EXPECT_EQ(~pkt::crc32c(s, 9), ref_crc32c(reinterpret_cast<const uint8_t*>(s), 9));
}

TEST_F(Services, DnatToALocalBackendAndUnDnatTheReply) {
    apply(spec(1, {backend(kB, "default/b"), backend(kC, "default/c")}));
    h.inject("default/a", client(40000));
    const auto [port, f] = delivered();
    ASSERT_TRUE(port == "default/b" || port == "default/c") << h.drop_summary("default/a");
    const Ip4 be = port == "default/b" ? kB : kC;
    EXPECT_EQ(get32(&f[14 + 12]), kA.host()) << "source untouched";
    EXPECT_EQ(get32(&f[14 + 16]), be.host()) << "destination is the backend";
    EXPECT_EQ(get16(&f[34]), 40000);
    EXPECT_EQ(get16(&f[36]), 8080) << "port -> targetPort";
    EXPECT_EQ(f[14 + 8], 63);
    expect_valid(f, 14, "DNATed SYN");
    EXPECT_EQ(h.conntrack().size(), 1u);

    // The backend's SYN-ACK comes back from its own address; the client sees the VIP.
    h.inject(port, ether(h.params().gateway_mac, mac("02:00:00:00:0b:0b"), 0x0800,
                         ipv4(be, kA, {6, 8080, 40000, 0x12}, 0)));
    const auto back = h.collect("default/a");
    ASSERT_EQ(back.size(), 1u) << h.drop_summary(port);
    const Bytes& r = back[0];
    EXPECT_EQ(get32(&r[14 + 12]), kVip.host()) << "reply source is the VIP";
    EXPECT_EQ(get16(&r[34]), 80);
    EXPECT_EQ(get32(&r[14 + 16]), kA.host());
    EXPECT_EQ(get16(&r[36]), 40000);
    expect_valid(r, 14, "un-DNATed SYN-ACK");
    EXPECT_EQ(static_cast<table::CtState>(
                  h.conntrack()
                      .entry(h.conntrack()
                                 .lookup(table::CtKey{kA.be, kVip.be, to_be16(40000), to_be16(80),
                                                      6, 0, 0})
                                 .index)
                      .state.load()),
              table::CtState::kEstablished);
}

// A burst's conntrack passes run before its stages: a connection opened by one packet of a
// burst is still found by the next packets of that burst (no stale miss from the probe pass).
TEST_F(Services, ConnectionsOpenedInABurstAreFoundByItsLaterPackets) {
    apply(spec(1, {backend(kB, "default/b"), backend(kC, "default/c")}));
    std::vector<Bytes> burst;
    for (int i = 0; i < 8; ++i) {
        burst.push_back(client(41000));  // one connection, eight packets, one burst
    }
    for (int i = 0; i < 8; ++i) {
        burst.push_back(client(static_cast<uint16_t>(42000 + i)));  // eight more connections
    }
    h.inject("default/a", burst);
    const auto b = h.collect("default/b");
    const auto c = h.collect("default/c");
    ASSERT_EQ(b.size() + c.size(), 16u) << h.drop_summary("default/a");
    EXPECT_EQ(h.conntrack().size(), 9u) << "one entry per connection";
    size_t first = 0;  // the packets of port 41000 all went to one backend
    for (const auto* out : {&b, &c}) {
        size_t n = 0;
        for (const Bytes& f : *out) {
            n += get16(&f[34]) == 41000;
        }
        EXPECT_TRUE(n == 0 || n == 8) << n << " of the connection's 8 packets on one backend";
        first += n;
    }
    EXPECT_EQ(first, 8u);
}

// One client port, two Services, one backend: both DNATs give the same reply tuple
// (b:8080 -> a:41000). The second connection leaves from another source port of a (as a NAT
// remaps a clashing source port), so that each reply is un-NATed as its own connection's.
// A direct connection with that tuple afterwards is refused (tuple_clash), not mixed up.
TEST_F(Services, SameClientPortToTwoServicesOfOneBackendStayApart) {
    table::TableSpec s = spec(1, {backend(kB, "default/b")});
    const Ip4 vip2 = ip("10.96.0.11");
    table::ServiceSpec other = s.services[0];
    other.name = "default/other:http";
    other.frontends = {{table::FrontendKind::kClusterIp, vip2, 80}};
    s.services.push_back(other);
    apply(s);
    const auto to = [&](Ip4 vip) {
        return ether(h.params().gateway_mac, kMacA, 0x0800, ipv4(kA, vip, {6, 41000, 80, 0x02}, 0));
    };
    h.inject("default/a", to(kVip));
    const auto first = h.collect("default/b");
    ASSERT_EQ(first.size(), 1u) << h.drop_summary("default/a");
    EXPECT_EQ(get16(&first[0][34]), 41000) << "the first keeps the client's port";
    h.inject("default/a", to(vip2));
    const auto second = h.collect("default/b");
    ASSERT_EQ(second.size(), 1u) << h.drop_summary("default/a");
    EXPECT_EQ(get32(&second[0][14 + 12]), kA.host()) << "the client's address stays";
    const uint16_t remapped = get16(&second[0][34]);
    EXPECT_NE(remapped, 41000) << "the clashing connection's source port is remapped";
    expect_valid(second[0], 14, "remapped SYN");
    EXPECT_EQ(h.conntrack().size(), 2u);

    // Each SYN-ACK goes back to the client from the VIP it called, on the client's own port.
    for (const auto& [dport, vip] : {std::pair{uint16_t{41000}, kVip}, std::pair{remapped, vip2}}) {
        h.inject("default/b", ether(h.params().gateway_mac, kMacB, 0x0800,
                                    ipv4(kB, kA, {6, 8080, dport, 0x12}, 0)));
        const auto back = h.collect("default/a");
        ASSERT_EQ(back.size(), 1u) << h.drop_summary("default/b");
        EXPECT_EQ(get32(&back[0][14 + 12]), vip.host()) << "reply to port " << dport;
        EXPECT_EQ(get16(&back[0][34]), 80);
        EXPECT_EQ(get16(&back[0][36]), 41000) << "the client sees its own port";
        expect_valid(back[0], 14, "un-NATed SYN-ACK");
    }

    // a:41000 -> b:8080 directly has the first connection's reply tuple: refused.
    h.inject("default/a",
             ether(h.params().gateway_mac, kMacA, 0x0800, ipv4(kA, kB, {6, 41000, 8080, 0x02}, 0)));
    EXPECT_TRUE(h.collect("default/b").empty());
    EXPECT_NE(h.drop_summary("default/a").find("tuple_clash"), std::string::npos)
        << h.drop_summary("default/a");
}

TEST_F(Services, UdpAndSctpChecksumsSurviveDnat) {
    for (uint8_t proto : {17, 132}) {
        NodeHarness hh(three_pods());
        ASSERT_EQ(hh.manager().apply_tables(spec(1, {backend(kB, "default/b")}, proto)),
                  std::nullopt);
        L4 l4{proto, 5353, 80};
        hh.inject("default/a",
                  ether(hh.params().gateway_mac, kMacA, 0x0800, ipv4(kA, kVip, l4, 37)));
        const auto out = hh.collect("default/b");
        ASSERT_EQ(out.size(), 1u) << int(proto) << ": " << hh.drop_summary("default/a");
        EXPECT_EQ(get16(&out[0][36]), 8080);
        expect_valid(out[0], 14, proto == 17 ? "UDP" : "SCTP");
    }
}

// Over 4000 flows, each of two backends gets its half within 5 points.
TEST_F(Services, MaglevSpreadsFlowsEvenly) {
    apply(spec(1, {backend(kB, "default/b"), backend(kC, "default/c")}));
    std::map<std::string, int> hits;
    for (uint16_t i = 0; i < 4000; ++i) {
        h.inject("default/a", client(static_cast<uint16_t>(20000 + i)));
        ++hits[delivered().first];
    }
    EXPECT_EQ(hits["default/b"] + hits["default/c"], 4000);
    EXPECT_NEAR(hits["default/b"] / 4000.0, 0.5, 0.05);
    EXPECT_EQ(h.conntrack().size(), 4000u);
}

TEST_F(Services, RemoteBackendIsEncapsulatedAndItsReplyUnNated) {
    apply(spec(1, {backend(kRemote, "default/r")}));
    h.inject("uplink", ether(h.params().node_mac, mac("02:00:00:00:02:02"), 0x0806,
                             arp(2, mac("02:00:00:00:02:02"), ip("198.51.100.2"),
                                 h.params().node_mac, h.params().node_ip)));
    h.inject("default/a", client(41000));
    auto up = h.collect("uplink");
    ASSERT_EQ(up.size(), 1u) << h.drop_summary("default/a");
    const Bytes& f = up[0];
    EXPECT_EQ(get16(&f[36]), 4789);
    EXPECT_EQ(get32(&f[50 + 14 + 16]), kRemote.host()) << "inner destination is the backend";
    EXPECT_EQ(get16(&f[50 + 36]), 8080);
    expect_valid(f, 50 + 14, "inner");

    const Bytes reply_inner = ipv4(kRemote, kA, {6, 8080, 41000, 0x12}, 0);
    h.inject("uplink", ether(h.params().node_mac, mac("02:00:00:00:02:02"), 0x0800,
                             vxlan(ip("198.51.100.2"), h.params().node_ip, 50000, 4789, 1,
                                   ether(h.params().vtep_mac, Mac::from_ip(ip("198.51.100.2")),
                                         0x0800, reply_inner))));
    const auto back = h.collect("default/a");
    ASSERT_EQ(back.size(), 1u) << h.drop_summary("uplink");
    EXPECT_EQ(get32(&back[0][14 + 12]), kVip.host());
    EXPECT_EQ(get16(&back[0][34]), 80);
    expect_valid(back[0], 14, "reply");
}

TEST_F(Services, NoEndpointsRejectsTcpWithRst) {
    apply(spec(1, {}));
    h.inject("default/a", client(42000, 6, 0x02));
    const auto out = h.collect("default/a");
    ASSERT_EQ(out.size(), 1u);
    const Bytes& r = out[0];
    EXPECT_EQ(read_mac_at(r, 0), kMacA);
    EXPECT_EQ(get32(&r[14 + 12]), kVip.host());
    EXPECT_EQ(get32(&r[14 + 16]), kA.host());
    EXPECT_EQ(get16(&r[34]), 80);
    EXPECT_EQ(get16(&r[36]), 42000);
    EXPECT_EQ(r[34 + 13], 0x14) << "RST|ACK";
    EXPECT_EQ(get32(&r[34 + 8]), 1000u + 1) << "acknowledges the SYN";
    EXPECT_EQ(r.size(), 54u);
    expect_valid(r, 14, "RST");
    EXPECT_EQ(h.drops("default/a", DropReason::kNoEndpoints), 1u);
    EXPECT_EQ(h.conntrack().size(), 0u);
}

TEST_F(Services, NoEndpointsRejectsUdpWithPortUnreachable) {
    apply(spec(1, {}, 17));
    h.inject("default/a", client(42001, 17, 0, 20));
    const auto out = h.collect("default/a");
    ASSERT_EQ(out.size(), 1u);
    const Bytes& r = out[0];
    EXPECT_EQ(get32(&r[14 + 12]), kVip.host()) << "from the Service address";
    EXPECT_EQ(r[34], 3);
    EXPECT_EQ(r[35], 3) << "port unreachable";
    EXPECT_EQ(ref_checksum(&r[34], r.size() - 34), 0);
    EXPECT_EQ(get32(&r[42 + 16]), kVip.host()) << "quotes the original";
}

TEST_F(Services, TerminatingEndpointsOnlyWhenNoneIsReady) {
    apply(spec(1, {backend(kB, "default/b", true), backend(kC, "default/c", false, true)}));
    for (uint16_t i = 0; i < 50; ++i) {
        h.inject("default/a", client(static_cast<uint16_t>(30000 + i)));
        EXPECT_EQ(delivered().first, "default/b");
    }
    apply(spec(2, {backend(kB, "default/b", false), backend(kC, "default/c", false, true)}));
    h.inject("default/a", client(31000));
    EXPECT_EQ(delivered().first, "default/c") << "terminating but serving, as a last resort";
}

TEST_F(Services, EstablishedConnectionsStayPinnedAcrossUpdates) {
    apply(spec(1, {backend(kB, "default/b")}));
    h.inject("default/a", client(43000));
    ASSERT_EQ(delivered().first, "default/b");
    apply(spec(2, {backend(kB, "default/b"), backend(kC, "default/c")}));
    for (int i = 0; i < 20; ++i) {
        h.inject("default/a", client(43000, 6, 0x10, 10));
        EXPECT_EQ(delivered().first, "default/b") << "packet " << i;
    }
}

TEST_F(Services, ABackendThatLeftResetsTcpAndReleasesUdp) {
    apply(spec(1, {backend(kB, "default/b")}));
    h.inject("default/a", client(44000, 6, 0x02));
    ASSERT_EQ(delivered().first, "default/b");
    apply(spec(2, {backend(kC, "default/c")}));
    h.inject("default/a", client(44000, 6, 0x10, 5));
    auto out = h.collect("default/a");
    ASSERT_EQ(out.size(), 1u) << "the client is told at once";
    EXPECT_EQ(out[0][34 + 13] & 0x04, 0x04) << "RST";
    EXPECT_EQ(h.drops("default/a", DropReason::kStaleBackend), 1u);

    // UDP: the stale entry is dropped, then cleared by the expiry scan, and the next packet
    // of the same flow picks a live backend instead of being black-holed.
    NodeHarness u(three_pods());
    ASSERT_EQ(u.manager().apply_tables(spec(1, {backend(kB, "default/b")}, 17)), std::nullopt);
    L4 l4{17, 5000, 80};
    const Bytes dgram = ether(u.params().gateway_mac, kMacA, 0x0800, ipv4(kA, kVip, l4, 8));
    u.inject("default/a", dgram, 1000000);
    ASSERT_EQ(u.collect("default/b").size(), 1u);
    ASSERT_EQ(u.manager().apply_tables(spec(2, {backend(kC, "default/c")}, 17)), std::nullopt);
    u.inject("default/a", dgram, 2000000);
    EXPECT_EQ(u.drops("default/a", DropReason::kStaleBackend), 1u);
    u.expire(3000000);
    EXPECT_EQ(u.conntrack().size(), 0u);
    u.inject("default/a", dgram, 4000000);
    EXPECT_EQ(u.collect("default/c").size(), 1u) << u.drop_summary("default/a");
}

TEST_F(Services, IdleConnectionsExpire) {
    apply(spec(1, {backend(kB, "default/b")}, 17));
    L4 l4{17, 5001, 80};
    h.inject("default/a", ether(h.params().gateway_mac, kMacA, 0x0800, ipv4(kA, kVip, l4, 8)),
             1000000);
    EXPECT_EQ(h.conntrack().size(), 1u);
    h.expire(20 * 1000000);  // 19 s idle: UDP unreplied timeout is 30 s
    EXPECT_EQ(h.conntrack().size(), 1u);
    h.expire(40 * 1000000);
    EXPECT_EQ(h.conntrack().size(), 0u);
}

TEST_F(Services, BadServiceSpecsAreRefusedWhole) {
    table::TableSpec s = spec(1, {backend(kB, "default/b")});
    s.services.push_back(s.services[0]);
    s.services[1].name = "default/other";
    auto err = h.manager().apply_tables(s);
    ASSERT_NE(err, std::nullopt);
    EXPECT_NE(err->find("used by another service port"), std::string::npos) << *err;
    s = spec(1, {backend(kB, "default/b")}, 1);
    err = h.manager().apply_tables(s);
    ASSERT_NE(err, std::nullopt);
    EXPECT_NE(err->find("not TCP, UDP or SCTP"), std::string::npos) << *err;
    EXPECT_EQ(h.manager().tables().generation, 0u) << "nothing applied";
}

// --- traffic from outside the cluster, on the uplink ---------------------------------------
//
//   client 203.0.113.7 (router MAC 02:..:0e:0e) -> node1 198.51.100.1:30080 (NodePort)
//                                              -> 192.0.2.10:80 (LoadBalancer IP)

const Ip4 kClient = ip("203.0.113.7");
const Mac kRouter = mac("02:00:00:00:0e:0e");
const Ip4 kLbIp = ip("192.0.2.10");

table::TableSpec external_spec(uint64_t gen,
                               std::vector<table::BackendSpec> backends,
                               bool etp_local = false) {
    table::TableSpec s = spec(gen, std::move(backends));
    table::ServiceSpec& sv = s.services[0];
    sv.frontends.push_back({table::FrontendKind::kNodePort, ip("198.51.100.1"), 30080});
    sv.frontends.push_back({table::FrontendKind::kLoadBalancer, kLbIp, 80});
    sv.external_local = etp_local;
    sv.source_ranges = {*Prefix4::parse("203.0.113.0/28")};
    return s;
}

class External : public Services {
protected:
    Bytes from_client(Ip4 dst, uint16_t dport, uint8_t flags = 0x02, Ip4 src = kClient) {
        return ether(h.params().node_mac, kRouter, 0x0800,
                     ipv4(src, dst, {6, 50000, dport, flags}, 0));
    }
    void resolve_node2() { svc::resolve_node2(h); }
};

TEST_F(External, NodePortToALocalBackendKeepsTheClientAddress) {
    apply(external_spec(1, {backend(kB, "default/b")}));
    h.inject("uplink", from_client(h.params().node_ip, 30080));
    auto out = h.collect("default/b");
    ASSERT_EQ(out.size(), 1u) << h.drop_summary("uplink");
    EXPECT_EQ(get32(&out[0][14 + 12]), kClient.host()) << "client IP preserved";
    EXPECT_EQ(get32(&out[0][14 + 16]), kB.host());
    EXPECT_EQ(get16(&out[0][36]), 8080);
    expect_valid(out[0], 14, "NodePort DNAT");

    h.inject("default/b", ether(h.params().gateway_mac, mac("02:00:00:00:0b:0b"), 0x0800,
                                ipv4(kB, kClient, {6, 8080, 50000, 0x12}, 0)));
    auto back = h.collect("uplink");
    ASSERT_EQ(back.size(), 1u) << h.drop_summary("default/b");
    const Bytes& r = back[0];
    EXPECT_EQ(read_mac_at(r, 0), kRouter) << "back to the MAC the client came from";
    EXPECT_EQ(read_mac_at(r, 6), h.params().node_mac);
    EXPECT_EQ(get32(&r[14 + 12]), h.params().node_ip.host());
    EXPECT_EQ(get16(&r[34]), 30080);
    EXPECT_EQ(get32(&r[14 + 16]), kClient.host());
    expect_valid(r, 14, "NodePort reply");
}

TEST_F(External, NodePortToARemoteBackendIsSnattedSoTheReplyReturns) {
    apply(external_spec(1, {backend(kRemote, "default/r")}));
    resolve_node2();
    h.inject("uplink", from_client(h.params().node_ip, 30080));
    auto up = h.collect("uplink");
    ASSERT_EQ(up.size(), 1u) << h.drop_summary("uplink");
    const Bytes& f = up[0];
    ASSERT_EQ(get16(&f[36]), 4789) << "encapsulated to node2";
    const uint8_t* inner = &f[50 + 14];
    EXPECT_EQ(get32(inner + 12), h.params().gateway.host()) << "SNAT to the gateway address";
    const uint16_t snat = get16(inner + 20);
    EXPECT_GE(snat, 32768);
    EXPECT_EQ(get32(inner + 16), kRemote.host());
    expect_valid(f, 50 + 14, "SNAT+DNAT");

    const Bytes reply = ipv4(kRemote, h.params().gateway, {6, 8080, snat, 0x12}, 0);
    h.inject(
        "uplink",
        ether(h.params().node_mac, mac("02:00:00:00:02:02"), 0x0800,
              vxlan(ip("198.51.100.2"), h.params().node_ip, 50001, 4789, 1,
                    ether(h.params().vtep_mac, Mac::from_ip(ip("198.51.100.2")), 0x0800, reply))));
    auto back = h.collect("uplink");
    ASSERT_EQ(back.size(), 1u) << h.drop_summary("uplink");
    const Bytes& r = back[0];
    EXPECT_EQ(read_mac_at(r, 0), kRouter);
    EXPECT_EQ(get32(&r[14 + 12]), h.params().node_ip.host());
    EXPECT_EQ(get16(&r[34]), 30080);
    EXPECT_EQ(get32(&r[14 + 16]), kClient.host());
    EXPECT_EQ(get16(&r[36]), 50000);
    expect_valid(r, 14, "reply to the client");
}

TEST_F(External, TrafficPolicyLocalUsesOnlyLocalEndpoints) {
    apply(external_spec(1, {backend(kB, "default/b"), backend(kRemote, "default/r")}, true));
    for (uint16_t i = 0; i < 40; ++i) {
        h.inject("uplink", ether(h.params().node_mac, kRouter, 0x0800,
                                 ipv4(kClient, h.params().node_ip,
                                      {6, static_cast<uint16_t>(51000 + i), 30080, 0x02}, 0)));
        auto out = h.collect("default/b");
        ASSERT_EQ(out.size(), 1u) << "flow " << i << ": " << h.drop_summary("uplink");
        EXPECT_EQ(get32(&out[0][14 + 12]), kClient.host());
    }
    EXPECT_TRUE(h.collect("uplink").empty()) << "never to the remote endpoint";
    apply(external_spec(2, {backend(kRemote, "default/r")}, true));
    h.inject("uplink", from_client(h.params().node_ip, 30080));
    EXPECT_EQ(h.drops("uplink", DropReason::kNoLocalEndpoint), 1u);
}

TEST_F(External, LoadBalancerSourceRangesAndClusterIpFromOutside) {
    apply(external_spec(1, {backend(kB, "default/b")}));
    h.inject("uplink", from_client(kLbIp, 80));
    EXPECT_EQ(h.collect("default/b").size(), 1u) << h.drop_summary("uplink");
    h.inject("uplink", from_client(kLbIp, 80, 0x02, ip("198.51.100.77")));
    EXPECT_EQ(h.drops("uplink", DropReason::kSourceRange), 1u);
    // A ClusterIP routed to the node from outside (e.g. advertised by BGP) is served like a
    // NodePort: a local backend sees the client (kube-proxy would masquerade it; README,
    // "Deliberate differences"), and the reply returns to the client's MAC.
    h.inject("uplink", ether(h.params().node_mac, kRouter, 0x0800,
                             ipv4(kClient, kVip, {6, 50001, 80, 0x02}, 0)));
    auto in = h.collect("default/b");
    ASSERT_EQ(in.size(), 1u) << h.drop_summary("uplink");
    EXPECT_EQ(get32(&in[0][14 + 12]), kClient.host()) << "the client's address kept";
    EXPECT_EQ(get16(&in[0][34]), 50001);
    h.inject("default/b", ether(h.params().gateway_mac, kMacB, 0x0800,
                                ipv4(kB, kClient, {6, 8080, 50001, 0x12}, 0)));
    auto back = h.collect("uplink");
    ASSERT_EQ(back.size(), 1u) << h.drop_summary("default/b");
    EXPECT_EQ(read_mac_at(back[0], 0), kRouter) << "back to the MAC the client came from";
    EXPECT_EQ(get32(&back[0][14 + 12]), kVip.host());
    EXPECT_EQ(get16(&back[0][34]), 80);
    EXPECT_EQ(get32(&back[0][14 + 16]), kClient.host());
    EXPECT_EQ(get16(&back[0][36]), 50001);
    expect_valid(back[0], 14, "ClusterIP reply to an outside client");
    h.inject("uplink", from_client(h.params().node_ip, 22));
    EXPECT_EQ(h.drops("uplink", DropReason::kHostPath), 1u);
    EXPECT_TRUE(h.collect("default/b").empty());
}

// kube-proxy rejects a Service without endpoints on every frontend, external ones included
// (nftables proxier_test.go TestNoEndpointsReject); the refusal leaves by the uplink, from the
// node's MAC to the router's, and each worker answers at most ReplyBudget's rate.
TEST_F(External, NoEndpointsIsRefusedOnTheUplinkAtALimitedRate) {
    apply(external_spec(1, {}));
    h.inject("uplink", from_client(h.params().node_ip, 30080));
    auto out = h.collect("uplink");
    ASSERT_EQ(out.size(), 1u) << h.drop_summary("uplink");
    const Bytes& r = out[0];
    EXPECT_EQ(read_mac_at(r, 0), kRouter);
    EXPECT_EQ(read_mac_at(r, 6), h.params().node_mac);
    EXPECT_EQ(get32(&r[14 + 12]), h.params().node_ip.host());
    EXPECT_EQ(get16(&r[34]), 30080);
    EXPECT_EQ(get32(&r[14 + 16]), kClient.host());
    EXPECT_EQ(r[34 + 13], 0x14) << "RST|ACK";
    expect_valid(r, 14, "RST to an outside client");
    EXPECT_EQ(h.drops("uplink", DropReason::kNoEndpoints), 1u);

    // A flood at one instant: the rest of the burst of replies, then nothing.
    const uint32_t burst = dataplane::ReplyBudget::kBurst;
    for (uint32_t i = 0; i < 2 * burst; ++i) {
        h.inject("uplink", from_client(h.params().node_ip, 30080), 2);
    }
    EXPECT_EQ(h.collect("uplink").size(), burst - 1) << "the budget's burst, less the first";
    EXPECT_EQ(h.drops("uplink", DropReason::kRejectRateLimited), burst + 1);
    // Replies again once time passes: kPerSecond a second (the harness's tsc is 1 MHz).
    h.inject("uplink", from_client(h.params().node_ip, 30080), 2 + 1000000 / 100);
    EXPECT_EQ(h.collect("uplink").size(), 1u) << "10 ms later: 10 tokens earned";
}

// The service CIDR (TableSpec::service_cidrs): traffic to a ClusterIP on a port or protocol its
// Service does not have is refused, and to an address no Service holds is dropped, never routed
// out of the node, as the nftables kube-proxy's cluster-ips-check chain does
// (proxier_test.go TestClusterIPGeneral: "svc1 does not accept svc2's ports", "TCP-only port
// does not match UDP traffic", "packet to unallocated cluster ip").
TEST_F(External, TheServiceCidrIsNeverRoutedOut) {
    table::TableSpec s = external_spec(1, {backend(kB, "default/b")});
    s.service_cidrs = {*Prefix4::parse("10.96.0.0/12")};
    apply(s);
    // From a pod: another port of the ClusterIP (RST), another protocol (ICMP unreachable).
    h.inject("default/a",
             ether(h.params().gateway_mac, kMacA, 0x0800, ipv4(kA, kVip, {6, 42000, 81, 0x02}, 0)));
    auto out = h.collect("default/a");
    ASSERT_EQ(out.size(), 1u) << h.drop_summary("default/a");
    EXPECT_EQ(out[0][34 + 13], 0x14) << "RST|ACK";
    EXPECT_EQ(get32(&out[0][14 + 12]), kVip.host());
    h.inject("default/a", client(42001, 17, 0, 20));
    out = h.collect("default/a");
    ASSERT_EQ(out.size(), 1u) << h.drop_summary("default/a");
    EXPECT_EQ(out[0][34], 3);
    EXPECT_EQ(out[0][35], 3) << "port unreachable";
    EXPECT_EQ(h.drops("default/a", DropReason::kNoServicePort), 2u);
    // An address of the CIDR that no Service holds: dropped, not masqueraded out.
    h.inject("default/a", ether(h.params().gateway_mac, kMacA, 0x0800,
                                ipv4(kA, ip("10.96.0.77"), {6, 42002, 80, 0x02}, 0)));
    EXPECT_EQ(h.drops("default/a", DropReason::kServiceCidrUnallocated), 1u);
    EXPECT_TRUE(h.collect("uplink").empty());
    // From outside: the same two answers, by the uplink.
    h.inject("uplink", from_client(ip("10.96.0.77"), 80));
    EXPECT_EQ(h.drops("uplink", DropReason::kServiceCidrUnallocated), 1u);
    h.inject("uplink", from_client(kVip, 81));
    out = h.collect("uplink");
    ASSERT_EQ(out.size(), 1u) << h.drop_summary("uplink");
    EXPECT_EQ(read_mac_at(out[0], 0), kRouter);
    EXPECT_EQ(out[0][34 + 13], 0x14) << "RST|ACK";
    EXPECT_EQ(h.drops("uplink", DropReason::kNoServicePort), 1u);
    for (const char* p : {"default/b", "default/c"}) {
        EXPECT_TRUE(h.collect(p).empty()) << p;
    }
}

TEST_F(Services, HairpinThroughTheOwnServiceIsMasqueraded) {
    apply(spec(1, {backend(kB, "default/b")}));
    const Mac mac_b = mac("02:00:00:00:0b:0b");
    h.inject("default/b",
             ether(h.params().gateway_mac, mac_b, 0x0800, ipv4(kB, kVip, {6, 45000, 80, 0x02}, 0)));
    auto in = h.collect("default/b");
    ASSERT_EQ(in.size(), 1u) << h.drop_summary("default/b");
    EXPECT_EQ(get32(&in[0][14 + 12]), h.params().gateway.host()) << "masqueraded";
    EXPECT_EQ(get32(&in[0][14 + 16]), kB.host());
    const uint16_t snat = get16(&in[0][34]);
    expect_valid(in[0], 14, "hairpin");
    h.inject("default/b", ether(h.params().gateway_mac, mac_b, 0x0800,
                                ipv4(kB, h.params().gateway, {6, 8080, snat, 0x12}, 0)));
    auto back = h.collect("default/b");
    ASSERT_EQ(back.size(), 1u) << h.drop_summary("default/b");
    EXPECT_EQ(get32(&back[0][14 + 12]), kVip.host());
    EXPECT_EQ(get16(&back[0][34]), 80);
    EXPECT_EQ(get32(&back[0][14 + 16]), kB.host());
    EXPECT_EQ(get16(&back[0][36]), 45000);
    expect_valid(back[0], 14, "hairpin reply");
}

TEST_F(Services, InternalTrafficPolicyLocalDropsWithoutALocalEndpoint) {
    table::TableSpec s = spec(1, {backend(kRemote, "default/r")});
    s.services[0].internal_local = true;
    apply(s);
    h.inject("default/a", client(46000));
    EXPECT_EQ(h.drops("default/a", DropReason::kNoLocalEndpoint), 1u);
    EXPECT_TRUE(h.collect("uplink").empty());
}

TEST_F(Services, ClientIpAffinityKeepsAClientOnOneBackend) {
    table::TableSpec s = spec(1, {backend(kB, "default/b"), backend(kC, "default/c")});
    s.services[0].affinity_timeout_s = 10800;
    apply(s);
    std::map<std::string, int> hits;
    for (uint16_t i = 0; i < 50; ++i) {
        h.inject("default/a", client(static_cast<uint16_t>(47000 + i)));
        ++hits[delivered().first];
    }
    EXPECT_EQ(hits.size(), 1u) << "one client, one backend";
}

// Pod -> a host outside the cluster on the node network: masqueraded to the node IP.
TEST_F(Services, EgressIsMasqueradedToTheNodeIpAndRepliesUnNated) {
    apply(spec(1, {}));
    const Ip4 server = ip("198.51.100.50");
    const Mac server_mac = mac("02:00:00:00:05:05");
    const Bytes syn =
        ether(h.params().gateway_mac, kMacA, 0x0800, ipv4(kA, server, {6, 40500, 443, 0x02}, 0));
    h.inject("default/a", syn, 10);
    auto up = h.collect("uplink");
    ASSERT_EQ(up.size(), 1u) << "an ARP request for the server: " << h.drop_summary("default/a");
    EXPECT_EQ(get32(&up[0][14 + 24]), server.host());
    h.inject("uplink",
             ether(h.params().node_mac, server_mac, 0x0806,
                   arp(2, server_mac, server, h.params().node_mac, h.params().node_ip)),
             20);
    up = h.collect("uplink");
    ASSERT_EQ(up.size(), 1u) << "the held SYN leaves once the server is resolved";
    const Bytes& f = up[0];
    EXPECT_EQ(read_mac_at(f, 0), server_mac);
    EXPECT_EQ(read_mac_at(f, 6), h.params().node_mac);
    EXPECT_EQ(get32(&f[14 + 12]), h.params().node_ip.host()) << "masqueraded to the node IP";
    const uint16_t port = get16(&f[34]);
    EXPECT_GE(port, 32768);
    EXPECT_EQ(get32(&f[14 + 16]), server.host());
    EXPECT_EQ(f[14 + 8], 63);
    expect_valid(f, 14, "masqueraded SYN");

    h.inject("uplink",
             ether(h.params().node_mac, server_mac, 0x0800,
                   ipv4(server, h.params().node_ip, {6, 443, port, 0x12}, 0)),
             30);
    auto back = h.collect("default/a");
    ASSERT_EQ(back.size(), 1u) << h.drop_summary("uplink");
    EXPECT_EQ(get32(&back[0][14 + 12]), server.host());
    EXPECT_EQ(get32(&back[0][14 + 16]), kA.host());
    EXPECT_EQ(get16(&back[0][36]), 40500);
    expect_valid(back[0], 14, "un-NATed SYN-ACK");

    // The connection's next packet reuses its binding and leaves at once.
    h.inject(
        "default/a",
        ether(h.params().gateway_mac, kMacA, 0x0800, ipv4(kA, server, {6, 40500, 443, 0x10}, 0)),
        40);
    up = h.collect("uplink");
    ASSERT_EQ(up.size(), 1u);
    EXPECT_EQ(get16(&up[0][34]), port);
    EXPECT_EQ(h.conntrack().size(), 1u);
    // Inside the cluster CIDR nothing is masqueraded: an unknown pod address has no route.
    h.inject("default/a", ether(h.params().gateway_mac, kMacA, 0x0800,
                                ipv4(kA, ip("10.244.9.9"), {6, 40501, 80, 0x02}, 0)));
    EXPECT_EQ(h.drops("default/a", DropReason::kNoRoute), 1u);
}

// ListConntrack's source: the shared table read from the API thread, while the test plays
// the worker.
TEST_F(External, ConntrackListingShowsTuplesNatStateAndExpiry) {
    apply(external_spec(1, {backend(kRemote, "default/r")}));
    resolve_node2();
    h.inject("uplink", from_client(h.params().node_ip, 30080), 5 * 1000000);
    ASSERT_EQ(h.collect("uplink").size(), 1u) << h.drop_summary("uplink");
    h.manager().set_clock_for_test([] { return uint64_t{25} * 1000000; });
    const api::ConntrackListing l = h.manager().conntrack(10);
    EXPECT_EQ(l.total, 1u);
    EXPECT_EQ(l.capacity, h.conntrack().capacity());
    ASSERT_EQ(l.entries.size(), 1u);
    const api::ConntrackInfo& e = l.entries[0];
    EXPECT_EQ(e.proto, 6);
    EXPECT_EQ(e.original.src, kClient);
    EXPECT_EQ(e.original.sport, 50000);
    EXPECT_EQ(e.original.dst, h.params().node_ip);
    EXPECT_EQ(e.original.dport, 30080);
    EXPECT_EQ(e.reply.src, kRemote);
    EXPECT_EQ(e.reply.sport, 8080);
    EXPECT_EQ(e.reply.dst, h.params().gateway);
    EXPECT_GE(e.reply.dport, 32768);
    EXPECT_EQ(e.nat, (std::vector<std::string>{"dnat", "snat", "external"}));
    EXPECT_EQ(e.state, "new");
    EXPECT_EQ(e.expires_in_s, 120u - 20) << "SYN timeout, 20 s idle";
    EXPECT_FALSE(e.affinity);
    EXPECT_EQ(h.manager().conntrack(0).entries.size(), 0u) << "the limit holds";
}

}  // namespace
}  // namespace kdp::test

namespace kdp::test {
namespace {

// kdpctl trace runs the same pipeline: for the same flow it must pick the backend the real
// packet got, and leave the conntrack and the counters as they were.
TEST_F(Services, TraceAgreesWithTheRealPacketAndLeavesNoState) {
    apply(spec(
        1, {backend(kB, "default/b"), backend(kC, "default/c"), backend(kRemote, "default/r")}));
    int checked = 0;
    for (const char* to : {"service:default/web", "10.96.0.10"}) {
        api::TraceResult r;
        const uint64_t rx_before = h.worker().counters.port[h.port("default/a")].rx_packets.load();
        ASSERT_EQ(h.manager().trace({"default/a", to, 80, 6}, r), std::nullopt);
        EXPECT_EQ(h.conntrack().size(), 0u) << "the trace left a connection behind";
        EXPECT_EQ(h.total_drops("default/a"), 0u);
        EXPECT_EQ(h.worker().counters.port[h.port("default/a")].rx_packets.load(), rx_before)
            << "the trace moved the node's counters";
        // The real packet of the same flow (the trace's client port is 47000).
        h.inject("default/a", client(47000));
        const auto [port, f] = delivered();
        ASSERT_FALSE(port.empty()) << h.drop_summary("default/a");
        EXPECT_EQ(r.verdict, "allow");
        EXPECT_EQ(r.backend_port, 8080);
        EXPECT_EQ(r.seen_src, "10.244.1.10");
        if (port == "uplink") {
            EXPECT_EQ(r.backend, "default/r");
            ASSERT_FALSE(r.hops.empty());
            EXPECT_EQ(r.hops.back().stage, "vxlan_encap");
            EXPECT_NE(r.hops.back().detail.find("node node2"), std::string::npos)
                << r.hops.back().detail;
        } else {
            EXPECT_EQ(r.backend, port) << "trace and packet disagree";
            EXPECT_EQ(r.hops.back().stage, "output");
        }
        bool service_hop = false;
        for (const auto& hop : r.hops) {
            service_hop = service_hop || (hop.stage == "service" &&
                                          hop.detail.find("default/web:http") != std::string::npos);
        }
        EXPECT_TRUE(service_hop);
        ++checked;
        // Now established: the trace says so, still without changing anything.
        api::TraceResult again;
        ASSERT_EQ(h.manager().trace({"default/a", to, 80, 6}, again), std::nullopt);
        EXPECT_NE(again.hops[1].detail.find("established"), std::string::npos)
            << again.hops[1].detail;
        EXPECT_EQ(again.backend, r.backend);
        EXPECT_EQ(h.conntrack().size(), 1u);
        h.expire(1'000'000'000'000ull);  // forget it before the next round
    }
    EXPECT_EQ(checked, 2);
}

TEST_F(Services, TraceReportsRejectAndDropAndBadQueries) {
    apply(spec(1, {}));
    api::TraceResult r;
    ASSERT_EQ(h.manager().trace({"default/a", "10.96.0.10", 80, 6}, r), std::nullopt);
    EXPECT_EQ(r.verdict, "reject");
    EXPECT_EQ(r.backend, "");
    EXPECT_EQ(r.hops.back().stage, "reject");
    r = {};
    ASSERT_EQ(h.manager().trace({"default/a", "10.244.1.99", 80, 6}, r), std::nullopt);
    EXPECT_EQ(r.verdict, "deny");
    EXPECT_NE(r.hops.back().detail.find("no_pod"), std::string::npos) << r.hops.back().detail;
    EXPECT_NE(h.manager().trace({"default/zz", "10.96.0.10", 80, 6}, r), std::nullopt);
    EXPECT_NE(h.manager().trace({"default/a", "service:default/nope", 80, 6}, r), std::nullopt);
    EXPECT_EQ(h.total_drops("default/a"), 0u);
}

}  // namespace
// Two workers share one connection table: whichever worker (RSS queue) a packet lands on
// finds its connection. A request DNATed on worker 0 has its reply un-DNATed on worker 1 and
// its next packet pinned to the same backend there; a pod's egress masqueraded on worker 1 (a
// SNAT port of worker 1's own partition) has its reply un-NATed on worker 0.
TEST(ServicesOnTwoWorkers, EitherWorkerFindsTheConnection) {
    NodeParams p = three_pods();
    p.workers = 2;
    NodeHarness h(p);
    ASSERT_EQ(
        h.manager().apply_tables(spec(1, {backend(kB, "default/b"), backend(kC, "default/c")})),
        std::nullopt);
    const Mac gw = h.params().gateway_mac;
    const auto from_a = [&](Ip4 dst, uint16_t sport, uint16_t dport, uint8_t flags) {
        return ether(gw, kMacA, 0x0800, ipv4(kA, dst, {6, sport, dport, flags}, 0));
    };
    // Which backend received the one packet sent, and the packet.
    const auto delivered = [&]() -> std::pair<std::string, Bytes> {
        for (const char* port : {"default/b", "default/c"}) {
            if (auto out = h.collect(port); !out.empty()) {
                EXPECT_EQ(out.size(), 1u);
                return {port, out[0]};
            }
        }
        return {"", {}};
    };
    h.inject_as(0, "default/a", {from_a(kVip, 40000, 80, 0x02)});
    const auto [port, f] = delivered();
    ASSERT_FALSE(port.empty()) << h.drop_summary("default/a");
    const Ip4 be = port == "default/b" ? kB : kC;
    EXPECT_EQ(get32(&f[14 + 16]), be.host());
    const table::CtHit hit =
        h.conntrack().lookup(table::CtKey{kA.be, kVip.be, to_be16(40000), to_be16(80), 6, 0, 0});
    ASSERT_NE(hit.index, table::kCtNone);
    EXPECT_EQ(h.conntrack().entry(hit.index).owner, 0u) << "created by worker 0";

    h.inject_as(1, port, {ether(gw, kMacB, 0x0800, ipv4(be, kA, {6, 8080, 40000, 0x12}, 0))});
    auto back = h.collect("default/a");
    ASSERT_EQ(back.size(), 1u) << "worker 1 un-DNATs the reply: " << h.drop_summary(port);
    EXPECT_EQ(get32(&back[0][14 + 12]), kVip.host());
    EXPECT_EQ(get16(&back[0][34]), 80);
    expect_valid(back[0], 14, "reply un-DNATed on worker 1");
    h.inject_as(1, "default/a", {from_a(kVip, 40000, 80, 0x10)});
    EXPECT_EQ(delivered().first, port) << "the ACK on worker 1 goes to the same backend";
    EXPECT_EQ(h.conntrack().size(), 1u) << "one connection, not one per worker";

    const Ip4 server = ip("198.51.100.50");
    const Mac server_mac = mac("02:00:00:00:05:05");
    h.inject_as(1, "default/a", {from_a(server, 40500, 443, 0x02)}, 10);
    ASSERT_EQ(h.collect("uplink").size(), 1u) << "ARP for the server";
    h.inject_as(1, "uplink",
                {ether(h.params().node_mac, server_mac, 0x0806,
                       arp(2, server_mac, server, h.params().node_mac, h.params().node_ip))},
                20);
    auto up = h.collect("uplink");
    ASSERT_EQ(up.size(), 1u) << "the SYN leaves from worker 1's hold queue";
    EXPECT_EQ(get32(&up[0][14 + 12]), h.params().node_ip.host());
    const uint16_t snat = get16(&up[0][34]);
    EXPECT_EQ((snat - 32768) % 2, 1) << "a port of worker 1's partition: " << snat;
    h.inject_as(0, "uplink",
                {ether(h.params().node_mac, server_mac, 0x0800,
                       ipv4(server, h.params().node_ip, {6, 443, snat, 0x12}, 0))},
                30);
    back = h.collect("default/a");
    ASSERT_EQ(back.size(), 1u) << "worker 0 un-NATs the reply: " << h.drop_summary("uplink");
    EXPECT_EQ(get32(&back[0][14 + 16]), kA.host());
    EXPECT_EQ(get16(&back[0][36]), 40500);
    expect_valid(back[0], 14, "masquerade reply un-NATed on worker 0");
}

// A full connection table drops new connections, counted as conntrack_full, and never the
// ones it holds: they keep their backend and their replies are un-DNATed.
TEST(ServicesTableFull, NewConnectionsAreDroppedAndCountedEstablishedOnesGoOn) {
    NodeParams p = three_pods();
    p.conntrack = 16;
    p.source_share = 100;  // one client fills the table (the per-source share: below)
    NodeHarness h(p);
    ASSERT_EQ(h.manager().apply_tables(spec(1, {backend(kB, "default/b")})), std::nullopt);
    const Mac gw = h.params().gateway_mac;
    const auto syn = [&](uint16_t sport) {
        return ether(gw, kMacA, 0x0800, ipv4(kA, kVip, {6, sport, 80, 0x02}, 0));
    };
    size_t through = 0;
    for (uint16_t i = 0; i < 40; ++i) {
        h.inject("default/a", syn(static_cast<uint16_t>(41000 + i)));
        through += h.collect("default/b").size();
    }
    EXPECT_EQ(through, 16u) << "as many connections as the table holds";
    EXPECT_EQ(h.conntrack().size(), 16u);
    EXPECT_EQ(h.drops("default/a", DropReason::kConntrackFull), 24u);
    // The first connection still works both ways.
    h.inject("default/a", ether(gw, kMacA, 0x0800, ipv4(kA, kVip, {6, 41000, 80, 0x10}, 0)));
    EXPECT_EQ(h.collect("default/b").size(), 1u) << h.drop_summary("default/a");
    h.inject("default/b", ether(gw, kMacB, 0x0800, ipv4(kB, kA, {6, 8080, 41000, 0x12}, 0)));
    const auto back = h.collect("default/a");
    ASSERT_EQ(back.size(), 1u) << h.drop_summary("default/b");
    EXPECT_EQ(get32(&back[0][14 + 12]), kVip.host());
}

// A SYN flood from one pod takes at most its share of the table: another pod's new connection
// still gets in, the flooder's own established connection goes on, and the excess is counted
// as conntrack_source_share, not conntrack_full.
TEST(ServicesTableFull, AFloodingPodCannotKeepOtherPodsOut) {
    NodeParams p = three_pods();
    p.conntrack = 64;
    p.source_share = 25;  // 16 unreplied connections per source
    NodeHarness h(p);
    ASSERT_EQ(h.manager().apply_tables(spec(1, {backend(kB, "default/b")})), std::nullopt);
    const Mac gw = h.params().gateway_mac;
    const auto tcp = [&](Ip4 src, Mac mac, uint16_t sport, uint8_t flags) {
        return ether(gw, mac, 0x0800, ipv4(src, kVip, {6, sport, 80, flags}, 0));
    };
    // a's first connection is answered: established, out of a's count.
    h.inject("default/a", tcp(kA, kMacA, 40000, 0x02));
    ASSERT_EQ(h.collect("default/b").size(), 1u) << h.drop_summary("default/a");
    h.inject("default/b", ether(gw, kMacB, 0x0800, ipv4(kB, kA, {6, 8080, 40000, 0x12}, 0)));
    ASSERT_EQ(h.collect("default/a").size(), 1u) << h.drop_summary("default/b");
    size_t through = 0;
    for (uint16_t i = 0; i < 100; ++i) {
        h.inject("default/a", tcp(kA, kMacA, static_cast<uint16_t>(41000 + i), 0x02));
        through += h.collect("default/b").size();
    }
    EXPECT_EQ(through, 16u) << "a's share of unreplied connections";
    EXPECT_EQ(h.drops("default/a", DropReason::kConntrackSourceShare), 84u)
        << h.drop_summary("default/a");
    EXPECT_EQ(h.drops("default/a", DropReason::kConntrackFull), 0u);
    h.inject("default/c", tcp(kC, mac("02:00:00:00:0c:0c"), 42000, 0x02));
    EXPECT_EQ(h.collect("default/b").size(), 1u)
        << "c still gets in: " << h.drop_summary("default/c");
    h.inject("default/a", tcp(kA, kMacA, 40000, 0x10));
    EXPECT_EQ(h.collect("default/b").size(), 1u) << "a's established connection goes on";
}

}  // namespace kdp::test
