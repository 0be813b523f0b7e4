#include "api/convert.h"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

namespace kdp::api {
namespace {

std::optional<std::string> parse_ip(const std::string& field, const std::string& value, Ip4& out) {
    const auto ip = Ip4::parse(value);
    if (!ip) {
        return fmt::format("{}: \"{}\" is not an IPv4 address", field, value);
    }
    out = *ip;
    return std::nullopt;
}

std::optional<std::string> parse_cidr(const std::string& field,
                                      const std::string& value,
                                      Prefix4& out) {
    const auto p = Prefix4::parse(value, /*strict=*/true);
    if (!p) {
        if (Prefix4::parse(value, /*strict=*/false)) {
            return fmt::format("{}: \"{}\" has host bits set", field, value);
        }
        return fmt::format("{}: \"{}\" is not an IPv4 CIDR", field, value);
    }
    out = *p;
    return std::nullopt;
}

std::optional<std::string> parse_mac(const std::string& field, const std::string& value, Mac& out) {
    const auto m = Mac::parse(value);
    if (!m) {
        return fmt::format("{}: \"{}\" is not a MAC address", field, value);
    }
    out = *m;
    return std::nullopt;
}

void add_counters(const CounterSet& in, v1::Counters* out) {
    out->set_rx_packets(in.rx_packets);
    out->set_rx_bytes(in.rx_bytes);
    out->set_tx_packets(in.tx_packets);
    out->set_tx_bytes(in.tx_bytes);
    for (size_t i = 0; i < dataplane::kDropReasonCount; ++i) {
        if (in.drops[i] != 0) {
            auto* d = out->add_drops();
            d->set_reason(std::string(dataplane::kDropReasonInfo[i].label));
            d->set_packets(in.drops[i]);
        }
    }
}

}  // namespace

std::optional<std::string> route_from_proto(const v1::Route& in, table::RouteSpec& out) {
    if (in.node_name().empty()) {
        return "node_name: empty";
    }
    out.node_name = in.node_name();
    if (auto e = parse_ip("node_ip", in.node_ip(), out.node_ip)) {
        return e;
    }
    if (auto e = parse_cidr("pod_cidr", in.pod_cidr(), out.pod_cidr)) {
        return e;
    }
    if (auto e = parse_mac("vtep_mac", in.vtep_mac(), out.vtep_mac)) {
        return e;
    }
    return std::nullopt;
}

std::optional<std::string> pod_from_proto(const v1::Pod& in, table::PodSpec& out) {
    const auto slash = in.name().find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == in.name().size() ||
        in.name().find('/', slash + 1) != std::string::npos) {
        return fmt::format("name: \"{}\" is not \"namespace/pod\"", in.name());
    }
    out.name = in.name();
    if (auto e = parse_ip("ip", in.ip(), out.ip)) {
        return e;
    }
    if (in.port_name().empty()) {
        return "port_name: empty";
    }
    out.port_name = in.port_name();
    return std::nullopt;
}

void route_to_proto(const table::RouteSpec& in, v1::Route* out) {
    out->set_node_name(in.node_name);
    out->set_node_ip(in.node_ip.str());
    out->set_pod_cidr(in.pod_cidr.str());
    out->set_vtep_mac(in.vtep_mac.str());
}

void pod_to_proto(const table::PodSpec& in, v1::Pod* out) {
    out->set_name(in.name);
    out->set_ip(in.ip.str());
    out->set_port_name(in.port_name);
}

std::string route_label(const char* list, int index, const v1::Route& r) {
    return fmt::format("{}[{}] (node \"{}\")", list, index, r.node_name());
}

std::string pod_label(const char* list, int index, const v1::Pod& p) {
    return fmt::format("{}[{}] (pod \"{}\")", list, index, p.name());
}

