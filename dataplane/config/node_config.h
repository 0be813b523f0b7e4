// The node configuration of kdp-dataplane: what `--config FILE` holds, as a typed struct.
//
// Loaded and validated once, on the main thread, before the EAL starts; never touched by a
// worker. Every validation failure is a ConfigError whose message names the key and the
// problem on one line ("uplink.devargs: missing", "node.pod_cidr: 10.0.0.1/24 has host bits set").
// config/README.md is the reference for every key; config/examples/*.yaml are examples.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/net.h"
#include "table/conntrack.h"

namespace kdp::config {

class ConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

enum class VxlanMode : uint8_t {
    kStandard,  // RFC 7348, default UDP 4789, configurable VNI
    kFlannel,   // wire-compatible with Flannel's vxlan backend: VNI 1, UDP 8472
};

enum class PortType : uint8_t {
    kTap,        // net_tap: a kernel TAP netdev for an ordinary (kernel-stack) pod
    kVhostUser,  // net_vhost: a vhost-user socket for a DPDK pod or a VM
    kDevargs,    // any DPDK ethdev, given verbatim as devargs
};

/// A pod port declared statically in the config (run-time ports come over gRPC later).
struct PodPortConfig {
    std::string name;  // "namespace/pod", unique
    Ip4 ip;            // inside the node's pod_cidr, not the gateway
    PortType type = PortType::kTap;
    std::string iface;       // kTap: kernel netdev name (<= 15 chars); default "kdp" + index
    std::string socket;      // kVhostUser: socket path
    uint16_t queues = 1;     // kVhostUser: queue pairs; the workers share their RX queues
    std::string devargs;     // kDevargs: verbatim devargs
    std::optional<Mac> mac;  // the pod's MAC if known; otherwise learned from its traffic
    std::string netns;       // kTap: optional netns name (under /run/netns) to move it into
};

/// A remote node reachable over the overlay (static until the control plane fills the table).
struct RemoteNodeConfig {
    std::string name;
    Ip4 ip;  // underlay address, the VTEP
    Prefix4 pod_cidr;
    std::optional<Mac> vtep_mac;  // inner destination MAC; default Mac::from_ip(ip); always set
                                  // once loaded (required in the file in flannel mode)
};

struct UplinkConfig {
    std::string devargs;         // required, e.g. "net_af_packet0,iface=veth0"
    uint16_t rx_queues = 1;      // RSS spreads flows across them when > 1
    std::optional<Ip4> gateway;  // underlay next hop for VTEPs off the node's subnet
    uint8_t prefix_len = 24;     // node IP's subnet on the underlay (on-link VTEPs)
};

/// The node's host interface: a TAP through which the node's own kernel (kubelet probes,
/// host-network processes) reaches pods, remote pods and Services. The dataplane creates it,
/// moves it into `netns` when given, and configures the kernel side: up, MTU node.mtu - 50,
/// the pod gateway address /32, and routes into the pod network (node.pod_cidr,
/// node.cluster_cidr and `routes`) on the link with that address as their source.
struct HostConfig {
    std::string iface;            // host.iface: the TAP's name, required
    std::string netns;            // host.netns: a name under /run/netns; default the dataplane's
    std::vector<Prefix4> routes;  // host.routes: more prefixes, e.g. the Service CIDR
    /// host.node_address: the kernel also holds node.ip on the TAP (node.ip/uplink.prefix_len,
    /// default route via uplink.gateway) and the dataplane passes it what the uplink brings for
    /// node.ip that the dataplane does not serve itself: the exception path of a node whose NIC
    /// the dataplane owns.
    bool node_address = false;
};

struct IdleConfig {
    uint32_t spin_polls = 256;     // empty polls before a worker starts sleeping
    uint32_t sleep_us = 50;        // sleep per idle round once spinning gave nothing
    uint32_t max_sleep_us = 1000;  // the sleep doubles up to this while idle
};

/// Table and pool sizes; memory is sized from these up front and reported at start.
struct LimitsConfig {
    uint32_t mbufs = 16383;          // per mempool (one per NUMA socket in use)
    uint32_t max_pods = 1024;        // local pods
    uint32_t max_routes = 4096;      // remote pod CIDRs (LPM rules)
    uint32_t arp_pending = 64;       // per worker: packets held while a next hop resolves
    uint32_t arp_timeout_ms = 1000;  // a pending packet older than this is dropped
    uint32_t arp_reachable_s = 300;  // a resolved neighbour is refreshed after this
    uint32_t conntrack = 262144;     // tracked connections (about 120 B each), split over workers
    uint32_t conntrack_source_share =
        50;  // % of a worker's conntrack one source may hold unreplied
};

struct NodeConfig {
    std::string node_name;                // node.name, required
    Ip4 node_ip;                          // node.ip, required: underlay address
    std::optional<Mac> node_mac;          // node.mac; default: the uplink port's MAC
    Prefix4 pod_cidr;                     // node.pod_cidr, required
    Ip4 gateway_ip;                       // node.gateway; default: first host of pod_cidr
    Mac gateway_mac;                      // node.gateway_mac; default Mac::from_ip(gateway_ip)
    std::optional<Prefix4> cluster_cidr;  // node.cluster_cidr; contains every pod CIDR
    uint16_t mtu = 1500;                  // node.mtu: uplink MTU; pods get mtu - 50

