// `kdp-control node-config`: renders this node's dataplane config from the one node config
// every node shares, the Node object and the kernel (node_config.h), and writes it atomically.
// Waits (with --wait-seconds) for what is not there yet: the API server, the Node, its pod
// CIDR. Run by the DaemonSet's dataplane entrypoint before kdp-dataplane starts. Main thread.
#pragma once

#include <atomic>
#include <ostream>
#include <string>
#include <vector>

namespace kdp::control::bootstrap {

/// `args`: the arguments after "node-config". Returns the exit code: 0 written, 1 error
/// (one line on `err` naming the values in conflict), 2 bad usage.
int node_config_command(const std::vector<std::string>& args,
                        std::ostream& out,
                        std::ostream& err,
                        const std::atomic<bool>& stop);

}  // namespace kdp::control::bootstrap
