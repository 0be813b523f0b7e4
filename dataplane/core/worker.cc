#include "core/worker.h"

#include <algorithm>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>

#include "common/tsan.h"
#include "stage/arp.h"
#include "stage/nat.h"
#include "stage/pipeline.h"
#include "stage/tx.h"
#include "stage/vxlan_decap.h"

namespace kdp::dataplane {

namespace {

void count_drop(Worker& w, const PacketMeta& p) noexcept {
    bump(w.port_counters(p.in_port).drops[static_cast<size_t>(p.reason)]);
}

}  // namespace

void process_burst(Worker& w, const table::TableSet* t, uint16_t port, Burst& b, uint64_t now) {
    const NodeContext& n = *w.node;
    const PortKind kind = n.ports->port[port].kind;
    w.now_tsc = now;
    PortCounters& rxc = w.port_counters(port);
    uint64_t rx_bytes = 0;

    // Parse every packet first: the headers of the whole burst are then warm for the stages.
    for (uint16_t i = 0; i < b.count; ++i) {
        if (i + 1 < b.count) {
            rte_prefetch0(rte_pktmbuf_mtod(b.pkts[i + 1], void*));
        }
        rte_mbuf* m = b.pkts[i];
        PacketMeta& p = b.meta[i];
        p = PacketMeta{};
        p.in_port = port;
        rx_bytes += m->pkt_len;
        if (m->nb_segs != 1) [[unlikely]] {
            p.drop(DropReason::kMultiSegment);
            continue;
        }
        const uint64_t ck = m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK;
        if (ck == RTE_MBUF_F_RX_IP_CKSUM_BAD) [[unlikely]] {
            p.drop(DropReason::kIpChecksum);
            continue;
        }
        const pkt::ParseOptions opt{ck != RTE_MBUF_F_RX_IP_CKSUM_GOOD};
        const DropReason r =
            pkt::parse_frame(rte_pktmbuf_mtod(m, const uint8_t*), m->data_len, p, opt);
        if (r != DropReason::kNone) [[unlikely]] {
            p.drop(r);
            continue;
        }
        if (t == nullptr) [[unlikely]] {
            p.drop(DropReason::kNotReady);
            continue;
        }
        if (p.ether_type == pkt::kEtherTypeIpv4) {
            stage::trim_to_l3(m, p);
        }
    }
    bump(rxc.rx_packets, b.count);
    bump(rxc.rx_bytes, rx_bytes);
    w.lap(Phase::kParse);

    // Stages: the burst comes from one port, so the port kind picks the path once per burst.
    // Every TCP/UDP/SCTP packet looks its connection up: the bucket loads of the whole burst
    // are started first (on the uplink once the overlay is stripped: the inner flow is the
    // key), so that their cache misses overlap instead of queueing one by one.
    // The hash is kept for the stages (stage::ct_key makes the same key for these protocols),
    // and once the buckets are warm a second pass finds each packet's slot and starts the load
    // of its entry.
    const table::Conntrack& ct = *n.conntrack;
    const auto prefetch_ct = [&](PacketMeta& p) {
        if (p.pending() && (p.flags & pkt_flag::kL4) != 0 && p.tuple.proto != pkt::kProtoIcmp) {
            p.ct_hash = table::CtKey{p.tuple.src.be,
                                     p.tuple.dst.be,
                                     p.tuple.sport,
                                     p.tuple.dport,
                                     p.tuple.proto,
                                     0,
                                     0}
                            .hash();
            ct.prefetch(p.ct_hash);
        }
    };
    const auto probe_ct = [&]() {
        for (uint16_t i = 0; i < b.count; ++i) {
            PacketMeta& p = b.meta[i];
            if (p.ct_hash != 0 && p.pending()) {
                p.ct_hint = ct.probe(p.ct_hash);
            }
        }
    };
    stage::Context c = w.stage_context(now);
    if (kind == PortKind::kUplink) {
        uint32_t overlay = 0;  // bit i: packet i was decapsulated
        static_assert(kBurstSize <= 32);
        for (uint16_t i = 0; i < b.count; ++i) {
            PacketMeta& p = b.meta[i];
            if (p.pending() && p.ether_type == pkt::kEtherTypeIpv4 &&
                stage::vxlan_decap(n, b.pkts[i], p)) {
                overlay |= 1u << i;
            }
            prefetch_ct(p);
        }
        probe_ct();
        w.lap(Phase::kClassify);
        for (uint16_t i = 0; i < b.count; ++i) {
            PacketMeta& p = b.meta[i];
            if (!p.pending()) {
                continue;
            }
            if (overlay & (1u << i)) {
                stage::from_overlay(c, *t, b.pkts[i], p);
            } else if (p.ether_type == pkt::kEtherTypeArp) {
                stage::arp_from_uplink(n, b.pkts[i], p, now);
            } else {
                stage::from_uplink(c, *t, b.pkts[i], p);
            }
        }
    } else {
        for (uint16_t i = 0; i < b.count; ++i) {
            prefetch_ct(b.meta[i]);
        }
        probe_ct();
        w.lap(Phase::kClassify);
        const bool host = kind == PortKind::kHost;
        for (uint16_t i = 0; i < b.count; ++i) {
            PacketMeta& p = b.meta[i];
            if (!p.pending()) {
                continue;
            }
            if (host) [[unlikely]] {
                if (p.ether_type == pkt::kEtherTypeArp) {
                    stage::arp_from_host(n, b.pkts[i], p);
                } else {
                    stage::from_host(c, *t, b.pkts[i], p);
                }
            } else if (p.ether_type == pkt::kEtherTypeArp) {
                stage::arp_from_pod(n, *t, b.pkts[i], p);
            } else {
                stage::from_pod(c, *t, b.pkts[i], p);
            }
        }
    }
    w.lap(Phase::kStages);

    // Dispatch once: TX buffers for the forwarded, one bulk free for the rest.
    rte_mbuf* to_free[kBurstSize];
    uint16_t nb_free = 0;
    for (uint16_t i = 0; i < b.count; ++i) {
        PacketMeta& p = b.meta[i];
        switch (p.action) {
            case Action::kTx: {
                TxBuffer& tb = w.tx[p.out_port];
                tb.pkts[tb.count++] = b.pkts[i];
                if (tb.count == kBurstSize) {  // as tx_enqueue, the transmit counted as such
                    w.lap(Phase::kDispatch);
                    stage::flush_port(n, w.index, tb, p.out_port, w.port_counters(p.out_port));
                    w.lap(Phase::kTx);
                }
                break;
            }
            case Action::kHeld:
                break;
            case Action::kPending:
                p.drop(DropReason::kNoRoute);  // no stage decided: never forward by default
                [[fallthrough]];
            case Action::kDrop:
                count_drop(w, p);
                [[fallthrough]];
            case Action::kConsumed:
                to_free[nb_free++] = b.pkts[i];
                break;
        }
    }
    if (nb_free != 0) {
        rte_pktmbuf_free_bulk(to_free, nb_free);
    }
    w.lap(Phase::kDispatch);
}

void service_held(Worker& w, uint64_t now) {
    const NodeContext& n = *w.node;
    stage::Context c = w.stage_context(now);
    uint32_t keep = 0;
    for (uint32_t i = 0; i < w.held_count; ++i) {
        HeldPacket h = w.held[i];
        const uint64_t st = n.neighbors->mac_state(h.slot);
        if (st & table::NeighborTable::kValid) {
            pkt::write_eth(rte_pktmbuf_mtod(h.m, uint8_t*), Mac::unpack(st), n.node_mac,
                           pkt::kEtherTypeIpv4);
            stage::tx_enqueue(c, n.uplink_port, h.m);
        } else if (now - h.since_tsc > n.arp_timeout_tsc) {
            bump(w.port_counters(h.in_port)
                     .drops[static_cast<size_t>(DropReason::kNeighborTimeout)]);
            rte_pktmbuf_free(h.m);
        } else {
            if (n.neighbors->claim_request(h.slot, now, n.arp_retry_tsc, n.arp_stale_tsc)) {
                stage::send_arp_request(c, n.neighbors->ip(h.slot));
            }
            w.held[keep++] = h;
        }
    }
    w.held_count = keep;
}

void conntrack_maintenance(Worker& w, const table::TableSet* t, uint64_t now, uint32_t budget) {
    table::Conntrack& ct = *w.node->conntrack;
    const auto now_s = static_cast<uint32_t>(now / w.node->tsc_hz);
    const uint64_t token = w.qsbr != nullptr ? rte_rcu_qsbr_start(w.qsbr) : 0;
    ct.expire(w.index, now_s, budget, token, [t](const table::CtEntry& e) {
        // A load-balanced connection whose backend left: clear it, so that the next packet
        // picks a live backend instead of being black-holed (UDP) or reset forever (TCP).
        return t != nullptr && (e.nat & stage::kNatDnat) &&
               !t->backend_alive(e.service, Ip4{e.reply.src}, e.reply.sport, e.backend);
    });
    ct.reclaim(w.index, [&w](uint64_t tok) {
        return w.qsbr == nullptr || rte_rcu_qsbr_check(w.qsbr, tok, false) == 1;
    });
}

void conntrack_tick(Worker& w, const table::TableSet* t, uint64_t now) {
    table::Conntrack& ct = *w.node->conntrack;
    const uint64_t range = ct.range_size(w.index);
    if (w.ct_scan_tsc == 0 || now < w.ct_scan_tsc || range == 0) {
        w.ct_scan_tsc = now;
        return;
    }
    uint64_t sweep_tsc = w.node->tsc_hz * kConntrackSweepMs / 1000;
    if (ct.free_in_range(w.index) < range / 8) {
        sweep_tsc /= kConntrackPressureSpeedup;
    }
    // Entries due for the time elapsed (at most one sweep's worth), fractions carried over.
    const uint64_t elapsed = std::min(now - w.ct_scan_tsc, sweep_tsc);
    w.ct_scan_tsc = now;
    w.ct_scan_due =
        std::min(w.ct_scan_due + static_cast<double>(range) * static_cast<double>(elapsed) /
                                     static_cast<double>(std::max<uint64_t>(sweep_tsc, 1)),
                 static_cast<double>(range));
    if (w.ct_scan_due < kConntrackScanMin && w.ct_scan_due < static_cast<double>(range)) {
        return;
    }
    const auto budget = static_cast<uint32_t>(std::min<double>(w.ct_scan_due, kConntrackScanMax));
    w.ct_scan_due -= budget;
    conntrack_maintenance(w, t, now, budget);
}

void flush_tx(Worker& w) {
    for (uint16_t port = 0; port < RTE_MAX_ETHPORTS; ++port) {
        if (w.tx[port].count != 0) {
            stage::flush_port(*w.node, w.index, w.tx[port], port, w.port_counters(port));
        }
    }
}

int worker_main(void* arg) {
    Worker& w = *static_cast<Worker*>(arg);
    const NodeContext& n = *w.node;
    rte_rcu_qsbr_thread_register(w.qsbr, w.index);
    rte_rcu_qsbr_thread_online(w.qsbr, w.index);
    const uint64_t start = rte_rdtsc();
    uint32_t idle_polls = 0;
    uint32_t sleep_us = w.idle.sleep_us;
    while (!w.stop->load(std::memory_order_relaxed)) {
        const uint64_t t0 = rte_rdtsc();
        w.lap_tsc = t0;
        const table::TableSet* t = n.tables->current.load(std::memory_order_acquire);
        uint32_t got = 0;
        const std::vector<RxQueue>* live = w.live_rxqs.load(std::memory_order_acquire);
        for (const RxQueue& rq : live != nullptr ? *live : w.rxqs) {
            const uint16_t nb = rte_eth_rx_burst(rq.port, rq.queue, w.burst.pkts, kBurstSize);
            if (nb == 0) {
                continue;
            }
            KDP_TSAN_ACQUIRE(n.ports);  // what the sender wrote into them (common/tsan.h)
            got += nb;
            w.lap(Phase::kRx);  // an empty poll before this one counts here too
            w.burst.count = nb;
            process_burst(w, t, rq.port, w.burst, t0);
        }
        if (w.held_count != 0) {
            service_held(w, t0);
        }
        flush_tx(w);
        // The mbufs freed in this iteration may be another thread's next allocation, through
        // the mempool's ring (common/tsan.h).
        KDP_TSAN_RELEASE(n.ports);
        if (got != 0) {
            w.lap(Phase::kTx);
        }
        conntrack_tick(w, t, t0);
        rte_rcu_qsbr_quiescent(w.qsbr, w.index);
        const uint64_t t1 = rte_rdtsc();
        bump(w.counters.loops);
        w.counters.total_cycles.store(t1 - start, std::memory_order_relaxed);
        if (got != 0) {
            bump(w.counters.phase_cycles[static_cast<size_t>(Phase::kHousekeeping)],
                 t1 - w.lap_tsc);
            bump(w.counters.busy_cycles, t1 - t0);
            idle_polls = 0;
            sleep_us = w.idle.sleep_us;
        } else if (++idle_polls > w.idle.spin_polls && w.held_count == 0 && sleep_us != 0) {
            // Idle: let a neighbour on a shared CPU run. Offline first, so that a table update
            // does not wait for this sleep.
            rte_rcu_qsbr_thread_offline(w.qsbr, w.index);
            rte_delay_us_sleep(sleep_us);
            rte_rcu_qsbr_thread_online(w.qsbr, w.index);
            sleep_us = std::min(sleep_us * 2, w.idle.max_sleep_us);
        }
    }
    // Give back everything this worker holds.
    for (uint32_t i = 0; i < w.held_count; ++i) {
        rte_pktmbuf_free(w.held[i].m);
    }
    w.held_count = 0;
    flush_tx(w);
    rte_rcu_qsbr_thread_offline(w.qsbr, w.index);
    rte_rcu_qsbr_thread_unregister(w.qsbr, w.index);
    KDP_TSAN_RELEASE(n.ports);  // all of the above, to whoever joins this lcore
    return 0;
}

}  // namespace kdp::dataplane
