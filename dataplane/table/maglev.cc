#include "table/maglev.h"

#include <algorithm>

#include "table/flat_map.h"

namespace kdp::table {

namespace {

// Primes near powers of two and their midpoints, the usual ladder for Maglev tables.
constexpr uint32_t kPrimes[] = {251,   509,   1021,   2039,   4093,   8191,   16381,
                                32749, 65521, 131071, 262139, 524287, 1048573};

}  // namespace

uint32_t maglev_size(size_t backends) noexcept {
    const uint64_t want = uint64_t{backends} * 100;
    for (const uint32_t p : kPrimes) {
        if (p >= want) {
            return p;
        }
    }
    return kPrimes[std::size(kPrimes) - 1];
}

std::vector<uint16_t> maglev_build(std::span<const uint64_t> keys,
                                   std::span<const uint32_t> weights,
                                   uint32_t size) {
    std::vector<uint16_t> table(size, 0);
    const size_t n = keys.size();
    if (n == 0 || size < 2) {
        return table;
    }
    std::vector<uint32_t> offset(n);
    std::vector<uint32_t> skip(n);
    std::vector<uint64_t> next(n, 0);
    uint32_t max_weight = 1;
    for (size_t i = 0; i < n; ++i) {
        // Two independent hashes of the key (the paper uses two different hash functions).
        const uint64_t h1 = mix64(keys[i]);
        const uint64_t h2 = mix64(keys[i] ^ 0x9e3779b97f4a7c15ull);
        offset[i] = static_cast<uint32_t>(h1 % size);
        skip[i] = static_cast<uint32_t>(h2 % (size - 1)) + 1;
        if (!weights.empty()) {
            max_weight = std::max(max_weight, weights[i]);
        }
    }
    // Weighted population (as Katran does): in round r, backend i takes a turn only while
    // its accumulated credit allows, so shares follow the weights.
    std::vector<uint64_t> credit(n, 0);
    uint32_t filled = 0;
    while (filled < size) {
        bool any = false;
        for (size_t i = 0; i < n && filled < size; ++i) {
            const uint32_t w = weights.empty() ? 1 : weights[i];
            if (w == 0) {
                continue;
            }
            credit[i] += w;
            if (credit[i] < max_weight) {
                continue;
            }
            credit[i] -= max_weight;
            any = true;
            uint32_t c = static_cast<uint32_t>((offset[i] + next[i] * skip[i]) % size);
            while (table[c] != 0) {
                ++next[i];
                c = static_cast<uint32_t>((offset[i] + next[i] * skip[i]) % size);
            }
            table[c] = static_cast<uint16_t>(i + 1);
            ++next[i];
            ++filled;
        }
        if (!any && std::all_of(credit.begin(), credit.end(), [](uint64_t c) { return c == 0; })) {
            break;  // every weight is zero
        }
    }
    return table;
}

}  // namespace kdp::table
