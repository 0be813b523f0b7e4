#include "compile/policy.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>

namespace kdp::control {

namespace {

// The label Kubernetes puts on every namespace (NamespaceDefaultLabelName): namespaceSelector
// {matchLabels: {kubernetes.io/metadata.name: x}} selects namespace x even without a manifest.
constexpr const char* kNamespaceNameLabel = "kubernetes.io/metadata.name";

struct Identity {
    std::string ns;
    Labels labels;
    std::vector<ContainerPort> ports;  // named ones, sorted
};

uint8_t proto_number(const std::string& p) {
    return p == "UDP" ? 17 : p == "SCTP" ? 132 : 6;
}

std::string labels_text(const Labels& l) {
    std::string s;
    for (const auto& [k, v] : l) {
        s += (s.empty() ? "" : ",") + k + "=" + v;
    }
    return s;
}

class Compiler {
public:
    Compiler(const Model& m, std::string_view node) : m_(m), node_(node) {}

    table::PolicySpec run() {
        identities();
        cidrs();
        out_.present = true;
        for (const auto& [key, pod] : m_.pods()) {
            if (pod.node_name == node_ && usable(pod)) {
                local_pod(pod);
            }
        }
        return std::move(out_);
    }

private:
    static bool usable(const Pod& p) { return p.pod_ip && !p.host_network; }

    Labels ns_labels(const std::string& ns) const {
        Labels l;
        const auto it = m_.namespaces().find(ns);
        if (it != m_.namespaces().end()) {
            l = it->second.labels;
        }
        l[kNamespaceNameLabel] = ns;
        return l;
    }

    void identities() {
        std::map<std::tuple<std::string, Labels,
                            std::vector<std::tuple<std::string, uint16_t, std::string>>>,
                 std::vector<const Pod*>>
            groups;
        for (const auto& [key, pod] : m_.pods()) {
            if (!usable(pod)) {
                continue;
            }
            std::vector<std::tuple<std::string, uint16_t, std::string>> named;
            for (const ContainerPort& cp : pod.ports) {
                if (!cp.name.empty()) {
                    named.emplace_back(cp.name, cp.port, cp.protocol);
                }
            }
            std::sort(named.begin(), named.end());
            groups[{pod.ns, pod.labels, named}].push_back(&pod);
        }
        for (const auto& [k, pods] : groups) {
            const auto id = static_cast<uint32_t>(ids_.size() + 1);
            Identity ident{std::get<0>(k), std::get<1>(k), {}};
            for (const auto& [name, port, proto] : std::get<2>(k)) {
                ident.ports.push_back(ContainerPort{name, port, proto});
            }
            ids_.push_back(std::move(ident));
            out_.identity_names.push_back(
                fmt::format("{} {{{}}}", std::get<0>(k), labels_text(std::get<1>(k))));
            for (const Pod* p : pods) {
                out_.peers.push_back(table::PeerIdentitySpec{*p->pod_ip, id});
            }
        }
        std::sort(out_.peers.begin(), out_.peers.end(),
                  [](const auto& a, const auto& b) { return a.ip.host() < b.ip.host(); });
        for (const Identity& i : ids_) {
            ns_match_.emplace(i.ns, ns_labels(i.ns));
        }
    }

    void cidrs() {
        std::set<std::pair<uint32_t, uint8_t>> all{{0u, uint8_t{0}}};
        for (const auto& [key, np] : m_.network_policies()) {
            for (const auto* rules : {&np.ingress_rules, &np.egress_rules}) {
                for (const PolicyRule& r : *rules) {
                    for (const PolicyPeer& p : r.peers) {
                        if (p.ip_block && !p.ip_block->ipv6) {
                            all.emplace(p.ip_block->cidr.addr.host(), p.ip_block->cidr.len);
                            for (const Prefix4& e : p.ip_block->except) {
                                all.emplace(e.addr.host(), e.len);
                            }
                        }
                    }
                }
            }
        }
        for (const auto& [addr, len] : all) {
            const Prefix4 p{Ip4::from_host(addr), len};
            const auto id = static_cast<uint32_t>(ids_.size() + cidr_.size() + 1);
            cidr_.emplace_back(p, id);
            out_.cidrs.push_back(table::CidrIdentitySpec{p, id});
            out_.identity_names.push_back("cidr " + p.str());
        }
    }

    // Pod identities a selector peer matches, from a policy in namespace `ns`.
    std::vector<uint32_t> select(const PolicyPeer& peer, const std::string& ns) const {
        std::vector<uint32_t> out;
        for (size_t i = 0; i < ids_.size(); ++i) {
            const Identity& id = ids_[i];
            const bool ns_ok =
                peer.namespaces ? peer.namespaces->matches(ns_match_.at(id.ns)) : id.ns == ns;
            if (ns_ok && (!peer.pods || peer.pods->matches(id.labels))) {
                out.push_back(static_cast<uint32_t>(i + 1));
            }
        }
        return out;
    }

    // CIDR identities inside an ipBlock: prefixes within its cidr and within none of its excepts.
    std::vector<uint32_t> select(const IpBlock& b) const {
        std::vector<uint32_t> out;
        if (b.ipv6) {
            return out;
        }
        for (const auto& cell : cidr_) {
            const Prefix4& p = cell.first;
            const auto within = [&p](const Prefix4& outer) {
                return p.len >= outer.len && outer.contains(p.addr);
            };
            if (within(b.cidr) && std::none_of(b.except.begin(), b.except.end(), within)) {
                out.push_back(cell.second);
            }
        }
        return out;
    }

    // A named port on a set of container ports: its number for `protocol`, or 0.
    static uint16_t resolve(const std::vector<ContainerPort>& ports,
                            const std::string& name,
                            const std::string& protocol) {
        for (const ContainerPort& cp : ports) {
            if (cp.name == name && cp.protocol == protocol) {
                return cp.port;
            }
        }
        return 0;
    }

