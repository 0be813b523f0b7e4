#include "table/conntrack.h"

#include <algorithm>
#include <utility>

#include <rte_prefetch.h>

#include "pkt/hdr.h"
#include "pkt/parse.h"

namespace kdp::table {

Conntrack::Conntrack(uint32_t capacity,
                     uint32_t workers,
                     CtTimeouts timeouts,
                     uint32_t source_share)
    : capacity_(capacity), timeouts_(timeouts) {
    // Two slots per connection at most half full: 8-slot buckets, bucket count a power of two
    // with at least 4 slots per connection (a load of 50% keeps two-choice inserts from
    // failing before the entry array is exhausted).
    uint32_t buckets = 1;
    while (uint64_t{buckets} * kSlots < uint64_t{capacity} * 4) {
        buckets <<= 1;
    }
    mask_ = buckets - 1;
    buckets_ = HugeArray<Bucket>(buckets);
    for (uint32_t b = 0; b < buckets; ++b) {
        for (auto& s : buckets_[b].slot) {
            s.store(0, std::memory_order_relaxed);
        }
    }
    entries_ = HugeArray<CtEntry>(capacity);
    live_ = std::make_unique<std::atomic<uint8_t>[]>(capacity);  // value-initialised: all 0
    count_ = std::make_unique<PaddedCount[]>(workers);
    share_ = std::make_unique<std::atomic<uint32_t>[]>(size_t{workers} * kShareBuckets);
    for (size_t i = 0; i < size_t{workers} * kShareBuckets; ++i) {
        share_[i].store(0, std::memory_order_relaxed);
    }
    source_share = std::clamp(source_share, 1u, 100u);
    ranges_.resize(workers);
    const uint32_t per = workers == 0 ? 0 : capacity / workers;
    for (uint32_t w = 0; w < workers; ++w) {
        Range& r = ranges_[w];
        r.begin = w * per;
        r.end = w + 1 == workers ? capacity : (w + 1) * per;
        r.scan = r.begin;
        const uint32_t n = r.end - r.begin;
        r.free = std::make_unique<uint32_t[]>(n);
        r.deferred = std::make_unique<Deferred[]>(n);
        // Hand out low indexes first (a stack, popped from the end).
        for (uint32_t i = 0; i < n; ++i) {
            r.free[i] = r.end - 1 - i;
        }
        r.free_count = n;
        share_limit_.push_back(
            static_cast<uint32_t>(std::max<uint64_t>(1, uint64_t{n} * source_share / 100)));
    }
}

void Conntrack::prefetch(uint64_t hash) const noexcept {
    rte_prefetch0(&buckets_[bucket1(hash)]);  // keys go to their first bucket first (publish)
}

void Conntrack::prefetch_slots(uint32_t idx) const noexcept {
    // Removal looks in both buckets of each key.
    const CtEntry& e = entries_[idx];
    const auto both = [&](uint64_t h) {
        rte_prefetch0(&buckets_[bucket1(h)]);
        rte_prefetch0(&buckets_[bucket2(h)]);
    };
    both(e.orig.hash());
    if (has_reply_key(e)) {
        both(e.reply.hash());
    }
}

uint64_t Conntrack::probe(uint64_t hash) const noexcept {
    const uint64_t sig = (hash >> 48) << 48;
    const Bucket& bk = buckets_[bucket1(hash)];
    for (uint32_t i = 0; i < kSlots; ++i) {
        const uint64_t v = bk.slot[i].load(std::memory_order_acquire);
        if (v != 0 && (v & 0xffff000000000000ull) == sig) {
            rte_prefetch0(&entries_[static_cast<uint32_t>(v & 0xffffffffu) - 1]);
            return v;
        }
    }
    // Not in its first bucket (an overflow, or a new connection): the stage's lookup will
    // read the second one.
    rte_prefetch0(&buckets_[bucket2(hash)]);
    return 0;
}

CtHit Conntrack::lookup(const CtKey& key, uint64_t hash) const noexcept {
    const uint64_t sig = (hash >> 48) << 48;
    for (const uint32_t b : {bucket1(hash), bucket2(hash)}) {
        const Bucket& bk = buckets_[b];
        for (uint32_t i = 0; i < kSlots; ++i) {
            const uint64_t v = bk.slot[i].load(std::memory_order_acquire);
            if (v == 0 || (v & 0xffff000000000000ull) != sig) {
                continue;
            }
            const CtHit hit = confirm(key, v);
            if (hit.index != kCtNone) {
                return hit;
            }
        }
    }
    return CtHit{kCtNone, CtDir::kOrig};
}

CtInsertFail Conntrack::publish(const CtKey& k, uint32_t idx, CtDir dir) noexcept {
    const uint64_t h = k.hash();
    const uint64_t v = slot_value(h, idx, dir);
    const uint64_t sig = (h >> 48) << 48;
    // The first bucket while it has two free slots, else the emptier of the two: most keys
    // are then in their first bucket, the only one a burst prefetches (one DRAM line less per
    // lookup), and near-full first buckets still spill as with two choices, which keeps every
    // insert succeeding up to the designed half load (greedy first-bucket filling to the last
    // slot overflowed at 30% load). The same pass over both buckets finds a slot that already
    // holds the key (its signature first, then the entry's key: a rare compare).
    uint32_t b[2] = {bucket1(h), bucket2(h)};
    bool clash = false;
    auto used = [&](uint32_t bi) {
        uint32_t n = 0;
        for (const auto& s : buckets_[bi].slot) {
            const uint64_t x = s.load(std::memory_order_acquire);
            n += x != 0;
            if (x != 0 && (x & 0xffff000000000000ull) == sig && confirm(k, x).index != kCtNone) {
                clash = true;
            }
        }
        return n;
    };
    const uint32_t used0 = used(b[0]);
    const uint32_t used1 = used(b[1]);
    if (clash) {
        return CtInsertFail::kClash;
    }
    if (used0 >= kSlots - 2 && used1 < used0) {
        std::swap(b[0], b[1]);
    }
    for (const uint32_t bi : b) {
        for (auto& s : buckets_[bi].slot) {
            uint64_t expected = 0;
            if (s.load(std::memory_order_relaxed) == 0 &&
                s.compare_exchange_strong(expected, v, std::memory_order_release,
                                          std::memory_order_relaxed)) {
                return CtInsertFail::kNone;
            }
        }
    }
    return CtInsertFail::kFull;
}

void Conntrack::unpublish(const CtKey& k, uint32_t idx, CtDir dir) noexcept {
    const uint64_t h = k.hash();
    const uint64_t v = slot_value(h, idx, dir);
    for (const uint32_t b : {bucket1(h), bucket2(h)}) {
        for (auto& s : buckets_[b].slot) {
            // Plain loads find the slot; only it takes a locked CAS (the owner is the only
            // writer of a published slot, so a matching slot stays so until this CAS).
            uint64_t expected = v;
            if (s.load(std::memory_order_relaxed) == v &&
                s.compare_exchange_strong(expected, 0, std::memory_order_release,
                                          std::memory_order_relaxed)) {
                return;
            }
        }
    }
}

uint32_t Conntrack::alloc(uint32_t worker) noexcept {
    Range& r = ranges_[worker];
    if (r.free_count == 0) {
        return kCtNone;
    }
    return r.free[--r.free_count];  // live_ is set by insert once the entry is published
}

void Conntrack::free_now(uint32_t worker, uint32_t idx) noexcept {
    Range& r = ranges_[worker];
    r.free[r.free_count++] = idx;
}

void Conntrack::defer_free(uint32_t worker, uint32_t idx, uint64_t token) noexcept {
    live_[idx].store(0, std::memory_order_relaxed);
    Range& r = ranges_[worker];
    r.deferred[r.deferred_count++] = Deferred{idx, token};
}

void Conntrack::leave_share(CtEntry& e) noexcept {
    if ((e.flags.fetch_and(static_cast<uint8_t>(~CtEntry::kFlagUnreplied),
                           std::memory_order_relaxed) &
         CtEntry::kFlagUnreplied) == 0) {
        return;
    }
    // Saturating: a touch() racing on another worker may store back a stale flag byte with
    // the bit still set, and the entry would leave twice; a count one too low for a moment is
    // harmless, one that wrapped would lock its sources out.
    std::atomic<uint32_t>& c = share_of(e.owner, e.orig);
    uint32_t v = c.load(std::memory_order_relaxed);
    while (v != 0 && !c.compare_exchange_weak(v, v - 1, std::memory_order_relaxed)) {
    }
}

void Conntrack::remove(uint32_t worker, uint32_t idx, uint64_t token) noexcept {
    CtEntry& e = entries_[idx];
    if (e.flags.load(std::memory_order_relaxed) & CtEntry::kFlagUnreplied) {
        leave_share(e);
    }
    unpublish(e.orig, idx, CtDir::kOrig);
    if (has_reply_key(e)) {
        unpublish(e.reply, idx, CtDir::kReply);
    }
    defer_free(worker, idx, token);
    count_[worker].v.fetch_sub(1, std::memory_order_relaxed);
    count(count_[worker].removals);
}

void Conntrack::touch(uint32_t idx, CtDir dir, uint8_t tcp_flags, uint32_t now) noexcept {
    CtEntry& e = entries_[idx];
    if (e.last_seen.load(std::memory_order_relaxed) != now) {
        e.last_seen.store(now, std::memory_order_relaxed);
    }
    uint8_t flags = e.flags.load(std::memory_order_relaxed);
    if (dir == CtDir::kReply && (flags & CtEntry::kFlagUnreplied)) {
        leave_share(e);  // its first reply: no longer part of a possible flood
        flags = e.flags.load(std::memory_order_relaxed);
    }
    uint8_t want = flags;
    if (dir == CtDir::kReply) {
        want |= CtEntry::kFlagReplySeen;
    }
    auto state = static_cast<CtState>(e.state.load(std::memory_order_relaxed));
    CtState next = state;
    if (e.orig.proto == pkt::kProtoTcp) {
        if (tcp_flags & pkt::kTcpRst) {
            next = CtState::kClosed;
        } else if (tcp_flags & pkt::kTcpFin) {
            want |= dir == CtDir::kOrig ? CtEntry::kFlagFinOrig : CtEntry::kFlagFinReply;
            const bool both = (want & (CtEntry::kFlagFinOrig | CtEntry::kFlagFinReply)) ==
                              (CtEntry::kFlagFinOrig | CtEntry::kFlagFinReply);
            next = both ? CtState::kClosed : CtState::kClosing;
        } else if (state == CtState::kNew && dir == CtDir::kReply) {
            next = CtState::kEstablished;
        } else if (state == CtState::kClosed && (tcp_flags & pkt::kTcpSyn) && dir == CtDir::kOrig) {
            // A new SYN on a closed tuple (port reuse): start over.
            next = CtState::kNew;
            want &= static_cast<uint8_t>(
                ~(CtEntry::kFlagFinOrig | CtEntry::kFlagFinReply | CtEntry::kFlagReplySeen));
        }
    } else if (state == CtState::kNew && dir == CtDir::kReply) {
        next = CtState::kEstablished;
    }
    if (want != flags) {
        e.flags.store(want, std::memory_order_relaxed);
    }
    if (next != state) {
        e.state.store(static_cast<uint8_t>(next), std::memory_order_relaxed);
    }
}

uint32_t Conntrack::timeout_of(const CtEntry& e) const noexcept {
    if (e.timeout_s != 0) {
        return e.timeout_s;
    }
    const auto state = static_cast<CtState>(e.state.load(std::memory_order_relaxed));
    switch (e.orig.proto) {
        case pkt::kProtoTcp:
            switch (state) {
                case CtState::kNew:
                    return timeouts_.tcp_syn;
                case CtState::kEstablished:
                    return timeouts_.tcp_established;
                case CtState::kClosing:
                    return timeouts_.tcp_closing;
                case CtState::kClosed:
                    return timeouts_.tcp_closed;
            }
            return timeouts_.tcp_closed;
        case pkt::kProtoUdp:
            return state == CtState::kNew ? timeouts_.udp : timeouts_.udp_stream;
        case pkt::kProtoSctp:
            return timeouts_.sctp;
        case pkt::kProtoIcmp:
            return timeouts_.icmp;
        default:
            return timeouts_.other;
    }
}

uint32_t Conntrack::size() const noexcept {
    uint32_t n = 0;
    for (size_t w = 0; w < ranges_.size(); ++w) {
        n += count_[w].v.load(std::memory_order_relaxed);
    }
    return n;
}

CtWorkerStats Conntrack::worker_stats(uint32_t worker) const noexcept {
    CtWorkerStats s;
    if (worker >= ranges_.size()) {
        return s;
    }
    constexpr auto r = std::memory_order_relaxed;
    const PaddedCount& c = count_[worker];
    s.entries = c.v.load(r);
    s.capacity = range_size(worker);
    s.inserts = c.inserts.load(r);
    s.insert_full = c.insert_full.load(r);
    s.insert_clash = c.insert_clash.load(r);
    s.insert_share = c.insert_share.load(r);
    s.early_drops = c.early_drops.load(r);
    s.expiries = c.expiries.load(r);
    s.removals = c.removals.load(r);
    return s;
}

size_t Conntrack::memory_bytes() const noexcept {
    return share_limit_.size() * kShareBuckets * sizeof(uint32_t) +
           (size_t{mask_} + 1) * sizeof(Bucket) + size_t{capacity_} * (sizeof(CtEntry) + 1) +
           size_t{capacity_} * (sizeof(uint32_t) + sizeof(Deferred));
}

}  // namespace kdp::table
