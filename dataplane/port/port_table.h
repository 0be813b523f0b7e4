// PortTable: what workers need to know about each DPDK port, indexed by port id.
//
// Written by the main thread while setting ports up, before workers launch (and, for ports
// added at run time, before the port is handed to a worker through its poll list). Workers
// read kind/nb_txq, and read and update peer_mac (the pod's MAC, learned from its frames)
// with relaxed atomics: a stale MAC for one packet is harmless, and there is no other shared
// state here. tx_lock is taken only on ports with fewer TX queues than workers.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include <rte_build_config.h>
#include <rte_spinlock.h>

#include "common/net.h"

namespace kdp::dataplane {

/// kHost: the node's host interface, a TAP to the node's own kernel (config `host`).
enum class PortKind : uint8_t { kNone, kUplink, kPod, kHost };

struct alignas(64) PortRuntime {
    PortKind kind = PortKind::kNone;
    uint16_t nb_rxq = 0;
    uint16_t nb_txq = 0;
    bool txq_shared = false;  // nb_txq < workers: TX under tx_lock
    // Pod and host ports: Mac::pack() of the peer, 0 until known.
    std::atomic<uint64_t> peer_mac{0};
    rte_spinlock_t tx_lock = RTE_SPINLOCK_INITIALIZER;
};

struct PortTable {
    std::array<PortRuntime, RTE_MAX_ETHPORTS> port;
};

}  // namespace kdp::dataplane
