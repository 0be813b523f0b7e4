// Packet-level tests of the overlay path: crafted frames through the real pipeline of one
// node on ring ports, every output field checked.
//
//   pod a 10.244.1.10 --\                        /-- uplink 198.51.100.1 --- node2 198.51.100.2
//                        >-- node1 (gw .1.1) ---<                             pods 10.244.2.0/24
//   pod b 10.244.1.11 --/
#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>

#include "node_harness.h"
#include "pkt/parse.h"

namespace kdp::test {
namespace {

using dataplane::DropReason;

const Mac kPodA = mac("02:00:00:00:0a:0a");
const Mac kPodB = mac("02:00:00:00:0b:0b");
const Mac kNode2 = mac("02:00:00:00:02:02");
const Ip4 kIpA = ip("10.244.1.10");
const Ip4 kIpB = ip("10.244.1.11");
const Ip4 kRemotePod = ip("10.244.2.20");
const Ip4 kNode2Ip = ip("198.51.100.2");

table::TableSpec spec(uint64_t gen, bool with_b = true) {
    table::TableSpec s;
    s.generation = gen;
    s.policy.present = true;  // managed, no NetworkPolicy: nothing isolated
    s.routes.push_back(
        {"node2", kNode2Ip, *Prefix4::parse("10.244.2.0/24"), Mac::from_ip(kNode2Ip)});
    s.pods.push_back({"default/a", kIpA, "default/a"});
    if (with_b) {
        s.pods.push_back({"default/b", kIpB, "default/b"});
    }
    return s;
}

class Overlay : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_EQ(h.manager().apply_tables(spec(1)), std::nullopt); }

    const NodeParams& P() { return h.params(); }
    Bytes from_pod_a(Ip4 dst, L4 l4 = {}, size_t payload = 32, Ipv4Opts o = {}, Ip4 src = kIpA) {
        return ether(P().gateway_mac, kPodA, 0x0800, ipv4(src, dst, l4, payload, o));
    }
    // Makes the node learn pod b's MAC the way a kernel pod announces itself: an ARP request.
    void pod_b_arps() {
        h.inject("default/b", ether(mac("ff:ff:ff:ff:ff:ff"), kPodB, 0x0806,
                                    arp(1, kPodB, kIpB, Mac{}, P().gateway)));
        ASSERT_EQ(h.collect("default/b").size(), 1u);
    }
    void resolve_node2(uint64_t now = 1) {
        h.inject("uplink",
                 ether(P().node_mac, kNode2, 0x0806,
                       arp(2, kNode2, kNode2Ip, P().node_mac, P().node_ip)),
                 now);
    }
    Bytes vxlan_in(const Bytes& inner_ip,
                   uint32_t vni = 1,
                   uint16_t dport = 4789,
                   Ip4 dst = ip("198.51.100.1"),
                   uint8_t flags = 0x08) {
        const Bytes inner = ether(P().vtep_mac, Mac::from_ip(kNode2Ip), 0x0800, inner_ip);
        return ether(P().node_mac, kNode2, 0x0800,
                     vxlan(kNode2Ip, dst, 55555, dport, vni, inner, flags));
    }

    NodeHarness h;
};

void expect_ip_checksum_ok(const uint8_t* ip, const char* what) {
    const size_t ihl = (ip[0] & 0xf) * 4u;
    EXPECT_EQ(ref_checksum(ip, ihl), 0) << what << ": IPv4 header checksum does not verify";
}

