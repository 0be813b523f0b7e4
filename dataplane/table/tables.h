// TableSet: one immutable version of a node's forwarding tables, as the workers read them.
//
// Who writes: TableManager (dataplane/api) builds a TableSet from a validated TableSpec off
// the workers and publishes it with one release store of the pointer in TableRef.
// Who reads: every worker acquire-loads the pointer once per loop iteration and uses it until
// it reports quiescent (rte_rcu_qsbr_quiescent) at the end of the iteration.
// When memory is freed: the publisher frees the previous version only after an RCU grace
// period (rte_rcu_qsbr_synchronize), so a worker never sees a freed table.
//
// One exception to "immutable": each Service port's block (its backends and Maglev tables) is
// behind its own atomic pointer, which the TableManager swaps in place when an update changes
// only blocks (an endpoint change), without building a new TableSet; the old block is freed
// after a grace period too. A worker loads that pointer once per packet, so a packet sees one
// block, old or new, never a mix. Lock order: none on the worker side; the TableManager's
// mutex on the writer side.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include <rte_build_config.h>

#include "common/net.h"
#include "spec/table_spec.h"
#include "table/flat_map.h"
#include "table/neighbor.h"
#include "table/policy.h"
#include "table/prefix_table.h"

namespace kdp::table {

inline constexpr uint16_t kNoPort = 0xffff;

struct LocalPod {
    Ip4 ip;
    uint16_t port_id = kNoPort;  // kNoPort: the pod's port is not up (packets dropped, counted)
    uint32_t spec_index = 0;     // index into the pods of the spec it was built from
};

struct Route {
    Ip4 vtep_ip;          // remote node's underlay address
    Mac vtep_mac;         // inner destination MAC
    uint32_t neigh_slot;  // NeighborTable slot of the underlay next hop (VTEP or gateway)
    uint32_t spec_index;  // index into the routes of the spec it was built from
};

inline uint64_t frontend_key(Ip4 ip, uint16_t port_be, uint8_t proto) noexcept {
    return uint64_t{ip.be} << 32 | uint64_t{port_be} << 8 | proto;
}

struct ServiceBackend {
    static constexpr uint8_t kCluster = 1;  // in the set `maglev` picks from
    static constexpr uint8_t kLocal = 2;    // in the set `local_maglev` picks from
    Ip4 ip;
    uint16_t port_be = 0;
    uint16_t spec_index = 0;  // index into the ServiceSpec's backends
    uint8_t sets = 0;         // kCluster | kLocal: the sets it belongs to (at least one)
};

/// The part of one Service port that a delta may replace: its usable backends, their Maglev
/// tables, loadBalancerSourceRanges and the spec it was built from. Immutable once built.
/// Shared by every table version in which the Service port's spec is unchanged, so that one
/// endpoint change builds one block, not all of them.
struct alignas(64) ServiceBlock {
    // What a worker reads for a new flow comes first.
    // Two sets, each chosen as kube-proxy's CategorizeEndpoints does (ready endpoints, else
    // serving-and-terminating ones): the cluster-wide set and this node's. `backends` is their
    // union, so a node-local terminating endpoint can be in it while the cluster set is not.
    std::vector<uint16_t> maglev;  // entries are backends index + 1; empty: no endpoint
    std::vector<ServiceBackend> backends;
    std::vector<uint16_t> local_maglev;  // the same over this node's set
    std::vector<Prefix4> source_ranges;  // loadBalancerSourceRanges (empty: any client)
    /// frontend_key(ip, port, proto) of each backend of either set -> its index + 1: whether a
    /// tracked connection's backend is still usable (stale detection), one probe.
    FlatMap<uint16_t> backend_slots;
    /// Ready endpoints on this node: what the health check answers with (kube-proxy counts
    /// local ready endpoints only, so a node whose endpoints all terminate is drained).
    uint32_t local_backends = 0;
    /// Names this block among the blocks a TableManager built (never 0; wraps after 65,535):
    /// a connection records the id of the block its backend was picked from, and while that
    /// block is in force the backend needs no look-up (Service::block_id).
    uint16_t id = 0;
    ServiceSpec spec;  // what it was built from; read by the API side and the
                       // health check (its name), never changed

