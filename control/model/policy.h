// NetworkPolicy (networking.k8s.io/v1) as the model keeps it: parsed and validated on arrival,
// with the API server's defaults applied (policyTypes from the rules present, port protocol
// TCP), so that a policy the API server would refuse is refused here with the field named.
//
// IPv4 only: an ipBlock with an IPv6 CIDR is kept but matches no IPv4 address.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/net.h"

namespace kdp::control {

using Labels = std::map<std::string, std::string>;

/// metav1.LabelSelector: matchLabels and matchExpressions, all of which must hold (AND). An
/// empty selector matches everything.
struct LabelSelector {
    enum class Op : uint8_t { kIn, kNotIn, kExists, kDoesNotExist };
    struct Requirement {
        std::string key;
        Op op = Op::kIn;
        std::vector<std::string> values;
        friend bool operator==(const Requirement&, const Requirement&) = default;
    };
    Labels match_labels;
    std::vector<Requirement> expressions;

    bool matches(const Labels& labels) const;
    friend bool operator==(const LabelSelector&, const LabelSelector&) = default;
};

struct IpBlock {
    bool ipv6 = false;  // an IPv6 block: matches no IPv4 address
    Prefix4 cidr;       // host bits cleared
    std::vector<Prefix4> except;
    friend bool operator==(const IpBlock&, const IpBlock&) = default;
};

/// One entry of from/to: pod and namespace selectors (both: AND), or an ipBlock.
struct PolicyPeer {
    std::optional<LabelSelector> pods;        // absent with `namespaces`: every pod in them
    std::optional<LabelSelector> namespaces;  // absent: the policy's own namespace
    std::optional<IpBlock> ip_block;
    friend bool operator==(const PolicyPeer&, const PolicyPeer&) = default;
};

struct PolicyPort {
    std::string protocol = "TCP";  // "TCP" | "UDP" | "SCTP"
    uint16_t port = 0;             // 0: every port (or see `name`)
    std::string name;              // a named port, resolved against the destination pod
    uint16_t end_port = 0;         // 0: just `port`
    friend bool operator==(const PolicyPort&, const PolicyPort&) = default;
};

struct PolicyRule {
    std::vector<PolicyPeer> peers;  // empty: every peer
    std::vector<PolicyPort> ports;  // empty: every protocol and port
    /// A rule kdp could not read (Kubernetes mode, fail closed): it allows nothing, and keeps
    /// its place so that the rules after it keep their numbers.
    bool unreadable = false;
    friend bool operator==(const PolicyRule&, const PolicyRule&) = default;
};

struct NetworkPolicy {
    std::string ns;
    std::string name;
    LabelSelector pod_selector;  // the pods of `ns` it applies to
    bool ingress = true;         // policyTypes (defaulted as the API server does)
    bool egress = false;
    std::vector<PolicyRule> ingress_rules;
    std::vector<PolicyRule> egress_rules;

    std::string key() const { return ns + "/" + name; }
};

/// Throws ModelError (model.h) naming the field on anything the API server would refuse.
NetworkPolicy parse_network_policy(const nlohmann::json& obj,
                                   const std::string& ns,
                                   const std::string& name);

/// A NetworkPolicy that parse_network_policy refused, as kdp enforces one that the API server
/// holds (Kubernetes mode) — fail closed, never less isolation than the user wrote: the pods
/// its podSelector selects (every pod of the namespace if the selector cannot be read) are
/// isolated in the directions its policyTypes name (both if they cannot be read, or when
/// egress rules are present); each rule kdp can read allows what it says, a rule it cannot
/// read allows nothing. Never throws.
NetworkPolicy parse_network_policy_fail_closed(const nlohmann::json& obj,
                                               const std::string& ns,
                                               const std::string& name);

}  // namespace kdp::control