TEST_F(Overlay, LocalPodToPodRewritesMacsAndTtl) {
    pod_b_arps();
    const Bytes in = from_pod_a(kIpB, {6, 40000, 8080}, 100);
    h.inject("default/a", in);
    const auto out = h.collect("default/b");
    ASSERT_EQ(out.size(), 1u) << "drops on a: " << h.drop_summary("default/a");
    const Bytes& f = out[0];
    ASSERT_EQ(f.size(), in.size());
    EXPECT_EQ(Mac::parse(Mac{}.str()), Mac{});
    EXPECT_TRUE(std::equal(f.begin(), f.begin() + 6, kPodB.b.begin())) << "dst MAC is pod b's";
    EXPECT_TRUE(std::equal(f.begin() + 6, f.begin() + 12, P().gateway_mac.b.begin()))
        << "src MAC is the gateway's";
    EXPECT_EQ(get16(&f[12]), 0x0800);
    EXPECT_EQ(f[14 + 8], 63) << "TTL decremented";
    expect_ip_checksum_ok(&f[14], "forwarded");
    // Everything but TTL and checksum is untouched.
    for (size_t i = 14; i < in.size(); ++i) {
        if (i != 14 + 8 && i != 14 + 10 && i != 14 + 11) {
            ASSERT_EQ(f[i], in[i]) << "byte " << i;
        }
    }
    EXPECT_TRUE(h.collect("default/a").empty());
    EXPECT_TRUE(h.collect("uplink").empty());
}

TEST_F(Overlay, UnknownPodMacFallsBackToBroadcast) {
    h.inject("default/a", from_pod_a(kIpB));
    const auto out = h.collect("default/b");
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(read_mac_at(out[0], 0), mac("ff:ff:ff:ff:ff:ff"));
}

TEST_F(Overlay, RemotePodWaitsForArpThenLeavesEncapsulated) {
    const Bytes in = from_pod_a(kRemotePod, {17, 33333, 53}, 64);
    h.inject("default/a", in, 10);
    // First the node asks for the VTEP's MAC; the packet waits.
    auto up = h.collect("uplink");
    ASSERT_EQ(up.size(), 1u);
    const Bytes& req = up[0];
    EXPECT_EQ(read_mac_at(req, 0), mac("ff:ff:ff:ff:ff:ff"));
    EXPECT_EQ(read_mac_at(req, 6), P().node_mac);
    EXPECT_EQ(get16(&req[12]), 0x0806);
    EXPECT_EQ(get16(&req[14 + 6]), 1) << "ARP request";
    EXPECT_EQ(read_mac_at(req, 14 + 8), P().node_mac);
    EXPECT_EQ(get32(&req[14 + 14]), P().node_ip.host());
    EXPECT_EQ(get32(&req[14 + 24]), kNode2Ip.host());
    EXPECT_EQ(h.worker().held_count, 1u);

    resolve_node2(20);
    up = h.collect("uplink");
    ASSERT_EQ(up.size(), 1u) << "the held packet leaves once resolved";
    const Bytes& f = up[0];
    ASSERT_EQ(f.size(), in.size() + 50);
    // Outer Ethernet.
    EXPECT_EQ(read_mac_at(f, 0), kNode2);
    EXPECT_EQ(read_mac_at(f, 6), P().node_mac);
    EXPECT_EQ(get16(&f[12]), 0x0800);
    // Outer IPv4.
    const uint8_t* o = &f[14];
    EXPECT_EQ(o[0], 0x45);
    EXPECT_EQ(get16(o + 2), f.size() - 14) << "outer total length";
    EXPECT_EQ(get16(o + 6), 0x4000) << "DF, no fragment offset";
    EXPECT_EQ(o[8], 64);
    EXPECT_EQ(o[9], 17);
    EXPECT_EQ(get32(o + 12), P().node_ip.host());
    EXPECT_EQ(get32(o + 16), kNode2Ip.host());
    expect_ip_checksum_ok(o, "outer");
    // Outer UDP.
    const uint8_t* u = o + 20;
    EXPECT_GE(get16(u), 49152) << "source port from the flow hash, dynamic range";
    EXPECT_EQ(get16(u + 2), 4789);
    EXPECT_EQ(get16(u + 4), f.size() - 34) << "UDP length";
    EXPECT_EQ(get16(u + 6), 0) << "UDP checksum zero over IPv4";
    // VXLAN.
    EXPECT_EQ(u[8], 0x08);
    EXPECT_EQ(get32(u + 12) >> 8, 1u) << "VNI";
    // Inner frame: VTEP MACs, TTL decremented, rest intact.
    const size_t in_off = 50;
    EXPECT_EQ(read_mac_at(f, in_off), Mac::from_ip(kNode2Ip));
    EXPECT_EQ(read_mac_at(f, in_off + 6), P().vtep_mac);
    EXPECT_EQ(f[in_off + 14 + 8], 63);
    expect_ip_checksum_ok(&f[in_off + 14], "inner");
    EXPECT_TRUE(std::equal(in.begin() + 14 + 12, in.end(), f.begin() + in_off + 14 + 12));
    EXPECT_EQ(h.worker().held_count, 0u);

    // The same flow again leaves at once and keeps its source port.
    const uint16_t first_sport = get16(u);
    h.inject("default/a", in, 30);
    const auto again = h.collect("uplink");
    ASSERT_EQ(again.size(), 1u);
    EXPECT_EQ(get16(&again[0][34]), first_sport);
}

