#include "control/bootstrap/node_config.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <exception>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "control/k8s/blocking_get.h"
#include "control/k8s/client.h"

namespace kdp::control::bootstrap {
namespace {

using nlohmann::json;

constexpr std::string_view kZoneLabel = "topology.kubernetes.io/zone";

std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) {
        out += (out.empty() ? "" : ", ") + s;
    }
    return out;
}

template <class T>
std::vector<std::string> strs(const std::vector<T>& v) {
    std::vector<std::string> out;
    for (const auto& x : v) {
        out.push_back(x.str());
    }
    return out;
}

std::string str(const IfAddress& a) {
    return fmt::format("{}/{}", a.ip.str(), a.prefix_len);
}

// A file's first line, without the newline; nullopt when it cannot be read.
std::optional<std::string> read_line(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::string line;
    if (!in || !std::getline(in, line)) {
        return std::nullopt;
    }
    return line;
}

// A scalar of the template as text; nullopt when absent. A map or list where a scalar belongs
// is an error naming the key.
std::optional<std::string> scalar(const YAML::Node& map, const char* key, const char* path) {
    if (!map || !map.IsMap()) {
        return std::nullopt;
    }
    const YAML::Node v = map[key];
    if (!v) {
        return std::nullopt;
    }
    if (!v.IsScalar()) {
        throw BootstrapError(fmt::format("{}: expected a single value", path));
    }
    return v.Scalar();
}

}  // namespace

NodeFacts node_facts(const json& node) {
    NodeFacts f;
    if (!node.is_object()) {
        throw BootstrapError("the Node is not an object");
    }
    const json* md =
        node.contains("metadata") && node["metadata"].is_object() ? &node["metadata"] : nullptr;
    f.name = md != nullptr ? md->value("name", "") : "";
    const std::string where = fmt::format("Node {}", f.name);
    if (md != nullptr && md->contains("labels") && (*md)["labels"].is_object()) {
        const json& labels = (*md)["labels"];
        if (const auto z = labels.find(kZoneLabel); z != labels.end() && z->is_string()) {
            f.zone = z->get<std::string>();
        }
    }
    // spec.podCIDRs holds spec.podCIDR as its first entry when set (core/v1 types.go), and a
    // second one of the other family on a dual-stack node; kdp's dataplane is IPv4.
    std::vector<std::string> cidrs;
    if (const json* spec =
            node.contains("spec") && node["spec"].is_object() ? &node["spec"] : nullptr) {
        if (const auto c = spec->find("podCIDRs"); c != spec->end() && c->is_array()) {
            for (const auto& e : *c) {
                if (e.is_string()) {
                    cidrs.push_back(e.get<std::string>());
                }
            }
        }
        if (const auto c = spec->find("podCIDR");
            cidrs.empty() && c != spec->end() && c->is_string() && !c->get<std::string>().empty()) {
            cidrs.push_back(c->get<std::string>());
        }
    }
    for (const auto& c : cidrs) {
        if (c.find(':') != std::string::npos) {
            continue;  // IPv6
        }
        const auto p = Prefix4::parse(c, /*strict=*/true);
        if (!p) {
            throw BootstrapError(
                fmt::format("{}: spec.podCIDRs entry \"{}\" is not a CIDR", where, c));
        }
        f.pod_cidrs.push_back(*p);
    }
    if (const json* status =
            node.contains("status") && node["status"].is_object() ? &node["status"] : nullptr) {
        if (const auto a = status->find("addresses"); a != status->end() && a->is_array()) {
            for (const auto& e : *a) {
                if (!e.is_object() || e.value("type", "") != "InternalIP") {
                    continue;
                }
                const std::string addr = e.value("address", "");
                if (addr.find(':') != std::string::npos) {
                    continue;
                }
                const auto ip = Ip4::parse(addr);
                if (!ip) {
                    throw BootstrapError(
                        fmt::format("{}: InternalIP \"{}\" is not an address", where, addr));
                }
                f.internal_ips.push_back(*ip);
            }
        }
    }
    return f;
}

bool is_pci_address(std::string_view s) {
    static const std::regex re("^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\\.[0-7]$");
    return std::regex_match(s.begin(), s.end(), re);
}

