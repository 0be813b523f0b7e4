// Packet-level tests of ICMP through NAT: errors about a tracked connection translated back
// (RFC 5508 §4.3, netfilter's RELATED), and ping from a pod to outside the cluster
// masqueraded on its identifier. Every rewritten field and checksum of both headers checked.
//
//   client a 10.244.1.10 -- VIP 10.96.0.10:80 --> backend b 10.244.1.11:8080 (this node)
//                                           \--> backend 10.244.2.20:8080 (node2, overlay)
//   pod a --masquerade to 198.51.100.1--> router 198.51.100.254 --> server 198.51.100.50
#include <gtest/gtest.h>

#include "service_fixture.h"

namespace kdp::test {
namespace {

using dataplane::DropReason;
using namespace svc;  // NOLINT: the fixture's names are this file's vocabulary

const Ip4 kServer = ip("198.51.100.50");
const Mac kServerMac = mac("02:00:00:00:05:05");
const Ip4 kRouter = ip("198.51.100.254");
const Mac kRouterMac = mac("02:00:00:00:fe:fe");

// Offsets in a frame carrying an ICMP error: outer IPv4 at 14, ICMP at 34, quoted IPv4 at 42,
// quoted L4 at 62.
constexpr size_t kOuter = 14;
constexpr size_t kIcmp = 34;
constexpr size_t kQuote = 42;
constexpr size_t kQuoteL4 = 62;

class IcmpNat : public ::testing::Test {
protected:
    IcmpNat() : h(three_pods()) {}

    void apply(const table::TableSpec& s) { ASSERT_EQ(h.manager().apply_tables(s), std::nullopt); }
    Bytes from_pod(const Mac& src_mac, const Bytes& datagram) {
        return ether(h.params().gateway_mac, src_mac, 0x0800, datagram);
    }
    Bytes from_uplink(const Mac& src_mac, const Bytes& datagram) {
        return ether(h.params().node_mac, src_mac, 0x0800, datagram);
    }
    // Sends a frame from pod a out of the uplink, answering the ARP request for the server
    // the first time; returns what left.
    Bytes egress(const Bytes& frame, uint64_t now) {
        h.inject("default/a", frame, now);
        auto up = h.collect("uplink");
        if (up.size() == 1 && get16(&up[0][12]) == 0x0806) {
            h.inject("uplink",
                     ether(h.params().node_mac, kServerMac, 0x0806,
                           arp(2, kServerMac, kServer, h.params().node_mac, h.params().node_ip)),
                     now + 1);
            up = h.collect("uplink");
        }
        EXPECT_EQ(up.size(), 1u) << h.drop_summary("default/a");
        return up.size() == 1 ? up[0] : Bytes{};
    }
    // The one frame a port sent, or an empty one (with the drops in the failure message).
    Bytes one(const std::string& port, const std::string& from) {
        auto out = h.collect(port);
        EXPECT_EQ(out.size(), 1u) << "on " << port << "; drops at " << from << ": "
                                  << h.drop_summary(from);
        return out.size() == 1 ? out[0] : Bytes{};
    }

