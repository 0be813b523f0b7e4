#include "api/spec_check.h"

#include <map>
#include <set>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "api/policy_tables.h"

namespace kdp::api {

std::string stale_generation(uint64_t generation, uint64_t in_force) {
    return fmt::format("generation {} is not newer than the generation in force ({})", generation,
                       in_force);
}

// The checks of the fields a delta may change (a Service port's block): its backends.
std::optional<std::string> check_backends(const table::ServiceSpec& sv, const std::string& at) {
    if (sv.backends.size() > 65535) {
        return fmt::format("{}: more than 65535 backends", at);
    }
    for (size_t b = 0; b < sv.backends.size(); ++b) {
        const table::BackendSpec& be = sv.backends[b];
        if (be.ip.is_zero() || be.port == 0) {
            return fmt::format("{}: backends[{}] ({}): {}:{} is not an address and port", at, b,
                               be.pod, be.ip.str(), be.port);
        }
    }
    return std::nullopt;
}

// Whether two specs of one Service port differ at most in their block's fields (backends,
// loadBalancerSourceRanges): then a delta may swap the block and leave the rest in force.
bool same_structure(const table::ServiceSpec& a, const table::ServiceSpec& b) {
    return a.name == b.name && a.proto == b.proto && a.frontends == b.frontends &&
           a.external_local == b.external_local && a.internal_local == b.internal_local &&
           a.affinity_timeout_s == b.affinity_timeout_s &&
           a.health_check_node_port == b.health_check_node_port;
}

std::optional<std::string> check_spec(const table::TableSpec& spec,
                                      uint64_t generation_in_force,
                                      const dataplane::NodeContext& node) {
    if (spec.generation <= generation_in_force) {
        return stale_generation(spec.generation, generation_in_force);
    }
    const Prefix4 own = node.pod_cidr;
    std::set<std::string> names;
    std::vector<Prefix4> cidrs;
    for (size_t i = 0; i < spec.routes.size(); ++i) {
        const table::RouteSpec& r = spec.routes[i];
        const std::string at = fmt::format("routes[{}] ({})", i, r.node_name);
        if (r.node_name.empty()) {
            return fmt::format("routes[{}]: node_name is empty", i);
        }
        if (!names.insert(r.node_name).second) {
            return fmt::format("{}: duplicate node name", at);
        }
        if (r.node_ip.is_zero() || r.node_ip == node.node_ip) {
            return fmt::format("{}: node_ip {} is not a remote VTEP", at, r.node_ip.str());
        }
        if (r.pod_cidr.overlaps(own)) {
            return fmt::format("{}: pod_cidr {} overlaps this node's pod CIDR {}", at,
                               r.pod_cidr.str(), own.str());
        }
        for (const Prefix4& c : cidrs) {
            if (c.overlaps(r.pod_cidr)) {
                return fmt::format("{}: pod_cidr {} overlaps {}", at, r.pod_cidr.str(), c.str());
            }
        }
        cidrs.push_back(r.pod_cidr);
        if (r.vtep_mac.is_zero() || r.vtep_mac.is_multicast()) {
            return fmt::format("{}: vtep_mac {} is not a unicast MAC", at, r.vtep_mac.str());
        }
        if (!node.underlay_subnet.contains(r.node_ip) &&
            node.underlay_gateway_slot == table::kNoSlot) {
            return fmt::format(
                "{}: node_ip {} is outside the uplink subnet {} and no "
                "uplink.gateway is configured",
                at, r.node_ip.str(), node.underlay_subnet.str());
        }
    }
    std::set<std::string> pod_names;
    std::set<uint32_t> ips;
    std::set<std::string> pod_ports;
    const uint32_t net = own.addr.host();
    const uint32_t bcast = net + static_cast<uint32_t>(own.size() - 1);
    for (size_t i = 0; i < spec.pods.size(); ++i) {
        const table::PodSpec& p = spec.pods[i];
        const std::string at = fmt::format("pods[{}] ({})", i, p.name);
        if (p.name.empty()) {
            return fmt::format("pods[{}]: name is empty", i);
        }
        if (!pod_names.insert(p.name).second) {
            return fmt::format("{}: duplicate pod name", at);
        }
        if (!own.contains(p.ip)) {
            return fmt::format("{}: ip {} is outside this node's pod CIDR {}", at, p.ip.str(),
                               own.str());
        }
        if (p.ip == node.gateway_ip || p.ip.host() == net || p.ip.host() == bcast) {
            return fmt::format("{}: ip {} is the gateway, network or broadcast address", at,
                               p.ip.str());
        }
        if (!ips.insert(p.ip.be).second) {
            return fmt::format("{}: ip {} is used by another pod", at, p.ip.str());
        }
        if (!p.port_name.empty() && !pod_ports.insert(p.port_name).second) {
            return fmt::format("{}: port {} is bound to another pod", at, p.port_name);
        }
    }
    if (spec.services.size() > table::kMaxServiceSlots) {
        return fmt::format("{} service ports: more than {}", spec.services.size(),
                           table::kMaxServiceSlots);
    }
    std::set<uint64_t> frontends;
    std::set<std::string> service_names;
    for (size_t i = 0; i < spec.services.size(); ++i) {
        const table::ServiceSpec& sv = spec.services[i];
        const std::string at = fmt::format("services[{}] ({})", i, sv.name);
        if (sv.name.empty()) {
            return fmt::format("services[{}]: name is empty", i);
        }
        if (!service_names.insert(sv.name).second) {
            return fmt::format("{}: duplicate service port name", at);
        }
        if (sv.proto != 6 && sv.proto != 17 && sv.proto != 132) {
            return fmt::format("{}: protocol {} is not TCP, UDP or SCTP", at, sv.proto);
        }
        if (sv.frontends.empty()) {
            return fmt::format("{}: no frontend", at);
        }
        for (size_t f = 0; f < sv.frontends.size(); ++f) {
            const table::FrontendSpec& fe = sv.frontends[f];
            if (fe.ip.is_zero() || fe.port == 0) {
                return fmt::format("{}: frontends[{}]: {}:{} is not an address and port", at, f,
                                   fe.ip.str(), fe.port);
            }
            if (!frontends.insert(table::frontend_key(fe.ip, to_be16(fe.port), sv.proto)).second) {
                return fmt::format("{}: frontends[{}]: {}:{} is used by another service port", at,
                                   f, fe.ip.str(), fe.port);
            }
        }
        if (auto e = check_backends(sv, at)) {
            return e;
        }
    }
    // healthCheckNodePort: one Service's (any of its ports), and no TCP frontend on the node IP.
    std::map<uint16_t, std::string_view> health;
    for (size_t i = 0; i < spec.services.size(); ++i) {
        const table::ServiceSpec& sv = spec.services[i];
        const uint16_t port = sv.health_check_node_port;
        if (port == 0 || !sv.external_local) {
            continue;  // only externalTrafficPolicy: Local has one
        }
        const std::string_view svc = std::string_view(sv.name).substr(0, sv.name.find(':'));
        const std::string at = fmt::format("services[{}] ({})", i, sv.name);
        if (const auto [it, fresh] = health.emplace(port, svc); !fresh && it->second != svc) {
            return fmt::format("{}: health_check_node_port {} is used by service {}", at, port,
                               it->second);
        }
        if (frontends.count(table::frontend_key(node.node_ip, to_be16(port), 6)) != 0) {
            return fmt::format("{}: health_check_node_port {} is a TCP frontend of the node IP {}",
                               at, port, node.node_ip.str());
        }
    }
    return check_policy(spec.policy, own);
}

}  // namespace kdp::api
