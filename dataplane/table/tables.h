// TableSet: one immutable version of a node's forwarding tables, as the workers read them.
//
// Who writes: TableManager (dataplane/api) builds a TableSet from a validated TableSpec off
// the workers and publishes it with one release store of the pointer in TableRef.
// Who reads: every worker acquire-loads the pointer once per loop iteration and uses it until
// it reports quiescent (rte_rcu_qsbr_quiescent) at the end of the iteration.
// When memory is freed: the publisher frees the previous version only after an RCU grace
// period (rte_rcu_qsbr_synchronize), so a worker never sees a freed table.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include <rte_build_config.h>

#include "common/net.h"
#include "table/flat_map.h"
#include "table/neighbor.h"
#include "table/prefix_table.h"
#include "table/table_spec.h"

namespace kdp::table {

inline constexpr uint16_t kNoPort = 0xffff;

struct LocalPod {
    Ip4 ip;
    uint16_t port_id = kNoPort;  // kNoPort: the pod's port is not up (packets dropped, counted)
    uint32_t spec_index = 0;     // index into TableSet::spec.pods
};

struct Route {
    Ip4 vtep_ip;          // remote node's underlay address
    Mac vtep_mac;         // inner destination MAC
    uint32_t neigh_slot;  // NeighborTable slot of the underlay next hop (VTEP or gateway)
    uint32_t spec_index;  // index into TableSet::spec.routes
};

struct ServiceBackend {
    Ip4 ip;
    uint16_t port_be = 0;
    uint16_t spec_index = 0;  // index into the ServiceSpec's backends
};

/// The immutable part of one Service port that only its endpoints determine: the usable
/// backends and their Maglev table. Shared by every table version in which the Service's spec
/// is unchanged, so that one endpoint change rebuilds one Maglev table, not all of them.
struct ServiceBlock {
    std::vector<ServiceBackend> backends;
    std::vector<uint16_t> maglev;        // entries are backends index + 1; empty: no endpoint
    std::vector<uint16_t> local_maglev;  // the same over endpoints on this node only
    std::vector<Prefix4> source_ranges;  // loadBalancerSourceRanges (empty: any client)
};

/// One Service port as the workers see it; the pointers are into a ServiceBlock that the
/// TableSet keeps alive.
struct Service {
    static constexpr uint8_t kExternalLocal = 1;  // externalTrafficPolicy: Local
    static constexpr uint8_t kInternalLocal = 2;  // internalTrafficPolicy: Local
    static constexpr uint8_t kAffinity = 4;       // sessionAffinity: ClientIP
    uint32_t spec_index = 0;                      // into TableSet::spec.services
    uint8_t proto = 0;
    uint8_t flags = 0;
    uint32_t local_maglev_size = 0;
    const uint16_t* local_maglev = nullptr;
    const ServiceBlock* block = nullptr;
    uint32_t maglev_size = 0;
    const uint16_t* maglev = nullptr;
    const ServiceBackend* backends = nullptr;
    uint32_t backend_count = 0;
    uint32_t affinity_timeout_s = 0;  // sessionAffinity: ClientIP (with kAffinity)
    uint32_t affinity_id = 0;         // names the Service port in affinity records; stable
                                      // across table versions (a hash of its name)
};

struct Frontend {
    uint32_t service = 0;  // index into TableSet::services
    FrontendKind kind = FrontendKind::kClusterIp;
};

inline uint64_t frontend_key(Ip4 ip, uint16_t port_be, uint8_t proto) noexcept {
    return uint64_t{ip.be} << 32 | uint64_t{port_be} << 8 | proto;
}

struct TableSet {
    uint64_t generation = 0;
    FlatMap<LocalPod> pods;  // key: pod IPv4, network order
    PrefixTable<Route> routes;
    /// The pod address bound to each port (zero: none): the anti-spoofing check.
    std::array<Ip4, RTE_MAX_ETHPORTS> port_pod_ip{};
    TableSpec spec;  // what this version was built from, for reading back

    FlatMap<Frontend> frontends;  // key: frontend_key(vip, port, proto)
    std::vector<Service> services;
    std::vector<std::shared_ptr<const ServiceBlock>> blocks;  // keeps Service pointers valid
    /// Every (ip, port, proto) that is a usable backend of some Service: a tracked connection
    /// whose backend is not here any more is stale.
    FlatMap<uint8_t> backend_set;
    /// healthCheckNodePort (host order) of externalTrafficPolicy: Local Services -> index into
    /// services of the Service's first port: answered on the node IP (stage/health_check.h).
    FlatMap<uint32_t> health_checks;

    const LocalPod* find_pod(Ip4 ip) const noexcept { return pods.find(ip.be); }
    const Frontend* find_frontend(Ip4 ip, uint16_t port_be, uint8_t proto) const noexcept {
        return frontends.find(frontend_key(ip, port_be, proto));
    }
    bool backend_alive(Ip4 ip, uint16_t port_be, uint8_t proto) const noexcept {
        return backend_set.find(frontend_key(ip, port_be, proto)) != nullptr;
    }
    const Route* find_route(Ip4 ip) const noexcept { return routes.lookup(ip); }
};

/// The published pointer. One per dataplane; see TableSet for the rules.
struct TableRef {
    std::atomic<const TableSet*> current{nullptr};
};

}  // namespace kdp::table
