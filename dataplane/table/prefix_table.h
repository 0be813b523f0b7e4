// PrefixTable: immutable longest-prefix match over IPv4 prefixes.
//
// One FlatMap probe per distinct prefix length present, longest first. Pod CIDRs in a
// cluster nearly always share one length (a /24 per node), so a lookup is one hash probe, and
// a new version builds in O(n) with no 64 MiB DIR-24-8 array to allocate per table update
// (rte_lpm's tbl24), which is what lets table updates publish whole versions by RCU.
// Readers: any thread, lock-free (immutable). Built and freed off the workers.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "common/net.h"
#include "table/flat_map.h"

namespace kdp::table {

template <class V>
class PrefixTable {
public:
    PrefixTable() = default;

    /// Builds from (prefix, value); prefixes must be unique (addr, len) pairs. Allocates.
    explicit PrefixTable(const std::vector<std::pair<Prefix4, V>>& items) {
        std::vector<std::pair<uint64_t, V>> keyed;
        keyed.reserve(items.size());
        for (const auto& [p, v] : items) {
            keyed.emplace_back(key(p.addr.host(), p.len), v);
            if (std::find(lens_.begin(), lens_.end(), p.len) == lens_.end()) {
                lens_.push_back(p.len);
            }
        }
        std::sort(lens_.begin(), lens_.end(), std::greater<>());
        map_ = FlatMap<V>(keyed);
    }

    /// The value of the longest prefix containing `ip`, or nullptr. noexcept, no allocation.
    const V* lookup(Ip4 ip) const noexcept {
        const uint32_t h = ip.host();
        for (const uint8_t len : lens_) {
            const uint32_t mask = len == 0 ? 0u : ~uint32_t{0} << (32 - len);
            if (const V* v = map_.find(key(h & mask, len))) {
                return v;
            }
        }
        return nullptr;
    }

    size_t size() const noexcept { return map_.size(); }
    size_t distinct_lengths() const noexcept { return lens_.size(); }
    size_t memory_bytes() const noexcept { return map_.memory_bytes() + lens_.capacity(); }

private:
    static uint64_t key(uint32_t host_addr, uint8_t len) noexcept {
        return (uint64_t{host_addr} << 8) | len;
    }
    std::vector<uint8_t> lens_;  // descending
    FlatMap<V> map_;
};

}  // namespace kdp::table
