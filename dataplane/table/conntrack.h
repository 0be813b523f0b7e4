// Conntrack: the shared connection table, one per node, used by every worker.
//
// Layout (after OVS lib/cmap.h and DPDK's cuckoo hash): an array of 64-byte buckets of eight
// 64-bit slots. A slot holds a 16-bit signature of the key, the direction, and the index of an
// entry in a preallocated entry array; every key has two candidate buckets. A connection
// occupies two slots, one per direction, pointing at one entry.
//
// Concurrency, all lock-free:
// - Lookup (any worker): loads slots with acquire, compares signature then the full key in
//   the entry. Never blocks, never writes.
// - Insert (any worker): takes an entry index from the worker's own range (no sharing),
//   fills the entry, then publishes each direction's slot with a CAS from empty. Two workers
//   racing to insert the same new connection may both succeed; lookups then find the first,
//   and the other expires unused. Bounded: no free entry or no free slot fails the insert.
// - Touch (any worker): relaxed store of the last-seen time and state bits on the entry.
// - Expire/delete (the owning worker only: the one whose range holds the entry): CAS each
//   slot back to empty, then the entry index waits in the owner's deferred list until an RCU
//   grace period (rte_rcu_qsbr token) has passed before it is reused, so a concurrent lookup
//   never sees an entry change under it.
// Memory: buckets and entries sized from the config at start, never grown.
//
// Fairness under a flood (Linux nf_conntrack's early_drop is the model for the second rule):
// - A source may hold at most `source_share` percent of a worker's range in unreplied entries
//   (a SYN flood's, or a UDP scan's): further inserts from it fail with kSourceShare, so one
//   pod cannot fill the table against the others. Sources are counted in 1024 hash buckets per
//   worker (two sources in one bucket share its allowance); an entry leaves its bucket's count
//   when its first reply is seen or when it is removed.
// - When a worker's range is nearly full (less than 1/8 free), its sweep also removes unreplied
//   entries idle for a second or more (counted as early drops), so established connections
//   keep their entries and new ones find room again.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/net.h"
#include "table/flat_map.h"
#include "table/huge_array.h"

namespace kdp::table {

/// A directional connection key. 16 bytes, compared as two 64-bit words.
struct CtKey {
    uint32_t src = 0;  // network order
    uint32_t dst = 0;
    uint16_t sport = 0;
    uint16_t dport = 0;
    uint8_t proto = 0;
    uint8_t pad = 0;
    uint16_t zone = 0;  // separates overlapping address spaces
    friend bool operator==(const CtKey&, const CtKey&) = default;

