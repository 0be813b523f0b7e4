#include <random>

#include <gtest/gtest.h>

#include "common/pkt_builder.h"
#include "table/flat_map.h"
#include "table/neighbor.h"
#include "table/prefix_table.h"

namespace kdp::table {
namespace {

using kdp::test::ip;
using kdp::test::mac;

TEST(FlatMap, FindsEveryKeyAndNothingElse) {
    std::vector<std::pair<uint64_t, uint32_t>> items;
    for (uint32_t i = 0; i < 10000; ++i) {
        items.emplace_back(uint64_t{i} * 7919 + 1, i);
    }
    const FlatMap<uint32_t> m(items);
    EXPECT_EQ(m.size(), items.size());
    EXPECT_GE(m.capacity(), 2 * items.size());
    for (const auto& [k, v] : items) {
        const uint32_t* f = m.find(k);
        ASSERT_NE(f, nullptr);
        EXPECT_EQ(*f, v);
    }
    for (uint64_t k = 2; k < 7919; ++k) {
        EXPECT_EQ(m.find(k), nullptr);
    }
    EXPECT_EQ(FlatMap<uint32_t>().find(1), nullptr);
}

TEST(PrefixTable, LongestPrefixWins) {
    const PrefixTable<int> t({{*Prefix4::parse("10.0.0.0/8"), 8},
                              {*Prefix4::parse("10.244.0.0/16"), 16},
                              {*Prefix4::parse("10.244.2.0/24"), 24},
                              {*Prefix4::parse("10.244.2.128/25"), 25},
                              {*Prefix4::parse("0.0.0.0/0"), 0}});
    EXPECT_EQ(*t.lookup(ip("10.244.2.200")), 25);
    EXPECT_EQ(*t.lookup(ip("10.244.2.1")), 24);
    EXPECT_EQ(*t.lookup(ip("10.244.3.1")), 16);
    EXPECT_EQ(*t.lookup(ip("10.1.1.1")), 8);
    EXPECT_EQ(*t.lookup(ip("192.0.2.1")), 0);
    EXPECT_EQ(t.distinct_lengths(), 5u);
}

TEST(PrefixTable, MissesOutsideEveryPrefix) {
    const PrefixTable<int> t({{*Prefix4::parse("10.244.1.0/24"), 1}});
    EXPECT_EQ(t.lookup(ip("10.244.2.1")), nullptr);
    EXPECT_EQ(PrefixTable<int>().lookup(ip("10.0.0.1")), nullptr);
}

// The same answers as a linear scan over random prefixes and addresses.
TEST(PrefixTable, AgreesWithLinearScan) {
    std::mt19937 rng(3);
    std::vector<std::pair<Prefix4, int>> items;
    for (int i = 0; i < 500; ++i) {
        const uint8_t len = static_cast<uint8_t>(8 + rng() % 25);
        const Prefix4 p{
            Ip4::from_host(static_cast<uint32_t>(rng()) & Prefix4{Ip4{}, len}.mask_host()), len};
        bool dup = false;
        for (const auto& [q, v] : items) {
            dup |= q == p;
        }
        if (!dup) {
            items.emplace_back(p, i);
        }
    }
    const PrefixTable<int> t(items);
    for (int i = 0; i < 20000; ++i) {
        // Addresses near the prefixes so that most hit something.
        const auto& base = items[rng() % items.size()].first;
        const Ip4 a =
            Ip4::from_host(base.addr.host() ^ (static_cast<uint32_t>(rng()) >> (base.len / 2 + 8)));
        const std::pair<Prefix4, int>* best = nullptr;
        for (const auto& it : items) {
            if (it.first.contains(a) && (best == nullptr || it.first.len > best->first.len)) {
                best = &it;
            }
        }
        const int* got = t.lookup(a);
        if (best == nullptr) {
            EXPECT_EQ(got, nullptr);
        } else {
            ASSERT_NE(got, nullptr) << a.str();
            EXPECT_EQ(*got, best->second) << a.str();
        }
    }
}

TEST(NeighborTable, SlotsAreStableAndLearnable) {
    NeighborTable n(4);
    const uint32_t a = n.slot_for(ip("198.51.100.2"));
    const uint32_t b = n.slot_for(ip("198.51.100.3"));
    ASSERT_NE(a, kNoSlot);
    ASSERT_NE(b, kNoSlot);
    EXPECT_NE(a, b);
    EXPECT_EQ(n.slot_for(ip("198.51.100.2")), a);
    EXPECT_EQ(n.find(ip("198.51.100.3")), b);
    EXPECT_EQ(n.find(ip("198.51.100.4")), kNoSlot);
    EXPECT_EQ(n.mac_state(a), 0u);
    n.learn(a, mac("02:00:00:00:00:02"), 1000);
    EXPECT_EQ(Mac::unpack(n.mac_state(a)), mac("02:00:00:00:00:02"));
    EXPECT_TRUE(n.mac_state(a) & NeighborTable::kValid);
}

TEST(NeighborTable, OneRequestPerIntervalUntilResolvedThenAfterStale) {
    NeighborTable n(4);
    const uint32_t s = n.slot_for(ip("198.51.100.2"));
    EXPECT_TRUE(n.claim_request(s, 1000, 100, 10000));
    EXPECT_FALSE(n.claim_request(s, 1050, 100, 10000));  // within the retry interval
    EXPECT_TRUE(n.claim_request(s, 1101, 100, 10000));
    n.learn(s, mac("02:00:00:00:00:02"), 2000);
    EXPECT_FALSE(n.claim_request(s, 5000, 100, 10000));  // fresh
    EXPECT_TRUE(n.claim_request(s, 12001, 100, 10000));  // stale: re-confirm
}

TEST(NeighborTable, RefusesWhenFull) {
    NeighborTable n(4);  // capacity 16, at most half used
    uint32_t got = 0;
    for (uint32_t i = 1; i <= 20; ++i) {
        if (n.slot_for(Ip4::from_host(0xc6336400 + i)) != kNoSlot) {
            ++got;
        }
    }
    EXPECT_EQ(got, 8u);
}

}  // namespace
}  // namespace kdp::table