    VxlanMode vxlan_mode = VxlanMode::kStandard;  // vxlan.mode: standard|flannel
    uint16_t vxlan_port = 4789;                   // vxlan.port; flannel mode default 8472
    uint32_t vni = 1;                             // vxlan.vni (24 bits); flannel mode requires 1
    Mac vtep_mac;                                 // vxlan.vtep_mac; default Mac::from_ip(node_ip)

    std::string file_prefix;            // dpdk.file_prefix; default "kdp-" + node_name
    std::vector<std::string> eal_args;  // dpdk.eal_args: extra EAL arguments, verbatim
    bool huge_unlink = false;  // dpdk.huge_unlink: EAL --huge-unlink (no secondary processes)
    std::string lcores;        // dpdk.lcores: EAL --lcores string, e.g. "(0,1)@0"
    std::vector<unsigned> worker_lcores;  // workers.lcores: one worker per lcore id, >= 1
    IdleConfig idle;                      // workers.idle

    UplinkConfig uplink;                         // uplink
    std::vector<PodPortConfig> pods;             // pods
    std::vector<RemoteNodeConfig> remote_nodes;  // remote_nodes
    std::optional<HostConfig> host;              // host; none: no host interface

    std::string api_socket = "/run/kdp/dataplane.sock";  // api.socket
    /// api.group: a group whose members may call the API besides root (the socket becomes
    /// root:group 0660); resolved to its gid when the file is read.
    std::optional<std::string> api_group;
    std::optional<gid_t> api_gid;
    LimitsConfig limits;                   // limits
    table::CtTimeouts conntrack_timeouts;  // conntrack_timeouts (seconds)
    /// network_policy.before_sync: "deny" (false, the default): until the control plane's
    /// first sync carries NetworkPolicy, no pod traffic is forwarded; "allow" (true): the
    /// static tables of this file have no policy and are enforced as such (no control plane).
    bool policy_allow_before_sync = false;

    /// The node's subnet on the underlay: node.ip/uplink.prefix_len, host bits cleared.
    Prefix4 underlay_subnet() const noexcept {
        const Prefix4 mask{Ip4{}, uplink.prefix_len};
        return Prefix4{Ip4::from_host(node_ip.host() & mask.mask_host()), uplink.prefix_len};
    }

    /// Overlay MTU offered to pods: mtu - 50 (outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8).
    uint16_t pod_mtu() const noexcept { return static_cast<uint16_t>(mtu - 50); }
};

/// Reads and validates a YAML node config. Throws ConfigError naming the key and the problem.
NodeConfig load_node_config(const std::string& path);

/// Same, from YAML text (for tests and for configs passed inline).
NodeConfig parse_node_config(const std::string& yaml_text);

}  // namespace kdp::config
