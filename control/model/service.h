// Services and EndpointSlices as the model keeps them: parsed and validated on arrival, with
// the API server's defaults applied (type ClusterIP, protocol TCP, targetPort = port, traffic
// policies Cluster, ClientIP affinity timeout 10800 s), so that a bad object is refused when
// it is applied, with a message naming the field, and the compiler never sees one.
//
// IPv4 only: IPv6 cluster IPs, external IPs and IPv6 EndpointSlices of a dual-stack cluster
// are kept out of the model (skipped, not refused).
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

struct ServicePort {
    std::string name;              // required when the Service has several ports
    std::string protocol = "TCP";  // "TCP" | "UDP" | "SCTP"
    uint16_t port = 0;             // the Service port
    uint16_t target_port = 0;      // a number, or 0 when target_name names a container port
    std::string target_name;       // a named targetPort, resolved per backend pod
    uint16_t node_port = 0;        // 0: none given (allocated for NodePort/LoadBalancer)
    friend bool operator==(const ServicePort&, const ServicePort&) = default;
};

struct Service {
    std::string ns;
    std::string name;
    Labels labels;                   // metadata.labels
    std::string type = "ClusterIP";  // ClusterIP | NodePort | LoadBalancer | ExternalName
    bool headless = false;           // clusterIP: None (no virtual IP, nothing to balance)
    std::optional<Ip4> cluster_ip;   // absent: allocated by the compiler (standalone mode)
    bool has_selector = false;
    Labels selector;
    std::vector<ServicePort> ports;
    std::vector<Ip4> external_ips;
    std::vector<Ip4> load_balancer_ips;  // status.loadBalancer.ingress[].ip
    std::vector<Prefix4> source_ranges;  // loadBalancerSourceRanges, host bits cleared
    bool external_local = false;         // externalTrafficPolicy: Local
    bool internal_local = false;         // internalTrafficPolicy: Local
    std::string traffic_distribution;    // spec.trafficDistribution ("": none)
    uint32_t affinity_timeout_s = 0;     // sessionAffinity: ClientIP (0: None)
    uint16_t health_check_node_port = 0;
    bool allocate_node_ports = true;  // allocateLoadBalancerNodePorts (LoadBalancer only)

    std::string key() const { return ns + "/" + name; }
    /// Whether the Service has node ports (type NodePort, or LoadBalancer allocating them).
    bool wants_node_ports() const {
        return type == "NodePort" || (type == "LoadBalancer" && allocate_node_ports);
    }
};

struct EndpointPort {
    std::string name;
    std::string protocol = "TCP";
    std::optional<uint16_t> port;  // absent: every port (the API's "all ports")
};

struct Endpoint {
    std::vector<Ip4> addresses;
    bool ready = true;  // conditions; nil ready means ready, nil serving means = ready
    bool serving = true;
    bool terminating = false;
    std::string node_name;
    std::string pod;  // targetRef "namespace/name" when it is a Pod
    std::string zone;
    std::vector<std::string> hint_zones;  // hints.forZones[].name
    std::vector<std::string> hint_nodes;  // hints.forNodes[].name
};

struct EndpointSlice {
    std::string ns;
    std::string name;
    std::string service;  // label kubernetes.io/service-name ("" : belongs to no Service)
    Labels labels;        // metadata.labels
    bool ipv4 = true;     // addressType IPv4 (IPv6 and FQDN slices carry no endpoints here)
    std::vector<EndpointPort> ports;
    std::vector<Endpoint> endpoints;

    std::string key() const { return ns + "/" + name; }
};

/// Throw ModelError (model.h) naming the field on anything the API server would refuse.
Service parse_service(const nlohmann::json& obj, const std::string& ns, const std::string& name);
EndpointSlice parse_endpoint_slice(const nlohmann::json& obj,
                                   const std::string& ns,
                                   const std::string& name);

}  // namespace kdp::control