UplinkFacts read_uplink(const std::string& name_or_pci, const std::filesystem::path& sys) {
    namespace fs = std::filesystem;
    UplinkFacts f;
    std::error_code ec;
    if (is_pci_address(name_or_pci)) {
        const std::string pci =
            name_or_pci.size() == 7 ? "0000:" + name_or_pci : name_or_pci;  // domain 0
        const fs::path dev = sys / "bus/pci/devices" / pci;
        if (!fs::exists(dev, ec)) {
            throw BootstrapError(fmt::format("uplink {}: no such PCI function", name_or_pci));
        }
        for (const auto& e : fs::directory_iterator(dev / "net", ec)) {
            f.iface = e.path().filename().string();
            break;
        }
        if (f.iface.empty()) {
            throw BootstrapError(fmt::format(
                "uplink {}: the kernel has no interface on this PCI function (bound to a DPDK "
                "driver already?): give node.mac and node.mtu in the node config",
                name_or_pci));
        }
        f.pci = pci;
    } else {
        f.iface = name_or_pci;
    }
    const fs::path link = sys / "class/net" / f.iface;
    if (f.iface.empty() || f.iface.find('/') != std::string::npos || !fs::exists(link, ec)) {
        throw BootstrapError(fmt::format("uplink {}: no such network interface", name_or_pci));
    }
    if (f.pci.empty()) {
        // A PCI NIC's device link points at its function; a veth, bridge or TAP has none.
        const auto subsystem = fs::read_symlink(link / "device/subsystem", ec);
        if (!ec && subsystem.filename() == "pci") {
            f.pci = fs::canonical(link / "device", ec).filename().string();
        }
    }
    if (const auto mtu = read_line(link / "mtu")) {
        try {
            const unsigned long v = std::stoul(*mtu);
            f.mtu = static_cast<uint16_t>(std::min(v, 65535ul));
        } catch (const std::exception&) {
            throw BootstrapError(fmt::format("uplink {}: unreadable MTU \"{}\"", f.iface, *mtu));
        }
    } else {
        throw BootstrapError(
            fmt::format("uplink {}: cannot read {}", f.iface, (link / "mtu").string()));
    }
    if (const auto mac = read_line(link / "address")) {
        if (auto m = Mac::parse(*mac); m && *m != Mac{}) {
            f.mac = m;
        }
    }
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) == 0) {
        const std::unique_ptr<ifaddrs, decltype(&freeifaddrs)> guard(list, &freeifaddrs);
        for (const ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
            if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET ||
                a->ifa_netmask == nullptr || f.iface != a->ifa_name) {
                continue;
            }
            sockaddr_in addr{}, mask{};
            std::memcpy(&addr, a->ifa_addr, sizeof addr);
            std::memcpy(&mask, a->ifa_netmask, sizeof mask);
            f.addresses.push_back({Ip4{addr.sin_addr.s_addr}, static_cast<uint8_t>(std::popcount(
                                                                  ntohl(mask.sin_addr.s_addr)))});
        }
    }
    return f;
}