    CtKey reversed() const noexcept { return CtKey{dst, src, dport, sport, proto, 0, zone}; }
    uint64_t hash() const noexcept {
        uint64_t a;
        uint64_t b;
        static_assert(sizeof(CtKey) == 16);
        __builtin_memcpy(&a, this, 8);
        __builtin_memcpy(&b, reinterpret_cast<const char*>(this) + 8, 8);
        return mix64(a ^ mix64(b));
    }
};

/// The zone of affinity records (sessionAffinity: ClientIP): entries that are no connection but
/// remember which backend a client's connections to a Service port went to. Looked up by their
/// `orig` key alone {client, service port id, 0, 0, proto, 0, kCtZoneAffinity}; `reply` holds
/// the backend (src, sport) and is not published; `timeout_s` is the Service's timeout.
inline constexpr uint16_t kCtZoneAffinity = 0xffff;

/// Connection states kept by the light TCP tracker; other protocols use kNew/kEstablished.
enum class CtState : uint8_t {
    kNew = 0,      // only the original direction seen
    kEstablished,  // both directions seen
    kClosing,      // FIN seen
    kClosed,       // RST seen, or both FINs
};

/// Per-connection data. Written whole by the inserting worker before publication; afterwards
/// only `last_seen`, `state` and `flags` change (relaxed atomics, any worker).
struct alignas(64) CtEntry {
    CtKey orig;                          // as first seen
    CtKey reply;                         // what the reply looks like (after NAT, if any)
    std::atomic<uint32_t> last_seen{0};  // coarse seconds, see Conntrack::now
    std::atomic<uint8_t> state{0};
    std::atomic<uint8_t> flags{0};  // kFlag* bits
    uint8_t owner = 0;              // the worker whose range holds the entry
    uint8_t nat = 0;                // stage::kNat* bits (stage/nat.h)
    uint32_t service = 0;           // service index + 1 (0: none)
    uint32_t backend = 0;           // backend index + 1 within the service (0: none)
    /// The policy verdict cached for the connection: PolicyTables::epoch << 1 | denied (0: not
    /// judged yet). Any worker may store it (relaxed) when it judges the connection again.
    std::atomic<uint32_t> policy{0};
    uint8_t peer_mac[6] = {};  // external clients: the MAC their packets came from
    uint16_t block_id = 0;     // DNAT: ServiceBlock::id of the block that picked the backend
    uint32_t timeout_s = 0;    // idle timeout of its own (affinity records); 0: by state
    static constexpr uint8_t kFlagReplySeen = 1;
    static constexpr uint8_t kFlagFinOrig = 2;
    static constexpr uint8_t kFlagFinReply = 4;
    static constexpr uint8_t kFlagUnreplied = 8;  // counted in its source's share (Conntrack)
};

static_assert(sizeof(CtEntry) == 64, "one cache line per connection");

enum class CtDir : uint8_t { kOrig = 0, kReply = 1 };

struct CtHit {
    uint32_t index = 0;  // entry index
    CtDir dir = CtDir::kOrig;
};

inline constexpr uint32_t kCtNone = ~uint32_t{0};

/// Why an insert returned kCtNone.
enum class CtInsertFail : uint8_t {
    kNone = 0,
    kFull,         // the worker's range or both buckets of a key are full
    kClash,        // a tracked connection already has one of the keys (e.g. the same reply tuple
                   // after DNAT: the caller may remap the source port and try again)
    kSourceShare,  // the source holds its share of the worker's range in unreplied entries
};

/// One worker's conntrack activity since the table was made (Conntrack::worker_stats).
struct CtWorkerStats {
    uint32_t entries = 0;       // live connections in the worker's range
    uint32_t capacity = 0;      // the range's size
    uint64_t inserts = 0;       // connections (and affinity records) tracked
    uint64_t insert_full = 0;   // inserts refused: the range or both buckets of a key full
    uint64_t insert_clash = 0;  // inserts refused: another connection has one of the keys
    uint64_t insert_share = 0;  // inserts refused: the source holds its share of unreplied entries
    uint64_t early_drops = 0;   // unreplied entries removed early because the range was nearly full
    uint64_t expiries = 0;      // removed by the sweep: idle past their timeout, backend gone
    uint64_t removals = 0;      // removed for any reason (expiries included)
};

struct CtTimeouts {
    uint32_t tcp_syn = 120;            // s: SYN sent, no reply yet (kernel nf_conntrack: 120)
    uint32_t tcp_established = 86400;  // s: kernel's default is 5 days; a day is plenty here
    uint32_t tcp_closing = 120;        // s: FIN seen (kernel FIN_WAIT/TIME_WAIT: 120)
    uint32_t tcp_closed = 10;          // s: RST seen (kernel CLOSE: 10)
    uint32_t udp = 30;                 // s: one direction only (kernel: 30)
    uint32_t udp_stream = 120;         // s: replied (kernel: 120)
    uint32_t sctp = 210;               // s
    uint32_t icmp = 30;                // s
    uint32_t other = 600;              // s
};

class Conntrack {
public:
    /// `capacity` connections in all, split evenly over `workers` ranges. `source_share`: the
    /// percentage (1-100) of a range one source may hold in unreplied entries.
    Conntrack(uint32_t capacity,
              uint32_t workers,
              CtTimeouts timeouts = {},
              uint32_t source_share = kDefaultSourceShare);

    static constexpr uint32_t kDefaultSourceShare = 50;

    /// The entry and direction for `key`, or index kCtNone. Any thread; lock-free.
    CtHit lookup(const CtKey& key, uint64_t hash) const noexcept;
    CtHit lookup(const CtKey& key) const noexcept { return lookup(key, key.hash()); }
    /// Warms the first bucket of `hash`, where most keys are (pass 1 of a burst).
    void prefetch(uint64_t hash) const noexcept;
    /// Pass 2 of a burst, once the buckets are warm: the first slot of `hash`'s first bucket
    /// whose signature matches (0: none; then the second bucket's load is started), its
    /// entry's load started. Pass 3 confirms it, so that the
    /// entry's cache miss of every packet of the burst overlaps and the buckets are scanned once.
    uint64_t probe(uint64_t hash) const noexcept;
    /// The hit `hint` (from probe) stands for if its entry has `key` in that direction, else
    /// index kCtNone (another slot may still hold it: lookup). Any thread; lock-free.
    CtHit confirm(const CtKey& key, uint64_t hint) const noexcept {
        if (hint == 0) {
            return CtHit{kCtNone, CtDir::kOrig};
        }
        const uint32_t idx = static_cast<uint32_t>(hint & 0xffffffffu) - 1;
        const auto dir = static_cast<CtDir>((hint >> 32) & 1);
        const CtEntry& e = entries_[idx];
        if ((dir == CtDir::kOrig ? e.orig : e.reply) == key) {
            return CtHit{idx, dir};
        }
        return CtHit{kCtNone, CtDir::kOrig};
    }
    /// Warms the buckets of both keys of entry `idx` (before removing it).
    void prefetch_slots(uint32_t idx) const noexcept;