TEST_F(Overlay, UnansweredArpTimesOutAndRetries) {
    h.inject("default/a", from_pod_a(kRemotePod), 10);
    EXPECT_EQ(h.collect("uplink").size(), 1u);
    h.run(50000);  // within the retry interval: no new request
    EXPECT_TRUE(h.collect("uplink").empty());
    h.run(200000);  // after it: one retry
    EXPECT_EQ(h.collect("uplink").size(), 1u);
    h.run(2000000);  // past the timeout: dropped and counted
    EXPECT_EQ(h.worker().held_count, 0u);
    EXPECT_EQ(h.drops("default/a", DropReason::kNeighborTimeout), 1u);
}

TEST_F(Overlay, HeldQueueIsBounded) {
    std::vector<Bytes> burst(12, from_pod_a(kRemotePod));
    h.inject("default/a", burst, 10);
    EXPECT_EQ(h.worker().held_count, P().held);
    EXPECT_EQ(h.drops("default/a", DropReason::kNeighborQueueFull), 12 - P().held);
}

TEST_F(Overlay, DecapsulatesToTheLocalPod) {
    h.inject("default/a", ether(P().gateway_mac, kPodA, 0x0806, arp(1, kPodA, kIpA, Mac{}, kIpB)));
    h.collect("default/a");
    const Bytes inner = ipv4(kRemotePod, kIpA, {6, 5555, 22}, 300);
    h.inject("uplink", vxlan_in(inner));
    const auto out = h.collect("default/a");
    ASSERT_EQ(out.size(), 1u) << "drops on uplink: " << h.drop_summary("uplink");
    const Bytes& f = out[0];
    ASSERT_EQ(f.size(), 14 + inner.size());
    EXPECT_EQ(read_mac_at(f, 0), kPodA);
    EXPECT_EQ(read_mac_at(f, 6), P().gateway_mac);
    EXPECT_EQ(f[14 + 8], 63);
    expect_ip_checksum_ok(&f[14], "delivered");
    EXPECT_TRUE(std::equal(inner.begin() + 12, inner.end(), f.begin() + 14 + 12));
}

// The loop's own profile (kdpctl stats): every phase a received burst goes through is
// counted, and together they are no more than the time the bursts took.
TEST_F(Overlay, WorkerCountsTheCyclesOfEachPhase) {
    using dataplane::Phase;
    h.inject("default/a", ether(P().gateway_mac, kPodA, 0x0806, arp(1, kPodA, kIpA, Mac{}, kIpB)));
    h.collect("default/a");
    const dataplane::WorkerCounters& c = h.worker().counters;
    const auto cycles = [&](Phase ph) {
        return c.phase_cycles[static_cast<size_t>(ph)].load(std::memory_order_relaxed);
    };
    uint64_t before[dataplane::kPhaseCount];
    for (size_t i = 0; i < dataplane::kPhaseCount; ++i) {
        before[i] = c.phase_cycles[i].load();
    }
    const std::vector<Bytes> frames(32, vxlan_in(ipv4(kRemotePod, kIpA, {17, 5555, 53}, 64)));
    const uint64_t t0 = rte_rdtsc();
    h.inject("uplink", frames);
    const uint64_t elapsed = rte_rdtsc() - t0;
    ASSERT_EQ(h.collect("default/a").size(), 32u) << h.drop_summary("uplink");
    uint64_t sum = 0;
    for (const Phase ph : {Phase::kRx, Phase::kParse, Phase::kClassify, Phase::kStages,
                           Phase::kDispatch, Phase::kTx}) {
        const uint64_t d = cycles(ph) - before[static_cast<size_t>(ph)];
        EXPECT_GT(d, 0u) << dataplane::kPhaseNames[static_cast<size_t>(ph)];
        sum += d;
    }
    EXPECT_LE(sum, elapsed);
    // The loop's housekeeping is not part of a harness iteration.
    EXPECT_EQ(cycles(Phase::kHousekeeping), before[static_cast<size_t>(Phase::kHousekeeping)]);
}

