// The calling thread's CPU time in TSC cycles, for the in-process benchmarks.
//
// The machine's other jobs may take the CPU away between two reads; a wall-clock TSC delta
// would count that time too, a thread CPU-time delta does not.
#pragma once

#include <time.h>

#include <cstdint>

#include <rte_cycles.h>

namespace kdp::bench {

inline uint64_t clock_ns(clockid_t clock) {
    timespec ts{};
    clock_gettime(clock, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

/// The TSC frequency: DPDK's when the EAL is up, else measured once over 50 ms.
inline double tsc_hz() {
    static const double hz = [] {
        if (rte_get_tsc_hz() != 0) {
            return static_cast<double>(rte_get_tsc_hz());
        }
        const uint64_t t0 = clock_ns(CLOCK_MONOTONIC);
        const uint64_t c0 = rte_rdtsc();
        while (clock_ns(CLOCK_MONOTONIC) - t0 < 50'000'000) {
        }
        return static_cast<double>(rte_rdtsc() - c0) * 1e9 /
               static_cast<double>(clock_ns(CLOCK_MONOTONIC) - t0);
    }();
    return hz;
}

inline uint64_t cpu_cycles() {
    return static_cast<uint64_t>(static_cast<double>(clock_ns(CLOCK_THREAD_CPUTIME_ID)) * tsc_hz() /
                                 1e9);
}

}  // namespace kdp::bench
