#include "spec/convert.h"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>

#include "common/ip_proto.h"

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

const char* protocol_name(uint8_t proto) {
    // Service and policy ports: TCP, UDP or SCTP (the names are literals: NUL-terminated).
    return proto == kProtoIcmp || ip_proto_name(proto).empty() ? "?" : ip_proto_name(proto).data();
}

std::optional<uint8_t> protocol_from_name(std::string_view name) {
    for (const uint8_t p : {kProtoTcp, kProtoUdp, kProtoSctp}) {
        if (name == ip_proto_name(p)) {
            return p;
        }
    }
    return std::nullopt;
}

namespace {
constexpr std::pair<table::FrontendKind, const char*> kFrontendKinds[] = {
    {table::FrontendKind::kClusterIp, "cluster_ip"},
    {table::FrontendKind::kNodePort, "node_port"},
    {table::FrontendKind::kExternalIp, "external_ip"},
    {table::FrontendKind::kLoadBalancer, "load_balancer"},
};

std::optional<std::string> parse_port(const std::string& field, uint32_t value, uint16_t& out) {
    if (value == 0 || value > 65535) {
        return fmt::format("{}: {} is not a port (1..65535)", field, value);
    }
    out = static_cast<uint16_t>(value);
    return std::nullopt;
}
}  // namespace

const char* frontend_kind_name(table::FrontendKind kind) {
    for (const auto& [k, name] : kFrontendKinds) {
        if (k == kind) {
            return name;
        }
    }
    return "?";
}

std::optional<table::FrontendKind> frontend_kind_from_name(std::string_view name) {
    for (const auto& [k, n] : kFrontendKinds) {
        if (name == n) {
            return k;
        }
    }
    return std::nullopt;
}

std::optional<std::string> service_from_proto(const v1::Service& in, table::ServiceSpec& out) {
    table::ServiceSpec sv;
    const auto slash = in.name().find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == in.name().size()) {
        return fmt::format("name: \"{}\" is not \"namespace/name:port\"", in.name());
    }
    sv.name = in.name();
    const auto proto = protocol_from_name(in.protocol());
    if (!proto) {
        return fmt::format("protocol: \"{}\" is not tcp, udp or sctp", in.protocol());
    }
    sv.proto = *proto;
    if (in.frontends_size() == 0) {
        return "frontends: none (a service port needs at least one)";
    }
    for (int i = 0; i < in.frontends_size(); ++i) {
        const v1::Frontend& f = in.frontends(i);
        const std::string at = fmt::format("frontends[{}]", i);
        table::FrontendSpec fe;
        const auto kind = frontend_kind_from_name(f.kind());
        if (!kind) {
            return fmt::format(
                "{}.kind: \"{}\" is not cluster_ip, node_port, external_ip or load_balancer", at,
                f.kind());
        }
        fe.kind = *kind;
        if (auto e = parse_ip(at + ".ip", f.ip(), fe.ip)) {
            return e;
        }
        if (auto e = parse_port(at + ".port", f.port(), fe.port)) {
            return e;
        }
        sv.frontends.push_back(fe);
    }
    for (int i = 0; i < in.backends_size(); ++i) {
        const v1::Backend& b = in.backends(i);
        const std::string at = fmt::format("backends[{}]", i);
        table::BackendSpec be;
        if (auto e = parse_ip(at + ".ip", b.ip(), be.ip)) {
            return e;
        }
        if (auto e = parse_port(at + ".port", b.port(), be.port)) {
            return e;
        }
        be.pod = b.pod();
        be.node = b.node();
        be.ready = b.ready();
        be.serving = b.serving();
        be.terminating = b.terminating();
        be.topology_excluded = b.topology_excluded();
        sv.backends.push_back(std::move(be));
    }
    sv.external_local = in.external_local();
    sv.internal_local = in.internal_local();
    sv.affinity_timeout_s = in.affinity_timeout_s();
    for (int i = 0; i < in.source_ranges_size(); ++i) {
        Prefix4 r;
        if (auto e = parse_cidr(fmt::format("source_ranges[{}]", i), in.source_ranges(i), r)) {
            return e;
        }
        sv.source_ranges.push_back(r);
    }
    if (in.health_check_node_port() != 0 &&
        parse_port("health_check_node_port", in.health_check_node_port(),
                   sv.health_check_node_port)) {
        return fmt::format("health_check_node_port: {} is not a port (1..65535)",
                           in.health_check_node_port());
    }
    out = std::move(sv);
    return std::nullopt;
}

