// NeighborTable: the ARP cache of the underlay (remote VTEPs and the underlay gateway).
//
// Who writes: slots are created by the control thread (TableManager) for the next hops a
// table version needs, before that version is published, and by workers for on-link hosts
// outside the cluster that masqueraded traffic goes to; creation claims a free slot with one
// CAS on its address, so two creators of one address may take two slots, of which lookups
// always find the same (first) one. A slot is never removed or reused while the process runs,
// so an index held by a worker or by a packet waiting for resolution stays valid. Resolution state
// (MAC, timestamps) is written by any worker that sees an ARP from that address, with single atomic
// stores; readers load the MAC with one atomic load. No locks anywhere. Memory: fixed at
// construction from limits.max_routes; freed at exit.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "common/net.h"
#include "table/flat_map.h"

namespace kdp::table {

inline constexpr uint32_t kNoSlot = ~uint32_t{0};

class NeighborTable {
public:
    explicit NeighborTable(uint32_t max_entries) {
        uint32_t cap = 16;
        while (cap < max_entries * 2u) {
            cap <<= 1;
        }
        cap_ = cap;
        entries_ = std::make_unique<Entry[]>(cap);
    }

    /// Control thread: a table with `o`'s slots at the same indices and their state as it is
    /// now, for a trace to run against without marking the node's (ARP request times, slots
    /// for on-link hosts).
    static std::unique_ptr<NeighborTable> copy_of(const NeighborTable& o) {
        auto t = std::make_unique<NeighborTable>(o.cap_ / 2);
        for (uint32_t i = 0; i < o.cap_; ++i) {
            const Entry& e = o.entries_[i];
            t->entries_[i].ip_be.store(e.ip_be.load(std::memory_order_acquire));
            t->entries_[i].mac.store(e.mac.load(std::memory_order_acquire));
            t->entries_[i].confirmed_tsc.store(e.confirmed_tsc.load(std::memory_order_relaxed));
            t->entries_[i].requested_tsc.store(e.requested_tsc.load(std::memory_order_relaxed));
        }
        t->used_.store(o.used_.load(std::memory_order_relaxed));
        return t;
    }

    /// Any thread: the slot for `ip`, created if absent; kNoSlot when half the table is used
    /// (the bound that keeps probe sequences short).
    uint32_t slot_for(Ip4 ip) noexcept {
        for (uint32_t n = 0, i = start(ip); n < cap_; ++n, i = (i + 1) & (cap_ - 1)) {
            uint32_t k = entries_[i].ip_be.load(std::memory_order_acquire);
            if (k == ip.be) {
                return i;
            }
            if (k == 0) {
                if (used_.load(std::memory_order_relaxed) * 2 >= cap_) {
                    return kNoSlot;
                }
                if (entries_[i].ip_be.compare_exchange_strong(k, ip.be,
                                                              std::memory_order_acq_rel)) {
                    used_.fetch_add(1, std::memory_order_relaxed);
                    return i;
                }
                if (k == ip.be) {
                    return i;  // another creator won with the same address
                }
            }
        }
        return kNoSlot;
    }

    /// Any thread: the slot of `ip`, or kNoSlot.
    uint32_t find(Ip4 ip) const noexcept {
        if (ip.be == 0) {
            return kNoSlot;
        }
        for (uint32_t n = 0, i = start(ip); n < cap_; ++n, i = (i + 1) & (cap_ - 1)) {
            const uint32_t k = entries_[i].ip_be.load(std::memory_order_acquire);
            if (k == ip.be) {
                return i;
            }
            if (k == 0) {
                return kNoSlot;
            }
        }
        return kNoSlot;
    }

    Ip4 ip(uint32_t slot) const noexcept {
        return Ip4{entries_[slot].ip_be.load(std::memory_order_relaxed)};
    }

    /// The resolved MAC packed as Mac::pack() | kValid, or 0 while unresolved.
    uint64_t mac_state(uint32_t slot) const noexcept {
        return entries_[slot].mac.load(std::memory_order_acquire);
    }
    static constexpr uint64_t kValid = uint64_t{1} << 63;

    /// A worker saw `mac` answer for this slot's address at `now_tsc`.
    void learn(uint32_t slot, const Mac& mac, uint64_t now_tsc) noexcept {
        Entry& e = entries_[slot];
        const uint64_t v = mac.pack() | kValid;
        if (e.mac.load(std::memory_order_relaxed) != v) {
            e.mac.store(v, std::memory_order_release);
        }
        e.confirmed_tsc.store(now_tsc, std::memory_order_relaxed);
    }

    /// True for exactly one caller per `interval_tsc` while the entry is unresolved or older
    /// than `stale_tsc`: that caller sends the ARP request.
    bool claim_request(uint32_t slot,
                       uint64_t now_tsc,
                       uint64_t interval_tsc,
                       uint64_t stale_tsc) noexcept {
        Entry& e = entries_[slot];
        const bool resolved = (e.mac.load(std::memory_order_relaxed) & kValid) != 0;
        if (resolved && now_tsc - e.confirmed_tsc.load(std::memory_order_relaxed) < stale_tsc) {
            return false;
        }
        uint64_t last = e.requested_tsc.load(std::memory_order_relaxed);
        if (last != 0 && now_tsc - last < interval_tsc) {
            return false;
        }
        return e.requested_tsc.compare_exchange_strong(last, now_tsc, std::memory_order_relaxed);
    }

    uint64_t confirmed_tsc(uint32_t slot) const noexcept {
        return entries_[slot].confirmed_tsc.load(std::memory_order_relaxed);
    }
    uint64_t requested_tsc(uint32_t slot) const noexcept {
        return entries_[slot].requested_tsc.load(std::memory_order_relaxed);
    }
    uint32_t capacity() const noexcept { return cap_; }

private:
    struct alignas(64) Entry {
        std::atomic<uint32_t> ip_be{0};  // 0: free (0.0.0.0 is never a next hop)
        std::atomic<uint64_t> mac{0};
        std::atomic<uint64_t> confirmed_tsc{0};
        std::atomic<uint64_t> requested_tsc{0};
    };
    uint32_t start(Ip4 ip) const noexcept {
        return static_cast<uint32_t>(mix64(ip.be)) & (cap_ - 1);
    }
    std::unique_ptr<Entry[]> entries_;
    uint32_t cap_ = 0;
    std::atomic<uint32_t> used_{0};
};

}  // namespace kdp::table
