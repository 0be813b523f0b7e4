#include "model/service.h"

#include <algorithm>
#include <cctype>
#include <set>

#include <fmt/format.h>

#include "model/json_util.h"
#include "model/validation.h"

namespace kdp::control {
namespace {

using jsonu::find;
using jsonu::get_bool;
using jsonu::get_int;
using jsonu::get_list;
using jsonu::get_string;
using jsonu::json;
using jsonu::Where;

bool is_ipv6(const std::string& s) {
    return s.find(':') != std::string::npos;
}

// An IPv4 list field whose IPv6 entries (dual-stack clusters) are skipped.
std::vector<Ip4> ipv4_list(const json& list, std::string_view field, const Where& where) {
    std::vector<Ip4> out;
    for (size_t i = 0; i < list.size(); ++i) {
        const std::string f = fmt::format("{}[{}]", field, i);
        if (!list[i].is_string()) {
            where.fail(f, "must be a string");
        }
        const std::string s = list[i].get<std::string>();
        if (!is_ipv6(s)) {
            out.push_back(jsonu::parse_ip(s, f, where));
        } else if (!validation::is_ip6(s)) {
            where.fail(f, fmt::format("\"{}\" is not an IP address", s));
        }
    }
    return out;
}

std::string one_of(const json& obj,
                   std::initializer_list<const char*> path,
                   std::string_view field,
                   const Where& where,
                   std::initializer_list<std::string_view> allowed,
                   std::string_view dflt) {
    std::string v = get_string(obj, path, field, where);
    if (v.empty()) {
        return std::string(dflt);
    }
    if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
        std::string list;
        for (const auto a : allowed) {
            list += fmt::format("{}{}", list.empty() ? "" : ", ", a);
        }
        where.fail(field, fmt::format("\"{}\" is not one of {}", v, list));
    }
    return v;
}

ServicePort parse_service_port(const json& pj,
                               const std::string& field,
                               const std::string& type,
                               const Where& where) {
    if (!pj.is_object()) {
        where.fail(field, "must be an object");
    }
    ServicePort sp;
    sp.name = get_string(pj, {"name"}, field + ".name", where);
    // validateServicePort: a Service port name is a DNS_LABEL (up to 63), unlike a container
    // port name (IANA_SVC_NAME, up to 15): the e2e suites name theirs `service-port-tcp-80`.
    if (!sp.name.empty() && !validation::is_dns1123_label(sp.name)) {
        where.fail(field + ".name",
                   fmt::format("\"{}\" is not a DNS label (up to 63 of a-z, 0-9 and '-', "
                               "alphanumeric at both ends)",
                               sp.name));
    }
    sp.protocol = jsonu::parse_protocol(get_string(pj, {"protocol"}, field + ".protocol", where),
                                        field + ".protocol", where);
    if (find(pj, {"port"}) == nullptr) {
        where.fail(field + ".port", "missing");
    }
    sp.port = static_cast<uint16_t>(get_int(pj, {"port"}, field + ".port", where, 1, 65535, 0));
    const std::string app = get_string(pj, {"appProtocol"}, field + ".appProtocol", where);
    if (find(pj, {"appProtocol"}) != nullptr && !validation::is_qualified_name(app)) {
        where.fail(field + ".appProtocol", fmt::format("\"{}\" is not a qualified name", app));
    }
    // SetDefaults_Service: a targetPort of 0 or "" is the port itself.
    sp.target_port = sp.port;
    if (const json* tp = find(pj, {"targetPort"})) {
        if (tp->is_string()) {
            const std::string s = tp->get<std::string>();
            if (!s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
                    return std::isdigit(static_cast<unsigned char>(c));
                })) {
                // IntOrString given as a string of digits: the API treats it as a name, and a
                // name must contain a letter.
                where.fail(field + ".targetPort",
                           fmt::format("\"{}\" is a number in quotes; write it unquoted", s));
            }
            if (!s.empty()) {
                if (!validation::is_iana_svc_name(s)) {
                    where.fail(field + ".targetPort",
                               fmt::format("\"{}\" is not a port name (up to 15 of a-z, 0-9 "
                                           "and '-', with a letter)",
                                           s));
                }
                sp.target_port = 0;
                sp.target_name = s;
            }
        } else {
            const auto n = get_int(pj, {"targetPort"}, field + ".targetPort", where, 0, 65535, 0);
            if (n != 0) {
                sp.target_port = static_cast<uint16_t>(n);
            }
        }
    }
    sp.node_port =
        static_cast<uint16_t>(get_int(pj, {"nodePort"}, field + ".nodePort", where, 0, 65535, 0));
    if (sp.node_port != 0 && type == "ClusterIP") {
        where.fail(field + ".nodePort", "may not be used when type is ClusterIP");
    }
    return sp;
}

}  // namespace