    /// The slot (index + 1) of backend ip:port, or 0. `hint` is the slot it had when recorded:
    /// checked first, so the map is probed only after the endpoints changed.
    uint16_t slot_of(Ip4 ip, uint16_t port_be, uint8_t proto, uint32_t hint) const noexcept {
        if (hint != 0 && hint <= backends.size() && backends[hint - 1].ip == ip &&
            backends[hint - 1].port_be == port_be) {
            return static_cast<uint16_t>(hint);
        }
        const uint16_t* s = backend_slots.find(frontend_key(ip, port_be, proto));
        return s == nullptr ? 0 : *s;
    }
    /// Bytes of the tables a worker reads (the block, its vectors and map; not the spec).
    size_t table_bytes() const noexcept {
        return sizeof(ServiceBlock) + maglev.capacity() * sizeof(uint16_t) +
               backends.capacity() * sizeof(ServiceBackend) +
               local_maglev.capacity() * sizeof(uint16_t) +
               source_ranges.capacity() * sizeof(Prefix4) + backend_slots.memory_bytes();
    }
};

/// A conntrack entry's reference to its Service port (CtEntry::service): the slot + 1 in the
/// low 20 bits, and 12 bits of the port's id above them, so that the connections of a deleted
/// Service port almost never pass for those of a new one that reuses its slot (1 in 4096; even
/// then they survive only if their backend is a usable backend of the new one).
inline constexpr uint32_t kServiceSlotBits = 20;
inline constexpr uint32_t kMaxServiceSlots = (1u << kServiceSlotBits) - 1;
inline uint32_t ct_service_ref(uint32_t slot, uint32_t id) noexcept {
    return (slot + 1) | (id << kServiceSlotBits);
}

/// One Service port as the workers see it. Its slot in TableSet::services is stable for as
/// long as the port exists, across table versions, so that conntrack can refer to it.
struct Service {
    static constexpr uint8_t kExternalLocal = 1;  // externalTrafficPolicy: Local
    static constexpr uint8_t kInternalLocal = 2;  // internalTrafficPolicy: Local
    static constexpr uint8_t kAffinity = 4;       // sessionAffinity: ClientIP
    /// The block in force. Workers acquire-load it once per packet; the TableManager swaps it
    /// with a release store when only the block changed (a delta), and frees the old block
    /// after an RCU grace period. Never null (a free slot has an empty block).
    std::atomic<const ServiceBlock*> block{nullptr};
    uint8_t proto = 0;
    uint8_t flags = 0;
    /// The id of `block`, stored after it: a connection whose CtEntry::block_id equals it was
    /// balanced by the block in force, so its backend is usable without reading the block (two
    /// cache misses per packet at 10,000 Services).
    std::atomic<uint16_t> block_id{0};
    uint32_t affinity_timeout_s = 0;  // sessionAffinity: ClientIP (with kAffinity)
    uint32_t affinity_id = 0;         // names the Service port in affinity records; stable
                                      // across table versions (a hash of its name)
    uint32_t ct_ref = 0;              // ct_service_ref(slot, affinity_id); 0: a free slot

    const ServiceBlock& current() const noexcept { return *block.load(std::memory_order_acquire); }
};

struct Frontend {
    uint32_t service = 0;  // slot in TableSet::services
    FrontendKind kind = FrontendKind::kClusterIp;
};

struct TableSet {
    FlatMap<LocalPod> pods;  // key: pod IPv4, network order
    PrefixTable<Route> routes;
    /// The pod address bound to each port (zero: none): the anti-spoofing check.
    std::array<Ip4, RTE_MAX_ETHPORTS> port_pod_ip{};

    FlatMap<Frontend> frontends;  // key: frontend_key(vip, port, proto)
    /// The service CIDRs (TableSpec::service_cidrs) and the ClusterIPs in them that a Service
    /// holds (key: address, network order): what a packet no frontend took is checked against.
    std::vector<Prefix4> service_cidrs;
    FlatMap<uint8_t> cluster_ips;
    /// Service ports by slot (TableManager keeps each port's slot across versions).
    std::unique_ptr<Service[]> services;
    uint32_t service_count = 0;
    /// Owners of the blocks the services point at, by slot. Written by the TableManager only
    /// (under its lock), never read by a worker.
    std::vector<std::shared_ptr<const ServiceBlock>> blocks;
    /// healthCheckNodePort (host order) of externalTrafficPolicy: Local Services -> slot of
    /// the Service's first port: answered on the node IP (stage/health_check.h).
    FlatMap<uint32_t> health_checks;
    /// NetworkPolicy in force. Like a Service block, swapped in place (release store) when only
    /// the policy changes, and carried over into a rebuilt TableSet otherwise; the TableManager
    /// frees a replaced version after a grace period. Never null once published.
    std::atomic<const PolicyTables*> policy{nullptr};
    std::shared_ptr<const PolicyTables> policy_owner;  // TableManager only, under its lock

    const LocalPod* find_pod(Ip4 ip) const noexcept { return pods.find(ip.be); }
    const Frontend* find_frontend(Ip4 ip, uint16_t port_be, uint8_t proto) const noexcept {
        return frontends.find(frontend_key(ip, port_be, proto));
    }
    /// Whether the backend ip:port that conntrack entry recorded (service: CtEntry::service,
    /// hint: CtEntry::backend) is still a usable backend of its Service port. A connection whose
    /// backend left, or whose Service port is gone, is stale. `block_id` (CtEntry::block_id, 0:
    /// unknown) skips the look-up while the block that picked the backend is in force; a 16-bit
    /// id can come round again after 65,535 blocks, and the expiry scan, which checks without
    /// it, still clears such a connection.
    bool backend_alive(uint32_t service,
                       Ip4 ip,
                       uint16_t port_be,
                       uint32_t hint,
                       uint16_t block_id = 0) const noexcept {
        const uint32_t slot = (service & kMaxServiceSlots) - 1;
        if (slot >= service_count) [[unlikely]] {
            return false;  // also service 0: a NATed entry always names its Service port
        }
        const Service& s = services[slot];
        if (s.ct_ref != service) [[unlikely]] {
            return false;
        }
        if (block_id != 0 && s.block_id.load(std::memory_order_acquire) == block_id) [[likely]] {
            return true;
        }
        return s.current().slot_of(ip, port_be, s.proto, hint) != 0;
    }
    const Route* find_route(Ip4 ip) const noexcept { return routes.lookup(ip); }
    bool in_service_cidr(Ip4 ip) const noexcept {
        for (const Prefix4& c : service_cidrs) {  // one or two prefixes
            if (c.contains(ip)) {
                return true;
            }
        }
        return false;
    }
    const PolicyTables& current_policy() const noexcept {
        return *policy.load(std::memory_order_acquire);
    }
};

/// The published pointer. One per dataplane; see TableSet for the rules.
struct TableRef {
    std::atomic<const TableSet*> current{nullptr};
};

}  // namespace kdp::table