void sort_spec(table::TableSpec& spec) {
    std::sort(spec.routes.begin(), spec.routes.end(),
              [](const auto& a, const auto& b) { return a.node_name < b.node_name; });
    std::sort(spec.pods.begin(), spec.pods.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
}

std::optional<std::string> spec_from_proto(const v1::SyncTablesRequest& in, table::TableSpec& out) {
    table::TableSpec spec;
    spec.generation = in.generation();
    std::set<std::string> seen;
    for (int i = 0; i < in.routes_size(); ++i) {
        table::RouteSpec r;
        if (auto e = route_from_proto(in.routes(i), r)) {
            return fmt::format("{}: {}", route_label("routes", i, in.routes(i)), *e);
        }
        if (!seen.insert(r.node_name).second) {
            return fmt::format("{}: duplicate node_name", route_label("routes", i, in.routes(i)));
        }
        spec.routes.push_back(std::move(r));
    }
    seen.clear();
    for (int i = 0; i < in.pods_size(); ++i) {
        table::PodSpec p;
        if (auto e = pod_from_proto(in.pods(i), p)) {
            return fmt::format("{}: {}", pod_label("pods", i, in.pods(i)), *e);
        }
        if (!seen.insert(p.name).second) {
            return fmt::format("{}: duplicate name", pod_label("pods", i, in.pods(i)));
        }
        spec.pods.push_back(std::move(p));
    }
    out = std::move(spec);
    return std::nullopt;
}

void spec_to_proto(const table::TableSpec& in, v1::SyncTablesRequest* out) {
    out->set_generation(in.generation);
    for (const auto& r : in.routes) {
        route_to_proto(r, out->add_routes());
    }
    for (const auto& p : in.pods) {
        pod_to_proto(p, out->add_pods());
    }
}

std::optional<std::string> merge_update(const table::TableSpec& base,
                                        const v1::UpdateTablesRequest& in,
                                        table::TableSpec& out) {
    std::map<std::string, table::RouteSpec> routes;
    std::map<std::string, table::PodSpec> pods;
    for (const auto& r : base.routes) {
        routes[r.node_name] = r;
    }
    for (const auto& p : base.pods) {
        pods[p.name] = p;
    }
    std::set<std::string> deleted_routes(in.delete_routes().begin(), in.delete_routes().end());
    std::set<std::string> deleted_pods(in.delete_pods().begin(), in.delete_pods().end());
    std::set<std::string> seen;
    for (int i = 0; i < in.upsert_routes_size(); ++i) {
        const auto& pr = in.upsert_routes(i);
        table::RouteSpec r;
        if (auto e = route_from_proto(pr, r)) {
            return fmt::format("{}: {}", route_label("upsert_routes", i, pr), *e);
        }
        if (!seen.insert(r.node_name).second) {
            return fmt::format("{}: duplicate node_name", route_label("upsert_routes", i, pr));
        }
        if (deleted_routes.count(r.node_name) != 0) {
            return fmt::format("{}: also in delete_routes", route_label("upsert_routes", i, pr));
        }
        routes[r.node_name] = std::move(r);
    }
    seen.clear();
    for (int i = 0; i < in.upsert_pods_size(); ++i) {
        const auto& pp = in.upsert_pods(i);
        table::PodSpec p;
        if (auto e = pod_from_proto(pp, p)) {
            return fmt::format("{}: {}", pod_label("upsert_pods", i, pp), *e);
        }
        if (!seen.insert(p.name).second) {
            return fmt::format("{}: duplicate name", pod_label("upsert_pods", i, pp));
        }
        if (deleted_pods.count(p.name) != 0) {
            return fmt::format("{}: also in delete_pods", pod_label("upsert_pods", i, pp));
        }
        pods[p.name] = std::move(p);
    }
    for (const auto& n : deleted_routes) {
        routes.erase(n);
    }
    for (const auto& n : deleted_pods) {
        pods.erase(n);
    }
    table::TableSpec spec;
    spec.generation = in.generation();
    for (auto& [_, r] : routes) {
        spec.routes.push_back(std::move(r));
    }
    for (auto& [_, p] : pods) {
        spec.pods.push_back(std::move(p));
    }
    out = std::move(spec);
    return std::nullopt;
}

void node_info_to_proto(const NodeInfo& in, v1::NodeInfo* out) {
    out->set_node_name(in.node_name);
    out->set_node_ip(in.node_ip.str());
    out->set_node_mac(in.node_mac.str());
    out->set_pod_cidr(in.pod_cidr.str());
    out->set_gateway_ip(in.gateway_ip.str());
    out->set_gateway_mac(in.gateway_mac.str());
    out->set_vxlan_mode(in.vxlan_mode);
    out->set_vxlan_port(in.vxlan_port);
    out->set_vni(in.vni);
    out->set_vtep_mac(in.vtep_mac.str());
    out->set_mtu(in.mtu);
    out->set_pod_mtu(in.pod_mtu);
    out->set_workers(in.workers);
    out->set_generation(in.generation);
    out->set_started_unix_ns(in.started_unix_ns);
}

void port_to_proto(const PortInfo& in, v1::Port* out) {
    out->set_name(in.name);
    out->set_kind(in.kind);
    out->set_devargs(in.devargs);
    out->set_port_id(in.port_id);
    out->set_mac(in.mac.str());
    out->set_peer_mac(in.peer_mac.str());
    out->set_rx_queues(in.rx_queues);
    out->set_tx_queues(in.tx_queues);
    out->set_link_up(in.link_up);
}

void stats_to_proto(const StatsSnapshot& in, v1::Stats* out) {
    out->set_taken_unix_ns(in.taken_unix_ns);
    for (const auto& w : in.workers) {
        auto* pw = out->add_workers();
        pw->set_worker(w.worker);
        pw->set_lcore(w.lcore);
        add_counters(w.counters, pw->mutable_counters());
        pw->set_busy_cycles(w.busy_cycles);
        pw->set_total_cycles(w.total_cycles);
        pw->set_tsc_hz(w.tsc_hz);
    }
    for (const auto& p : in.ports) {
        auto* pp = out->add_ports();
        pp->set_name(p.name);
        pp->set_port_id(p.port_id);
        add_counters(p.counters, pp->mutable_counters());
    }
}

}  // namespace kdp::api