Service parse_service(const json& obj, const std::string& ns, const std::string& name) {
    const Where where("Service", ns, name);
    Service sv;
    sv.ns = ns;
    sv.name = name;
    sv.labels = jsonu::get_labels(obj, {"metadata", "labels"}, "metadata.labels", where);
    sv.type = one_of(obj, {"spec", "type"}, "spec.type", where,
                     {"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"}, "ClusterIP");
    const bool external_name = sv.type == "ExternalName";
    std::string cip = get_string(obj, {"spec", "clusterIP"}, "spec.clusterIP", where);
    const json& cips = get_list(obj, {"spec", "clusterIPs"}, "spec.clusterIPs", where);
    if (!cips.empty() && !cip.empty() &&
        (!cips[0].is_string() || cips[0].get<std::string>() != cip)) {
        where.fail("spec.clusterIPs[0]", fmt::format("must equal spec.clusterIP \"{}\"", cip));
    }
    if (cip.empty() && !cips.empty() && cips[0].is_string()) {
        cip = cips[0].get<std::string>();
    }
    if (external_name) {
        // ValidateService: an ExternalName Service is a CNAME (a trailing dot allowed) and has
        // no cluster IP; kdp has nothing to balance for it.
        if (!cip.empty()) {
            where.fail("spec.clusterIPs", "may not be set for ExternalName services");
        }
        std::string cname = get_string(obj, {"spec", "externalName"}, "spec.externalName", where);
        if (!cname.empty() && cname.back() == '.') {
            cname.pop_back();
        }
        if (cname.empty()) {
            where.fail("spec.externalName", "required for type ExternalName");
        }
        if (!validation::is_dns1123_subdomain(cname)) {
            where.fail("spec.externalName", fmt::format("\"{}\" is not a DNS subdomain", cname));
        }
    } else if (cip == "None") {
        sv.headless = true;
        if (sv.type == "NodePort" || sv.type == "LoadBalancer") {
            where.fail("spec.clusterIPs[0]",
                       fmt::format("may not be set to 'None' for {} services", sv.type));
        }
        if (cips.size() > 1) {
            where.fail("spec.clusterIPs", "a headless Service has only 'None'");
        }
    } else if (!cip.empty() && !is_ipv6(cip)) {
        sv.cluster_ip = jsonu::parse_ip(cip, "spec.clusterIP", where);
        (void)ipv4_list(cips, "spec.clusterIPs", where);  // the other family checked, not kept
    } else {
        // The IPv4 family of a dual-stack Service, if it has one.
        const std::vector<Ip4> v4 = ipv4_list(cips, "spec.clusterIPs", where);
        if (!cip.empty() && !validation::is_ip6(cip)) {
            where.fail("spec.clusterIP", fmt::format("\"{}\" is not an IP address", cip));
        }
        if (!v4.empty()) {
            sv.cluster_ip = v4.front();
        } else if (!cip.empty()) {
            sv.headless = true;  // IPv6 only: nothing for an IPv4 dataplane to balance
        }
    }
    const json& families = get_list(obj, {"spec", "ipFamilies"}, "spec.ipFamilies", where);
    for (size_t i = 0; i < families.size(); ++i) {
        if (!families[i].is_string() || (families[i] != "IPv4" && families[i] != "IPv6")) {
            where.fail(fmt::format("spec.ipFamilies[{}]", i),
                       fmt::format("{} is not IPv4 or IPv6", jsonu::show(families[i])));
        }
    }
    one_of(obj, {"spec", "ipFamilyPolicy"}, "spec.ipFamilyPolicy", where,
           {"SingleStack", "PreferDualStack", "RequireDualStack"}, "SingleStack");
    if (external_name && (!families.empty() || find(obj, {"spec", "ipFamilyPolicy"}))) {
        where.fail(families.empty() ? "spec.ipFamilyPolicy" : "spec.ipFamilies",
                   "may not be set for ExternalName services");
    }
    if (find(obj, {"spec", "selector"}) != nullptr) {
        sv.has_selector = true;
        sv.selector = jsonu::get_labels(obj, {"spec", "selector"}, "spec.selector", where);
        validation::check_labels(sv.selector, "spec.selector", where);
    }
    const json& ports = get_list(obj, {"spec", "ports"}, "spec.ports", where);
    if (ports.empty() && !external_name && !sv.headless) {
        where.fail("spec.ports", "a Service needs at least one port");
    }
    std::set<std::string> names;
    std::set<std::pair<uint16_t, std::string>> numbers;
    std::set<std::pair<uint16_t, std::string>> node_ports;
    for (size_t i = 0; i < ports.size(); ++i) {
        const std::string field = fmt::format("spec.ports[{}]", i);
        ServicePort sp = parse_service_port(ports[i], field, sv.type, where);
        if (ports.size() > 1 && sp.name.empty()) {
            where.fail(field + ".name", "required when a Service has more than one port");
        }
        if (!names.insert(sp.name).second) {
            where.fail(field + ".name", fmt::format("\"{}\" is used by another port", sp.name));
        }
        if (!numbers.insert({sp.port, sp.protocol}).second) {
            where.fail(field + ".port",
                       fmt::format("{}/{} is used by another port", sp.port, sp.protocol));
        }
        if (sp.node_port != 0 && !node_ports.insert({sp.node_port, sp.protocol}).second) {
            where.fail(field + ".nodePort",
                       fmt::format("{}/{} is used by another port", sp.node_port, sp.protocol));
        }
        sv.ports.push_back(std::move(sp));
    }
    sv.external_ips = ipv4_list(get_list(obj, {"spec", "externalIPs"}, "spec.externalIPs", where),
                                "spec.externalIPs", where);
    for (size_t i = 0; i < sv.external_ips.size(); ++i) {
        if (const auto why = validation::special_ip4(sv.external_ips[i])) {
            where.fail("spec.externalIPs", fmt::format("{}: {}", sv.external_ips[i].str(), *why));
        }
    }
    const json& ingress =
        get_list(obj, {"status", "loadBalancer", "ingress"}, "status.loadBalancer.ingress", where);
    for (size_t i = 0; i < ingress.size(); ++i) {
        const std::string field = fmt::format("status.loadBalancer.ingress[{}].ip", i);
        const std::string ip = get_string(ingress[i], {"ip"}, field, where);
        if (!ip.empty() && !is_ipv6(ip)) {
            sv.load_balancer_ips.push_back(jsonu::parse_ip(ip, field, where));
        } else if (!ip.empty() && !validation::is_ip6(ip)) {
            where.fail(field, fmt::format("\"{}\" is not an IP address", ip));
        }
    }
    const json& ranges =
        get_list(obj, {"spec", "loadBalancerSourceRanges"}, "spec.loadBalancerSourceRanges", where);
    if (!ranges.empty() && sv.type != "LoadBalancer") {
        where.fail("spec.loadBalancerSourceRanges", "may only be used when type is LoadBalancer");
    }
    for (size_t i = 0; i < ranges.size(); ++i) {
        const std::string field = fmt::format("spec.loadBalancerSourceRanges[{}]", i);
        if (!ranges[i].is_string()) {
            where.fail(field, "must be a string");
        }
        // ValidateService trims each entry: values carried over from the old annotation may be
        // space-padded, and the API server accepts them so.
        std::string r = ranges[i].get<std::string>();
        const size_t first = r.find_first_not_of(" \t\n\r\f\v");
        r = first == std::string::npos
                ? ""
                : r.substr(first, r.find_last_not_of(" \t\n\r\f\v") + 1 - first);
        if (is_ipv6(r)) {
            if (!validation::is_cidr6(r)) {
                where.fail(field, fmt::format("{} is not a CIDR", jsonu::show(ranges[i])));
            }
            continue;
        }
        const auto p = Prefix4::parse(r, /*strict=*/false);
        if (!p) {
            where.fail(field, fmt::format("{} is not a CIDR", jsonu::show(ranges[i])));
        }
        sv.source_ranges.push_back(
            Prefix4{Ip4::from_host(p->addr.host() & p->mask_host()), p->len});
    }
    // validateServiceExternalTrafficPolicy: only an externally accessible Service (NodePort,
    // LoadBalancer, or with externalIPs) has an external traffic policy.
    const bool externally_accessible =
        sv.type == "NodePort" || sv.type == "LoadBalancer" ||
        (sv.type == "ClusterIP" && !get_list(obj, {"spec", "externalIPs"}, "", where).empty());
    if (find(obj, {"spec", "externalTrafficPolicy"}) != nullptr && !externally_accessible) {
        where.fail("spec.externalTrafficPolicy",
                   "may only be set for externally-accessible services (NodePort, LoadBalancer "
                   "or with externalIPs)");
    }
    sv.external_local = one_of(obj, {"spec", "externalTrafficPolicy"}, "spec.externalTrafficPolicy",
                               where, {"Cluster", "Local"}, "Cluster") == "Local";
    sv.internal_local = one_of(obj, {"spec", "internalTrafficPolicy"}, "spec.internalTrafficPolicy",
                               where, {"Cluster", "Local"}, "Cluster") == "Local";
    // validateServiceTrafficDistribution: PreferClose, and PreferSameZone and PreferSameNode
    // since Kubernetes 1.33.
    sv.traffic_distribution =
        one_of(obj, {"spec", "trafficDistribution"}, "spec.trafficDistribution", where,
               {"PreferClose", "PreferSameZone", "PreferSameNode"}, "");
    if (one_of(obj, {"spec", "sessionAffinity"}, "spec.sessionAffinity", where,
               {"None", "ClientIP"}, "None") == "ClientIP") {
        sv.affinity_timeout_s = static_cast<uint32_t>(
            get_int(obj, {"spec", "sessionAffinityConfig", "clientIP", "timeoutSeconds"},
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds", where, 1, 86400, 10800));
    } else if (find(obj, {"spec", "sessionAffinityConfig"}) != nullptr) {
        where.fail("spec.sessionAffinityConfig", "only allowed with sessionAffinity: ClientIP");
    }
    sv.health_check_node_port = static_cast<uint16_t>(get_int(
        obj, {"spec", "healthCheckNodePort"}, "spec.healthCheckNodePort", where, 0, 65535, 0));
    if (sv.health_check_node_port != 0 && !(sv.type == "LoadBalancer" && sv.external_local)) {
        where.fail("spec.healthCheckNodePort",
                   "only allowed on a LoadBalancer with externalTrafficPolicy: Local");
    }
    if (find(obj, {"spec", "allocateLoadBalancerNodePorts"}) != nullptr &&
        sv.type != "LoadBalancer") {
        where.fail("spec.allocateLoadBalancerNodePorts",
                   "may only be used when type is LoadBalancer");
    }
    sv.allocate_node_ports = get_bool(obj, {"spec", "allocateLoadBalancerNodePorts"},
                                      "spec.allocateLoadBalancerNodePorts", where, true);
    return sv;
}

EndpointSlice parse_endpoint_slice(const json& obj,
                                   const std::string& ns,
                                   const std::string& name) {
    const Where where("EndpointSlice", ns, name);
    EndpointSlice es;
    es.ns = ns;
    es.name = name;
    es.labels = jsonu::get_labels(obj, {"metadata", "labels"}, "metadata.labels", where);
    if (const auto it = es.labels.find("kubernetes.io/service-name"); it != es.labels.end()) {
        es.service = it->second;
    }
    const std::string family = get_string(obj, {"addressType"}, "addressType", where);
    if (family != "IPv4" && family != "IPv6" && family != "FQDN") {
        where.fail("addressType", family.empty()
                                      ? "missing (IPv4, IPv6 or FQDN)"
                                      : fmt::format("\"{}\" is not IPv4, IPv6 or FQDN", family));
    }
    es.ipv4 = family == "IPv4";
    const json& ports = get_list(obj, {"ports"}, "ports", where);
    for (size_t i = 0; i < ports.size(); ++i) {
        const std::string field = fmt::format("ports[{}]", i);
        EndpointPort p;
        p.name = get_string(ports[i], {"name"}, field + ".name", where);
        // validateEndpointPorts: a name is empty or a DNS label (a Service port's name), unique.
        if (!p.name.empty() && !validation::is_dns1123_label(p.name)) {
            where.fail(field + ".name", fmt::format("\"{}\" is not a DNS label", p.name));
        }
        for (const EndpointPort& other : es.ports) {
            if (other.name == p.name) {
                where.fail(field + ".name", fmt::format("\"{}\" is used by another port", p.name));
            }
        }
        p.protocol =
            jsonu::parse_protocol(get_string(ports[i], {"protocol"}, field + ".protocol", where),
                                  field + ".protocol", where);
        if (find(ports[i], {"port"}) != nullptr) {
            p.port = static_cast<uint16_t>(
                get_int(ports[i], {"port"}, field + ".port", where, 1, 65535, 0));
        }
        es.ports.push_back(std::move(p));
    }
    const json& endpoints = get_list(obj, {"endpoints"}, "endpoints", where);
    for (size_t i = 0; i < endpoints.size(); ++i) {
        const json& ej = endpoints[i];
        const std::string field = fmt::format("endpoints[{}]", i);
        Endpoint e;
        const json& addrs = get_list(ej, {"addresses"}, field + ".addresses", where);
        if (addrs.empty()) {
            where.fail(field + ".addresses", "needs at least one address");
        }
        if (es.ipv4) {
            e.addresses = ipv4_list(addrs, field + ".addresses", where);
        }
        // The API: a nil ready means ready; a nil serving means the same as ready.
        e.ready = get_bool(ej, {"conditions", "ready"}, field + ".conditions.ready", where, true);
        e.serving =
            get_bool(ej, {"conditions", "serving"}, field + ".conditions.serving", where, e.ready);
        e.terminating = get_bool(ej, {"conditions", "terminating"},
                                 field + ".conditions.terminating", where, false);
        e.node_name = get_string(ej, {"nodeName"}, field + ".nodeName", where);
        e.zone = get_string(ej, {"zone"}, field + ".zone", where);
        if (get_string(ej, {"targetRef", "kind"}, field + ".targetRef.kind", where) == "Pod") {
            std::string pns =
                get_string(ej, {"targetRef", "namespace"}, field + ".targetRef.namespace", where);
            e.pod = (pns.empty() ? ns : pns) + "/" +
                    get_string(ej, {"targetRef", "name"}, field + ".targetRef.name", where);
        }
        const json& zones = get_list(ej, {"hints", "forZones"}, field + ".hints.forZones", where);
        for (size_t z = 0; z < zones.size(); ++z) {
            e.hint_zones.push_back(get_string(
                zones[z], {"name"}, fmt::format("{}.hints.forZones[{}].name", field, z), where));
        }
        const json& nodes = get_list(ej, {"hints", "forNodes"}, field + ".hints.forNodes", where);
        for (size_t k = 0; k < nodes.size(); ++k) {
            e.hint_nodes.push_back(get_string(
                nodes[k], {"name"}, fmt::format("{}.hints.forNodes[{}].name", field, k), where));
        }
        es.endpoints.push_back(std::move(e));
    }
    return es;
}

}  // namespace kdp::control
