// The desired state of a node's forwarding tables, as plain values.
//
// This is what the static config, the gRPC API and `kdpctl` speak: a TableSpec is validated
// and compiled into an immutable TableSet (tables.h) off the workers, then published by RCU.
// Nothing here is used on a worker lcore.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/net.h"

namespace kdp::table {

/// A remote node's pod CIDR, reached through VXLAN to that node's VTEP.
struct RouteSpec {
    std::string node_name;
    Ip4 node_ip;       // the remote VTEP (underlay address)
    Prefix4 pod_cidr;  // must not overlap this node's pod CIDR or another route
    Mac vtep_mac;      // inner destination MAC (Flannel: the remote flannel.1 MAC)
    friend bool operator==(const RouteSpec&, const RouteSpec&) = default;
};

/// A pod on this node: its address and the port it sits behind.
struct PodSpec {
    std::string name;       // "namespace/pod"
    Ip4 ip;                 // inside this node's pod CIDR
    std::string port_name;  // a port known to the port registry
    friend bool operator==(const PodSpec&, const PodSpec&) = default;
};

/// One endpoint of a Service port, with its target port already resolved (named targetPorts
/// are resolved per pod by the compiler).
struct BackendSpec {
    Ip4 ip;
    uint16_t port = 0;  // host order
    std::string pod;    // "namespace/pod", for display and tracing
    std::string node;   // node name hosting it ("" when unknown)
    bool ready = true;  // EndpointSlice conditions
    bool serving = true;
    bool terminating = false;
    /// Topology-aware routing (EndpointSlice hints, kube-proxy's pkg/proxy/topology.go): a
    /// ready endpoint hinted for other zones or nodes, left out of the set cluster traffic uses
    /// (never of this node's set). The control plane decides, per node.
    bool topology_excluded = false;
    friend bool operator==(const BackendSpec&, const BackendSpec&) = default;
};

enum class FrontendKind : uint8_t { kClusterIp, kNodePort, kExternalIp, kLoadBalancer };

/// An address:port that leads to a Service port.
struct FrontendSpec {
    FrontendKind kind = FrontendKind::kClusterIp;
    Ip4 ip;             // ClusterIP, external IP, LoadBalancer IP, or this node's IP (NodePort)
    uint16_t port = 0;  // host order: Service port, or the nodePort
    friend bool operator==(const FrontendSpec&, const FrontendSpec&) = default;
};

/// One port of one Service, with everything a worker needs to load-balance it.
struct ServiceSpec {
    std::string name;   // "namespace/name:portname" (portname may be empty)
    uint8_t proto = 6;  // 6 TCP, 17 UDP, 132 SCTP
    std::vector<FrontendSpec> frontends;
    std::vector<BackendSpec> backends;
    bool external_local = false;          // externalTrafficPolicy: Local
    bool internal_local = false;          // internalTrafficPolicy: Local
    uint32_t affinity_timeout_s = 0;      // sessionAffinity ClientIP (0: None)
    std::vector<Prefix4> source_ranges;   // loadBalancerSourceRanges (empty: any)
    uint16_t health_check_node_port = 0;  // ETP Local: answered on the node IP (0: none)
    friend bool operator==(const ServiceSpec&, const ServiceSpec&) = default;
};

/// NetworkPolicy, compiled by the control plane into identities and per-pod rule lists.
///
/// An identity stands for a set of addresses that every policy treats alike: the pods of one
/// namespace with one label set (and one set of named ports), or one cell of the partition
/// that all ipBlocks (cidrs and excepts) make of the address space. A packet's peer has up to
/// two: its pod identity (exact address) and its CIDR identity (longest prefix); a rule
/// matches if it names either, or kIdentityAny.
inline constexpr uint32_t kIdentityMax = (1u << 24) - 2;
inline constexpr uint32_t kIdentityAny = (1u << 24) - 1;  // a rule without peers: every peer

enum class PolicyDir : uint8_t { kIngress = 0, kEgress = 1 };

/// One allowed (peer identity, protocol, port range) of a pod in one direction.
struct PolicyRuleSpec {
    PolicyDir dir = PolicyDir::kIngress;
    uint32_t identity = 0;  // 1..kIdentityMax, or kIdentityAny
    uint8_t proto = 0;      // 6, 17, 132; 0: every protocol and port (a rule without ports)
    uint16_t port_min = 0;  // host order, inclusive; 0..65535 for "every port"
    uint16_t port_max = 0;
    uint32_t rule = 0;  // index into PolicySpec::rule_names: which rule allowed it
    friend bool operator==(const PolicyRuleSpec&, const PolicyRuleSpec&) = default;
};

/// A local pod that some policy selects. Pods no policy selects are absent: not isolated.
struct PodPolicySpec {
    std::string pod;  // "namespace/pod"
    Ip4 ip;           // the pod's address: how the dataplane finds it
    bool ingress_isolated = false;
    bool egress_isolated = false;
    std::vector<PolicyRuleSpec> rules;
    friend bool operator==(const PodPolicySpec&, const PodPolicySpec&) = default;
};

struct PeerIdentitySpec {
    Ip4 ip;  // a pod's address (any node)
    uint32_t identity = 0;
    friend bool operator==(const PeerIdentitySpec&, const PeerIdentitySpec&) = default;
};

struct CidrIdentitySpec {
    Prefix4 cidr;  // one prefix of the ipBlock partition; 0.0.0.0/0 is always present
    uint32_t identity = 0;
    friend bool operator==(const CidrIdentitySpec&, const CidrIdentitySpec&) = default;
};

struct PolicySpec {
    /// Whether a control plane manages policy. Until a spec with `present` arrives, a node
    /// configured to wait (network_policy.before_sync: deny) forwards no pod traffic.
    bool present = false;
    std::vector<PeerIdentitySpec> peers;
    std::vector<CidrIdentitySpec> cidrs;
    std::vector<PodPolicySpec> pods;
    std::vector<std::string> rule_names;      // "namespace/policy ingress[i]" / "... egress[i]"
    std::vector<std::string> identity_names;  // by identity - 1, for display (may be empty)
    friend bool operator==(const PolicySpec&, const PolicySpec&) = default;
};

struct TableSpec {
    uint64_t generation = 0;  // strictly increasing; a stale or replayed spec is refused
    std::vector<RouteSpec> routes;
    std::vector<PodSpec> pods;
    std::vector<ServiceSpec> services;
    PolicySpec policy;
    /// The service CIDRs (kube-proxy's --service-cluster-ip-range): traffic to an address in
    /// them that no Service holds is dropped, and to a ClusterIP on a port or protocol its
    /// Service does not have is refused, never routed out of the node. Empty: no such check.
    std::vector<Prefix4> service_cidrs;
    friend bool operator==(const TableSpec&, const TableSpec&) = default;
};

/// An incremental change to a TableSpec (UpdateTables): entries upserted by key (routes by
/// node_name, pods and services by name) and keys deleted. Parsed and checked for syntax by
/// api/convert.h (no key upserted twice, or both upserted and deleted).
struct TableUpdate {
    uint64_t generation = 0;  // of the state it gives; strictly increasing
    std::vector<RouteSpec> upsert_routes;
    std::vector<std::string> delete_routes;
    std::vector<PodSpec> upsert_pods;
    std::vector<std::string> delete_pods;
    std::vector<ServiceSpec> upsert_services;
    std::vector<std::string> delete_services;
    /// Replaces the policy in force when set (policy changes are sent whole).
    std::optional<PolicySpec> policy;
};

}  // namespace kdp::table