TEST_F(Overlay, DecapRefusesWhatIsNotOurs) {
    const Bytes inner = ipv4(kRemotePod, kIpA, {}, 10);
    struct Case {
        const char* what;
        Bytes frame;
        DropReason want;
    };
    Bytes wrong_mac = vxlan_in(inner);
    wrong_mac[5] ^= 0x01;
    Bytes fragment = vxlan_in(inner);
    fragment[14 + 6] = 0x20;  // MF
    fragment[14 + 10] = fragment[14 + 11] = 0;
    {
        const uint16_t c = ref_checksum(&fragment[14], 20);
        fragment[14 + 10] = static_cast<uint8_t>(c >> 8);
        fragment[14 + 11] = static_cast<uint8_t>(c);
    }
    const Case cases[] = {
        {"other VNI", vxlan_in(inner, 2), DropReason::kVxlanVni},
        {"other UDP port", vxlan_in(inner, 1, 4790), DropReason::kHostPath},
        {"other IP", vxlan_in(inner, 1, 4789, ip("198.51.100.9")), DropReason::kNotForUs},
        {"other MAC", wrong_mac, DropReason::kNotForUs},
        {"no I flag", vxlan_in(inner, 1, 4789, ip("198.51.100.1"), 0x00), DropReason::kVxlanHeader},
        {"outer fragment", fragment, DropReason::kOuterFragment},
        {"inner ARP",
         ether(P().node_mac, kNode2, 0x0800,
               vxlan(kNode2Ip, P().node_ip, 1, 4789, 1,
                     ether(P().vtep_mac, kNode2, 0x0806, arp(1, kNode2, kRemotePod, Mac{}, kIpA)))),
         DropReason::kInnerNotIpv4},
        {"no such pod", vxlan_in(ipv4(kRemotePod, ip("10.244.1.99"), {}, 10)), DropReason::kNoPod},
        {"not a local pod", vxlan_in(ipv4(kRemotePod, ip("10.244.3.3"), {}, 10)),
         DropReason::kNoRoute},
        {"inner bad checksum",
         [&] {
             Bytes b = vxlan_in(inner);
             b[50 + 14 + 10] ^= 0xff;
             return b;
         }(),
         DropReason::kIpChecksum},
    };
    for (const Case& c : cases) {
        const uint64_t before = h.drops("uplink", c.want);
        h.inject("uplink", c.frame);
        EXPECT_EQ(h.drops("uplink", c.want), before + 1)
            << c.what << "; drops: " << h.drop_summary("uplink");
        EXPECT_TRUE(h.collect("default/a").empty()) << c.what;
    }
}

