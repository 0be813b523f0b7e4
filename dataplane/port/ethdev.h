// Port set-up: probe a device from devargs, configure queues, start it. Main thread only,
// before workers use the port. Returns errors as strings (this library has no exceptions).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/net.h"
#include "port/port_table.h"

struct rte_mempool;

namespace kdp::dataplane {

struct PortSetup {
    std::string devargs;  // e.g. "net_tap0,iface=kdpa" or "net_af_packet0,iface=veth0"
    PortKind kind = PortKind::kPod;
    uint16_t rx_queues = 1;  // capped by the device
    uint16_t workers = 1;    // TX queues wanted: one per worker, shared if the device has fewer
    uint16_t mtu = 1500;     // applied where the device supports it
    std::optional<Mac> peer_mac;  // pod ports: the pod's MAC if known in advance
    bool promiscuous = false;
    rte_mempool* pool = nullptr;
};

/// Probes, configures and starts a port; fills table.port[id]. Returns the port id, or an
/// error message.
std::optional<uint16_t> setup_port(const PortSetup& s, PortTable& table, std::string& err);

/// Configures and starts an existing port `pid` as `s` says (s.devargs is only used for the
/// names in error messages); fills table.port[pid].
bool configure_port(uint16_t pid, const PortSetup& s, PortTable& table, std::string& err);

/// Stops and closes a port, removing its device (TAP netdevs disappear with it).
void teardown_port(uint16_t port_id);

/// The port's own MAC address.
Mac port_mac(uint16_t port_id);

}  // namespace kdp::dataplane
