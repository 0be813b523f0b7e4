#include "common/net.h"

#include <gtest/gtest.h>

namespace kdp {
namespace {

TEST(Ip4, ParsesDottedQuadIntoNetworkOrder) {
    const auto ip = Ip4::parse("10.244.1.7");
    ASSERT_TRUE(ip);
    EXPECT_EQ(ip->host(), 0x0af40107u);
    const auto* bytes = reinterpret_cast<const uint8_t*>(&ip->be);
    EXPECT_EQ(bytes[0], 10);
    EXPECT_EQ(bytes[3], 7);
    EXPECT_EQ(ip->str(), "10.244.1.7");
}

TEST(Ip4, RefusesEverythingElse) {
    for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-4", "01.2.3.4",
                            "1.2.3.4 ", " 1.2.3.4", "1..3.4", "a.b.c.d", "1.2.3.4/8"}) {
        EXPECT_FALSE(Ip4::parse(bad)) << bad;
    }
}

TEST(Prefix4, StrictParsingRejectsHostBits) {
    EXPECT_FALSE(Prefix4::parse("10.244.1.1/24"));
    const auto loose = Prefix4::parse("10.244.1.1/24", false);
    ASSERT_TRUE(loose);
    EXPECT_EQ(loose->str(), "10.244.1.0/24");
    EXPECT_FALSE(Prefix4::parse("10.0.0.0/33"));
    EXPECT_FALSE(Prefix4::parse("10.0.0.0"));
    EXPECT_TRUE(Prefix4::parse("0.0.0.0/0"));
}

TEST(Prefix4, ContainsAndOverlaps) {
    const auto p16 = *Prefix4::parse("10.244.0.0/16");
    const auto p24 = *Prefix4::parse("10.244.3.0/24");
    const auto other = *Prefix4::parse("10.245.0.0/24");
    EXPECT_TRUE(p16.contains(*Ip4::parse("10.244.255.255")));
    EXPECT_FALSE(p16.contains(*Ip4::parse("10.245.0.0")));
    EXPECT_TRUE(p16.overlaps(p24));
    EXPECT_TRUE(p24.overlaps(p16));
    EXPECT_FALSE(p24.overlaps(other));
    EXPECT_EQ(p24.size(), 256u);
    EXPECT_TRUE(Prefix4::parse("0.0.0.0/0")->contains(*Ip4::parse("203.0.113.9")));
}

TEST(Mac, ParsePackUnpackRoundTrip) {
    const auto m = Mac::parse("0A:58:0a:f4:01:01");
    ASSERT_TRUE(m);
    EXPECT_EQ(m->str(), "0a:58:0a:f4:01:01");
    EXPECT_EQ(Mac::unpack(m->pack()), *m);
    EXPECT_EQ(Mac::from_ip(*Ip4::parse("10.244.1.1")), *m);
    EXPECT_FALSE(Mac::parse("0a:58:0a:f4:01"));
    EXPECT_FALSE(Mac::parse("0a-58-0a-f4-01-01"));
    EXPECT_FALSE(Mac::parse("0g:58:0a:f4:01:01"));
}

}  // namespace
}  // namespace kdp