TEST_F(Overlay, ProxyArpAnswersForAnyAddressButTheAsker) {
    h.inject("default/a", ether(mac("ff:ff:ff:ff:ff:ff"), kPodA, 0x0806,
                                arp(1, kPodA, kIpA, Mac{}, kRemotePod)));
    auto out = h.collect("default/a");
    ASSERT_EQ(out.size(), 1u);
    const Bytes& r = out[0];
    EXPECT_EQ(read_mac_at(r, 0), kPodA);
    EXPECT_EQ(read_mac_at(r, 6), P().gateway_mac);
    EXPECT_EQ(get16(&r[12]), 0x0806);
    EXPECT_EQ(get16(&r[14 + 6]), 2) << "reply";
    EXPECT_EQ(read_mac_at(r, 14 + 8), P().gateway_mac);
    EXPECT_EQ(get32(&r[14 + 14]), kRemotePod.host());
    EXPECT_EQ(read_mac_at(r, 14 + 18), kPodA);
    EXPECT_EQ(get32(&r[14 + 24]), kIpA.host());

    // Gratuitous ARP and ARP from an address that is not the pod's are not answered.
    h.inject("default/a",
             ether(mac("ff:ff:ff:ff:ff:ff"), kPodA, 0x0806, arp(1, kPodA, kIpA, Mac{}, kIpA)));
    h.inject("default/a", ether(mac("ff:ff:ff:ff:ff:ff"), kPodA, 0x0806,
                                arp(1, kPodA, ip("10.244.1.77"), Mac{}, P().gateway)));
    EXPECT_TRUE(h.collect("default/a").empty());
    EXPECT_EQ(h.drops("default/a", DropReason::kArpIgnored), 2u);
}

TEST_F(Overlay, UplinkAnswersArpForTheNodeIpOnly) {
    h.inject("uplink", ether(mac("ff:ff:ff:ff:ff:ff"), kNode2, 0x0806,
                             arp(1, kNode2, kNode2Ip, Mac{}, P().node_ip)));
    auto out = h.collect("uplink");
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(read_mac_at(out[0], 0), kNode2);
    EXPECT_EQ(get16(&out[0][14 + 6]), 2);
    EXPECT_EQ(read_mac_at(out[0], 14 + 8), P().node_mac);
    EXPECT_EQ(get32(&out[0][14 + 14]), P().node_ip.host());
    // The request also taught us node2's MAC: no ARP needed to send there now.
    h.inject("default/a", from_pod_a(kRemotePod));
    out = h.collect("uplink");
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(read_mac_at(out[0], 0), kNode2);

    h.inject("uplink", ether(mac("ff:ff:ff:ff:ff:ff"), kNode2, 0x0806,
                             arp(1, mac("02:00:00:00:09:09"), ip("198.51.100.9"), Mac{},
                                 ip("198.51.100.7"))));
    EXPECT_TRUE(h.collect("uplink").empty());
    EXPECT_EQ(h.drops("uplink", DropReason::kArpIgnored), 1u);
}

TEST_F(Overlay, TooBigWithDfGetsFragmentationNeeded) {
    resolve_node2();
    // 1450 bytes of IP fit the overlay exactly (1500 - 50).
    h.inject("default/a", from_pod_a(kRemotePod, {17, 1, 2}, 1450 - 28));
    auto up = h.collect("uplink");
    ASSERT_EQ(up.size(), 1u);
    EXPECT_EQ(up[0].size(), 1514u);

    const Bytes big = from_pod_a(kRemotePod, {6, 40000, 80}, 1451 - 40);
    h.inject("default/a", big);
    EXPECT_TRUE(h.collect("uplink").empty());
    auto back = h.collect("default/a");
    ASSERT_EQ(back.size(), 1u);
    const Bytes& f = back[0];
    EXPECT_EQ(read_mac_at(f, 0), kPodA);
    EXPECT_EQ(read_mac_at(f, 6), P().gateway_mac);
    const uint8_t* ipb = &f[14];
    expect_ip_checksum_ok(ipb, "ICMP");
    EXPECT_EQ(ipb[9], 1);
    EXPECT_EQ(get32(ipb + 12), P().gateway.host());
    EXPECT_EQ(get32(ipb + 16), kIpA.host());
    EXPECT_EQ(get16(ipb + 2), f.size() - 14);
    const uint8_t* icmp = ipb + 20;
    EXPECT_EQ(icmp[0], 3);
    EXPECT_EQ(icmp[1], 4);
    EXPECT_EQ(get16(icmp + 6), 1450) << "next-hop MTU";
    EXPECT_EQ(ref_checksum(icmp, f.size() - 34), 0) << "ICMP checksum";
    // The quote starts with the original IP header, as received.
    EXPECT_TRUE(std::equal(big.begin() + 14, big.begin() + 14 + 28, f.begin() + 42));
    EXPECT_LE(f.size() - 14, 576u);

    Ipv4Opts no_df;
    no_df.df = false;
    h.inject("default/a", from_pod_a(kRemotePod, {17, 1, 2}, 1500, no_df));
    EXPECT_TRUE(h.collect("default/a").empty());
    EXPECT_EQ(h.drops("default/a", DropReason::kTooBig), 1u);
}

