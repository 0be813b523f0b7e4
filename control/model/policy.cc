#include "model/policy.h"

#include <algorithm>
#include <cctype>
#include <tuple>

#include <fmt/format.h>

#include "model/json_util.h"
#include "model/model.h"
#include "model/validation.h"

namespace kdp::control {

using jsonu::find;
using jsonu::get_labels;
using jsonu::get_list;
using jsonu::get_string;
using jsonu::json;
using jsonu::Where;

bool LabelSelector::matches(const Labels& labels) const {
    for (const auto& [k, v] : match_labels) {
        const auto it = labels.find(k);
        if (it == labels.end() || it->second != v) {
            return false;
        }
    }
    for (const Requirement& r : expressions) {
        const auto it = labels.find(r.key);
        const bool has = it != labels.end();
        const bool in =
            has && std::find(r.values.begin(), r.values.end(), it->second) != r.values.end();
        switch (r.op) {
            case Op::kIn:
                if (!in) {
                    return false;
                }
                break;
            case Op::kNotIn:  // a pod without the label is not in the set
                if (in) {
                    return false;
                }
                break;
            case Op::kExists:
                if (!has) {
                    return false;
                }
                break;
            case Op::kDoesNotExist:
                if (has) {
                    return false;
                }
                break;
        }
    }
    return true;
}

namespace {

LabelSelector parse_selector(const json& sel, const std::string& field, const Where& where) {
    if (!sel.is_object()) {
        where.fail(field, "must be a label selector (matchLabels, matchExpressions)");
    }
    for (const auto& [k, _] : sel.items()) {
        if (k != "matchLabels" && k != "matchExpressions") {
            where.fail(field + "." + k, "unknown field");
        }
    }
    LabelSelector s;
    s.match_labels = get_labels(sel, {"matchLabels"}, field + ".matchLabels", where);
    validation::check_labels(s.match_labels, field + ".matchLabels", where);
    const json& exprs = get_list(sel, {"matchExpressions"}, field + ".matchExpressions", where);
    for (size_t i = 0; i < exprs.size(); ++i) {
        const std::string at = fmt::format("{}.matchExpressions[{}]", field, i);
        LabelSelector::Requirement r;
        r.key = get_string(exprs[i], {"key"}, at + ".key", where);
        if (r.key.empty()) {
            where.fail(at + ".key", "missing");
        }
        if (!validation::is_qualified_name(r.key)) {
            where.fail(at + ".key", fmt::format("\"{}\" is not a label key", r.key));
        }
        const std::string op = get_string(exprs[i], {"operator"}, at + ".operator", where);
        if (op == "In") {
            r.op = LabelSelector::Op::kIn;
        } else if (op == "NotIn") {
            r.op = LabelSelector::Op::kNotIn;
        } else if (op == "Exists") {
            r.op = LabelSelector::Op::kExists;
        } else if (op == "DoesNotExist") {
            r.op = LabelSelector::Op::kDoesNotExist;
        } else {
            where.fail(at + ".operator",
                       fmt::format("\"{}\" is not In, NotIn, Exists or DoesNotExist", op));
        }
        const json& values = get_list(exprs[i], {"values"}, at + ".values", where);
        for (size_t v = 0; v < values.size(); ++v) {
            if (!values[v].is_string()) {
                where.fail(fmt::format("{}.values[{}]", at, v), "must be a string");
            }
            r.values.push_back(values[v].get<std::string>());
            if (!validation::is_label_value(r.values.back())) {
                where.fail(fmt::format("{}.values[{}]", at, v),
                           fmt::format("\"{}\" is not a label value", r.values.back()));
            }
        }
        const bool set_op = r.op == LabelSelector::Op::kIn || r.op == LabelSelector::Op::kNotIn;
        if (set_op && r.values.empty()) {
            where.fail(at + ".values", fmt::format("must be non-empty for {}", op));
        }
        if (!set_op && !r.values.empty()) {
            where.fail(at + ".values", fmt::format("must be empty for {}", op));
        }
        s.expressions.push_back(std::move(r));
    }
    return s;
}

// An ipBlock CIDR: IPv4 (host bits cleared, as the API server's normalisation does) or IPv6
// (kept as "matches no IPv4 address").
std::optional<Prefix4> parse_block_cidr(const std::string& s,
                                        const std::string& field,
                                        const Where& where) {
    if (s.find(':') != std::string::npos) {
        if (!validation::is_cidr6(s)) {
            where.fail(field, fmt::format("\"{}\" is not a CIDR", s));
        }
        return std::nullopt;
    }
    const auto p = Prefix4::parse(s, /*strict=*/false);
    if (!p) {
        where.fail(field, fmt::format("\"{}\" is not a CIDR", s));
    }
    return *p;  // host bits cleared
}

IpBlock parse_ip_block(const json& b, const std::string& field, const Where& where) {
    if (!b.is_object()) {
        where.fail(field, "must be an object (cidr, except)");
    }
    for (const auto& [k, _] : b.items()) {
        if (k != "cidr" && k != "except") {
            where.fail(field + "." + k, "unknown field");
        }
    }
    IpBlock out;
    const std::string cidr = get_string(b, {"cidr"}, field + ".cidr", where);
    if (cidr.empty()) {
        where.fail(field + ".cidr", "missing");
    }
    const auto c = parse_block_cidr(cidr, field + ".cidr", where);
    out.ipv6 = !c;
    if (c) {
        out.cidr = *c;
    }
    const json& except = get_list(b, {"except"}, field + ".except", where);
    for (size_t i = 0; i < except.size(); ++i) {
        const std::string at = fmt::format("{}.except[{}]", field, i);
        if (!except[i].is_string()) {
            where.fail(at, "must be a string");
        }
        const auto e = parse_block_cidr(except[i].get<std::string>(), at, where);
        if (e.has_value() != c.has_value() || (c && (e->len <= c->len || !c->contains(e->addr)))) {
            where.fail(at, fmt::format("\"{}\" is not a strict subset of cidr \"{}\"",
                                       except[i].get<std::string>(), cidr));
        }
        if (e) {
            out.except.push_back(*e);
        }
    }
    return out;
}

PolicyPort parse_port(const json& p, const std::string& field, const Where& where) {
    if (!p.is_object()) {
        where.fail(field, "must be an object (protocol, port, endPort)");
    }
    for (const auto& [k, _] : p.items()) {
        if (k != "protocol" && k != "port" && k != "endPort") {
            where.fail(field + "." + k, "unknown field");
        }
    }
    PolicyPort out;
    out.protocol = jsonu::parse_protocol(get_string(p, {"protocol"}, field + ".protocol", where),
                                         field + ".protocol", where);
    if (const json* port = find(p, {"port"})) {
        if (port->is_string()) {
            out.name = port->get<std::string>();
            if (!validation::is_iana_svc_name(out.name)) {
                where.fail(field + ".port",
                           fmt::format("\"{}\" is not a port name (1-15 lowercase letters, "
                                       "digits and '-')",
                                       out.name));
            }
        } else {
            out.port = static_cast<uint16_t>(
                jsonu::get_int(p, {"port"}, field + ".port", where, 1, 65535, 0));
        }
    }
    if (find(p, {"endPort"}) != nullptr) {
        if (out.port == 0) {
            where.fail(field + ".endPort", out.name.empty()
                                               ? "may not be specified when port is not specified"
                                               : "may not be specified when port is non-numeric");
        }
        out.end_port = static_cast<uint16_t>(
            jsonu::get_int(p, {"endPort"}, field + ".endPort", where, 1, 65535, 0));
        if (out.end_port < out.port) {
            where.fail(field + ".endPort",
                       fmt::format("{} is less than port {}", out.end_port, out.port));
        }
    }
    return out;
}

std::vector<PolicyRule> parse_rules(const json& obj,
                                    const char* dir,
                                    const char* peers_key,
                                    const Where& where) {
    std::vector<PolicyRule> out;
    const std::string base = fmt::format("spec.{}", dir);
    const json& rules = get_list(obj, {"spec", dir}, base, where);
    for (size_t i = 0; i < rules.size(); ++i) {
        const std::string at = fmt::format("{}[{}]", base, i);
        const json& r = rules[i];
        if (!r.is_object()) {
            where.fail(at, fmt::format("must be an object ({}, ports)", peers_key));
        }
        for (const auto& [k, _] : r.items()) {
            if (k != peers_key && k != "ports") {
                where.fail(at + "." + k, "unknown field");
            }
        }
        PolicyRule rule;
        const std::string pat = at + "." + peers_key;
        const json& peers = get_list(r, {peers_key}, pat, where);
        for (size_t j = 0; j < peers.size(); ++j) {
            const std::string pj = fmt::format("{}[{}]", pat, j);
            const json& p = peers[j];
            if (!p.is_object()) {
                where.fail(pj, "must be an object (podSelector, namespaceSelector, ipBlock)");
            }
            PolicyPeer peer;
            for (const auto& [k, v] : p.items()) {
                if (v.is_null()) {
                    continue;
                }
                if (k == "podSelector") {
                    peer.pods = parse_selector(v, pj + ".podSelector", where);
                } else if (k == "namespaceSelector") {
                    peer.namespaces = parse_selector(v, pj + ".namespaceSelector", where);
                } else if (k == "ipBlock") {
                    peer.ip_block = parse_ip_block(v, pj + ".ipBlock", where);
                } else {
                    where.fail(pj + "." + k, "unknown field");
                }
            }
            if (!peer.pods && !peer.namespaces && !peer.ip_block) {
                where.fail(pj, "must specify a podSelector, a namespaceSelector or an ipBlock");
            }
            if (peer.ip_block && (peer.pods || peer.namespaces)) {
                where.fail(pj, "may not specify both ipBlock and a selector");
            }
            rule.peers.push_back(std::move(peer));
        }
        const json& ports = get_list(r, {"ports"}, at + ".ports", where);
        for (size_t j = 0; j < ports.size(); ++j) {
            rule.ports.push_back(parse_port(ports[j], fmt::format("{}.ports[{}]", at, j), where));
        }
        out.push_back(std::move(rule));
    }
    return out;
}

}  // namespace

NetworkPolicy parse_network_policy(const json& obj,
                                   const std::string& ns,
                                   const std::string& name) {
    const Where where("NetworkPolicy", ns, name);
    NetworkPolicy np;
    np.ns = ns;
    np.name = name;
    // A NetworkPolicy without spec or podSelector is valid: the zero spec selects every pod
    // of the namespace (an empty podSelector) and isolates it for ingress.
    static const json kEmptySpec = json::object();
    const json* spec = find(obj, {"spec"});
    if (spec == nullptr) {
        spec = &kEmptySpec;
    }
    if (!spec->is_object()) {
        where.fail("spec", "must be an object");
    }
    for (const auto& [k, _] : spec->items()) {
        if (k != "podSelector" && k != "policyTypes" && k != "ingress" && k != "egress") {
            where.fail("spec." + k, "unknown field");
        }
    }
    if (const json* sel = find(obj, {"spec", "podSelector"})) {
        np.pod_selector = parse_selector(*sel, "spec.podSelector", where);
    }
    np.ingress_rules = parse_rules(obj, "ingress", "from", where);
    np.egress_rules = parse_rules(obj, "egress", "to", where);
    const json& types = get_list(obj, {"spec", "policyTypes"}, "spec.policyTypes", where);
    if (types.empty()) {
        // The API server's default: Ingress always, Egress when there are egress rules.
        np.ingress = true;
        np.egress = !np.egress_rules.empty();
    } else {
        // ValidateNetworkPolicySpec: at most two entries, each Ingress or Egress; the API
        // server accepts one listed twice.
        if (types.size() > 2) {
            where.fail("spec.policyTypes", "may not specify more than two policyTypes");
        }
        np.ingress = np.egress = false;
        for (size_t i = 0; i < types.size(); ++i) {
            const std::string at = fmt::format("spec.policyTypes[{}]", i);
            const std::string t = types[i].is_string() ? types[i].get<std::string>() : "";
            if (t != "Ingress" && t != "Egress") {
                where.fail(at, fmt::format("{} is not Ingress or Egress", jsonu::show(types[i])));
            }
            (t == "Ingress" ? np.ingress : np.egress) = true;
        }
    }
    return np;
}

NetworkPolicy parse_network_policy_fail_closed(const json& obj,
                                               const std::string& ns,
                                               const std::string& name) {
    const Where where("NetworkPolicy", ns, name);
    NetworkPolicy np;
    np.ns = ns;
    np.name = name;
    // An unreadable selector: every pod of the namespace (an empty selector).
    try {
        if (const json* sel = find(obj, {"spec", "podSelector"})) {
            np.pod_selector = parse_selector(*sel, "spec.podSelector", where);
        }
    } catch (const ModelError&) {
        np.pod_selector = LabelSelector{};
    }
    for (const auto& [dir, peers_key, out] : {std::tuple{"ingress", "from", &np.ingress_rules},
                                              std::tuple{"egress", "to", &np.egress_rules}}) {
        const json* rules = find(obj, {"spec", dir});
        if (rules == nullptr || !rules->is_array()) {
            if (rules != nullptr) {
                PolicyRule none;  // a rule list kdp cannot read: one rule that allows nothing
                none.unreadable = true;
                out->push_back(std::move(none));
            }
            continue;
        }
        for (const json& r : *rules) {
            const json one{{"spec", {{dir, json::array({r})}}}};
            try {
                out->push_back(std::move(parse_rules(one, dir, peers_key, where).at(0)));
            } catch (const ModelError&) {
                PolicyRule none;
                none.unreadable = true;
                out->push_back(std::move(none));
            }
        }
    }
    // policyTypes as written; unreadable ones isolate both ways. Egress rules kdp could not
    // read still mean the user meant egress isolation.
    np.ingress = true;
    np.egress = true;
    const json* types = find(obj, {"spec", "policyTypes"});
    if (types != nullptr && types->is_array() && !types->empty() &&
        std::all_of(types->begin(), types->end(),
                    [](const json& t) { return t == "Ingress" || t == "Egress"; })) {
        np.ingress =
            std::any_of(types->begin(), types->end(), [](const json& t) { return t == "Ingress"; });
        np.egress =
            std::any_of(types->begin(), types->end(), [](const json& t) { return t == "Egress"; });
    } else if (types == nullptr || (types->is_array() && types->empty())) {
        np.egress = find(obj, {"spec", "egress"}) != nullptr;
    }
    return np;
}

}  // namespace kdp::control
