// Checks and builds the workers' NetworkPolicy tables (table/policy.h) from a PolicySpec.
// Off the workers (TableManager, trace, tests); allocates.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "table/policy.h"

namespace kdp::api {

/// Whether `spec` can be built for a node whose pods are in `pod_cidr`: an error naming the
/// entry and the field, or nothing.
std::optional<std::string> check_policy(const table::PolicySpec& spec, Prefix4 pod_cidr);

/// Builds the tables of a checked spec. `epoch`: 1..2^31-1, different from the version in
/// force. A spec without `present` builds tables that allow nothing (not synced yet).
std::shared_ptr<const table::PolicyTables> build_policy(const table::PolicySpec& spec,
                                                        uint32_t epoch);

}  // namespace kdp::api
