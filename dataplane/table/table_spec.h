// The desired state of a node's forwarding tables, as plain values.
//
// This is what the static config, the gRPC API and `kdpctl` speak: a TableSpec is validated
// and compiled into an immutable TableSet (tables.h) off the workers, then published by RCU.
// Nothing here is used on a worker lcore.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/net.h"

namespace kdp::table {

/// A remote node's pod CIDR, reached through VXLAN to that node's VTEP.
struct RouteSpec {
    std::string node_name;
    Ip4 node_ip;       // the remote VTEP (underlay address)
    Prefix4 pod_cidr;  // must not overlap this node's pod CIDR or another route
    Mac vtep_mac;      // inner destination MAC (Flannel: the remote flannel.1 MAC)
    friend bool operator==(const RouteSpec&, const RouteSpec&) = default;
};

/// A pod on this node: its address and the port it sits behind.
struct PodSpec {
    std::string name;       // "namespace/pod"
    Ip4 ip;                 // inside this node's pod CIDR
    std::string port_name;  // a port known to the port registry
    friend bool operator==(const PodSpec&, const PodSpec&) = default;
};

struct TableSpec {
    uint64_t generation = 0;  // strictly increasing; a stale or replayed spec is refused
    std::vector<RouteSpec> routes;
    std::vector<PodSpec> pods;
    friend bool operator==(const TableSpec&, const TableSpec&) = default;
};

}  // namespace kdp::table