void service_to_proto(const table::ServiceSpec& in, v1::Service* out) {
    out->set_name(in.name);
    out->set_protocol(protocol_name(in.proto));
    for (const auto& f : in.frontends) {
        auto* pf = out->add_frontends();
        pf->set_kind(frontend_kind_name(f.kind));
        pf->set_ip(f.ip.str());
        pf->set_port(f.port);
    }
    for (const auto& b : in.backends) {
        auto* pb = out->add_backends();
        pb->set_ip(b.ip.str());
        pb->set_port(b.port);
        pb->set_pod(b.pod);
        pb->set_node(b.node);
        pb->set_ready(b.ready);
        pb->set_serving(b.serving);
        pb->set_terminating(b.terminating);
        pb->set_topology_excluded(b.topology_excluded);
    }
    out->set_external_local(in.external_local);
    out->set_internal_local(in.internal_local);
    out->set_affinity_timeout_s(in.affinity_timeout_s);
    for (const auto& r : in.source_ranges) {
        out->add_source_ranges(r.str());
    }
    out->set_health_check_node_port(in.health_check_node_port);
}

std::optional<std::string> policy_from_proto(const v1::Policy& in, table::PolicySpec& out) {
    table::PolicySpec p;
    p.present = true;
    for (int i = 0; i < in.peers_size(); ++i) {
        table::PeerIdentitySpec x;
        if (auto e = parse_ip(fmt::format("policy.peers[{}].ip", i), in.peers(i).ip(), x.ip)) {
            return e;
        }
        x.identity = in.peers(i).identity();
        p.peers.push_back(x);
    }
    for (int i = 0; i < in.cidrs_size(); ++i) {
        table::CidrIdentitySpec x;
        if (auto e =
                parse_cidr(fmt::format("policy.cidrs[{}].cidr", i), in.cidrs(i).cidr(), x.cidr)) {
            return e;
        }
        x.identity = in.cidrs(i).identity();
        p.cidrs.push_back(x);
    }
    for (int i = 0; i < in.pods_size(); ++i) {
        const v1::PodPolicy& pp = in.pods(i);
        const std::string at = fmt::format("policy.pods[{}] ({})", i, pp.pod());
        table::PodPolicySpec x;
        if (pp.pod().empty()) {
            return fmt::format("{}: pod: empty", at);
        }
        x.pod = pp.pod();
        if (auto e = parse_ip(at + ".ip", pp.ip(), x.ip)) {
            return e;
        }
        x.ingress_isolated = pp.ingress_isolated();
        x.egress_isolated = pp.egress_isolated();
        for (int r = 0; r < pp.rules_size(); ++r) {
            const v1::PolicyRule& in_r = pp.rules(r);
            const std::string rat = fmt::format("{}.rules[{}]", at, r);
            table::PolicyRuleSpec y;
            if (in_r.direction() == "ingress") {
                y.dir = table::PolicyDir::kIngress;
            } else if (in_r.direction() == "egress") {
                y.dir = table::PolicyDir::kEgress;
            } else {
                return fmt::format("{}: direction \"{}\" is not ingress or egress", rat,
                                   in_r.direction());
            }
            y.identity = in_r.identity();
            if (in_r.protocol() == "any") {
                y.proto = 0;
            } else if (const auto proto = protocol_from_name(in_r.protocol())) {
                y.proto = *proto;
            } else {
                return fmt::format("{}: protocol \"{}\" is not tcp, udp, sctp or any", rat,
                                   in_r.protocol());
            }
            if (in_r.port_min() > 65535 || in_r.port_max() > 65535) {
                return fmt::format("{}: port range {}-{} is not within 0..65535", rat,
                                   in_r.port_min(), in_r.port_max());
            }
            y.port_min = static_cast<uint16_t>(in_r.port_min());
            y.port_max = static_cast<uint16_t>(in_r.port_max());
            y.rule = in_r.rule();
            x.rules.push_back(y);
        }
        p.pods.push_back(std::move(x));
    }
    p.rule_names.assign(in.rule_names().begin(), in.rule_names().end());
    p.identity_names.assign(in.identity_names().begin(), in.identity_names().end());
    out = std::move(p);
    return std::nullopt;
}

