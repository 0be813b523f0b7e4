// The checks a node's desired state passes before the TableManager builds anything from it:
// the whole-state validation of apply_tables, and the pieces the delta path of apply_update
// checks on its own. Pure functions of the spec, the generation in force and the node's
// identity; any thread; the messages name the offending entry.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "spec/table_spec.h"
#include "stage/node_context.h"

namespace kdp::api {

/// The error of a full state `spec` that this node would refuse, or nothing.
std::optional<std::string> check_spec(const table::TableSpec& spec,
                                      uint64_t generation_in_force,
                                      const dataplane::NodeContext& node);

/// An update or state whose generation is not newer than the one in force.
std::string stale_generation(uint64_t generation, uint64_t in_force);

/// The checks of the fields a delta may change (a Service port's block): its backends.
std::optional<std::string> check_backends(const table::ServiceSpec& sv, const std::string& at);

/// Whether two specs of one Service port differ at most in their block's fields (backends,
/// loadBalancerSourceRanges): then a delta may swap the block and leave the rest in force.
bool same_structure(const table::ServiceSpec& a, const table::ServiceSpec& b);

}  // namespace kdp::api
