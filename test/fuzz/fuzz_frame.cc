// The frame parser (pkt/parse.cc) on arbitrary bytes: never reads outside the frame (the
// sanitizers watch), and what it accepts is self-consistent: the headers it found lie inside
// the frame, in order.
#include <cstring>
#include <vector>

#include "fuzz.h"
#include "pkt/parse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 16384) {
        return 0;
    }
    // An exact-size heap copy, so that a read one past the end is an ASan report.
    std::vector<uint8_t> frame(data, data + size);
    for (const bool verify : {true, false}) {
        kdp::dataplane::PacketMeta m;
        const auto r = kdp::pkt::parse_frame(frame.data(), static_cast<uint32_t>(frame.size()), m,
                                             kdp::pkt::ParseOptions{.verify_ip_checksum = verify});
        if (r != kdp::dataplane::DropReason::kNone) {
            continue;
        }
        FUZZ_CHECK(m.l3_off >= 14 && m.l3_off <= frame.size());
        if (m.ether_type == 0x0800) {
            FUZZ_CHECK(m.l3_len >= 20);
            FUZZ_CHECK(size_t{m.l3_off} + m.l3_len <= frame.size());
            if ((m.flags & kdp::dataplane::pkt_flag::kL4) != 0) {
                FUZZ_CHECK(m.l4_off >= m.l3_off + 20);
                FUZZ_CHECK(m.l4_off <= size_t{m.l3_off} + m.l3_len);
            }
        }
    }
    return 0;
}