    /// Inserts a connection seen first as `orig`, whose replies look like `reply`. Fills the
    /// entry with `init` applied. Returns the entry index, or kCtNone when the worker's range
    /// or the buckets are full or another connection has one of the keys (`why` says which).
    /// Worker `worker` only (it becomes the owner).
    template <class Init>
    uint32_t insert(uint32_t worker,
                    const CtKey& orig,
                    const CtKey& reply,
                    uint32_t now,
                    Init&& init,
                    CtInsertFail* why = nullptr) noexcept {
        const uint32_t idx = alloc(worker);
        if (idx == kCtNone) {
            count(count_[worker].insert_full);
            if (why != nullptr) {
                *why = CtInsertFail::kFull;
            }
            return kCtNone;
        }
        const bool counted = orig.zone != kCtZoneAffinity;
        std::atomic<uint32_t>* share = counted ? &share_of(worker, orig) : nullptr;
        if (share != nullptr && share->load(std::memory_order_relaxed) >= share_limit_[worker]) {
            free_now(worker, idx);
            count(count_[worker].insert_share);
            if (why != nullptr) {
                *why = CtInsertFail::kSourceShare;
            }
            return kCtNone;
        }
        CtEntry& e = entries_[idx];
        e.orig = orig;
        e.reply = reply;
        e.last_seen.store(now, std::memory_order_relaxed);
        e.state.store(static_cast<uint8_t>(CtState::kNew), std::memory_order_relaxed);
        e.flags.store(share != nullptr ? CtEntry::kFlagUnreplied : 0, std::memory_order_relaxed);
        e.owner = static_cast<uint8_t>(worker);
        e.nat = 0;
        e.service = e.backend = e.timeout_s = 0;
        e.block_id = 0;
        e.policy.store(0, std::memory_order_relaxed);
        __builtin_memset(e.peer_mac, 0, sizeof e.peer_mac);
        init(e);
        if (share != nullptr) {
            share->fetch_add(1, std::memory_order_relaxed);  // before publication: exact
        }
        if (const CtInsertFail f = publish(orig, idx, CtDir::kOrig); f != CtInsertFail::kNone) {
            leave_share(e);
            free_now(worker, idx);
            count_failure(worker, f);
            if (why != nullptr) {
                *why = f;
            }
            return kCtNone;
        }
        if (has_reply_key(e)) {
            if (const CtInsertFail f = publish(reply, idx, CtDir::kReply);
                f != CtInsertFail::kNone) {
                unpublish(orig, idx, CtDir::kOrig);
                leave_share(e);
                defer_free(worker, idx, 0);
                count_failure(worker, f);
                if (why != nullptr) {
                    *why = f;
                }
                return kCtNone;
            }
        }
        // Listed from now on (for_each): the entry is whole before its flag says so.
        live_[idx].store(1, std::memory_order_release);
        count_[worker].v.fetch_add(1, std::memory_order_relaxed);
        count(count_[worker].inserts);
        return idx;
    }

    CtEntry& entry(uint32_t idx) noexcept { return entries_[idx]; }
    const CtEntry& entry(uint32_t idx) const noexcept { return entries_[idx]; }

    /// Updates state and last-seen for a packet in direction `dir` with TCP flags `tcp_flags`.
    void touch(uint32_t idx, CtDir dir, uint8_t tcp_flags, uint32_t now) noexcept;

    /// Seconds an entry in its current state may stay idle.
    uint32_t timeout_of(const CtEntry& e) const noexcept;

    /// Owner only: unlinks entry `idx` now; the index is reused after a grace period that
    /// starts at `token` (an rte_rcu_qsbr_start() token; 0 without RCU).
    void remove(uint32_t worker, uint32_t idx, uint64_t token) noexcept;

