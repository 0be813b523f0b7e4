// The contract between the worker loop (core/) and the stages (stage/): what a stage may see
// and change of the worker that runs it, and how it says where a packet goes next.
//
// A stage is a function over one packet (or a burst) taking a Context, the tables of the
// burst, the mbuf and its PacketMeta; it never sees the Worker. The worker builds a Context
// once per burst from what it owns (core/worker.cc); everything reached through it is owned
// by that one worker (TX buffers, held packets, reply budget, counters) or shared read-only
// (NodeContext), so stages need no locks. Worker-only.
#pragma once

#include <algorithm>
#include <cstdint>

#include "pkt/burst.h"
#include "pkt/counters.h"
#include "stage/node_context.h"

struct rte_mempool;
struct rte_rcu_qsbr;

namespace kdp::dataplane {

/// Packets a worker has decided to send on one port, transmitted when full and at the end of
/// every loop iteration.
struct TxBuffer {
    uint16_t count = 0;
    rte_mbuf* pkts[kBurstSize];
};

/// A packet whose underlay next hop is being resolved; already fully encapsulated except for
/// the outer destination MAC.
struct HeldPacket {
    rte_mbuf* m;
    uint64_t since_tsc;
    uint32_t slot;
    uint16_t in_port;
};

/// A token bucket for the replies a worker sends instead of a packet it refuses (TCP RST, ICMP
/// port unreachable): a flood to a Service without endpoints must not become a flood of
/// answers, to a spoofed source least of all. Linux bounds a host's ICMP errors alike
/// (net.ipv4.icmp_msgs_per_sec 1000, icmp_msgs_burst 50). One per worker: no lock.
struct ReplyBudget {
    static constexpr uint32_t kPerSecond = 1000;
    static constexpr uint32_t kBurst = 50;
    uint64_t last_tsc = 0;  // when `tokens` was last credited
    uint32_t tokens = kBurst;

    /// Takes a token if there is one, crediting those earned since the last credit.
    bool take(uint64_t now, uint64_t hz) noexcept {
        const uint64_t elapsed = now - last_tsc;
        if (elapsed >= hz) {  // a second or more (also the first call): a full bucket
            tokens = kBurst;
            last_tsc = now;
        } else if (const uint64_t earned = elapsed * kPerSecond / hz; earned != 0) {
            tokens = static_cast<uint32_t>(std::min<uint64_t>(kBurst, tokens + earned));
            last_tsc += earned * hz / kPerSecond;
        }
        if (tokens == 0) {
            return false;
        }
        --tokens;
        return true;
    }
};

namespace stage {

/// Where a packet came in: the one fact the stages branch on (Service balancing, policy,
/// routing). The port kind says it, except on the uplink, where the VXLAN decap stage tells
/// overlay traffic from outside clients, and on the host interface, where the source address
/// tells the node's own underlay traffic from its pod-network traffic.
enum class Ingress : uint8_t {
    kPod,           // a pod port
    kHost,          // the host interface, from the gateway address (the node in the pod network)
    kHostUnderlay,  // the host interface, from the node IP (host.node_address): never balanced
    kOverlay,       // decapsulated from another node's VTEP
    kUplink,        // from outside the cluster (NodePort, external and LoadBalancer IPs)
};

/// What a stage says about a packet it has seen: the next stage of its ingress's pipeline
/// (stage/pipeline.h), or kDone once PacketMeta::action holds the decision.
enum class Next : uint8_t {
    kDone,     // decided: sent, dropped, held or consumed (p.action says which)
    kService,  // no tracked connection: the service stage may balance it as a new one
    kRoute,    // route on its destination, as rewritten by NAT if it was
    kEgress,   // a masqueraded connection's packet: out of the uplink as it is
};

/// The worker's packets waiting for ARP: a fixed array sized at set-up (limits.arp_pending).
struct HeldQueue {
    HeldPacket* slots;
    uint32_t capacity;
    uint32_t& count;
};

/// What a stage may use of the worker running it, for one burst.
struct Context {
    const NodeContext& node;
    uint32_t worker;     // index: its conntrack range, its share of the SNAT ports
    rte_rcu_qsbr* qsbr;  // grace-period tokens for conntrack removals (null: no RCU, tests)
    rte_mempool* pool;   // packets the worker originates (ARP requests)
    WorkerCounters& counters;
    TxBuffer* tx;  // [RTE_MAX_ETHPORTS]
    HeldQueue held;
    ReplyBudget& replies;
    uint64_t now;    // TSC of the burst
    uint32_t now_s;  // the same in seconds (conntrack timestamps)

    PortCounters& port_counters(uint16_t port) noexcept { return counters.port[port]; }
    /// Counts a refusal the stage answered (the reply is sent, the packet counted as dropped).
    void count_drop(uint16_t port, DropReason r) noexcept {
        bump(counters.port[port].drops[static_cast<size_t>(r)]);
    }
};

}  // namespace stage
}  // namespace kdp::dataplane
