#include "pkt/parse.h"

#include <gtest/gtest.h>

#include "common/pkt_builder.h"

namespace kdp::pkt {
namespace {

using dataplane::DropReason;
using dataplane::PacketMeta;
using namespace kdp::test;
namespace flag = dataplane::pkt_flag;

const Mac kA = mac("02:00:00:00:00:0a");
const Mac kB = mac("02:00:00:00:00:0b");

DropReason parse(const Bytes& f, PacketMeta& m) {
    return parse_frame(f.data(), f.size(), m);
}

TEST(Parse, UdpFieldsAndOffsets) {
    const Bytes f =
        ether(kB, kA, 0x0800, ipv4(ip("10.244.1.10"), ip("10.244.2.20"), {17, 1111, 53}, 10));
    PacketMeta m;
    ASSERT_EQ(parse(f, m), DropReason::kNone);
    EXPECT_EQ(m.ether_type, kEtherTypeIpv4);
    EXPECT_EQ(m.l3_off, 14);
    EXPECT_EQ(m.l4_off, 34);
    EXPECT_EQ(m.l3_len, 20 + 8 + 10);
    EXPECT_EQ(m.tuple.src, ip("10.244.1.10"));
    EXPECT_EQ(m.tuple.dst, ip("10.244.2.20"));
    EXPECT_EQ(from_be16(m.tuple.sport), 1111);
    EXPECT_EQ(from_be16(m.tuple.dport), 53);
    EXPECT_EQ(m.tuple.proto, kProtoUdp);
    EXPECT_EQ(m.ttl, 64);
    EXPECT_TRUE(m.flags & flag::kDontFragment);
    EXPECT_TRUE(m.flags & flag::kL4);
    EXPECT_FALSE(m.flags & flag::kFragment);
}

TEST(Parse, TcpSctpIcmp) {
    PacketMeta m;
    ASSERT_EQ(
        parse(ether(kB, kA, 0x0800, ipv4(ip("10.0.0.1"), ip("10.0.0.2"), {6, 4000, 443, 0x12}, 0)),
              m),
        DropReason::kNone);
    EXPECT_EQ(m.tcp_flags, 0x12);
    EXPECT_EQ(from_be16(m.tuple.dport), 443);
    m = {};
    ASSERT_EQ(
        parse(ether(kB, kA, 0x0800, ipv4(ip("10.0.0.1"), ip("10.0.0.2"), {132, 5000, 3868}, 4)), m),
        DropReason::kNone);
    EXPECT_EQ(from_be16(m.tuple.sport), 5000);
    EXPECT_EQ(from_be16(m.tuple.dport), 3868);
    m = {};
    L4 echo;
    echo.proto = 1;
    echo.icmp_id = 0x7777;
    ASSERT_EQ(parse(ether(kB, kA, 0x0800, ipv4(ip("10.0.0.1"), ip("10.0.0.2"), echo, 56)), m),
              DropReason::kNone);
    EXPECT_EQ(m.icmp_type, 8);
    EXPECT_EQ(from_be16(m.tuple.sport), 0x7777);
}

TEST(Parse, OneVlanTagIsSkippedTwoAreRefused) {
    const Bytes body = ipv4(ip("10.0.0.1"), ip("10.0.0.2"), {}, 0);
    PacketMeta m;
    ASSERT_EQ(parse(ether(kB, kA, 0x0800, body, 100), m), DropReason::kNone);
    EXPECT_TRUE(m.flags & flag::kVlan);
    EXPECT_EQ(m.vlan_tci, 100);
    EXPECT_EQ(m.l3_off, 18);
    EXPECT_EQ(m.l4_off, 38);
    Bytes inner;
    put16(inner, 200);
    put16(inner, 0x0800);
    inner.insert(inner.end(), body.begin(), body.end());
    m = {};
    EXPECT_EQ(parse(ether(kB, kA, 0x8100, inner, 100), m), DropReason::kStackedVlan);
}

TEST(Parse, OptionsAreSkipped) {
    Ipv4Opts o;
    o.options = {0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00};  // router alert + NOPs + EOL
    PacketMeta m;
    ASSERT_EQ(
        parse(ether(kB, kA, 0x0800, ipv4(ip("10.0.0.1"), ip("10.0.0.2"), {17, 1, 2}, 3, o)), m),
        DropReason::kNone);
    EXPECT_TRUE(m.flags & flag::kIpOptions);
    EXPECT_EQ(m.l4_off, 14 + 28);
    EXPECT_EQ(from_be16(m.tuple.dport), 2);
}

TEST(Parse, FragmentsFirstHasPortsLaterHasNone) {
    Ipv4Opts first;
    first.df = false;
    first.mf = true;
    PacketMeta m;
    // The first fragment's UDP length names the whole datagram, not this piece.
    Bytes f = ether(kB, kA, 0x0800, ipv4(ip("10.0.0.1"), ip("10.0.0.2"), {17, 7, 9}, 16, first));
    f[14 + 20 + 5] = 200;  // UDP length 200 > what is here
    f[14 + 20 + 4] = 0;
    ASSERT_EQ(parse(f, m), DropReason::kNone);
    EXPECT_TRUE(m.flags & flag::kFragment);
    EXPECT_FALSE(m.flags & flag::kLaterFragment);
    EXPECT_EQ(from_be16(m.tuple.dport), 9);

    Ipv4Opts later;
    later.df = false;
    later.frag_off = 3;
    m = {};
    ASSERT_EQ(
        parse(ether(kB, kA, 0x0800, ipv4(ip("10.0.0.1"), ip("10.0.0.2"), {200}, 24, later)), m),
        DropReason::kNone);
    EXPECT_TRUE(m.flags & flag::kLaterFragment);
    EXPECT_FALSE(m.flags & flag::kL4);
    EXPECT_EQ(m.tuple.dport, 0);
}

TEST(Parse, ArpNeedsTheWholeBody) {
    const Bytes f = ether(kB, kA, 0x0806, arp(1, kA, ip("10.0.0.1"), Mac{}, ip("10.0.0.2")));
    PacketMeta m;
    ASSERT_EQ(parse(f, m), DropReason::kNone);
    EXPECT_EQ(m.ether_type, kEtherTypeArp);
    m = {};
    EXPECT_EQ(parse_frame(f.data(), f.size() - 1, m), DropReason::kArpMalformed);
}

TEST(Parse, MalformedHeadersEachHaveTheirReason) {
    const Bytes good = ether(kB, kA, 0x0800, ipv4(ip("10.0.0.1"), ip("10.0.0.2"), {6, 1, 2}, 0));
    struct Case {
        const char* what;
        size_t at;
        uint8_t value;
        DropReason want;
    };
    const Case cases[] = {
        {"ethertype IPv6", 12, 0x86, DropReason::kUnknownEthertype},
        {"version 6", 14, 0x65, DropReason::kIpVersion},
        {"IHL 4", 14, 0x44, DropReason::kIpHeaderLength},
        {"IHL 15 beyond frame", 14, 0x4f, DropReason::kIpHeaderLength},
        {"total length 19", 17, 19, DropReason::kIpTotalLength},
        {"total length beyond frame", 17, 200, DropReason::kIpTotalLength},
        {"bad checksum", 24, 0x00, DropReason::kIpChecksum},
        {"TCP data offset 4", 14 + 20 + 12, 0x40, DropReason::kTcpDataOffset},
        {"TCP data offset 15", 14 + 20 + 12, 0xf0, DropReason::kTcpDataOffset},
    };
    for (const Case& c : cases) {
        Bytes f = good;
        f[c.at] = c.value;
        if (c.at == 24 && good[24] == 0) {
            f[25] ^= 0xff;
        }
        PacketMeta m;
        EXPECT_EQ(parse(f, m), c.want) << c.what;
    }
}

TEST(Parse, BadSourcesAreRefused) {
    for (const char* src : {"0.0.0.0", "127.0.0.1", "224.0.0.5", "255.255.255.255"}) {
        PacketMeta m;
        EXPECT_EQ(parse(ether(kB, kA, 0x0800, ipv4(ip(src), ip("10.0.0.2"), {}, 0)), m),
                  DropReason::kIpSourceInvalid)
            << src;
    }
}

TEST(Parse, UdpLengthMustMatch) {
    Bytes f = ether(kB, kA, 0x0800, ipv4(ip("10.0.0.1"), ip("10.0.0.2"), {17, 1, 2}, 8));
    f[14 + 20 + 5] = 7;  // below the header
    PacketMeta m;
    EXPECT_EQ(parse(f, m), DropReason::kUdpLength);
    f[14 + 20 + 5] = 15;  // one short of the payload
    m = {};
    EXPECT_EQ(parse(f, m), DropReason::kUdpLength);
}

TEST(Parse, EthernetPaddingIsNotPartOfTheDatagram) {
    Bytes f = ether(kB, kA, 0x0800, ipv4(ip("10.0.0.1"), ip("10.0.0.2"), {17, 1, 2}, 0));
    f.resize(60, 0);  // minimum frame size
    PacketMeta m;
    ASSERT_EQ(parse(f, m), DropReason::kNone);
    EXPECT_EQ(m.l3_len, 28);
}

// Every prefix of every well-formed frame: never reads past `len` (ASan checks that), never
// accepts a cut-short L3/L4 header.
TEST(Parse, TruncatedAtEveryByteIsRefusedOrConsistent) {
    L4 echo;
    echo.proto = 1;
    Ipv4Opts opts;
    opts.options = {1, 1, 1, 0};
    const std::vector<Bytes> frames = {
        ether(kB, kA, 0x0800, ipv4(ip("10.0.0.1"), ip("10.0.0.2"), {6, 1, 2}, 5)),
        ether(kB, kA, 0x0800, ipv4(ip("10.0.0.1"), ip("10.0.0.2"), {17, 1, 2}, 5), 7),
        ether(kB, kA, 0x0800, ipv4(ip("10.0.0.1"), ip("10.0.0.2"), {132, 1, 2}, 5, opts)),
        ether(kB, kA, 0x0800, ipv4(ip("10.0.0.1"), ip("10.0.0.2"), echo, 5)),
        ether(kB, kA, 0x0806, arp(1, kA, ip("10.0.0.1"), Mac{}, ip("10.0.0.2"))),
        ether(kB, kA, 0x0800,
              vxlan(ip("198.51.100.2"), ip("198.51.100.1"), 50000, 4789, 1,
                    ether(kB, kA, 0x0800, ipv4(ip("10.0.0.1"), ip("10.0.0.2"), {17, 1, 2}, 3)))),
    };
    for (const Bytes& f : frames) {
        for (size_t len = 0; len < f.size(); ++len) {
            // Copy into an exact-size buffer so that ASan catches any read past `len`.
            std::vector<uint8_t> cut(f.begin(), f.begin() + static_cast<long>(len));
            PacketMeta m;
            const DropReason r = parse_frame(cut.data(), static_cast<uint32_t>(len), m);
            EXPECT_NE(r, DropReason::kNone)
                << "accepted a frame cut to " << len << " of " << f.size() << " bytes";
        }
        PacketMeta m;
        EXPECT_EQ(parse_frame(f.data(), static_cast<uint32_t>(f.size()), m), DropReason::kNone);
    }
}

TEST(TupleHash, IsSymmetricAndSpreads) {
    dataplane::Tuple4 a{ip("10.0.0.1"), ip("10.0.0.2"), to_be16(1000), to_be16(80), 6};
    dataplane::Tuple4 b{ip("10.0.0.2"), ip("10.0.0.1"), to_be16(80), to_be16(1000), 6};
    EXPECT_EQ(tuple_hash(a), tuple_hash(b));
    // Source ports of 4096 flows land in many distinct VXLAN source-port buckets.
    std::vector<int> buckets(64);
    for (uint16_t p = 0; p < 4096; ++p) {
        a.sport = to_be16(static_cast<uint16_t>(10000 + p));
        ++buckets[tuple_hash(a) % 64];
    }
    for (int n : buckets) {
        EXPECT_GT(n, 32);  // expected 64 each
        EXPECT_LT(n, 100);
    }
}

}  // namespace
}  // namespace kdp::pkt