Rendered render_node_config(const std::string& template_yaml,
                            const Explicit& given,
                            const std::optional<NodeFacts>& node,
                            const UplinkReader& read) {
    YAML::Node root;
    try {
        root = YAML::Load(template_yaml);
    } catch (const YAML::Exception& e) {
        throw BootstrapError(fmt::format("node config template: {}", e.what()));
    }
    if (!root.IsMap()) {
        throw BootstrapError("node config template: not a map of sections");
    }
    if (root["node"] && !root["node"].IsMap()) {
        throw BootstrapError("node: expected a map");
    }
    if (root["uplink"] && !root["uplink"].IsMap()) {
        throw BootstrapError("uplink: expected a map");
    }
    YAML::Node n = root["node"];
    YAML::Node up = root["uplink"];
    Rendered out;
    auto note = [&](const std::string& s) { out.sources.push_back(s); };
    const std::string node_src = node ? fmt::format("Node {}", node->name) : "";

    // node.name
    const auto t_name = scalar(n, "name", "node.name");
    if (t_name && !given.node_name.empty() && *t_name != given.node_name) {
        throw BootstrapError(
            fmt::format("node.name: the node config says \"{}\", --node (NODE_NAME) says \"{}\"",
                        *t_name, given.node_name));
    }
    const std::string name = t_name ? *t_name : given.node_name;
    if (name.empty()) {
        throw BootstrapError("node.name: not in the node config, and no --node (NODE_NAME)");
    }
    if (!t_name) {
        n["name"] = name;
        note(fmt::format("node.name {} (--node)", name));
    }
    if (node && node->name != name) {
        throw BootstrapError(
            fmt::format("node.name is \"{}\", but the Node read is \"{}\"", name, node->name));
    }

    // The uplink, as the kernel has it.
    std::optional<UplinkFacts> link;
    std::string link_src;
    if (const auto iface = scalar(up, "interface", "uplink.interface")) {
        link = read(*iface);
        link_src =
            fmt::format("uplink {} in the kernel",
                        link->pci.empty() ? link->iface : link->iface + " (" + link->pci + ")");
        up.remove("interface");
        if (!up["devargs"]) {
            // By name the kernel keeps the NIC and the dataplane reads it through a packet
            // socket; by PCI address DPDK takes the function (bound to vfio-pci).
            const std::string devargs = is_pci_address(*iface)
                                            ? link->pci
                                            : fmt::format("net_af_packet0,iface={}", link->iface);
            up["devargs"] = devargs;
            note(fmt::format("uplink.devargs {} (uplink.interface {})", devargs, *iface));
        }
    }

    // node.ip: explicit, else the Node's InternalIP, else the uplink's address.
    std::optional<Ip4> ip;
    std::string ip_src;
    if (const auto t = scalar(n, "ip", "node.ip")) {
        ip = Ip4::parse(*t);
        if (!ip) {
            throw BootstrapError(fmt::format("node.ip: \"{}\" is not an IPv4 address", *t));
        }
        ip_src = "the node config";
    }
    if (given.node_ip) {
        if (ip && *ip != *given.node_ip) {
            throw BootstrapError(fmt::format("node.ip: the node config says {}, --node-ip says {}",
                                             ip->str(), given.node_ip->str()));
        }
        ip = given.node_ip;
        ip_src = "--node-ip";
    }
    if (node && !node->internal_ips.empty()) {
        if (ip && std::find(node->internal_ips.begin(), node->internal_ips.end(), *ip) ==
                      node->internal_ips.end()) {
            throw BootstrapError(fmt::format("node.ip: {} says {}, {} has InternalIP {}", ip_src,
                                             ip->str(), node_src, join(strs(node->internal_ips))));
        }
        if (!ip) {
            ip = node->internal_ips.front();
            ip_src = node_src + " InternalIP";
            note(fmt::format("node.ip {} ({})", ip->str(), ip_src));
        }
    }
    std::optional<IfAddress> on_link;  // the uplink's address that is node.ip
    if (link && !link->addresses.empty()) {
        if (ip) {
            for (const auto& a : link->addresses) {
                if (a.ip == *ip) {
                    on_link = a;
                }
            }
            if (!on_link) {
                std::vector<std::string> addrs;
                for (const auto& a : link->addresses) {
                    addrs.push_back(str(a));
                }
                throw BootstrapError(fmt::format("node.ip: {} says {}, {} has {}", ip_src,
                                                 ip->str(), link_src, join(addrs)));
            }
        } else {
            on_link = link->addresses.front();
            ip = on_link->ip;
            note(fmt::format("node.ip {} ({})", ip->str(), link_src));
        }
    }
    if (!ip) {
        throw BootstrapError(
            "node.ip: not in the node config, and neither a Node InternalIP nor an address on "
            "uplink.interface to take it from");
    }
    n["ip"] = ip->str();

    // uplink.prefix_len: the subnet of node.ip on the uplink.
    if (on_link) {
        if (const auto t = scalar(up, "prefix_len", "uplink.prefix_len")) {
            if (*t != std::to_string(on_link->prefix_len)) {
                throw BootstrapError(
                    fmt::format("uplink.prefix_len: the node config says {}, {} has {}", *t,
                                link_src, str(*on_link)));
            }
        } else {
            up["prefix_len"] = static_cast<unsigned>(on_link->prefix_len);
            note(fmt::format("uplink.prefix_len {} ({})", on_link->prefix_len, link_src));
        }
    }

    // node.pod_cidr: explicit, else the Node's.
    std::optional<Prefix4> cidr;
    std::string cidr_src;
    if (const auto t = scalar(n, "pod_cidr", "node.pod_cidr")) {
        cidr = Prefix4::parse(*t, /*strict=*/true);
        if (!cidr) {
            throw BootstrapError(
                fmt::format("node.pod_cidr: \"{}\" is not a CIDR without host bits", *t));
        }
        cidr_src = "the node config";
    }
    if (given.pod_cidr) {
        if (cidr && *cidr != *given.pod_cidr) {
            throw BootstrapError(
                fmt::format("node.pod_cidr: the node config says {}, --pod-cidr says {}",
                            cidr->str(), given.pod_cidr->str()));
        }
        cidr = given.pod_cidr;
        cidr_src = "--pod-cidr";
    }
    if (node && !node->pod_cidrs.empty()) {
        if (cidr && *cidr != node->pod_cidrs.front()) {
            throw BootstrapError(fmt::format("node.pod_cidr: {} says {}, {} has spec.podCIDRs {}",
                                             cidr_src, cidr->str(), node_src,
                                             join(strs(node->pod_cidrs))));
        }
        if (!cidr) {
            cidr = node->pod_cidrs.front();
            note(fmt::format("node.pod_cidr {} ({} spec.podCIDRs)", cidr->str(), node_src));
        }
    }
    if (!cidr) {
        if (node) {
            throw NotYet(fmt::format(
                "node.pod_cidr: {} has no IPv4 spec.podCIDR yet (the controller-manager "
                "allocates it with --allocate-node-cidrs --cluster-cidr)",
                node_src));
        }
        throw BootstrapError("node.pod_cidr: not in the node config, and no Node to read it from");
    }
    n["pod_cidr"] = cidr->str();

    // node.zone: checked against the Node, then dropped (the dataplane has no use for it).
    if (const auto t = scalar(n, "zone", "node.zone")) {
        if (node && !node->zone.empty() && *t != node->zone) {
            throw BootstrapError(fmt::format("node.zone: the node config says \"{}\", {} has {}={}",
                                             *t, node_src, kZoneLabel, node->zone));
        }
        note(fmt::format("zone {} (the node config)", *t));
        n.remove("zone");
    } else if (node && !node->zone.empty()) {
        note(fmt::format("zone {} ({} label {})", node->zone, node_src, kZoneLabel));
    }

    // node.mac and node.mtu from the uplink.
    if (link && link->mac) {
        if (const auto t = scalar(n, "mac", "node.mac")) {
            const auto m = Mac::parse(*t);
            if (!m) {
                throw BootstrapError(fmt::format("node.mac: \"{}\" is not a MAC address", *t));
            }
            if (*m != *link->mac) {
                throw BootstrapError(fmt::format("node.mac: the node config says {}, {} has {}",
                                                 m->str(), link_src, link->mac->str()));
            }
        } else {
            n["mac"] = link->mac->str();
            note(fmt::format("node.mac {} ({})", link->mac->str(), link_src));
        }
    }
    if (link && link->mtu != 0) {
        if (const auto t = scalar(n, "mtu", "node.mtu")) {
            if (*t != std::to_string(link->mtu)) {
                throw BootstrapError(fmt::format("node.mtu: the node config says {}, {} has {}", *t,
                                                 link_src, link->mtu));
            }
        } else {
            n["mtu"] = static_cast<unsigned>(link->mtu);
            note(fmt::format("node.mtu {} ({})", link->mtu, link_src));
        }
    }

    root["node"] = n;
    if (up) {
        root["uplink"] = up;
    }
    YAML::Emitter e;
    e << root;
    out.yaml = std::string(e.c_str()) + "\n";
    return out;
}

json fetch_node(const k8s::ClusterConfig& cfg,
                const std::string& name,
                std::chrono::milliseconds timeout) {
    const std::string target = fmt::format("/api/v1/nodes?fieldSelector=metadata.name%3D{}", name);
    const std::string where = fmt::format("Node {} from {}", name, cfg.server);
    k8s::Client::Response resp;
    try {
        resp = k8s::blocking_get(cfg, target, timeout);
    } catch (const k8s::TransportError& e) {
        throw NotYet(fmt::format("{}: {}", where, e.what()));  // down or restarting
    } catch (const std::exception& e) {
        throw BootstrapError(fmt::format("{}: {}", where, e.what()));
    }
    const json list = json::parse(resp.body, nullptr, false);
    if (!list.is_object() || !list.contains("items") || !list["items"].is_array()) {
        throw BootstrapError(fmt::format("{}: the answer is not a NodeList", where));
    }
    if (list["items"].empty()) {
        throw NotYet(fmt::format("{}: no such Node (is the kubelet registered?)", where));
    }
    return list["items"][0];
}

}  // namespace kdp::control::bootstrap
