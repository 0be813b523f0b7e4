#include "compile/node_tables.h"

#include <algorithm>

#include <fmt/format.h>

#include "compile/policy.h"

namespace kdp::control {

table::TableSpec compile_node_tables(const Model& model,
                                     std::string_view node,
                                     const ServiceOptions& services,
                                     std::vector<CompileWarning>* warnings) {
    if (model.nodes().find(std::string(node)) == model.nodes().end()) {
        throw CompileError(fmt::format("node \"{}\" is not in the cluster state", node));
    }
    table::TableSpec spec;
    // std::map iteration is already sorted by name; the explicit sorts keep the output order a
    // property of this function rather than of the model's containers.
    for (const auto& [name, n] : model.nodes()) {
        if (name == node || !n.pod_cidr || !n.internal_ip) {
            continue;
        }
        spec.routes.push_back(table::RouteSpec{
            .node_name = name,
            .node_ip = *n.internal_ip,
            .pod_cidr = *n.pod_cidr,
            .vtep_mac = n.flannel_vtep ? *n.flannel_vtep : Mac::from_ip(*n.internal_ip),
        });
    }
    for (const auto& [key, p] : model.pods()) {
        if (p.node_name != node || p.host_network || !p.pod_ip) {
            continue;
        }
        spec.pods.push_back(table::PodSpec{.name = key, .ip = *p.pod_ip, .port_name = key});
    }
    std::sort(spec.routes.begin(), spec.routes.end(),
              [](const auto& a, const auto& b) { return a.node_name < b.node_name; });
    std::sort(spec.pods.begin(), spec.pods.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    spec.services = compile_services(model, node, services, warnings);
    spec.policy = compile_policy(model, node);
    if (services.service_cidr_known) {
        spec.service_cidrs = {services.service_cidr};
    }
    return spec;
}

}  // namespace kdp::control