void policy_to_proto(const table::PolicySpec& in, v1::Policy* out) {
    for (const auto& x : in.peers) {
        auto* o = out->add_peers();
        o->set_ip(x.ip.str());
        o->set_identity(x.identity);
    }
    for (const auto& x : in.cidrs) {
        auto* o = out->add_cidrs();
        o->set_cidr(x.cidr.str());
        o->set_identity(x.identity);
    }
    for (const auto& x : in.pods) {
        auto* o = out->add_pods();
        o->set_pod(x.pod);
        o->set_ip(x.ip.str());
        o->set_ingress_isolated(x.ingress_isolated);
        o->set_egress_isolated(x.egress_isolated);
        for (const auto& r : x.rules) {
            auto* y = o->add_rules();
            y->set_direction(r.dir == table::PolicyDir::kIngress ? "ingress" : "egress");
            y->set_identity(r.identity);
            y->set_protocol(r.proto == 0 ? "any" : protocol_name(r.proto));
            y->set_port_min(r.port_min);
            y->set_port_max(r.port_max);
            y->set_rule(r.rule);
        }
    }
    for (const auto& n : in.rule_names) {
        out->add_rule_names(n);
    }
    for (const auto& n : in.identity_names) {
        out->add_identity_names(n);
    }
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

std::string service_label(const char* list, int index, const v1::Service& s) {
    return fmt::format("{}[{}] (service \"{}\")", list, index, s.name());
}

void sort_spec(table::TableSpec& spec) {
    std::sort(spec.routes.begin(), spec.routes.end(),
              [](const auto& a, const auto& b) { return a.node_name < b.node_name; });
    std::sort(spec.pods.begin(), spec.pods.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    std::sort(spec.services.begin(), spec.services.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
}

// Converts each message of `items` with `conv` into `out`, refusing one that does not convert
// or whose `key` another already has; errors are prefixed with the message's label.
template <class Msg, class Spec, class Conv, class Label>
std::optional<std::string> read_unique(const google::protobuf::RepeatedPtrField<Msg>& items,
                                       const char* field,
                                       std::vector<Spec>& out,
                                       Conv conv,
                                       Label label,
                                       std::string Spec::*key,
                                       const char* key_name) {
    std::set<std::string> seen;
    for (int i = 0; i < items.size(); ++i) {
        Spec v;
        if (auto e = conv(items[i], v)) {
            return fmt::format("{}: {}", label(field, i, items[i]), *e);
        }
        if (!seen.insert(v.*key).second) {
            return fmt::format("{}: duplicate {}", label(field, i, items[i]), key_name);
        }
        out.push_back(std::move(v));
    }
    return std::nullopt;
}

std::optional<std::string> spec_from_proto(const v1::SyncTablesRequest& in, table::TableSpec& out) {
    table::TableSpec spec;
    spec.generation = in.generation();
    if (auto e = read_unique(in.routes(), "routes", spec.routes, route_from_proto, route_label,
                             &table::RouteSpec::node_name, "node_name")) {
        return e;
    }
    if (auto e = read_unique(in.pods(), "pods", spec.pods, pod_from_proto, pod_label,
                             &table::PodSpec::name, "name")) {
        return e;
    }
    if (auto e = read_unique(in.services(), "services", spec.services, service_from_proto,
                             service_label, &table::ServiceSpec::name, "name")) {
        return e;
    }
    if (in.has_policy()) {
        if (auto e = policy_from_proto(in.policy(), spec.policy)) {
            return e;
        }
    }
    for (int i = 0; i < in.service_cidrs_size(); ++i) {
        Prefix4 c;
        if (auto e = parse_cidr(fmt::format("service_cidrs[{}]", i), in.service_cidrs(i), c)) {
            return e;
        }
        spec.service_cidrs.push_back(c);
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
    for (const auto& sv : in.services) {
        service_to_proto(sv, out->add_services());
    }
    if (in.policy.present) {
        policy_to_proto(in.policy, out->mutable_policy());
    }
    for (const Prefix4& c : in.service_cidrs) {
        out->add_service_cidrs(c.str());
    }
}

namespace {

// Parses one kind's upserts and deletes into `upsert_out` and `delete_out`. Errors name the
// entry: a malformed one, a key upserted twice, a key both upserted and deleted.
template <class Spec, class Msg, class Parse, class Key>
std::optional<std::string> parse_list(
    const google::protobuf::RepeatedPtrField<Msg>& upserts,
    const google::protobuf::RepeatedPtrField<std::string>& deletes,
    const char* list,
    const char* delete_list,
    std::string (*label)(const char*, int, const Msg&),
    Parse parse,
    Key key,
    std::vector<Spec>& upsert_out,
    std::vector<std::string>& delete_out) {
    const std::set<std::string> deleted(deletes.begin(), deletes.end());
    std::set<std::string> seen;
    for (int i = 0; i < upserts.size(); ++i) {
        Spec item;
        if (auto e = parse(upserts[i], item)) {
            return fmt::format("{}: {}", label(list, i, upserts[i]), *e);
        }
        const std::string& k = key(item);
        if (!seen.insert(k).second) {
            return fmt::format("{}: upserted twice", label(list, i, upserts[i]));
        }
        if (deleted.count(k) != 0) {
            return fmt::format("{}: also in {}", label(list, i, upserts[i]), delete_list);
        }
        upsert_out.push_back(std::move(item));
    }
    delete_out.assign(deleted.begin(), deleted.end());
    return std::nullopt;
}

}  // namespace

std::optional<std::string> update_from_proto(const v1::UpdateTablesRequest& in,
                                             table::TableUpdate& out) {
    table::TableUpdate u;
    u.generation = in.generation();
    if (auto e = parse_list(
            in.upsert_routes(), in.delete_routes(), "upsert_routes", "delete_routes", route_label,
            route_from_proto,
            [](const table::RouteSpec& r) -> const std::string& { return r.node_name; },
            u.upsert_routes, u.delete_routes)) {
        return e;
    }
    if (auto e = parse_list(
            in.upsert_pods(), in.delete_pods(), "upsert_pods", "delete_pods", pod_label,
            pod_from_proto, [](const table::PodSpec& p) -> const std::string& { return p.name; },
            u.upsert_pods, u.delete_pods)) {
        return e;
    }
    if (auto e = parse_list(
            in.upsert_services(), in.delete_services(), "upsert_services", "delete_services",
            service_label, service_from_proto,
            [](const table::ServiceSpec& sv) -> const std::string& { return sv.name; },
            u.upsert_services, u.delete_services)) {
        return e;
    }
    if (in.has_policy()) {
        u.policy.emplace();
        if (auto e = policy_from_proto(in.policy(), *u.policy)) {
            return e;
        }
    }
    out = std::move(u);
    return std::nullopt;
}

}  // namespace kdp::api
