// Phase: the parts of a worker loop iteration whose cycles the worker counts (counters.h).
// No DPDK here: the API side names them too.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace kdp::dataplane {

/// Where a busy loop iteration's cycles go, measured with one TSC read per phase boundary per
/// burst (not per packet: about 5 cycles a packet at full bursts). Phase cycles divided by the
/// worker's received packets is the per-packet cost of each phase; their sum is about
/// busy_cycles.
enum class Phase : uint8_t {
    kRx,            // rte_eth_rx_burst (a vhost-user port copies the packets in here)
    kParse,         // header parsing and checks
    kClassify,      // overlay decapsulation, conntrack bucket prefetch
    kStages,        // conntrack, Services, NetworkPolicy, routing, encapsulation
    kDispatch,      // TX buffering, freeing what was dropped or consumed
    kTx,            // rte_eth_tx_burst (a vhost-user port copies the packets out here), and
                    // releasing packets held for an ARP answer
    kHousekeeping,  // conntrack expiry, RCU quiescent state
    kCount,
};

inline constexpr size_t kPhaseCount = static_cast<size_t>(Phase::kCount);

inline constexpr std::array<std::string_view, kPhaseCount> kPhaseNames{
    "rx", "parse", "classify", "stages", "dispatch", "tx", "housekeeping"};

}  // namespace kdp::dataplane
