// Compiles NetworkPolicies into one node's policy tables (table::PolicySpec).
//
// Identities: every pod with an address (not hostNetwork) gets the identity of its namespace,
// label set and named ports — pods alike for every selector and every named port share one.
// Every ipBlock cidr and except (and 0.0.0.0/0) is a prefix of the CIDR partition, each its own
// identity: an address's longest prefix tells which ipBlocks hold it. A selector compiles to
// the identities it matches; each local pod some policy selects gets, per direction it is
// isolated in, the (identity, protocol, port range) triples its rules allow, each with the rule
// that allows it. Named ports are resolved against the destination pod: the local pod's own
// container ports for ingress, the peer identity's for egress.
//
// Pure and deterministic: identities are numbered in sorted order of what they stand for.
#pragma once

#include <string_view>

#include "model/model.h"
#include "spec/table_spec.h"

namespace kdp::control {

/// The policy of node `node` (present is set, with or without any NetworkPolicy).
table::PolicySpec compile_policy(const Model& model, std::string_view node);

}  // namespace kdp::control
