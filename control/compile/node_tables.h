// Compiles the model into one node's forwarding tables (routes to other nodes, local pods).
//
// Pure and deterministic: the same model and node name give the same TableSpec, sorted (routes
// by node name, pods by "namespace/name"), whatever order objects arrived in. The generation
// is left at 0 for the push client to set. Any thread; no shared state.
#pragma once

#include <stdexcept>
#include <string_view>

#include "compile/services.h"
#include "model/model.h"
#include "spec/table_spec.h"

namespace kdp::control {

class CompileError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// For node `node`: every other Node with a podCIDR and an InternalIP becomes a route (VTEP MAC
/// from Flannel's backend-data annotation, else Mac::from_ip(InternalIP)); every Pod with
/// spec.nodeName == node, not hostNetwork, with a podIP becomes a pod whose port is named
/// "namespace/name"; every Service port becomes a service port (compile/services.h). Throws
/// CompileError if `node` is not in the model. `warnings` (optional) collects what was left out
/// and why (e.g. a frontend two Services claim).
table::TableSpec compile_node_tables(const Model& model,
                                     std::string_view node,
                                     const ServiceOptions& services = {},
                                     std::vector<CompileWarning>* warnings = nullptr);

}  // namespace kdp::control