    NodeHarness h;
};

// Both headers of a translated error verify: outer IP, ICMP over the whole message, the quoted
// IP header.
void expect_error_checksums(const Bytes& f) {
    EXPECT_EQ(ref_checksum(&f[kOuter], 20), 0) << "outer IP checksum";
    EXPECT_EQ(ref_checksum(&f[kIcmp], f.size() - kIcmp), 0) << "ICMP checksum";
    EXPECT_EQ(ref_checksum(&f[kQuote], 20), 0) << "quoted IP checksum";
}

TEST_F(IcmpNat, PortUnreachableFromABackendReachesTheClientFromTheVip) {
    apply(spec(1, {backend(kB, "default/b")}, 17));
    h.inject("default/a", from_pod(kMacA, ipv4(kA, kVip, {17, 5353, 80}, 24)));
    const Bytes dnated = one("default/b", "default/a");
    ASSERT_FALSE(dnated.empty());
    // b has nothing on 8080: its kernel quotes the datagram as it received it.
    const Bytes quoted(dnated.begin() + 14, dnated.end());
    h.inject("default/b", from_pod(kMacB, icmp_error(kB, kA, 3, 3, quoted)));
    const Bytes f = one("default/a", "default/b");
    ASSERT_FALSE(f.empty());
    EXPECT_EQ(read_mac_at(f, 0), kMacA);
    EXPECT_EQ(get32(&f[kOuter + 12]), kVip.host()) << "outer source: the VIP, not the backend";
    EXPECT_EQ(get32(&f[kOuter + 16]), kA.host());
    EXPECT_EQ(f[kOuter + 8], 63) << "forwarded: TTL decremented";
    EXPECT_EQ(f[kIcmp], 3);
    EXPECT_EQ(f[kIcmp + 1], 3) << "still port unreachable";
    EXPECT_EQ(get32(&f[kQuote + 12]), kA.host()) << "quoted source";
    EXPECT_EQ(get32(&f[kQuote + 16]), kVip.host()) << "quoted destination: the VIP";
    EXPECT_EQ(get16(&f[kQuoteL4]), 5353);
    EXPECT_EQ(get16(&f[kQuoteL4 + 2]), 80) << "quoted port: the Service port";
    expect_error_checksums(f);
    EXPECT_TRUE(l4_checksum_ok(&f[kQuote])) << "quoted UDP checksum (the whole datagram quoted)";
    // The quote is what a sent, but for the TTL the node decremented and the IP checksum.
    const Bytes sent = ipv4(kA, kVip, {17, 5353, 80}, 24);
    const Bytes q(f.begin() + kQuote, f.end());
    ASSERT_EQ(q.size(), sent.size());
    EXPECT_TRUE(std::equal(q.begin(), q.begin() + 8, sent.begin()) &&
                std::equal(q.begin() + 12, q.end(), sent.begin() + 12));
}

TEST_F(IcmpNat, ErrorFromTheClientAboutAReplyReachesTheBackend) {
    apply(spec(1, {backend(kB, "default/b")}, 17));
    h.inject("default/a", from_pod(kMacA, ipv4(kA, kVip, {17, 5354, 80}, 8)));
    ASSERT_FALSE(one("default/b", "default/a").empty());
    h.inject("default/b", from_pod(kMacB, ipv4(kB, kA, {17, 8080, 5354}, 8)));
    const Bytes reply = one("default/a", "default/b");
    ASSERT_FALSE(reply.empty());
    // a's socket is gone: it refuses the reply, which it saw from the VIP.
    h.inject("default/a",
             from_pod(kMacA, icmp_error(kA, kVip, 3, 3, Bytes(reply.begin() + 14, reply.end()))));
    const Bytes f = one("default/b", "default/a");
    ASSERT_FALSE(f.empty());
    EXPECT_EQ(get32(&f[kOuter + 12]), kA.host());
    EXPECT_EQ(get32(&f[kOuter + 16]), kB.host()) << "outer destination: the backend";
    EXPECT_EQ(get32(&f[kQuote + 12]), kB.host()) << "quoted source: the backend, as it sent";
    EXPECT_EQ(get16(&f[kQuoteL4]), 8080);
    EXPECT_EQ(get32(&f[kQuote + 16]), kA.host());
    EXPECT_EQ(get16(&f[kQuoteL4 + 2]), 5354);
    expect_error_checksums(f);
    EXPECT_TRUE(l4_checksum_ok(&f[kQuote]));
}

TEST_F(IcmpNat, ErrorFromABackendOnAnotherNodeComesBackThroughTheOverlay) {
    apply(spec(1, {backend(kRemote, "default/r")}, 17));
    resolve_node2(h);
    h.inject("default/a", from_pod(kMacA, ipv4(kA, kVip, {17, 5355, 80}, 8)));
    const Bytes enc = one("uplink", "default/a");
    ASSERT_FALSE(enc.empty());
    const Bytes quoted(enc.begin() + 50 + 14, enc.end());
    ASSERT_EQ(get32(&quoted[16]), kRemote.host());
    h.inject("uplink",
             from_uplink(kNode2Mac, vxlan(kNode2, h.params().node_ip, 50000, 4789, 1,
                                          ether(h.params().vtep_mac, Mac::from_ip(kNode2), 0x0800,
                                                icmp_error(kRemote, kA, 3, 3, quoted)))));
    const Bytes f = one("default/a", "uplink");
    ASSERT_FALSE(f.empty());
    EXPECT_EQ(get32(&f[kOuter + 12]), kVip.host());
    EXPECT_EQ(get32(&f[kOuter + 16]), kA.host());
    EXPECT_EQ(get32(&f[kQuote + 16]), kVip.host());
    EXPECT_EQ(get16(&f[kQuoteL4 + 2]), 80);
    expect_error_checksums(f);
    EXPECT_TRUE(l4_checksum_ok(&f[kQuote]));
}

// Pod -> server through the node's masquerade; a router on the way has a smaller MTU.
TEST_F(IcmpNat, FragNeededFromAnOutsideRouterReachesThePodWithItsOwnAddressQuoted) {
    apply(spec(1, {}));
    const Bytes out = egress(from_pod(kMacA, ipv4(kA, kServer, {6, 40500, 443, 0x10}, 1400)), 10);
    ASSERT_FALSE(out.empty());
    ASSERT_EQ(get32(&out[14 + 12]), h.params().node_ip.host());
    const uint16_t port = get16(&out[34]);
    // Routers quote 8 bytes of L4 (RFC 792): the TCP checksum is not in the quote.
    const Bytes quoted(out.begin() + 14, out.end());
    h.inject(
        "uplink",
        from_uplink(kRouterMac, icmp_error(kRouter, h.params().node_ip, 3, 4, quoted, 28, 1280)),
        20);
    const Bytes f = one("default/a", "uplink");
    ASSERT_FALSE(f.empty());
    EXPECT_EQ(read_mac_at(f, 0), kMacA);
    EXPECT_EQ(get32(&f[kOuter + 12]), kRouter.host()) << "the router stays the sender";
    EXPECT_EQ(get32(&f[kOuter + 16]), kA.host()) << "outer destination: the pod";
    EXPECT_EQ(f[kIcmp + 1], 4) << "fragmentation needed";
    EXPECT_EQ(get16(&f[kIcmp + 6]), 1280) << "next-hop MTU kept";
    EXPECT_EQ(get32(&f[kQuote + 12]), kA.host()) << "quoted source: the pod, not the node";
    EXPECT_EQ(get16(&f[kQuoteL4]), 40500) << "quoted port: the pod's, not the SNAT port";
    EXPECT_NE(get16(&f[kQuoteL4]), port);
    EXPECT_EQ(get32(&f[kQuote + 16]), kServer.host());
    EXPECT_EQ(get16(&f[kQuoteL4 + 2]), 443);
    EXPECT_EQ(f.size(), 14u + 20 + 8 + 28);
    expect_error_checksums(f);

    // With the whole segment quoted, the quoted TCP checksum is patched too.
    h.inject(
        "uplink",
        from_uplink(kRouterMac, icmp_error(kRouter, h.params().node_ip, 3, 4, quoted, 548, 1280)),
        21);
    const Bytes g = one("default/a", "uplink");
    ASSERT_FALSE(g.empty());
    const Bytes sent = ipv4(kA, kServer, {6, 40500, 443, 0x10}, 1400);
    const Bytes q(g.begin() + kQuote, g.end());
    ASSERT_EQ(q.size(), 548u);
    EXPECT_TRUE(std::equal(q.begin(), q.begin() + 8, sent.begin()) &&
                std::equal(q.begin() + 12, q.end(), sent.begin() + 12))
        << "the quote is what the pod sent, but for the TTL and the IP checksum";
    EXPECT_EQ(get16(&g[kQuoteL4 + 16]), get16(&sent[20 + 16])) << "quoted TCP checksum";
    expect_error_checksums(g);
}

TEST_F(IcmpNat, PingToOutsideIsMasqueradedOnItsIdentifier) {
    apply(spec(1, {}));
    L4 echo{1};
    echo.icmp_type = 8;
    echo.icmp_id = 0x0a0a;
    const Bytes out = egress(from_pod(kMacA, ipv4(kA, kServer, echo, 56)), 10);
    ASSERT_FALSE(out.empty());
    EXPECT_EQ(read_mac_at(out, 0), kServerMac);
    EXPECT_EQ(get32(&out[14 + 12]), h.params().node_ip.host()) << "masqueraded";
    EXPECT_EQ(get32(&out[14 + 16]), kServer.host());
    EXPECT_EQ(out[34], 8);
    const uint16_t id = get16(&out[34 + 4]);
    EXPECT_GE(id, 32768) << "an identifier from this worker's share";
    EXPECT_EQ(get16(&out[34 + 6]), 1) << "sequence untouched";
    EXPECT_EQ(ref_checksum(&out[14], 20), 0);
    EXPECT_EQ(ref_checksum(&out[34], out.size() - 34), 0) << "ICMP checksum";
    EXPECT_EQ(h.conntrack().size(), 1u);

    // The echo reply comes back to the node and reaches the pod with its own identifier.
    L4 rep{1};
    rep.icmp_type = 0;
    rep.icmp_id = id;
    h.inject("uplink", from_uplink(kServerMac, ipv4(kServer, h.params().node_ip, rep, 56)), 20);
    const Bytes back = one("default/a", "uplink");
    ASSERT_FALSE(back.empty());
    EXPECT_EQ(get32(&back[14 + 12]), kServer.host());
    EXPECT_EQ(get32(&back[14 + 16]), kA.host());
    EXPECT_EQ(back[34], 0);
    EXPECT_EQ(get16(&back[34 + 4]), 0x0a0a);
    EXPECT_EQ(ref_checksum(&back[14], 20), 0);
    EXPECT_EQ(ref_checksum(&back[34], back.size() - 34), 0);
    EXPECT_EQ(static_cast<table::CtState>(
                  h.conntrack()
                      .entry(h.conntrack()
                                 .lookup(table::CtKey{kA.be, kServer.be, to_be16(0x0a0a),
                                                      to_be16(0x0a0a), 1, 8, 0})
                                 .index)
                      .state.load()),
              table::CtState::kEstablished);

    // An echo *request* from the server with that identifier is not a reply: not for the pod.
    L4 req{1};
    req.icmp_type = 8;
    req.icmp_id = id;
    h.inject("uplink", from_uplink(kServerMac, ipv4(kServer, h.params().node_ip, req, 8)), 21);
    EXPECT_TRUE(h.collect("default/a").empty());
    EXPECT_EQ(h.drops("uplink", DropReason::kHostPath), 1u);

    // A router's time exceeded about the masqueraded echo (traceroute) reaches the pod.
    const Bytes quoted(out.begin() + 14, out.begin() + 14 + 28);
    h.inject("uplink",
             from_uplink(kRouterMac, icmp_error(kRouter, h.params().node_ip, 11, 0, quoted)), 22);
    const Bytes te = one("default/a", "uplink");
    ASSERT_FALSE(te.empty());
    EXPECT_EQ(te[kIcmp], 11);
    EXPECT_EQ(get32(&te[kOuter + 16]), kA.host());
    EXPECT_EQ(get32(&te[kQuote + 12]), kA.host());
    EXPECT_EQ(get16(&te[kQuoteL4 + 4]), 0x0a0a) << "quoted identifier: the pod's";
    expect_error_checksums(te);

    // ICMP's conntrack timeout (30 s) applies.
    h.expire(20 * 1000000);
    EXPECT_EQ(h.conntrack().size(), 1u) << "20 s idle";
    h.expire(40 * 1000000);
    EXPECT_EQ(h.conntrack().size(), 0u) << "40 s idle";
}

// The node's own "fragmentation needed" for a Service packet too big for the overlay quotes
// what the client sent (the VIP), not the DNATed packet its socket never saw.
TEST_F(IcmpNat, OwnFragNeededForAServicePacketQuotesTheVip) {
    apply(spec(1, {backend(kRemote, "default/r")}));
    resolve_node2(h);
    const Bytes big = ipv4(kA, kVip, {6, 40600, 80, 0x10}, 1420);  // 1460 > pod MTU 1450, DF
    h.inject("default/a", from_pod(kMacA, big));
    const Bytes f = one("default/a", "default/a");
    ASSERT_FALSE(f.empty());
    EXPECT_EQ(read_mac_at(f, 0), kMacA);
    EXPECT_EQ(get32(&f[kOuter + 16]), kA.host());
    EXPECT_EQ(get32(&f[kOuter + 12]), kVip.host()) << "from the address a talked to";
    EXPECT_EQ(f[kIcmp], 3);
    EXPECT_EQ(f[kIcmp + 1], 4);
    EXPECT_EQ(get16(&f[kIcmp + 6]), 1450) << "the pod MTU";
    EXPECT_EQ(get32(&f[kQuote + 12]), kA.host());
    EXPECT_EQ(get32(&f[kQuote + 16]), kVip.host()) << "quoted destination: the VIP";
    EXPECT_EQ(get16(&f[kQuoteL4]), 40600);
    EXPECT_EQ(get16(&f[kQuoteL4 + 2]), 80);
    expect_error_checksums(f);
    EXPECT_EQ(get16(&f[kQuoteL4 + 16]), get16(&big[20 + 16])) << "quoted TCP checksum as sent";
    EXPECT_TRUE(h.collect("uplink").empty());

    // An external client's NodePort connection to that backend: the error leaves by the
    // uplink to the client's router, from the node IP, quoting the NodePort.
    const Ip4 client = ip("203.0.113.7");
    const Mac router = mac("02:00:00:00:0e:0e");
    table::TableSpec s = spec(2, {backend(kRemote, "default/r")});
    s.services[0].frontends.push_back({table::FrontendKind::kNodePort, h.params().node_ip, 30080});
    apply(s);
    h.inject("uplink",
             from_uplink(router, ipv4(client, h.params().node_ip, {6, 50000, 30080, 0x10}, 1420)));
    const Bytes g = one("uplink", "uplink");
    ASSERT_FALSE(g.empty());
    EXPECT_EQ(read_mac_at(g, 0), router);
    EXPECT_EQ(read_mac_at(g, 6), h.params().node_mac);
    EXPECT_EQ(get32(&g[kOuter + 12]), h.params().node_ip.host());
    EXPECT_EQ(get32(&g[kOuter + 16]), client.host());
    EXPECT_EQ(get32(&g[kQuote + 12]), client.host());
    EXPECT_EQ(get32(&g[kQuote + 16]), h.params().node_ip.host());
    EXPECT_EQ(get16(&g[kQuoteL4]), 50000);
    EXPECT_EQ(get16(&g[kQuoteL4 + 2]), 30080) << "quoted port: the NodePort";
    expect_error_checksums(g);
}

TEST_F(IcmpNat, MalformedAndUnrelatedErrorsAreDroppedByReason) {
    apply(spec(1, {backend(kB, "default/b")}, 17));
    const Bytes probe = ipv4(h.params().node_ip, kServer, {17, 33000, 53}, 8);
    // Unrelated: no tracked connection sent that.
    h.inject("uplink",
             from_uplink(kRouterMac, icmp_error(kRouter, h.params().node_ip, 3, 3, probe)));
    EXPECT_EQ(h.drops("uplink", DropReason::kIcmpErrorUnrelated), 1u);
    // Cut short: the quote ends inside the quoted ports.
    h.inject("uplink",
             from_uplink(kRouterMac, icmp_error(kRouter, h.params().node_ip, 3, 3, probe, 22)));
    // Not IPv4 inside.
    Bytes v6 = probe;
    v6[0] = 0x65;
    h.inject("uplink", from_uplink(kRouterMac, icmp_error(kRouter, h.params().node_ip, 11, 0, v6)));
    // Quoting a later fragment (no ports in it).
    Ipv4Opts later;
    later.frag_off = 4;
    later.df = false;
    h.inject("uplink", from_uplink(kRouterMac, icmp_error(kRouter, h.params().node_ip, 11, 1,
                                                          ipv4(h.params().node_ip, kServer,
                                                               {17, 33000, 53}, 8, later))));
    EXPECT_EQ(h.drops("uplink", DropReason::kIcmpErrorMalformed), 3u) << h.drop_summary("uplink");
    EXPECT_EQ(h.total_drops("uplink"), 4u);
    for (const char* p : {"default/a", "default/b", "default/c", "uplink"}) {
        EXPECT_TRUE(h.collect(p).empty()) << p;
    }
    // Between pods nothing is NATed: an unrelated error is plain pod traffic and passes as is.
    const Bytes quoted = ipv4(kA, kB, {17, 7000, 7001}, 8);
    h.inject("default/b", from_pod(kMacB, icmp_error(kB, kA, 3, 3, quoted)));
    const Bytes f = one("default/a", "default/b");
    ASSERT_FALSE(f.empty());
    EXPECT_EQ(Bytes(f.begin() + kQuote, f.end()), quoted);
    EXPECT_EQ(get32(&f[kOuter + 12]), kB.host());
}

}  // namespace
}  // namespace kdp::test