TEST_F(Overlay, GatewayAnswersPing) {
    L4 echo;
    echo.proto = 1;
    echo.icmp_id = 0x4444;
    const Bytes in = from_pod_a(P().gateway, echo, 56);
    h.inject("default/a", in);
    auto out = h.collect("default/a");
    ASSERT_EQ(out.size(), 1u);
    const Bytes& f = out[0];
    EXPECT_EQ(read_mac_at(f, 0), kPodA);
    expect_ip_checksum_ok(&f[14], "echo reply");
    EXPECT_EQ(get32(&f[14 + 12]), P().gateway.host());
    EXPECT_EQ(get32(&f[14 + 16]), kIpA.host());
    EXPECT_EQ(f[34], 0) << "echo reply";
    EXPECT_EQ(ref_checksum(&f[34], f.size() - 34), 0) << "ICMP checksum";
    EXPECT_EQ(get16(&f[34 + 4]), 0x4444);
}

TEST_F(Overlay, PodsCannotSpoofOrLoop) {
    h.inject("default/a", from_pod_a(kIpB, {}, 10, {}, ip("10.244.1.99")));
    EXPECT_EQ(h.drops("default/a", DropReason::kSourceMismatch), 1u);
    Ipv4Opts ttl1;
    ttl1.ttl = 1;
    h.inject("default/a", from_pod_a(kIpB, {}, 10, ttl1));
    EXPECT_EQ(h.drops("default/a", DropReason::kTtlExpired), 1u);
    h.inject("default/a", from_pod_a(ip("10.244.1.200")));
    EXPECT_EQ(h.drops("default/a", DropReason::kNoPod), 1u);
    h.inject("default/a", from_pod_a(ip("203.0.113.5")));
    EXPECT_EQ(h.drops("default/a", DropReason::kNoRoute), 1u);
    h.inject("default/a", from_pod_a(ip("224.0.0.251")));
    EXPECT_EQ(h.drops("default/a", DropReason::kMulticast), 1u);
    Bytes not_to_gw = from_pod_a(kIpB);
    not_to_gw[0] = 0x02;
    h.inject("default/a", not_to_gw);
    EXPECT_EQ(h.drops("default/a", DropReason::kNotForUs), 1u);
    h.inject("default/a", Bytes(10, 0));
    EXPECT_EQ(h.drops("default/a", DropReason::kTruncated), 1u);
    EXPECT_TRUE(h.collect("default/b").empty());
    EXPECT_TRUE(h.collect("uplink").empty());
}

TEST_F(Overlay, TableUpdatesApplyWholeOrNotAtAll) {
    // Stale and replayed generations are refused.
    EXPECT_NE(h.manager().apply_tables(spec(1)), std::nullopt);
    // A batch with one bad entry changes nothing.
    table::TableSpec bad = spec(2, false);
    bad.pods.push_back({"default/c", ip("10.244.9.9"), "default/c"});
    const auto err = h.manager().apply_tables(bad);
    ASSERT_NE(err, std::nullopt);
    EXPECT_NE(err->find("pods[1] (default/c)"), std::string::npos) << *err;
    EXPECT_NE(err->find("outside"), std::string::npos) << *err;
    EXPECT_EQ(h.manager().tables().generation, 1u);
    h.inject("default/a", from_pod_a(kIpB));
    EXPECT_EQ(h.collect("default/b").size(), 1u) << "pod b still reachable";
    // A good update takes effect at once.
    ASSERT_EQ(h.manager().apply_tables(spec(2, false)), std::nullopt);
    EXPECT_EQ(h.manager().tables().generation, 2u);
    h.inject("default/a", from_pod_a(kIpB));
    EXPECT_TRUE(h.collect("default/b").empty());
    EXPECT_EQ(h.drops("default/a", DropReason::kNoPod), 1u);
}

