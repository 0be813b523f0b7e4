// One GET to the API server for a caller without an executor of its own (a command-line
// step, a CNI plugin): runs a Client on a private io_context until the answer or the deadline.
// Any thread; blocks.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "control/k8s/client.h"
#include "control/k8s/kubeconfig.h"

namespace kdp::control::k8s {

/// GET `target` from the API server `cfg` names, at most `limit` bytes, within `timeout`.
/// Throws what Client::get() throws (ApiError, TransportError) and ConfigError when `cfg`'s
/// certificates are unusable.
Client::Response blocking_get(const ClusterConfig& cfg,
                              const std::string& target,
                              std::chrono::milliseconds timeout,
                              size_t limit = size_t{4} << 20);

}  // namespace kdp::control::k8s
