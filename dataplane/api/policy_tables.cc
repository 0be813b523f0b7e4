#include "api/policy_tables.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "common/ip_proto.h"

namespace kdp::api {

namespace {

constexpr uint32_t kMaxPolicyPods = (1u << 20) - 1;  // the pod's bits in policy_rule_key

bool known_proto(uint8_t p) {
    return p == 0 || p == kProtoTcp || p == kProtoUdp || p == kProtoSctp;  // 0: any
}

}  // namespace

std::optional<std::string> check_policy(const table::PolicySpec& spec, Prefix4 pod_cidr) {
    if (!spec.present) {
        return std::nullopt;
    }
    std::set<uint32_t> ips;
    for (size_t i = 0; i < spec.peers.size(); ++i) {
        const table::PeerIdentitySpec& p = spec.peers[i];
        if (p.ip.is_zero()) {
            return fmt::format("policy.peers[{}]: 0.0.0.0 is not a pod address", i);
        }
        if (p.identity == 0 || p.identity > table::kIdentityMax) {
            return fmt::format("policy.peers[{}] ({}): identity {} is not in 1..{}", i, p.ip.str(),
                               p.identity, table::kIdentityMax);
        }
        if (!ips.insert(p.ip.be).second) {
            return fmt::format("policy.peers[{}]: address {} listed twice", i, p.ip.str());
        }
    }
    std::set<std::pair<uint32_t, uint8_t>> prefixes;
    for (size_t i = 0; i < spec.cidrs.size(); ++i) {
        const table::CidrIdentitySpec& c = spec.cidrs[i];
        if (c.identity == 0 || c.identity > table::kIdentityMax) {
            return fmt::format("policy.cidrs[{}] ({}): identity {} is not in 1..{}", i,
                               c.cidr.str(), c.identity, table::kIdentityMax);
        }
        if (!prefixes.emplace(c.cidr.addr.host(), c.cidr.len).second) {
            return fmt::format("policy.cidrs[{}]: {} listed twice", i, c.cidr.str());
        }
    }
    if (spec.pods.size() > kMaxPolicyPods) {
        return fmt::format("policy.pods: {} pods, more than {}", spec.pods.size(), kMaxPolicyPods);
    }
    std::set<uint32_t> pod_ips;
    for (size_t i = 0; i < spec.pods.size(); ++i) {
        const table::PodPolicySpec& p = spec.pods[i];
        const std::string at = fmt::format("policy.pods[{}] ({})", i, p.pod);
        if (!pod_cidr.contains(p.ip)) {
            return fmt::format("{}: ip {} is outside this node's pod CIDR {}", at, p.ip.str(),
                               pod_cidr.str());
        }
        if (!pod_ips.insert(p.ip.be).second) {
            return fmt::format("{}: ip {} is listed twice", at, p.ip.str());
        }
        for (size_t r = 0; r < p.rules.size(); ++r) {
            const table::PolicyRuleSpec& x = p.rules[r];
            const std::string rat = fmt::format("{}.rules[{}]", at, r);
            if (x.dir != table::PolicyDir::kIngress && x.dir != table::PolicyDir::kEgress) {
                return fmt::format("{}: direction {} is not ingress or egress", rat,
                                   static_cast<int>(x.dir));
            }
            if (x.identity == 0 ||
                (x.identity > table::kIdentityMax && x.identity != table::kIdentityAny)) {
                return fmt::format("{}: identity {} is not in 1..{} nor any", rat, x.identity,
                                   table::kIdentityMax);
            }
            if (!known_proto(x.proto)) {
                return fmt::format("{}: protocol {} is not TCP, UDP, SCTP or any", rat, x.proto);
            }
            if (x.port_min > x.port_max) {
                return fmt::format("{}: port range {}-{} is empty", rat, x.port_min, x.port_max);
            }
            if (x.proto == 0 && (x.port_min != 0 || x.port_max != 65535)) {
                return fmt::format("{}: a rule for every protocol covers every port, not {}-{}",
                                   rat, x.port_min, x.port_max);
            }
            if (x.rule >= spec.rule_names.size()) {
                return fmt::format("{}: rule {} is not in rule_names ({} names)", rat, x.rule,
                                   spec.rule_names.size());
            }
        }
    }
    return std::nullopt;
}

std::shared_ptr<const table::PolicyTables> build_policy(const table::PolicySpec& spec,
                                                        uint32_t epoch) {
    auto t = std::make_shared<table::PolicyTables>();
    t->epoch = epoch;
    t->synced = spec.present;
    t->spec = spec;
    if (!spec.present) {
        return t;
    }
    std::vector<std::pair<uint64_t, uint32_t>> peers;
    peers.reserve(spec.peers.size());
    for (const table::PeerIdentitySpec& p : spec.peers) {
        peers.emplace_back(p.ip.be, p.identity);
    }
    t->peers = table::FlatMap<uint32_t>(peers);
    std::vector<std::pair<Prefix4, uint32_t>> cidrs;
    cidrs.reserve(spec.cidrs.size());
    for (const table::CidrIdentitySpec& c : spec.cidrs) {
        cidrs.emplace_back(c.cidr, c.identity);
    }
    t->cidrs = table::PrefixTable<uint32_t>(cidrs);
    std::vector<std::pair<uint64_t, table::PodPolicy>> pods;
    std::map<uint64_t, std::vector<table::PortRange>> rules;
    for (size_t i = 0; i < spec.pods.size(); ++i) {
        const table::PodPolicySpec& p = spec.pods[i];
        const auto index = static_cast<uint32_t>(i);
        const auto isolation =
            static_cast<uint8_t>((p.ingress_isolated ? table::PodPolicy::kIngressIsolated : 0) |
                                 (p.egress_isolated ? table::PodPolicy::kEgressIsolated : 0));
        pods.emplace_back(p.ip.be, table::PodPolicy{index, isolation});
        for (const table::PolicyRuleSpec& x : p.rules) {
            rules[table::policy_rule_key(index, x.dir, x.identity, x.proto)].push_back(
                table::PortRange{x.port_min, x.port_max, x.rule + 1});
        }
    }
    t->pods = table::FlatMap<table::PodPolicy>(pods);
    std::vector<std::pair<uint64_t, table::RuleSlice>> slices;
    slices.reserve(rules.size());
    for (auto& [key, ranges] : rules) {
        std::stable_sort(
            ranges.begin(), ranges.end(),
            [](const table::PortRange& a, const table::PortRange& b) { return a.rule < b.rule; });
        slices.emplace_back(key, table::RuleSlice{static_cast<uint32_t>(t->ranges.size()),
                                                  static_cast<uint32_t>(ranges.size())});
        t->ranges.insert(t->ranges.end(), ranges.begin(), ranges.end());
    }
    t->rules = table::FlatMap<table::RuleSlice>(slices);
    return t;
}

}  // namespace kdp::api
