// Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
// Load Balancer", NSDI 2016, §3.4): a lookup table of prime size M in which each backend
// owns about M/N entries, built so that removing one backend moves few other flows.
//
// Built off the workers (api/, control threads); the finished table is immutable and read by
// workers as one array index per new flow. Entries are backend indices + 1 with 0 meaning
// "no backend", so an all-zero table is a Service without endpoints.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace kdp::table {

/// The table size for `backends` backends: the smallest prime in the ladder at or above
/// 100 x backends, never below 251. A prime size makes every skip value coprime with M, so each
/// backend's permutation visits every slot (the paper's requirement); 100x keeps the share
/// of any backend within about 1% of its fair share.
uint32_t maglev_size(size_t backends) noexcept;

/// Builds the table. `keys` identify the backends (a hash of address and port, stable across
/// updates), `weights` (same length, or empty for all 1) scale each backend's share.
/// Deterministic: the same keys and weights in the same order give the same bytes. Callers
/// sort backends first so that the order is canonical.
std::vector<uint16_t> maglev_build(std::span<const uint64_t> keys,
                                   std::span<const uint32_t> weights,
                                   uint32_t size);

}  // namespace kdp::table
