// The project's one integer hash finaliser. Pure; any thread.
#pragma once

#include <cstdint>

namespace kdp {

/// 64-bit mix (the finaliser of SplitMix64): cheap, and every key bit moves every hash bit.
inline uint64_t mix64(uint64_t k) noexcept {
    k ^= k >> 30;
    k *= 0xbf58476d1ce4e5b9ull;
    k ^= k >> 27;
    k *= 0x94d049bb133111ebull;
    k ^= k >> 31;
    return k;
}

}  // namespace kdp
