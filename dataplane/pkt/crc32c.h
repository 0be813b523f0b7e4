// CRC32c (Castagnoli), the SCTP checksum (RFC 4960 appendix B, RFC 3309), with the SSE4.2
// crc32 instruction. Pure; any thread.
#pragma once

#include <nmmintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace kdp::pkt {

inline uint32_t crc32c(const void* data, size_t len, uint32_t crc = 0xffffffffu) noexcept {
    const auto* p = static_cast<const uint8_t*>(data);
    uint64_t c = crc;
    while (len >= 8) {
        uint64_t v;
        std::memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        len -= 8;
    }
    auto c32 = static_cast<uint32_t>(c);
    while (len-- != 0) {
        c32 = _mm_crc32_u8(c32, *p++);
    }
    return c32;
}

/// Recomputes the checksum of the SCTP packet (common header + chunks) at `sctp`, `len` bytes.
/// The field is stored little-endian (RFC 4960 B: the CRC's bytes in the order computed).
inline void sctp_fix_checksum(uint8_t* sctp, size_t len) noexcept {
    std::memset(sctp + 8, 0, 4);
    const uint32_t c = ~crc32c(sctp, len);
    std::memcpy(sctp + 8, &c, 4);
}

}  // namespace kdp::pkt
