// One node config for every node: `kdp-control node-config` turns the config that a ConfigMap
// (or /etc/kdp) holds for all nodes into the complete config of this node's kdp-dataplane.
//
// What the shared template leaves out comes from where the facts live:
//   node.name          --node (NODE_NAME, the downward API's spec.nodeName)
//   node.ip            the Node's status.addresses InternalIP (IPv4), else the uplink's address
//   node.pod_cidr      the Node's spec.podCIDRs (its IPv4 entry), allocated by the
//                      controller-manager (--allocate-node-cidrs)
//   node.zone          the Node's topology.kubernetes.io/zone label (checked, then dropped:
//                      kdp-control reads the zone from the Node for topology-aware routing)
//   node.mac, node.mtu, uplink.prefix_len   the uplink as the kernel has it, before DPDK
//                      takes it (uplink.interface: a kernel interface name or a PCI address)
//   uplink.devargs     net_af_packet on the interface named, or the PCI address named
// A value given explicitly (in the template, or by --node-ip/--pod-cidr) wins; when two
// sources both give a value and they differ, that is an error naming both, so that a node
// never runs with an address or CIDR the cluster does not know it by.
//
// Pure functions except read_uplink() (sysfs and getifaddrs) and fetch_node() (one list
// request to the API server). Any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/net.h"
#include "control/k8s/kubeconfig.h"

namespace kdp::control::bootstrap {

class BootstrapError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A fact that is not there yet but will be (the Node's pod CIDR before the controller-manager
/// allocated it, the Node before the kubelet registered it): worth waiting for.
class NotYet : public BootstrapError {
public:
    using BootstrapError::BootstrapError;
};

/// What the Node object says about this node.
struct NodeFacts {
    std::string name;
    std::vector<Ip4> internal_ips;   // status.addresses of type InternalIP, IPv4, in order
    std::vector<Prefix4> pod_cidrs;  // spec.podCIDRs (else spec.podCIDR), IPv4 entries
    std::string zone;                // metadata.labels["topology.kubernetes.io/zone"]
};

/// Reads a Node object (as the API server returns it). Throws BootstrapError on a malformed
/// address or CIDR in it.
NodeFacts node_facts(const nlohmann::json& node);

/// An address on an interface: the address itself and its prefix length.
struct IfAddress {
    Ip4 ip;
    uint8_t prefix_len = 0;
    friend bool operator==(const IfAddress&, const IfAddress&) = default;
};

/// The uplink as the kernel has it.
struct UplinkFacts {
    std::string iface;       // kernel interface name
    std::string pci;         // its PCI function ("0000:03:00.0"), or ""
    std::optional<Mac> mac;  // none for a link without one (or a zero MAC)
    uint16_t mtu = 0;
    std::vector<IfAddress> addresses;  // IPv4 addresses, in the kernel's order
};

/// Whether `s` is a PCI address in sysfs' form, "0000:03:00.0" (domain optional).
bool is_pci_address(std::string_view s);

/// The interface `name_or_pci` (an interface name, or the PCI function whose netdev it is) read
/// from `sys` (sysfs, "/sys") and the kernel's address list. Throws BootstrapError when the
/// kernel has no such interface (a NIC already bound to a DPDK driver has none).
UplinkFacts read_uplink(const std::string& name_or_pci, const std::filesystem::path& sys = "/sys");

/// The values given on the command line; empty: not given.
struct Explicit {
    std::string node_name;
    std::optional<Ip4> node_ip;
    std::optional<Prefix4> pod_cidr;
};

using UplinkReader = std::function<UplinkFacts(const std::string& name_or_pci)>;

struct Rendered {
    std::string yaml;                  // the complete node config
    std::vector<std::string> sources;  // one line per filled-in value: "node.ip 198.51.100.1
                                       // (Node node1 InternalIP)"
};

/// Merges `template_yaml` (a node config, possibly without the keys above), the command-line
/// values, the Node (none: not read) and the uplink (read through `read` when the template
/// names uplink.interface). Throws NotYet while the Node has no IPv4 pod CIDR and none is
/// given, BootstrapError on a conflict or a missing value.
Rendered render_node_config(const std::string& template_yaml,
                            const Explicit& given,
                            const std::optional<NodeFacts>& node,
                            const UplinkReader& read);

/// The Node `name` from the API server `cfg` names: one list with a field selector
/// (metadata.name), as the role grants list and watch on nodes but not get. Throws NotYet
/// when the API server does not know the node (yet), BootstrapError when it cannot be asked.
nlohmann::json fetch_node(const k8s::ClusterConfig& cfg,
                          const std::string& name,
                          std::chrono::milliseconds timeout);

}  // namespace kdp::control::bootstrap