TEST_F(Overlay, OverlappingRoutesAreRefused) {
    table::TableSpec s = spec(5);
    s.routes.push_back({"node3", ip("198.51.100.3"), *Prefix4::parse("10.244.2.128/25"),
                        Mac::from_ip(ip("198.51.100.3"))});
    auto err = h.manager().apply_tables(s);
    ASSERT_NE(err, std::nullopt);
    EXPECT_NE(err->find("overlaps"), std::string::npos) << *err;
    s = spec(5);
    s.routes[0].pod_cidr = *Prefix4::parse("10.244.0.0/16");
    err = h.manager().apply_tables(s);
    ASSERT_NE(err, std::nullopt);
    EXPECT_NE(err->find("this node's pod CIDR"), std::string::npos) << *err;
}

// Writes frames as a pcap file (LINKTYPE_ETHERNET) for an independent dissector.
void write_pcap(const std::string& path, const std::vector<Bytes>& frames) {
    std::ofstream f(path, std::ios::binary);
    const uint32_t hdr[] = {0xa1b2c3d4, 0x00040002, 0, 0, 65535, 1};
    f.write(reinterpret_cast<const char*>(hdr), 4);
    f.write(reinterpret_cast<const char*>(&hdr[1]), 4 + 4 + 4 + 4 + 4);
    uint32_t ts = 1;
    for (const Bytes& b : frames) {
        const uint32_t rec[] = {ts++, 0, static_cast<uint32_t>(b.size()),
                                static_cast<uint32_t>(b.size())};
        f.write(reinterpret_cast<const char*>(rec), sizeof rec);
        f.write(reinterpret_cast<const char*>(b.data()), static_cast<long>(b.size()));
    }
}

std::string run_capture(const std::string& cmd) {
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    if (p == nullptr) {
        return out;
    }
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) {
        out.append(buf, n);
    }
    pclose(p);
    return out;
}

// Our VXLAN output, read by Wireshark's dissector: every field decodes, no expert errors,
// checksums verified by tshark itself.
TEST_F(Overlay, TsharkDecodesOurVxlanCleanly) {
    resolve_node2();
    std::vector<Bytes> frames;
    for (uint8_t proto : {6, 17, 132}) {
        // SCTP gets no payload: arbitrary bytes would be (rightly) malformed SCTP chunks.
        h.inject("default/a", from_pod_a(kRemotePod, {proto, 40001, 8080}, proto == 132 ? 0 : 200));
        for (Bytes& b : h.collect("uplink")) {
            frames.push_back(std::move(b));
        }
    }
    L4 echo;
    echo.proto = 1;
    h.inject("default/a", from_pod_a(kRemotePod, echo, 56));
    for (Bytes& b : h.collect("uplink")) {
        frames.push_back(std::move(b));
    }
    ASSERT_EQ(frames.size(), 4u);
    const std::string path = "/tmp/kdp-vxlan-" + std::to_string(getpid()) + ".pcap";
    write_pcap(path, frames);
    const std::string fields = run_capture(
        "tshark -n -r " + path +
        " -o ip.check_checksum:TRUE -T fields -E separator=, -e vxlan.vni -e udp.dstport "
        "-e ip.src -e ip.dst -e ip.checksum.status -e ip.proto 2>/dev/null");
    const std::string expert =
        run_capture("tshark -n -r " + path + " -o ip.check_checksum:TRUE -z expert,error 2>&1");
    std::remove(path.c_str());
    ASSERT_NE(fields.find("1,4789,198.51.100.1,10.244.1.10,"), std::string::npos)
        << "tshark said:\n"
        << fields;
    EXPECT_EQ(std::count(fields.begin(), fields.end(), '\n'), 4) << fields;
    // Both IP headers (outer, inner) verify: status 1 = good, for each frame.
    EXPECT_EQ(fields.find(",2,"), std::string::npos) << "a bad checksum: " << fields;
    EXPECT_EQ(expert.find("Malformed"), std::string::npos) << expert;
    EXPECT_EQ(expert.find("Errors ("), std::string::npos) << expert;
}

}  // namespace
}  // namespace kdp::test