    /// Owner only: examines up to `budget` of its entries from where it stopped last time and
    /// removes those idle past their timeout (and those `kill` says must go: a backend gone).
    /// Returns how many were removed. Bounded work, so expiry never stalls a worker.
    template <class Kill>
    uint32_t expire(
        uint32_t worker, uint32_t now, uint32_t budget, uint64_t token, Kill&& kill) noexcept {
        Range& r = ranges_[worker];
        uint32_t removed = 0;
        // Removal touches the (cold, random) buckets of both keys: the expired entries are
        // collected in small batches whose buckets are all prefetched before any is unlinked,
        // so that the misses overlap.
        uint32_t batch[kExpireBatch];
        uint32_t nb = 0;
        const auto flush = [&] {
            for (uint32_t i = 0; i < nb; ++i) {
                prefetch_slots(batch[i]);
            }
            for (uint32_t i = 0; i < nb; ++i) {
                remove(worker, batch[i], token);
            }
            removed += nb;
            nb = 0;
        };
        // One pass at most: an entry met twice before its batch is flushed would be unlinked
        // and freed twice.
        budget = std::min(budget, r.end - r.begin);
        const bool pressure = r.free_count + r.deferred_count < (r.end - r.begin) / 8;
        uint32_t early_drops = 0;
        for (uint32_t n = 0; n < budget; ++n) {
            const uint32_t idx = r.scan;
            r.scan = r.scan + 1 == r.end ? r.begin : r.scan + 1;
            // The entries ahead: a sweep reads every live one, and most are cold.
            if (const uint32_t ahead = idx + kScanPrefetch;
                ahead < r.end && live_[ahead].load(std::memory_order_relaxed) != 0) {
                __builtin_prefetch(&entries_[ahead]);
            }
            if (live_[idx].load(std::memory_order_relaxed) == 0) {
                continue;
            }
            const CtEntry& e = entries_[idx];
            const uint32_t idle = now - e.last_seen.load(std::memory_order_relaxed);
            const bool expired = idle > timeout_of(e);
            const bool early = !expired && pressure && idle >= 1 && unreplied(e);
            if (expired || early || kill(e)) {
                early_drops += early;
                batch[nb++] = idx;
                if (nb == kExpireBatch) {
                    flush();
                }
            }
        }
        flush();
        if (removed != 0) {
            count(count_[worker].expiries, removed);
        }
        if (early_drops != 0) {
            count(count_[worker].early_drops, early_drops);
        }
        return removed;
    }

    /// Owner only: returns deferred indexes whose grace period has passed to the free list.
    /// `done(token)` says whether a grace period that started at token is over.
    template <class Done>
    void reclaim(uint32_t worker, Done&& done) noexcept {
        Range& r = ranges_[worker];
        uint32_t keep = 0;
        for (uint32_t i = 0; i < r.deferred_count; ++i) {
            const Deferred d = r.deferred[i];
            if (d.token == 0 || done(d.token)) {
                r.free[r.free_count++] = d.idx;
            } else {
                r.deferred[keep++] = d;
            }
        }
        r.deferred_count = keep;
    }

    uint32_t size() const noexcept;  // live connections (approximate while workers run)
    /// Worker `worker`'s entries and activity. Any thread; relaxed reads of counters that only
    /// that worker writes, so a snapshot for people, not a consistent cut.
    CtWorkerStats worker_stats(uint32_t worker) const noexcept;
    uint32_t workers() const noexcept { return static_cast<uint32_t>(ranges_.size()); }
    uint32_t capacity() const noexcept { return capacity_; }
    uint32_t free_in_range(uint32_t worker) const noexcept { return ranges_[worker].free_count; }
    uint32_t range_size(uint32_t worker) const noexcept {
        return ranges_[worker].end - ranges_[worker].begin;
    }
    size_t memory_bytes() const noexcept;

