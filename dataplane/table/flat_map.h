// FlatMap: an immutable open-addressing hash map from 64-bit keys to small values.
//
// Built once off the workers (api/), then only read, by any number of workers, without
// synchronisation: it never changes after build(), and is freed only after an RCU grace
// period by whoever published it. Linear probing over a power-of-two array at most half
// full, so a hit costs one cache line in the common case and a miss stops at the first
// empty slot.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "common/hash.h"

namespace kdp::table {

inline constexpr uint64_t kEmptyKey = ~uint64_t{0};

using kdp::mix64;

template <class V>
class FlatMap {
public:
    FlatMap() = default;

    /// Builds from (key, value) pairs; keys must be unique and != kEmptyKey. Allocates.
    explicit FlatMap(const std::vector<std::pair<uint64_t, V>>& items) {
        size_t cap = 8;
        while (cap < items.size() * 2) {
            cap <<= 1;
        }
        mask_ = cap - 1;
        slots_ = std::make_unique<Slot[]>(cap);
        for (size_t i = 0; i < cap; ++i) {
            slots_[i].key = kEmptyKey;
        }
        for (const auto& [k, v] : items) {
            size_t i = mix64(k) & mask_;
            while (slots_[i].key != kEmptyKey) {
                i = (i + 1) & mask_;
            }
            slots_[i] = Slot{k, v};
        }
        size_ = items.size();
    }

    /// The value for `key`, or nullptr. noexcept, no allocation: safe on a worker.
    const V* find(uint64_t key) const noexcept {
        if (size_ == 0) {
            return nullptr;
        }
        for (size_t i = mix64(key) & mask_;; i = (i + 1) & mask_) {
            const Slot& s = slots_[i];
            if (s.key == key) {
                return &s.value;
            }
            if (s.key == kEmptyKey) {
                return nullptr;
            }
        }
    }

    size_t size() const noexcept { return size_; }
    size_t capacity() const noexcept { return size_ == 0 ? 0 : mask_ + 1; }
    size_t memory_bytes() const noexcept { return capacity() * sizeof(Slot); }

private:
    struct Slot {
        uint64_t key;
        V value;
    };
    std::unique_ptr<Slot[]> slots_;
    size_t mask_ = 0;
    size_t size_ = 0;
};

}  // namespace kdp::table
