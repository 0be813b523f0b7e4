#include "pkt/checksum.h"

#include <random>

#include <gtest/gtest.h>

#include "common/pkt_builder.h"
#include "pkt/eth.h"

namespace kdp::pkt {
namespace {

using namespace kdp::test;

uint16_t stored(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}

TEST(Checksum, MatchesTheReferenceOnRandomData) {
    std::mt19937 rng(7);
    for (size_t len = 0; len < 200; ++len) {
        Bytes b(len);
        for (auto& x : b) {
            x = static_cast<uint8_t>(rng());
        }
        const uint16_t ours = from_be16(csum(b.data(), b.size()));
        EXPECT_EQ(ours, ref_checksum(b.data(), b.size())) << "len " << len;
    }
}

TEST(Checksum, HeaderWithItsChecksumVerifies) {
    Bytes h = ipv4(ip("10.1.2.3"), ip("10.4.5.6"), {}, 0);
    EXPECT_TRUE(csum_ok(h.data(), 20));
    h[8] ^= 1;
    EXPECT_FALSE(csum_ok(h.data(), 20));
}

// RFC 1624: the incremental update must equal a full recomputation, including the case that
// eqn. 2 of RFC 1141 got wrong (a result of 0xffff vs 0x0000).
TEST(Checksum, TtlDecrementEqualsFullRecompute) {
    std::mt19937 rng(11);
    for (int i = 0; i < 5000; ++i) {
        Ipv4Opts o;
        o.ttl = static_cast<uint8_t>(2 + rng() % 254);
        o.tos = static_cast<uint8_t>(rng());
        Bytes h = ipv4(Ip4{static_cast<uint32_t>(rng())}, Ip4{static_cast<uint32_t>(rng())},
                       {static_cast<uint8_t>(rng())}, 0, o);
        dec_ttl(h.data());
        const uint16_t incremental = from_be16(stored(h.data() + 10));
        h[10] = h[11] = 0;
        ASSERT_EQ(incremental, ref_checksum(h.data(), 20)) << "iteration " << i;
    }
}

TEST(Checksum, Replace32EqualsFullRecompute) {
    std::mt19937 rng(13);
    for (int i = 0; i < 5000; ++i) {
        Bytes h = ipv4(Ip4{static_cast<uint32_t>(rng())}, Ip4{static_cast<uint32_t>(rng())}, {}, 0);
        uint32_t from;
        std::memcpy(&from, h.data() + 16, 4);
        const uint32_t to = static_cast<uint32_t>(rng());
        std::memcpy(h.data() + 16, &to, 4);
        const uint16_t c = csum_replace32(stored(h.data() + 10), from, to);
        h[10] = h[11] = 0;
        ASSERT_EQ(from_be16(c), ref_checksum(h.data(), 20));
    }
}

}  // namespace
}  // namespace kdp::pkt