    /// Calls f(idx, entry) for every live entry. Control thread; a snapshot for `kdpctl get
    /// conntrack`, not a consistent cut: entries may come and go meanwhile. An entry is listed
    /// only once its inserter has filled it (the acquire pairs with insert's release). Not
    /// covered: an entry removed and, after a grace period of the workers, reused while `f`
    /// is still reading it (this thread is no RCU reader), which needs a listing slower than a
    /// grace period.
    template <class F>
    void for_each(F&& f) const {
        for (uint32_t i = 0; i < capacity_; ++i) {
            if (live_[i].load(std::memory_order_acquire) != 0) {
                f(i, entries_[i]);
            }
        }
    }

private:
    static constexpr uint32_t kSlots = 8;
    static constexpr uint32_t kScanPrefetch = 8;  // entries the expiry scan prefetches ahead
    static constexpr uint32_t kExpireBatch = 8;   // expired entries unlinked together
    /// An unreplied connection (not an affinity record): what a flood leaves behind.
    static bool unreplied(const CtEntry& e) noexcept {
        return e.orig.zone != kCtZoneAffinity &&
               (e.flags.load(std::memory_order_relaxed) & CtEntry::kFlagReplySeen) == 0;
    }
    static constexpr uint32_t kShareBuckets = 1024;  // per worker, a power of two
    std::atomic<uint32_t>& share_of(uint32_t worker, const CtKey& orig) noexcept {
        const uint32_t b = static_cast<uint32_t>(mix64(uint64_t{orig.src} << 16 | orig.zone)) &
                           (kShareBuckets - 1);
        return share_[size_t{worker} * kShareBuckets + b];
    }
    /// Takes `e` out of its source's count if it is still in it (exactly once, whichever of
    /// its first reply and its removal comes first).
    void leave_share(CtEntry& e) noexcept;
    /// Whether the entry's reply key is published (a connection whose replies differ from it).
    static bool has_reply_key(const CtEntry& e) noexcept {
        return !(e.reply == e.orig) && e.orig.zone != kCtZoneAffinity;
    }
    struct alignas(64) Bucket {
        std::atomic<uint64_t> slot[kSlots];
    };
    struct Deferred {
        uint32_t idx;
        uint64_t token;
    };
    struct Range {
        uint32_t begin = 0;
        uint32_t end = 0;
        uint32_t scan = 0;
        std::unique_ptr<uint32_t[]> free;
        uint32_t free_count = 0;
        std::unique_ptr<Deferred[]> deferred;
        uint32_t deferred_count = 0;
    };
    /// A worker's counters, on a line of their own. Only that worker writes them (inserts go
    /// to its range, and only it removes from there): a relaxed load and store, a plain add on
    /// x86, never a locked instruction or a line shared with another worker.
    struct alignas(64) PaddedCount {
        std::atomic<uint32_t> v{0};
        std::atomic<uint64_t> inserts{0};
        std::atomic<uint64_t> insert_full{0};
        std::atomic<uint64_t> insert_clash{0};
        std::atomic<uint64_t> insert_share{0};
        std::atomic<uint64_t> early_drops{0};
        std::atomic<uint64_t> expiries{0};
        std::atomic<uint64_t> removals{0};
    };
    static void count(std::atomic<uint64_t>& c, uint64_t n = 1) noexcept {
        c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    void count_failure(uint32_t worker, CtInsertFail f) noexcept {  // kFull or kClash
        count(f == CtInsertFail::kClash ? count_[worker].insert_clash : count_[worker].insert_full);
    }

    static uint64_t slot_value(uint64_t hash, uint32_t idx, CtDir dir) noexcept {
        return (hash >> 48) << 48 | uint64_t{static_cast<uint8_t>(dir)} << 32 | (idx + 1u);
    }
    uint32_t bucket1(uint64_t h) const noexcept { return static_cast<uint32_t>(h) & mask_; }
    uint32_t bucket2(uint64_t h) const noexcept {
        return static_cast<uint32_t>((h >> 24) ^ (h >> 48) * 0x5bd1e995u) & mask_;
    }
    uint32_t alloc(uint32_t worker) noexcept;
    void free_now(uint32_t worker, uint32_t idx) noexcept;
    void defer_free(uint32_t worker, uint32_t idx, uint64_t token) noexcept;
    /// Takes an empty slot for `k` unless a tracked entry already has it (kClash: two entries
    /// with one key would give that key's packets to whichever is found first).
    CtInsertFail publish(const CtKey& k, uint32_t idx, CtDir dir) noexcept;
    void unpublish(const CtKey& k, uint32_t idx, CtDir dir) noexcept;

    uint32_t capacity_;
    uint32_t mask_;
    CtTimeouts timeouts_;
    HugeArray<Bucket> buckets_;
    HugeArray<CtEntry> entries_;
    /// Per entry, 1 while it holds a connection: written by its owner only (set once the entry
    /// is filled and published, cleared when it is unlinked), read by the owner's expiry scan
    /// and by for_each on the control thread, hence atomic (relaxed but for the publication).
    std::unique_ptr<std::atomic<uint8_t>[]> live_;
    std::vector<Range> ranges_;
    std::unique_ptr<PaddedCount[]> count_;
    std::unique_ptr<std::atomic<uint32_t>[]> share_;  // workers x kShareBuckets unreplied counts
    std::vector<uint32_t> share_limit_;               // per worker: entries one source may hold
};

}  // namespace kdp::table
