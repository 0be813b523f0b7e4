// Internet checksum helpers (RFC 1071) and incremental updates (RFC 1624). Pure functions on
// bytes: no DPDK state, safe on any thread, noexcept.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace kdp::pkt {

/// One's-complement sum of `len` bytes taken as big-endian 16-bit words, not yet folded.
/// Returned in the byte order of the data (summing in memory order on a little-endian host
/// gives the byte-swapped sum, which folds to the byte-swapped checksum: RFC 1071 §2(B)).
inline uint32_t csum_partial(const void* data, size_t len, uint32_t sum = 0) noexcept {
    const auto* p = static_cast<const uint8_t*>(data);
    while (len >= 2) {
        uint16_t w;
        std::memcpy(&w, p, 2);
        sum += w;
        p += 2;
        len -= 2;
    }
    if (len != 0) {
        uint16_t w = 0;
        std::memcpy(&w, p, 1);
        sum += w;
    }
    return sum;
}

inline uint16_t csum_fold(uint32_t sum) noexcept {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(sum);
}

/// The checksum field value (memory order) for `len` bytes whose checksum field is zero.
inline uint16_t csum(const void* data, size_t len) noexcept {
    return static_cast<uint16_t>(~csum_fold(csum_partial(data, len)));
}

/// True when the bytes, checksum field included, verify.
inline bool csum_ok(const void* data, size_t len) noexcept {
    return csum_fold(csum_partial(data, len)) == 0xffff;
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for one 16-bit word changing from `from` to `to`.
/// All values in memory (network) order.
inline uint16_t csum_replace16(uint16_t check, uint16_t from, uint16_t to) noexcept {
    uint32_t sum = static_cast<uint16_t>(~check);
    sum += static_cast<uint16_t>(~from);
    sum += to;
    return static_cast<uint16_t>(~csum_fold(sum));
}

/// The same for a 32-bit field (an IPv4 address) as two 16-bit words.
inline uint16_t csum_replace32(uint16_t check, uint32_t from, uint32_t to) noexcept {
    uint32_t sum = static_cast<uint16_t>(~check);
    sum += static_cast<uint16_t>(~from) + static_cast<uint16_t>(~(from >> 16));
    sum += (to & 0xffff) + (to >> 16);
    return static_cast<uint16_t>(~csum_fold(sum));
}

}  // namespace kdp::pkt
