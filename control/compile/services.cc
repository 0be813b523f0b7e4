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

// Whether kube-proxy leaves a Service or EndpointSlice alone: its informers list both with the
// label selector "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless"
// (cmd/kube-proxy/app/server.go). The first names another proxy that serves the Service; the
// second marks the slices (and Services) of headless Services, which have nothing to balance.
bool left_to_another_proxy(const Labels& labels) {
    return labels.count("service.kubernetes.io/service-proxy-name") != 0 ||
           labels.count("service.kubernetes.io/headless") != 0;
}

// Topology-aware routing as kube-proxy applies EndpointSlice hints (pkg/proxy/topology.go,
// topologyModeFromHints and availableForTopology): when every ready endpoint has node hints
// and one is for this node, cluster traffic goes to the endpoints hinted for this node; else,
// when every ready endpoint has zone hints and one is for this node's zone, to those hinted
// for the zone; else to all. Not-ready endpoints take no part (the terminating fallback,
// which needs no ready endpoint anywhere, ignores topology). Local traffic policies ignore it
// (the dataplane's node-local set never looks at the flag).
enum class TopologyMode : uint8_t { kNone, kSameZone, kSameNode };

bool hinted(const std::vector<std::string>& hints, std::string_view name) {
    return std::find(hints.begin(), hints.end(), name) != hints.end();
}

TopologyMode topology_mode(const std::vector<const Endpoint*>& endpoints,
                           std::string_view node,
                           std::string_view zone) {
    bool any_ready = false, all_node = true, for_node = false, all_zone = true, for_zone = false;
    for (const Endpoint* e : endpoints) {
        if (!e->ready || e->terminating) {
            continue;
        }
        any_ready = true;
        all_node = all_node && !e->hint_nodes.empty();
        for_node = for_node || hinted(e->hint_nodes, node);
        all_zone = all_zone && !e->hint_zones.empty();
        for_zone = for_zone || (!zone.empty() && hinted(e->hint_zones, zone));
    }
    if (!any_ready) {
        return TopologyMode::kNone;
    }
    if (all_node && for_node) {
        return TopologyMode::kSameNode;
    }
    return all_zone && for_zone ? TopologyMode::kSameZone : TopologyMode::kNone;
}

bool topology_excluded(const Endpoint& e,
                       TopologyMode mode,
                       std::string_view node,
                       std::string_view zone) {
    if (!e.ready || e.terminating) {
        return false;
    }
    switch (mode) {
        case TopologyMode::kSameNode:
            return !hinted(e.hint_nodes, node);
        case TopologyMode::kSameZone:
            return !hinted(e.hint_zones, zone);
        case TopologyMode::kNone:
            break;
    }
    return false;
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

// Endpoints derived from pods (standalone mode) get the hints the EndpointSlice controller would
// give them for spec.trafficDistribution (pkg/controller/endpointslice, trafficdist): the zone
// of the pod's node for PreferClose and PreferSameZone, its node and zone for PreferSameNode;
// then the same topology rules as for hints that come in EndpointSlices. A value kdp does not
// know gives no hints (all endpoints), as an older controller would.
void hint_derived(const Model& model,
                  const std::string& distribution,
                  std::string_view node,
                  std::string_view zone,
                  std::vector<table::BackendSpec>& backends) {
    const bool same_node = distribution == "PreferSameNode";
    if (!same_node && distribution != "PreferClose" && distribution != "PreferSameZone") {
        return;
    }
    std::vector<Endpoint> eps(backends.size());
    std::vector<const Endpoint*> all;
    for (size_t i = 0; i < backends.size(); ++i) {
        Endpoint& e = eps[i];
        e.ready = backends[i].ready;
        e.terminating = backends[i].terminating;
        if (const auto n = model.nodes().find(backends[i].node); n != model.nodes().end()) {
            if (const auto z = n->second.labels.find("topology.kubernetes.io/zone");
                z != n->second.labels.end() && !z->second.empty()) {
                e.hint_zones.push_back(z->second);
            }
        }
        if (same_node && !backends[i].node.empty()) {
            e.hint_nodes.push_back(backends[i].node);
        }
        all.push_back(&e);
    }
    const TopologyMode mode = topology_mode(all, node, zone);
    for (size_t i = 0; i < backends.size(); ++i) {
        backends[i].topology_excluded = topology_excluded(eps[i], mode, node, zone);
    }
}

}  // namespace

