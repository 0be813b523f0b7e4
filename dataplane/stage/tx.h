// The transmit side of the stages: a worker's TX buffers, ARP requests it originates, and the
// underlay next hop (send now, or hold until ARP answers). Worker-only: everything it touches
// belongs to the worker running the stage (Context).
#pragma once

#include <cstdint>

#include "pkt/eth.h"
#include "stage/context.h"

namespace kdp::dataplane::stage {

/// Transmits port `port`'s buffer `b` on this worker's TX queue; what the port does not take is
/// counted as kTxFull and freed. The buffer is empty afterwards.
void flush_port(const NodeContext& n,
                uint32_t worker,
                TxBuffer& b,
                uint16_t port,
                PortCounters& counters) noexcept;

/// Queues `m` for transmission on `port` in the worker's TX buffer (flushed when full and at
/// the end of every loop iteration).
inline void tx_enqueue(Context& c, uint16_t port, rte_mbuf* m) noexcept {
    TxBuffer& b = c.tx[port];
    b.pkts[b.count++] = m;
    if (b.count == kBurstSize) {
        flush_port(c.node, c.worker, b, port, c.port_counters(port));  // keeps it bounded
    }
}

/// Sends an ARP request for `target` out of the uplink from the worker's own pool. Called only
/// by the one worker that won NeighborTable::claim_request, so at most one request per
/// address per retry interval leaves the node.
void send_arp_request(Context& c, Ip4 target) noexcept;

/// Sends a frame whose Ethernet header starts at `eth` out of the uplink to the underlay
/// neighbour in `slot`: at once when its MAC is known, else held (bounded) until ARP answers.
inline void send_to_neighbor(
    Context& c, rte_mbuf* m, PacketMeta& p, uint8_t* eth, uint32_t slot) noexcept {
    const NodeContext& n = c.node;
    table::NeighborTable& nt = *n.neighbors;
    if (nt.claim_request(slot, c.now, n.arp_retry_tsc, n.arp_stale_tsc)) [[unlikely]] {
        send_arp_request(c, nt.ip(slot));
    }
    const uint64_t st = nt.mac_state(slot);
    if (st & table::NeighborTable::kValid) [[likely]] {
        pkt::write_eth(eth, Mac::unpack(st), n.node_mac, pkt::kEtherTypeIpv4);
        p.tx(n.uplink_port);
        return;
    }
    if (c.held.count == c.held.capacity) {
        p.drop(DropReason::kNeighborQueueFull);
        return;
    }
    pkt::write_eth(eth, Mac{}, n.node_mac, pkt::kEtherTypeIpv4);
    c.held.slots[c.held.count++] = HeldPacket{m, c.now, slot, p.in_port};
    p.action = Action::kHeld;
}

}  // namespace kdp::dataplane::stage
