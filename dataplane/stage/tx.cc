#include "stage/tx.h"

#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_spinlock.h>

#include "common/tsan.h"

namespace kdp::dataplane::stage {

void flush_port(const NodeContext& n,
                uint32_t worker,
                TxBuffer& b,
                uint16_t port,
                PortCounters& counters) noexcept {
    PortRuntime& pr = n.ports->port[port];
    const uint16_t q = static_cast<uint16_t>(worker % pr.nb_txq);
    uint64_t bytes = 0;
    for (uint16_t i = 0; i < b.count; ++i) {
        bytes += b.pkts[i]->pkt_len;
    }
    if (pr.txq_shared) {
        rte_spinlock_lock(&pr.tx_lock);
    }
    // The packets' bytes go to whoever receives from the port (common/tsan.h).
    KDP_TSAN_RELEASE(n.ports);
    const uint16_t sent = rte_eth_tx_burst(port, q, b.pkts, b.count);
    if (pr.txq_shared) {
        rte_spinlock_unlock(&pr.tx_lock);
    }
    for (uint16_t i = sent; i < b.count; ++i) {
        bytes -= b.pkts[i]->pkt_len;
    }
    bump(counters.tx_packets, sent);
    bump(counters.tx_bytes, bytes);
    if (sent < b.count) [[unlikely]] {
        bump(counters.drops[static_cast<size_t>(DropReason::kTxFull)], b.count - sent);
        rte_pktmbuf_free_bulk(b.pkts + sent, b.count - sent);
    }
    b.count = 0;
}

void send_arp_request(Context& c, Ip4 target) noexcept {
    const NodeContext& n = c.node;
    rte_mbuf* m = rte_pktmbuf_alloc(c.pool);
    if (m == nullptr) [[unlikely]] {
        return;  // pool exhausted: the next claim after the retry interval tries again
    }
    constexpr uint16_t kLen = pkt::kEtherHdrLen + pkt::kArpLen;
    auto* d = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, kLen));
    if (d == nullptr) [[unlikely]] {
        rte_pktmbuf_free(m);
        return;
    }
    pkt::write_eth(d, Mac{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}, n.node_mac, pkt::kEtherTypeArp);
    pkt::ArpView{d + pkt::kEtherHdrLen}.set(pkt::kArpOpRequest, n.node_mac, n.node_ip, Mac{},
                                            target);
    tx_enqueue(c, n.uplink_port, m);
}

}  // namespace kdp::dataplane::stage