std::map<std::string, Ip4> cluster_ips(const Model& model, const ServiceOptions& options) {
    return allocate(model, options).cluster_ip;
}

std::vector<table::ServiceSpec> compile_services(const Model& model,
                                                 std::string_view node,
                                                 const ServiceOptions& options,
                                                 std::vector<CompileWarning>* warnings) {
    const Allocations alloc = allocate(model, options);
    std::optional<Ip4> node_ip;
    std::string zone;  // the node's topology.kubernetes.io/zone label ("": none)
    if (const auto it = model.nodes().find(std::string(node)); it != model.nodes().end()) {
        node_ip = it->second.internal_ip;
        if (const auto z = it->second.labels.find("topology.kubernetes.io/zone");
            z != it->second.labels.end()) {
            zone = z->second;
        }
    }
    // EndpointSlices by the Service they belong to (an empty list: only slices kube-proxy's
    // label selector leaves out, so the Service's endpoints are not derived from its pods).
    std::map<std::string, std::vector<const EndpointSlice*>> slices;
    for (const auto& [key, es] : model.endpoint_slices()) {
        if (!es.service.empty()) {
            auto& own = slices[es.ns + "/" + es.service];
            if (!left_to_another_proxy(es.labels)) {
                own.push_back(&es);
            }
        }
    }
    std::vector<table::ServiceSpec> out;
    std::set<std::tuple<uint32_t, uint16_t, uint8_t>> taken;
    for (const auto& [key, sv] : model.services()) {
        if (sv.type == "ExternalName" || sv.headless || left_to_another_proxy(sv.labels)) {
            continue;
        }
        const auto cip = alloc.cluster_ip.find(key);
        const auto own_slices = slices.find(key);
        for (size_t i = 0; i < sv.ports.size(); ++i) {
            const ServicePort& sp = sv.ports[i];
            table::ServiceSpec s;
            s.name = sp.name.empty() ? key : fmt::format("{}:{}", key, sp.name);
            s.proto = proto_number(sp.protocol);
            // `svc`: clang 14 cannot capture a structured binding (C++20 P1091), and the fuzz
            // build (test/fuzz/run.sh) compiles this with it.
            const auto add_frontend = [&, &svc = sv](table::FrontendKind kind, Ip4 ip,
                                                     uint16_t port) {
                if (port == 0) {
                    return;
                }
                if (!taken.emplace(ip.host(), port, s.proto).second) {
                    if (warnings != nullptr) {
                        warnings->push_back(CompileWarning{
                            "Service", svc.ns, svc.name,
                            fmt::format("service {}: {}:{}/{} is already taken by another service; "
                                        "left out of it",
                                        s.name, ip.str(), port, sp.protocol)});
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
                // This port's endpoints, with the port each serves it on.
                std::vector<std::pair<const Endpoint*, uint16_t>> eps;
                std::vector<const Endpoint*> all;
                for (const EndpointSlice* es : own_slices->second) {
                    if (!es->ipv4) {
                        continue;
                    }
                    for (const EndpointPort& ep : es->ports) {
                        if (ep.name != sp.name || ep.protocol != sp.protocol || !ep.port) {
                            continue;
                        }
                        for (const Endpoint& e : es->endpoints) {
                            eps.emplace_back(&e, *ep.port);
                            all.push_back(&e);
                        }
                    }
                }
                const TopologyMode mode = topology_mode(all, node, zone);
                for (const auto& [e, port] : eps) {
                    for (const Ip4 ip : e->addresses) {
                        s.backends.push_back(table::BackendSpec{
                            .ip = ip,
                            .port = port,
                            .pod = e->pod,
                            .node = e->node_name,
                            .ready = e->ready,
                            .serving = e->serving,
                            .terminating = e->terminating,
                            .topology_excluded = topology_excluded(*e, mode, node, zone),
                        });
                    }
                }
            } else if (options.derive_endpoints) {
                s.backends = derive_backends(model, sv, sp);
                hint_derived(model, sv.traffic_distribution, node, zone, s.backends);
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
