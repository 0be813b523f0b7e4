// kdp-control's run loop: compiles cluster state into this node's tables and keeps the
// dataplane in step.
//
// Standalone mode reads manifests from files; with --watch it polls them (mtime and size,
// every 500 ms), recompiles on change and pushes only the difference, and notices a dataplane
// restart or a foreign write (GetNodeInfo's started_unix_ns / generation moved) to push full
// state. An unreachable dataplane is retried with backoff (200 ms doubling to 2 s), logged.
// Kubernetes mode (--kubeconfig / --in-cluster) lists and watches the API (kube_source.h) and
// pushes through the same loop once every resource has been listed.
// With --watch or the API, it serves health and metrics (serve/server.h) from the state of this
// loop. Runs on the caller's thread and returns when `stop` is set; logs to stderr.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <variant>
#include <vector>

#include "common/net.h"
#include "push/dataplane_client.h"
#include "serve/server.h"

namespace kdp::control::standalone {

struct Options {
    std::string node;
    std::vector<std::string> manifests;
    std::string socket = kDefaultDataplaneSocket;
    bool watch = false;
    bool once = false;
    bool kube = false;  // --kubeconfig or --in-cluster given
    std::string kubeconfig;
    bool in_cluster = false;
    /// --api-server HOST:PORT (default $KDP_API_SERVER): the API server's real address, which
    /// replaces the kubeconfig's server or KUBERNETES_SERVICE_HOST/PORT. kdp serves the
    /// `kubernetes` Service itself, so it must not depend on it to reach the API.
    std::string api_server;
    /// --service-cidr: the cluster's Service range (kube-apiserver's --service-cluster-ip-range).
    /// Addresses in it that no Service holds are dropped by the dataplane, never routed out.
    /// Standalone mode defaults to 10.96.0.0/12 (and allocates ClusterIPs from it); Kubernetes
    /// mode checks it only when given.
    std::optional<Prefix4> service_cidr;
    std::chrono::milliseconds poll{500};
    std::chrono::milliseconds max_backoff{2000};
    std::chrono::milliseconds once_timeout{30'000};  // --once: give up retrying after this
    // --healthz-bind-address, --metrics-bind-address (serve/server.h); not served with --once.
    serve::ServeOptions serve;
};

/// Reads one environment variable; nullopt when unset or empty.
using GetEnv = std::function<std::optional<std::string>(const std::string&)>;

/// Parses kdp-control's arguments (argv without the program name). Returns the options, or
/// an exit code: 0 after printing --help to `out`, 2 after one line about bad usage on `err`.
/// Environment fallbacks through `getenv` (the process environment when empty): NODE_NAME for
/// --node, KDP_API_SERVER for --api-server.
std::variant<Options, int> parse_args(const std::vector<std::string>& args,
                                      std::ostream& out,
                                      std::ostream& err,
                                      const GetEnv& getenv = {});

/// Runs kdp-control; returns its exit code (0 done or stopped, 1 error).
int run(const Options& options, const std::atomic<bool>& stop);

}  // namespace kdp::control::standalone
