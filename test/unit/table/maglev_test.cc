#include "table/maglev.h"

#include <map>

#include <gtest/gtest.h>

#include "table/flat_map.h"

namespace kdp::table {
namespace {

std::vector<uint64_t> keys(size_t n, uint64_t base = 1000) {
    std::vector<uint64_t> k;
    for (size_t i = 0; i < n; ++i) {
        k.push_back(mix64(base + i));
    }
    return k;
}

std::map<uint16_t, size_t> shares(const std::vector<uint16_t>& t) {
    std::map<uint16_t, size_t> s;
    for (const uint16_t e : t) {
        ++s[e];
    }
    return s;
}

TEST(Maglev, SizeIsPrimeAndAtLeast100PerBackend) {
    EXPECT_EQ(maglev_size(1), 251u);
    EXPECT_EQ(maglev_size(10), 1021u);
    EXPECT_EQ(maglev_size(100), 16381u);
    for (size_t n : {1, 3, 10, 50, 300, 1000}) {
        const uint32_t m = maglev_size(n);
        EXPECT_GE(m, 100 * n);
        for (uint32_t d = 2; d * d <= m; ++d) {
            ASSERT_NE(m % d, 0u) << m << " is not prime";
        }
    }
}

TEST(Maglev, NoHoles) {
    for (size_t n : {1, 2, 7, 10, 64}) {
        const auto t = maglev_build(keys(n), {}, maglev_size(n));
        for (const uint16_t e : t) {
            ASSERT_GE(e, 1);
            ASSERT_LE(e, n);
        }
    }
}

TEST(Maglev, EmptyBackendSetIsAllZero) {
    const auto t = maglev_build({}, {}, 251);
    EXPECT_EQ(t.size(), 251u);
    EXPECT_EQ(shares(t)[0], 251u);
}

// Every node must build the same table from the same backends (no seed per process, no
// dependence on addresses or iteration order), or a connection's packets would reach different
// backends through different nodes: the table is pinned by a digest (FNV-1a over its entries).
TEST(Maglev, DeterministicAcrossProcesses) {
    uint64_t digest = 0xcbf29ce484222325ull;
    for (const uint16_t e : maglev_build(keys(10), {}, 1021)) {
        digest = (digest ^ e) * 0x100000001b3ull;
    }
    EXPECT_EQ(digest, 0x167b16a1939faf38ull) << std::hex << digest;
}

TEST(Maglev, EqualSharesWithinOneEntry) {
    const size_t n = 10;
    const uint32_t m = maglev_size(n);
    const auto s = shares(maglev_build(keys(n), {}, m));
    for (const auto& [b, c] : s) {
        EXPECT_GE(c, m / n) << "backend " << b;
        EXPECT_LE(c, m / n + 1) << "backend " << b;
    }
}

TEST(Maglev, WeightsScaleShares) {
    const std::vector<uint32_t> w = {1, 2, 3};
    auto s = shares(maglev_build(keys(3), w, 6007));
    const double total = 6007;
    EXPECT_NEAR(s[1] / total, 1.0 / 6, 0.01);
    EXPECT_NEAR(s[2] / total, 2.0 / 6, 0.01);
    EXPECT_NEAR(s[3] / total, 3.0 / 6, 0.01);
}

// Removing one backend moves its own slots and only a few others. Measured over 20 key sets
// at M = 1021, N = 10: 2.4% of the table (mean), 3.2% (worst) beyond the removed backend's own
// share; at M = 65521 it is 0.25%/0.43%. Maglev trades this small churn for its near-perfect
// balance (paper §3.4); the bound here is 4%.
TEST(Maglev, RemovingABackendMovesMostlyItsOwnSlots) {
    const size_t n = 10;
    const uint32_t m = maglev_size(n);
    const auto k = keys(n);
    const auto before = maglev_build(k, {}, m);
    std::vector<uint64_t> fewer(k.begin(), k.end());
    fewer.erase(fewer.begin() + 4);  // backend 5 (index 4) leaves
    const auto after = maglev_build(fewer, {}, m);
    size_t moved_other = 0;
    for (uint32_t i = 0; i < m; ++i) {
        const uint64_t was = k[before[i] - 1];
        const uint64_t now = fewer[after[i] - 1];
        if (before[i] != 5 && was != now) {
            ++moved_other;
        }
    }
    EXPECT_LT(moved_other, m * 4 / 100)
        << moved_other << " of " << m << " slots of staying backends moved";
}

TEST(Maglev, AddingABackendTakesAFairShareMostlyFromEveryone) {
    const uint32_t m = 1021;
    const auto k = keys(10);
    const auto before = maglev_build(k, {}, m);
    std::vector<uint64_t> more(k.begin(), k.end());
    more.push_back(mix64(99999));
    const auto after = maglev_build(more, {}, m);
    size_t changed = 0;
    for (uint32_t i = 0; i < m; ++i) {
        if (k[before[i] - 1] != more[after[i] - 1]) {
            ++changed;
        }
    }
    // Ideal: exactly the new backend's share (m/11 = 92); measured extra churn at this size is
    // at most 3.2% of the table over 20 key sets.
    EXPECT_LT(changed, m / 11 + m * 4 / 100);
}

}  // namespace
}  // namespace kdp::table
