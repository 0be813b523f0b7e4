// NodeContext: this node's identity and the shared objects a worker reaches through it.
// Built by the main thread before the workers launch and never changed afterwards, so
// workers read it without synchronisation.
#pragma once

#include <cstdint>

#include "common/net.h"
#include "port/port_table.h"
#include "table/conntrack.h"
#include "table/neighbor.h"
#include "table/tables.h"

namespace kdp::dataplane {

struct NodeContext {
    Ip4 node_ip;
    Mac node_mac;
    Prefix4 underlay_subnet;  // VTEPs inside it are on-link; others go via the underlay gateway
    uint32_t underlay_gateway_slot = table::kNoSlot;
    Ip4 gateway_ip;  // pods' default gateway (answered by proxy ARP)
    Mac gateway_mac;
    Prefix4 pod_cidr;
    Prefix4 cluster_cidr;  // pods of every node; traffic leaving it is masqueraded
                           // (node.cluster_cidr, else this node's pod CIDR)
    Mac vtep_mac;          // inner source MAC of encapsulated frames
    uint16_t vxlan_port_be = 0;
    uint32_t vni = 0;
    uint16_t mtu = 1500;  // uplink MTU: encapsulated packets must fit
    uint16_t uplink_port = 0;
    uint16_t host_port = table::kNoPort;  // the host interface (config `host`), if any
    bool host_node_address = false;       // host.node_address: the kernel holds node_ip too
    uint32_t workers = 1;                 // SNAT ports are split among workers by port % workers

    uint64_t tsc_hz = 0;
    uint64_t arp_retry_tsc = 0;    // between two ARP requests for one address
    uint64_t arp_timeout_tsc = 0;  // a packet waits at most this long for resolution
    uint64_t arp_stale_tsc = 0;    // a resolved entry is re-confirmed after this

    table::NeighborTable* neighbors = nullptr;
    table::Conntrack* conntrack = nullptr;  // shared by all workers (see conntrack.h)
    PortTable* ports = nullptr;
    const table::TableRef* tables = nullptr;

    bool has_host() const noexcept { return host_port != table::kNoPort; }

    uint16_t pod_mtu() const noexcept { return static_cast<uint16_t>(mtu - 50); }
};

}  // namespace kdp::dataplane
