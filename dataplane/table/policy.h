// PolicyTables: one immutable version of the node's NetworkPolicy state, as workers read it.
//
// Built by the TableManager from a PolicySpec (table_spec.h) off the workers and published
// through TableSet::policy (one atomic pointer, swapped in place when only the policy changes,
// carried over when the rest of the tables is rebuilt); the old version is freed after an RCU
// grace period. Workers consult it only for a connection's first packet, or for the first
// packet after a policy change (the verdict is cached in the conntrack entry with `epoch`).
//
// Cost of a verdict: one probe to find the local pod, one for the peer's pod identity, one
// longest-prefix match for its CIDR identity (one probe per distinct ipBlock prefix length),
// then at most six probes of the rule map — (pod identity, CIDR identity, any) x (protocol,
// every protocol) — each leading to a short list of port ranges. None of it grows with the
// number of policies or pods.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/net.h"
#include "spec/table_spec.h"
#include "table/flat_map.h"
#include "table/prefix_table.h"

namespace kdp::table {

struct PodPolicy {
    static constexpr uint8_t kIngressIsolated = 1;
    static constexpr uint8_t kEgressIsolated = 2;
    uint32_t index = 0;  // the pod's number in the rule keys
    uint8_t isolation = 0;
};

struct PortRange {
    uint16_t min = 0;
    uint16_t max = 0;
    uint32_t rule = 0;  // index into PolicySpec::rule_names + 1
};

struct RuleSlice {
    uint32_t first = 0;  // into PolicyTables::ranges
    uint32_t count = 0;
};

inline uint64_t policy_rule_key(uint32_t pod,
                                PolicyDir dir,
                                uint32_t identity,
                                uint8_t proto) noexcept {
    return uint64_t{pod} << 33 | uint64_t{static_cast<uint8_t>(dir)} << 32 |
           uint64_t{identity} << 8 | proto;
}

struct PolicyTables {
    /// Never 0 and different for every version published: a conntrack entry whose cached
    /// verdict carries another epoch is judged again.
    uint32_t epoch = 0;
    /// False until a control plane has sent its policy (before_sync: deny): nothing a pod
    /// sends or receives is allowed.
    bool synced = false;
    FlatMap<uint32_t> peers;        // pod address (network order) -> identity
    PrefixTable<uint32_t> cidrs;    // ipBlock partition -> identity
    FlatMap<PodPolicy> pods;        // local pod address -> isolation and rule index
    FlatMap<RuleSlice> rules;       // policy_rule_key -> its port ranges
    std::vector<PortRange> ranges;  // by rule slice, each slice sorted by rule
    PolicySpec spec;                // what it was built from (API side; never changed)

    const PodPolicy* find_pod(Ip4 ip) const noexcept { return pods.find(ip.be); }

    /// The rule (index + 1) that lets pod `pod` exchange `proto`/`port` (host order) with
    /// `peer` in direction `dir`, or 0 when none does.
    uint32_t match(const PodPolicy& pod,
                   PolicyDir dir,
                   Ip4 peer,
                   uint8_t proto,
                   uint16_t port) const noexcept {
        const uint32_t* pid = peers.find(peer.be);
        const uint32_t* cid = cidrs.lookup(peer);
        const uint32_t ids[3] = {pid != nullptr ? *pid : 0u, cid != nullptr ? *cid : 0u,
                                 kIdentityAny};
        uint32_t best = 0;
        for (const uint32_t id : ids) {
            if (id == 0) {
                continue;
            }
            for (const uint8_t pr : {proto, uint8_t{0}}) {
                const RuleSlice* s = rules.find(policy_rule_key(pod.index, dir, id, pr));
                if (s == nullptr) {
                    continue;
                }
                for (uint32_t i = s->first; i < s->first + s->count; ++i) {
                    const PortRange& r = ranges[i];
                    if (port >= r.min && port <= r.max && (best == 0 || r.rule < best)) {
                        best = r.rule;
                        break;  // sorted by rule: the first match is this slice's lowest
                    }
                }
            }
        }
        return best;
    }
};

}  // namespace kdp::table
