#include "model/model.h"

#include <algorithm>
#include <array>
#include <iterator>
#include <set>
#include <span>

#include <fmt/format.h>

#include "model/json_util.h"
#include "model/service.h"
#include "model/validation.h"

namespace kdp::control {
namespace {

using nlohmann::json;

using FieldList = std::span<const std::string_view>;

constexpr std::string_view kObjectFields[]{"apiVersion", "kind", "metadata", "spec", "status"};
constexpr std::string_view kEndpointSliceFields[]{"apiVersion",  "kind",      "metadata",
                                                  "addressType", "endpoints", "ports"};
// ObjectMeta as the API server returns it, so that objects from the watch client pass too.
constexpr std::string_view kMetadataFields[]{"name",
                                             "namespace",
                                             "labels",
                                             "annotations",
                                             "uid",
                                             "resourceVersion",
                                             "generation",
                                             "generateName",
                                             "creationTimestamp",
                                             "deletionTimestamp",
                                             "deletionGracePeriodSeconds",
                                             "ownerReferences",
                                             "finalizers",
                                             "managedFields",
                                             "selfLink"};

struct KindInfo {
    std::string_view kind;
    std::string_view api_version;
    bool namespaced;
    FieldList fields;  // the top-level fields the kind has
};

constexpr std::array<KindInfo, 6> kKinds{{
    {"Node", "v1", false, kObjectFields},
    {"Namespace", "v1", false, kObjectFields},
    {"Pod", "v1", true, kObjectFields},
    {"Service", "v1", true, kObjectFields},
    {"EndpointSlice", "discovery.k8s.io/v1", true, kEndpointSliceFields},
    {"NetworkPolicy", "networking.k8s.io/v1", true, kObjectFields},
}};

const KindInfo* find_kind(std::string_view kind) {
    for (const auto& k : kKinds) {
        if (k.kind == kind) {
            return &k;
        }
    }
    return nullptr;
}

using jsonu::find;
using jsonu::get_labels;
using jsonu::get_string;
using jsonu::parse_ip;
using jsonu::Where;

Node parse_node(const json& obj, const std::string& name, const Where& where) {
    Node n;
    n.name = name;
    n.labels = get_labels(obj, {"metadata", "labels"}, "metadata.labels", where);
    n.annotations = get_labels(obj, {"metadata", "annotations"}, "metadata.annotations", where);
    // spec.podCIDRs holds one CIDR per family (spec.podCIDR is its first); kdp keeps the IPv4
    // one. IsValidCIDR parses sloppily: host bits are cleared, not refused.
    std::vector<std::string> cidrs;
    const std::string cidr = get_string(obj, {"spec", "podCIDR"}, "spec.podCIDR", where);
    if (!cidr.empty()) {
        cidrs.push_back(cidr);
    }
    const json& list = jsonu::get_list(obj, {"spec", "podCIDRs"}, "spec.podCIDRs", where);
    for (size_t i = 0; i < list.size(); ++i) {
        if (!list[i].is_string()) {
            where.fail(fmt::format("spec.podCIDRs[{}]", i), "must be a string");
        }
        cidrs.push_back(list[i].get<std::string>());
    }
    for (const std::string& c : cidrs) {
        if (c.find(':') != std::string::npos) {
            if (!validation::is_cidr6(c)) {
                where.fail("spec.podCIDRs", fmt::format("\"{}\" is not a CIDR", c));
            }
            continue;
        }
        const auto p = Prefix4::parse(c, /*strict=*/false);
        if (!p) {
            where.fail("spec.podCIDR", fmt::format("\"{}\" is not a CIDR", c));
        }
        if (!n.pod_cidr) {
            n.pod_cidr = Prefix4{Ip4::from_host(p->addr.host() & p->mask_host()), p->len};
        }
    }
    if (const json* addrs = find(obj, {"status", "addresses"})) {
        if (!addrs->is_array()) {
            where.fail("status.addresses", "must be a list");
        }
        for (size_t i = 0; i < addrs->size(); ++i) {
            const json& a = (*addrs)[i];
            const std::string field = fmt::format("status.addresses[{}]", i);
            if (!a.is_object()) {
                where.fail(field, "must be an object");
            }
            if (get_string(a, {"type"}, field + ".type", where) != "InternalIP") {
                continue;
            }
            const std::string addr = get_string(a, {"address"}, field + ".address", where);
            const auto ip = Ip4::parse(addr);
            if (ip && !n.internal_ip) {
                n.internal_ip = *ip;
            } else if (!ip && addr.find(':') == std::string::npos) {
                // IPv6 InternalIPs (dual-stack nodes) are skipped; anything else is an error.
                where.fail(field + ".address", fmt::format("\"{}\" is not an IP address", addr));
            }
        }
    }
    const auto it = n.annotations.find(std::string(kFlannelBackendData));
    if (it != n.annotations.end()) {
        const std::string field = fmt::format("metadata.annotations[{}]", kFlannelBackendData);
        const json data = json::parse(it->second, nullptr, /*allow_exceptions=*/false);
        if (data.is_discarded() || !data.is_object()) {
            where.fail(field, "is not a JSON object");
        }
        const json* vtep = find(data, {"VtepMAC"});
        if (vtep != nullptr) {
            const auto mac =
                vtep->is_string() ? Mac::parse(vtep->get<std::string>()) : std::nullopt;
            if (!mac) {
                where.fail(field + ".VtepMAC",
                           fmt::format("{} is not a MAC address", jsonu::show(*vtep)));
            }
            n.flannel_vtep = *mac;
        }
    }
    return n;
}

Pod parse_pod(const json& obj, const std::string& ns, const std::string& name, const Where& where) {
    Pod p;
    p.ns = ns;
    p.name = name;
    p.labels = get_labels(obj, {"metadata", "labels"}, "metadata.labels", where);
    p.node_name = get_string(obj, {"spec", "nodeName"}, "spec.nodeName", where);
    if (const json* hn = find(obj, {"spec", "hostNetwork"})) {
        if (!hn->is_boolean()) {
            where.fail("spec.hostNetwork", "must be true or false");
        }
        p.host_network = hn->get<bool>();
    }
    p.terminating = find(obj, {"metadata", "deletionTimestamp"}) != nullptr;
    const json& conditions =
        jsonu::get_list(obj, {"status", "conditions"}, "status.conditions", where);
    for (size_t i = 0; i < conditions.size(); ++i) {
        const std::string field = fmt::format("status.conditions[{}]", i);
        if (get_string(conditions[i], {"type"}, field + ".type", where) == "Ready") {
            p.ready = get_string(conditions[i], {"status"}, field + ".status", where) == "True";
        }
    }
    // status.podIPs holds one address per family (status.podIP is its first); kdp keeps the
    // IPv4 one, so an IPv6-only pod has no address here rather than being refused.
    std::vector<std::string> ips;
    const std::string ip = get_string(obj, {"status", "podIP"}, "status.podIP", where);
    if (!ip.empty()) {
        ips.push_back(ip);
    }
    const json& pod_ips = jsonu::get_list(obj, {"status", "podIPs"}, "status.podIPs", where);
    for (size_t i = 0; i < pod_ips.size(); ++i) {
        ips.push_back(
            get_string(pod_ips[i], {"ip"}, fmt::format("status.podIPs[{}].ip", i), where));
    }
    for (const std::string& a : ips) {
        if (a.find(':') != std::string::npos) {
            if (!validation::is_ip6(a)) {
                where.fail("status.podIPs", fmt::format("\"{}\" is not an IP address", a));
            }
        } else if (!p.pod_ip) {
            p.pod_ip = parse_ip(a, "status.podIP", where);
        }
    }
    // Named ports resolve against the containers' ports and, as the EndpointSlice
    // controller's FindPort does, those of sidecars (init containers with restartPolicy
    // Always).
    for (const char* list : {"containers", "initContainers"}) {
        const json& containers =
            jsonu::get_list(obj, {"spec", list}, fmt::format("spec.{}", list), where);
        for (size_t c = 0; c < containers.size(); ++c) {
            const std::string base = fmt::format("spec.{}[{}]", list, c);
            if (!containers[c].is_object()) {
                where.fail(base, "must be an object");
            }
            const bool sidecar = get_string(containers[c], {"restartPolicy"},
                                            base + ".restartPolicy", where) == "Always";
            const json& ports = jsonu::get_list(containers[c], {"ports"}, base + ".ports", where);
            std::set<std::string> names;  // validateContainerPorts: unique per container
            for (size_t i = 0; i < ports.size(); ++i) {
                const json& pj = ports[i];
                const std::string field = fmt::format("{}.ports[{}]", base, i);
                ContainerPort cp;
                cp.name = get_string(pj, {"name"}, field + ".name", where);
                if (!cp.name.empty() && !validation::is_iana_svc_name(cp.name)) {
                    where.fail(field + ".name",
                               fmt::format("\"{}\" is not a port name (up to 15 of a-z, 0-9 and "
                                           "'-', with a letter)",
                                           cp.name));
                }
                if (!cp.name.empty() && !names.insert(cp.name).second) {
                    where.fail(field + ".name", fmt::format("\"{}\" is used by another port of "
                                                            "the container",
                                                            cp.name));
                }
                const json* num = find(pj, {"containerPort"});
                if (num == nullptr || !num->is_number_integer() || num->get<int64_t>() < 1 ||
                    num->get<int64_t>() > 65535) {
                    where.fail(field + ".containerPort",
                               fmt::format("{} is not a port number (1-65535)",
                                           num == nullptr ? "missing" : jsonu::show(*num)));
                }
                jsonu::get_int(pj, {"hostPort"}, field + ".hostPort", where, 0, 65535, 0);
                cp.port = static_cast<uint16_t>(num->get<int64_t>());
                cp.protocol =
                    jsonu::parse_protocol(get_string(pj, {"protocol"}, field + ".protocol", where),
                                          field + ".protocol", where);
                if (list[0] == 'c' || sidecar) {
                    p.ports.push_back(std::move(cp));
                }
            }
        }
    }
    return p;
}

}  // namespace

bool Model::known_kind(std::string_view kind) {
    return find_kind(kind) != nullptr;
}

void Model::upsert(const json& obj) {
    if (!obj.is_object()) {
        throw ModelError(fmt::format("object must be a map, not {}", obj.type_name()));
    }
    const Where anon("object", "", "");
    const std::string kind = get_string(obj, {"kind"}, "kind", anon);
    if (kind.empty()) {
        throw ModelError("kind: missing");
    }
    const KindInfo* info = find_kind(kind);
    if (info == nullptr) {
        throw ModelError(fmt::format("unknown kind \"{}\"", kind));
    }
    const std::string name = get_string(obj, {"metadata", "name"}, "metadata.name", anon);
    std::string ns;
    if (info->namespaced) {
        ns = get_string(obj, {"metadata", "namespace"}, "metadata.namespace", anon);
        if (ns.empty()) {
            ns = "default";
        }
    }
    if (name.empty()) {
        throw ModelError(
            ns.empty() ? fmt::format("{}: metadata.name: missing", kind)
                       : fmt::format("{} in namespace \"{}\": metadata.name: missing", kind, ns));
    }
    const Where where(kind, ns, name);
    validation::check_object_name(kind, name, where);
    if (info->namespaced && !validation::is_dns1123_label(ns)) {
        where.fail("metadata.namespace", "a namespace is a DNS-1123 label");
    }
    validation::check_labels(get_labels(obj, {"metadata", "labels"}, "metadata.labels", where),
                             "metadata.labels", where);
    const std::string api_version = get_string(obj, {"apiVersion"}, "apiVersion", where);
    if (api_version != info->api_version) {
        where.fail("apiVersion",
                   api_version.empty()
                       ? fmt::format("missing (expected \"{}\")", info->api_version)
                       : fmt::format("\"{}\" is not supported for {} (expected \"{}\")",
                                     api_version, kind, info->api_version));
    }

    // Unknown fields are refused, as `kubectl apply --validate=strict` does: a misspelt field
    // would otherwise be silently ignored. Checked at the top level and in metadata.
    for (const auto& [key, _] : obj.items()) {
        if (std::find(info->fields.begin(), info->fields.end(), key) == info->fields.end()) {
            where.fail(key, "unknown field");
        }
    }
    if (const json* meta = find(obj, {"metadata"})) {
        if (!meta->is_object()) {
            where.fail("metadata", "must be an object");
        }
        for (const auto& [key, _] : meta->items()) {
            if (std::find(std::begin(kMetadataFields), std::end(kMetadataFields), key) ==
                std::end(kMetadataFields)) {
                where.fail("metadata." + key, "unknown field");
            }
        }
    }

    // Parse fully before touching the maps, so that a bad object changes nothing.
    if (kind == "Node") {
        Node n = parse_node(obj, name, where);
        nodes_[name] = std::move(n);
    } else if (kind == "Namespace") {
        Namespace n{name, get_labels(obj, {"metadata", "labels"}, "metadata.labels", where)};
        namespaces_[name] = std::move(n);
    } else if (kind == "Pod") {
        Pod p = parse_pod(obj, ns, name, where);
        pods_[p.key()] = std::move(p);
    } else if (kind == "Service") {
        Service sv = parse_service(obj, ns, name);
        services_[sv.key()] = std::move(sv);
    } else if (kind == "EndpointSlice") {
        EndpointSlice es = parse_endpoint_slice(obj, ns, name);
        slices_[es.key()] = std::move(es);
    } else if (kind == "NetworkPolicy") {
        NetworkPolicy np = parse_network_policy(obj, ns, name);
        policies_[np.key()] = std::move(np);
    } else {
        raw_[fmt::format("{}/{}/{}", kind, ns, name)] = RawObject{kind, ns, name, obj};
    }
}

void Model::upsert_fail_closed_policy(const json& obj) {
    const Where anon("NetworkPolicy", "", "");
    const std::string name = get_string(obj, {"metadata", "name"}, "metadata.name", anon);
    std::string ns = get_string(obj, {"metadata", "namespace"}, "metadata.namespace", anon);
    if (name.empty()) {
        throw ModelError("NetworkPolicy: metadata.name: missing");
    }
    if (ns.empty()) {
        ns = "default";
    }
    NetworkPolicy np = parse_network_policy_fail_closed(obj, ns, name);
    policies_[np.key()] = std::move(np);
}

template <class Self, class F>
bool Model::typed(
    Self& self, std::string_view kind, std::string_view ns, std::string_view name, F&& f) {
    const KindInfo* info = find_kind(kind);
    if (info == nullptr) {
        throw ModelError(fmt::format("unknown kind \"{}\"", kind));
    }
    const std::string key = info->namespaced
                                ? fmt::format("{}/{}", ns.empty() ? "default" : ns, name)
                                : std::string(name);
    if (kind == "Node") {
        return f(self.nodes_, key);
    }
    if (kind == "Namespace") {
        return f(self.namespaces_, key);
    }
    if (kind == "Pod") {
        return f(self.pods_, key);
    }
    if (kind == "Service") {
        return f(self.services_, key);
    }
    if (kind == "EndpointSlice") {
        return f(self.slices_, key);
    }
    if (kind == "NetworkPolicy") {
        return f(self.policies_, key);
    }
    return f(self.raw_, fmt::format("{}/{}", kind, key));
}

bool Model::contains(std::string_view kind, std::string_view ns, std::string_view name) const {
    return typed(*this, kind, ns, name,
                 [](const auto& map, const std::string& key) { return map.count(key) != 0; });
}

bool Model::remove(std::string_view kind, std::string_view ns, std::string_view name) {
    return typed(*this, kind, ns, name,
                 [](auto& map, const std::string& key) { return map.erase(key) != 0; });
}

}  // namespace kdp::control