    void local_pod(const Pod& pod) {
        table::PodPolicySpec pp;
        pp.pod = pod.key();
        pp.ip = *pod.pod_ip;
        std::set<std::tuple<uint8_t, uint32_t, uint8_t, uint16_t, uint16_t, uint32_t>> rules;
        for (const auto& [key, np] : m_.network_policies()) {
            if (np.ns != pod.ns || !np.pod_selector.matches(pod.labels)) {
                continue;
            }
            pp.ingress_isolated = pp.ingress_isolated || np.ingress;
            pp.egress_isolated = pp.egress_isolated || np.egress;
            if (np.ingress) {
                add_rules(np, table::PolicyDir::kIngress, pod, rules);
            }
            if (np.egress) {
                add_rules(np, table::PolicyDir::kEgress, pod, rules);
            }
        }
        if (!pp.ingress_isolated && !pp.egress_isolated) {
            return;
        }
        for (const auto& [dir, identity, proto, lo, hi, rule] : rules) {
            pp.rules.push_back(table::PolicyRuleSpec{static_cast<table::PolicyDir>(dir), identity,
                                                     proto, lo, hi, rule});
        }
        out_.pods.push_back(std::move(pp));
    }

    template <class Set>
    void add_rules(const NetworkPolicy& np, table::PolicyDir dir, const Pod& pod, Set& rules) {
        const bool ingress = dir == table::PolicyDir::kIngress;
        const auto& list = ingress ? np.ingress_rules : np.egress_rules;
        for (size_t r = 0; r < list.size(); ++r) {
            const PolicyRule& rule = list[r];
            if (rule.unreadable) {
                continue;  // allows nothing (fail closed); the pod stays isolated
            }
            const auto rule_id = name_rule(np, ingress, r);
            // Peers: pod identities (named egress ports resolve per identity) and CIDR ones.
            std::vector<uint32_t> pod_ids;
            std::vector<uint32_t> cidr_ids;
            const bool any_peer = rule.peers.empty();
            for (const PolicyPeer& peer : rule.peers) {
                const auto ids = peer.ip_block ? select(*peer.ip_block) : select(peer, np.ns);
                (peer.ip_block ? cidr_ids : pod_ids)
                    .insert((peer.ip_block ? cidr_ids : pod_ids).end(), ids.begin(), ids.end());
            }
            const auto emit = [&](uint32_t id, uint8_t proto, uint16_t lo, uint16_t hi) {
                rules.emplace(static_cast<uint8_t>(dir), id, proto, lo, hi, rule_id);
            };
            if (rule.ports.empty()) {
                for (const uint32_t id : pod_ids) {
                    emit(id, 0, 0, 65535);
                }
                for (const uint32_t id : cidr_ids) {
                    emit(id, 0, 0, 65535);
                }
                if (any_peer) {
                    emit(table::kIdentityAny, 0, 0, 65535);
                }
                continue;
            }
            for (const PolicyPort& port : rule.ports) {
                const uint8_t proto = proto_number(port.protocol);
                if (port.name.empty()) {
                    const uint16_t lo = port.port;
                    const uint16_t hi = port.port == 0 ? 65535 : std::max(port.end_port, port.port);
                    for (const uint32_t id : pod_ids) {
                        emit(id, proto, lo, hi);
                    }
                    for (const uint32_t id : cidr_ids) {
                        emit(id, proto, lo, hi);
                    }
                    if (any_peer) {
                        emit(table::kIdentityAny, proto, lo, hi);
                    }
                    continue;
                }
                if (ingress) {  // the destination is this pod
                    const uint16_t n = resolve(pod.ports, port.name, port.protocol);
                    if (n == 0) {
                        continue;
                    }
                    for (const uint32_t id : pod_ids) {
                        emit(id, proto, n, n);
                    }
                    for (const uint32_t id : cidr_ids) {
                        emit(id, proto, n, n);
                    }
                    if (any_peer) {
                        emit(table::kIdentityAny, proto, n, n);
                    }
                    continue;
                }
                // Egress to a named port: the destination is the peer, an identity's pods (an
                // ipBlock's addresses have no named ports). Every peer: every pod identity.
                std::vector<uint32_t> targets = pod_ids;
                if (any_peer) {
                    targets.clear();
                    for (size_t i = 0; i < ids_.size(); ++i) {
                        targets.push_back(static_cast<uint32_t>(i + 1));
                    }
                }
                for (const uint32_t id : targets) {
                    const uint16_t n = resolve(ids_[id - 1].ports, port.name, port.protocol);
                    if (n != 0) {
                        emit(id, proto, n, n);
                    }
                }
            }
        }
    }

    uint32_t name_rule(const NetworkPolicy& np, bool ingress, size_t r) {
        const std::string n = fmt::format("{} {}[{}]", np.key(), ingress ? "ingress" : "egress", r);
        const auto [it, fresh] =
            rule_ids_.emplace(n, static_cast<uint32_t>(out_.rule_names.size()));
        if (fresh) {
            out_.rule_names.push_back(n);
        }
        return it->second;
    }

    const Model& m_;
    std::string_view node_;
    table::PolicySpec out_;
    std::vector<Identity> ids_;                       // pod identities, by id - 1
    std::map<std::string, Labels> ns_match_;          // namespace -> its labels
    std::vector<std::pair<Prefix4, uint32_t>> cidr_;  // the partition and its identities
    std::map<std::string, uint32_t> rule_ids_;
};

}  // namespace

table::PolicySpec compile_policy(const Model& model, std::string_view node) {
    return Compiler(model, node).run();
}

}  // namespace kdp::control
