// Compiles Services and their EndpointSlices into one node's service ports.
//
// One ServiceSpec per Service port ("namespace/name:portname", or "namespace/name" for an
// unnamed port), with its frontends (ClusterIP,
// this node's IP for node ports, externalIPs, LoadBalancer ingress IPs) and its backends from
// the EndpointSlices labelled with the Service's name, matched by port name and protocol.
// Without any EndpointSlice for a Service with a selector, the backends are derived from the
// Pods the selector matches, as the EndpointSlice controller would (standalone mode:
// hand-written manifests rarely carry EndpointSlices); named targetPorts are then resolved
// against each pod's container ports.
//
// What the API server would allocate (a ClusterIP, nodePorts, healthCheckNodePort) and a
// manifest leaves out is allocated here, deterministically from the object's name so that
// every node and every run agree. Pure; any thread.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/net.h"
#include "model/model.h"
#include "spec/table_spec.h"

namespace kdp::control {

struct ServiceOptions {
    Prefix4 service_cidr{Ip4::from_host(0x0a600000), 12};  // 10.96.0.0/12, kubeadm's default
    uint16_t node_port_min = 30000;                        // the API server's default range
    uint16_t node_port_max = 32767;
    bool derive_endpoints = true;  // from Pods when a Service has no EndpointSlice
    /// Whether `service_cidr` is the cluster's (as kube-proxy's --service-cluster-ip-range):
    /// then the dataplane drops what the CIDR holds and no Service does. Not assumed when the
    /// cluster allocates its own ClusterIPs from a range kdp is not told.
    bool service_cidr_known = true;
};

/// Part of an object the compiler could not honour, and why: logged, and in Kubernetes mode
/// posted as an Event on the object (standalone/kube_source.h).
struct CompileWarning {
    std::string kind;  // of the object, e.g. "Service"
    std::string ns;
    std::string name;
    std::string message;  // a whole sentence that names the object
};

/// The service ports of `node`, sorted by name. Frontends that clash with one already taken
/// (same address, port and protocol) are left out and reported in `warnings`.
std::vector<table::ServiceSpec> compile_services(const Model& model,
                                                 std::string_view node,
                                                 const ServiceOptions& options,
                                                 std::vector<CompileWarning>* warnings = nullptr);

/// The ClusterIP of every Service with one, given or allocated ("namespace/name" -> address).
std::map<std::string, Ip4> cluster_ips(const Model& model, const ServiceOptions& options);

}  // namespace kdp::control
