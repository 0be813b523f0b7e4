#include "compile/services.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include <fmt/format.h>

#include "common/hash.h"

namespace kdp::control {
namespace {

uint64_t name_hash(std::string_view s) {
    uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a, then a finaliser: stable across runs
    for (const char c : s) {
        h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
    }
    return mix64(h);
}

uint8_t proto_number(const std::string& p) {
    return p == "UDP" ? 17 : p == "SCTP" ? 132 : 6;
}

// What the API server allocates when a manifest leaves it out.
struct Allocations {
    std::map<std::string, Ip4> cluster_ip;                         // service key
    std::map<std::pair<std::string, size_t>, uint16_t> node_port;  // (key, port index)
    std::map<std::string, uint16_t> health_check;                  // service key
};

Allocations allocate(const Model& model, const ServiceOptions& o) {
    Allocations a;
    std::set<uint32_t> used_ips;
    std::set<uint16_t> used_ports;
    for (const auto& [key, sv] : model.services()) {
        if (sv.cluster_ip) {
            used_ips.insert(sv.cluster_ip->host());
            a.cluster_ip[key] = *sv.cluster_ip;
        }
        for (size_t i = 0; i < sv.ports.size(); ++i) {
            if (sv.ports[i].node_port != 0) {
                used_ports.insert(sv.ports[i].node_port);
                a.node_port[{key, i}] = sv.ports[i].node_port;
            }
        }
        if (sv.health_check_node_port != 0) {
            used_ports.insert(sv.health_check_node_port);
            a.health_check[key] = sv.health_check_node_port;
        }
    }
    // Network address, the first host (kept for the "kubernetes" Service by convention) and
    // the broadcast address are never handed out.
    const uint64_t ip_span = o.service_cidr.size() > 3 ? o.service_cidr.size() - 3 : 0;
    const uint32_t port_span =
        o.node_port_max >= o.node_port_min ? uint32_t{o.node_port_max} - o.node_port_min + 1 : 0;
    const auto take_ip = [&](const std::string& key) {
        if (ip_span == 0) {
            return;
        }
        const uint64_t start = name_hash(key) % ip_span;
        for (uint64_t k = 0; k < ip_span; ++k) {
            const uint32_t h =
                o.service_cidr.addr.host() + 2 + static_cast<uint32_t>((start + k) % ip_span);
            if (used_ips.insert(h).second) {
                a.cluster_ip[key] = Ip4::from_host(h);
                return;
            }
        }
    };
    const auto take_port = [&](const std::string& seed) -> uint16_t {
        const uint64_t start = port_span == 0 ? 0 : name_hash(seed) % port_span;
        for (uint32_t k = 0; k < port_span; ++k) {
            const auto p = static_cast<uint16_t>(o.node_port_min + (start + k) % port_span);
            if (used_ports.insert(p).second) {
                return p;
            }
        }
        return 0;
    };
    for (const auto& [key, sv] : model.services()) {
        if (sv.type == "ExternalName" || sv.headless) {
            continue;
        }
        if (!sv.cluster_ip) {
            take_ip(key);
        }
        if (sv.wants_node_ports()) {
            for (size_t i = 0; i < sv.ports.size(); ++i) {
                if (sv.ports[i].node_port == 0) {
                    a.node_port[{key, i}] =
                        take_port(fmt::format("{}:{}:{}", key, sv.ports[i].name, i));
                }
            }
        }
        if (sv.type == "LoadBalancer" && sv.external_local && sv.health_check_node_port == 0) {
            a.health_check[key] = take_port(key + ":health");
        }
    }
    return a;
}

bool selects(const Labels& selector, const Labels& labels) {
    for (const auto& [k, v] : selector) {
        const auto it = labels.find(k);
        if (it == labels.end() || it->second != v) {
            return false;
        }
    }
    return true;
}

// The EndpointSlice controller's work for one Service port: every running pod the selector
// matches, with the target port resolved on that pod.
std::vector<table::BackendSpec> derive_backends(const Model& model,
                                                const Service& sv,
                                                const ServicePort& sp) {
    std::vector<table::BackendSpec> out;
    if (!sv.has_selector || sv.selector.empty()) {
        return out;  // no selector: endpoints are managed by hand, through EndpointSlices
    }
    for (const auto& [key, pod] : model.pods()) {
        if (pod.ns != sv.ns || !pod.pod_ip || pod.host_network ||
            !selects(sv.selector, pod.labels)) {
            continue;
        }
        uint16_t port = sp.target_port;
        if (!sp.target_name.empty()) {
            port = 0;
            for (const ContainerPort& cp : pod.ports) {
                if (cp.name == sp.target_name && cp.protocol == sp.protocol) {
                    port = cp.port;
                    break;
                }
            }
            if (port == 0) {
                continue;  // this pod does not have the named port
            }
        }
        out.push_back(table::BackendSpec{
            .ip = *pod.pod_ip,
            .port = port,
            .pod = key,
            .node = pod.node_name,
            .ready = pod.ready && !pod.terminating,
            .serving = pod.ready,
            .terminating = pod.terminating,
        });
    }
    return out;
}

}  // namespace

std::map<std::string, Ip4> cluster_ips(const Model& model, const ServiceOptions& options) {
    return allocate(model, options).cluster_ip;
}

std::vector<table::ServiceSpec> compile_services(const Model& model,
                                                 std::string_view node,
                                                 const ServiceOptions& options,
                                                 std::vector<std::string>* warnings) {
    const Allocations alloc = allocate(model, options);
    std::optional<Ip4> node_ip;
    if (const auto it = model.nodes().find(std::string(node)); it != model.nodes().end()) {
        node_ip = it->second.internal_ip;
    }
    // EndpointSlices by the Service they belong to.
    std::map<std::string, std::vector<const EndpointSlice*>> slices;
    for (const auto& [key, es] : model.endpoint_slices()) {
        if (!es.service.empty()) {
            slices[es.ns + "/" + es.service].push_back(&es);
        }
    }
    std::vector<table::ServiceSpec> out;
    std::set<std::tuple<uint32_t, uint16_t, uint8_t>> taken;
    for (const auto& [key, sv] : model.services()) {
        if (sv.type == "ExternalName" || sv.headless) {
            continue;
        }
        const auto cip = alloc.cluster_ip.find(key);
        const auto own_slices = slices.find(key);
        for (size_t i = 0; i < sv.ports.size(); ++i) {
            const ServicePort& sp = sv.ports[i];
            table::ServiceSpec s;
            s.name = sp.name.empty() ? key : fmt::format("{}:{}", key, sp.name);
            s.proto = proto_number(sp.protocol);
            const auto add_frontend = [&](table::FrontendKind kind, Ip4 ip, uint16_t port) {
                if (port == 0) {
                    return;
                }
                if (!taken.emplace(ip.host(), port, s.proto).second) {
                    if (warnings != nullptr) {
                        warnings->push_back(
                            fmt::format("service {}: {}:{}/{} is already taken by another service; "
                                        "left out of it",
                                        s.name, ip.str(), port, sp.protocol));
                    }
                    return;
                }
                s.frontends.push_back(table::FrontendSpec{kind, ip, port});
            };
            if (cip != alloc.cluster_ip.end()) {
                add_frontend(table::FrontendKind::kClusterIp, cip->second, sp.port);
            }
            if (const auto np = alloc.node_port.find({key, i});
                np != alloc.node_port.end() && node_ip) {
                add_frontend(table::FrontendKind::kNodePort, *node_ip, np->second);
            }
            for (const Ip4 ip : sv.external_ips) {
                add_frontend(table::FrontendKind::kExternalIp, ip, sp.port);
            }
            if (sv.type == "LoadBalancer") {
                for (const Ip4 ip : sv.load_balancer_ips) {
                    add_frontend(table::FrontendKind::kLoadBalancer, ip, sp.port);
                }
            }
            if (s.frontends.empty()) {
                continue;
            }
            if (own_slices != slices.end()) {
                for (const EndpointSlice* es : own_slices->second) {
                    if (!es->ipv4) {
                        continue;
                    }
                    for (const EndpointPort& ep : es->ports) {
                        if (ep.name != sp.name || ep.protocol != sp.protocol || !ep.port) {
                            continue;
                        }
                        for (const Endpoint& e : es->endpoints) {
                            for (const Ip4 ip : e.addresses) {
                                s.backends.push_back(table::BackendSpec{
                                    .ip = ip,
                                    .port = *ep.port,
                                    .pod = e.pod,
                                    .node = e.node_name,
                                    .ready = e.ready,
                                    .serving = e.serving,
                                    .terminating = e.terminating,
                                });
                            }
                        }
                    }
                }
            } else if (options.derive_endpoints) {
                s.backends = derive_backends(model, sv, sp);
            }
            std::sort(s.backends.begin(), s.backends.end(), [](const auto& a, const auto& b) {
                return std::tuple(a.ip.host(), a.port, a.pod) <
                       std::tuple(b.ip.host(), b.port, b.pod);
            });
            // An address listed by two slices (during a slice rotation) counts once.
            s.backends.erase(std::unique(s.backends.begin(), s.backends.end(),
                                         [](const auto& a, const auto& b) {
                                             return a.ip == b.ip && a.port == b.port;
                                         }),
                             s.backends.end());
            s.external_local = sv.external_local;
            s.internal_local = sv.internal_local;
            s.affinity_timeout_s = sv.affinity_timeout_s;
            if (sv.type == "LoadBalancer") {
                s.source_ranges = sv.source_ranges;
            }
            // One health check per Service (as kube-proxy serves it), carried by its first port.
            if (const auto hc = alloc.health_check.find(key);
                i == 0 && hc != alloc.health_check.end()) {
                s.health_check_node_port = hc->second;
            }
            out.push_back(std::move(s));
        }
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    return out;
}

}  // namespace kdp::control
