// DropReason: the enum and names generated from drop_reasons.def. Safe on any thread.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace kdp::dataplane {

enum class DropReason : uint8_t {
    kNone = 0,
#define DP_DROP(e, label, help) e,
#include "pkt/drop_reasons.def"
#undef DP_DROP
    kCount,
};

inline constexpr size_t kDropReasonCount = static_cast<size_t>(DropReason::kCount);

struct DropReasonInfo {
    std::string_view label;
    std::string_view help;
};

inline constexpr std::array<DropReasonInfo, kDropReasonCount> kDropReasonInfo{{
    {"none", "not dropped"},
#define DP_DROP(e, label, help) {label, help},
#include "pkt/drop_reasons.def"
#undef DP_DROP
}};

constexpr std::string_view drop_reason_label(DropReason r) noexcept {
    return kDropReasonInfo[static_cast<size_t>(r)].label;
}

}  // namespace kdp::dataplane
