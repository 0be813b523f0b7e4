// The worker loop's conntrack expiry pacing (conntrack_tick): entries are examined at a rate
// set by time, one sweep of the worker's range per kConntrackSweepMs, faster when the range
// runs short of free entries, whatever the loop's iteration rate.
#include <gtest/gtest.h>

#include "core/worker.h"

namespace kdp::dataplane {
namespace {

constexpr uint64_t kHz = 1'000'000;  // 1 "TSC tick" = 1 us
constexpr uint64_t kSweep = kHz * kConntrackSweepMs / 1000;

table::CtKey key(uint32_t i) {
    return table::CtKey{to_be32(0x0af40100 + (i & 0xff)),
                        to_be32(0x0a600000 + (i >> 8)),
                        to_be16(static_cast<uint16_t>(10000 + i % 50000)),
                        to_be16(80),
                        17,
                        0,
                        0};
}

struct Loop {
    table::Conntrack ct;
    NodeContext node;
    Worker w;
    explicit Loop(uint32_t capacity) : ct(capacity, 1) {
        node.tsc_hz = kHz;
        node.conntrack = &ct;
        w.node = &node;
    }
    // `n` UDP flows seen last at second 1 (unreplied: 30 s timeout).
    void fill(uint32_t n) {
        for (uint32_t i = 0; i < n; ++i) {
            const table::CtKey k = key(i);
            ASSERT_NE(ct.insert(0, k, k.reversed(), 1, [](table::CtEntry&) {}), table::kCtNone);
        }
    }
    // Ticks every `step` ticks from `from` to `to` (TSC); returns the connections left.
    uint32_t run(uint64_t from, uint64_t to, uint64_t step) {
        for (uint64_t now = from; now <= to; now += step) {
            conntrack_tick(w, nullptr, now);
        }
        return ct.size();
    }
};

TEST(ConntrackPacing, OneSweepPerPeriodAtAnyIterationRate) {
    // From a busy loop (an iteration every 10 us) to a sleeping one (every 2 ms, twice the
    // idle back-off's longest sleep).
    for (const uint64_t step : {uint64_t{10}, uint64_t{1000}, uint64_t{2000}}) {
        Loop l(100'000);
        l.fill(50'000);
        const uint64_t t0 = 100 * kHz;  // second 100: every flow is 99 s idle, past 30 s
        l.run(t0, t0, step);            // the first tick only starts the clock
        // A quarter of a sweep examines about a quarter of the range (50,000 of the first
        // 100,000 entries are live, and the scan starts at the beginning of the range).
        const uint32_t left = l.run(t0 + step, t0 + kSweep / 4, step);
        EXPECT_NEAR(static_cast<double>(left), 25'000.0, 25'000.0 * 0.1) << "step " << step;
        // After one whole sweep (and a little for the batching) nothing expired is left.
        EXPECT_EQ(l.run(t0 + kSweep / 4 + step, t0 + kSweep + kSweep / 20, step), 0u)
            << "step " << step;
    }
}

TEST(ConntrackPacing, IdleEntriesAreKeptAndTheScanWraps) {
    Loop l(4096);
    l.fill(1000);
    const uint64_t t0 = 10 * kHz;  // 9 s idle: within the 30 s timeout
    EXPECT_EQ(l.run(t0, t0 + 3 * kSweep, 100), 1000u);
    EXPECT_EQ(l.run(t0 + 3 * kSweep + 100, 40 * kHz + 2 * kSweep, 100), 0u);
}

TEST(ConntrackPacing, FasterUnderPressure) {
    // 15/16 of the range in use, all expired: fewer than 1/8 free, so the sweep runs
    // kConntrackPressureSpeedup times faster until 1/8 is free again. At the normal pace a
    // 30th of a period examines ~530 entries; under pressure the 1,000 removals that bring the
    // free count back to 1/8 take about a 60th.
    Loop l(16'000);
    l.fill(15'000);
    const uint64_t t0 = 100 * kHz;
    l.run(t0, t0, 100);
    EXPECT_LE(l.run(t0 + 100, t0 + kSweep / 30, 100), 14'000u);
    EXPECT_GE(l.ct.free_in_range(0), 2000u);
}

TEST(ConntrackPacing, ALongStallIsNotAFlood) {
    // A loop that stalled for a minute does not scan more than one range's worth at once, and
    // no call examines more than kConntrackScanMax entries.
    Loop l(1u << 16);
    l.fill(1u << 15);
    const uint64_t t0 = 100 * kHz;
    l.run(t0, t0, 1);
    conntrack_tick(l.w, nullptr, t0 + 60 * kHz);
    EXPECT_GE(l.ct.size(), (1u << 15) - kConntrackScanMax);
}

}  // namespace
}  // namespace kdp::dataplane
