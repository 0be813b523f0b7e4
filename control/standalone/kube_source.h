// KubeSource: the Kubernetes API as kdp-control's source of cluster state.
//
// One list+watch reflector per resource kdp needs (control/k8s/), run on a private io_context
// thread, feed a Model under a mutex. poll() (on kdp-control's loop thread) compiles this
// node's tables when the state has changed and every resource has completed its first list, so
// that a half-listed cluster is never pushed.
//
// An object the API server holds is never dropped silently: when kdp cannot read it, it says so
// in a log line, a Warning Event on the object (reason KdpCannotHonour) and a counter. A new
// object it cannot read is left out and a changed one keeps its last readable version, except
// a NetworkPolicy, which fails closed (parse_network_policy_fail_closed): the pods it selects
// are isolated and only the rules kdp could read allow anything. While the API server is
// unreachable the reflectors retry with backoff and the model, and so the dataplane, keep the last
// good state.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/net.h"
#include "spec/table_spec.h"

namespace kdp::control::k8s {
struct ClusterConfig;
}

namespace kdp::control::standalone {

/// What kdp-control could not honour of what the API server holds, for logs and metrics.
struct KubeSourceStats {
    std::map<std::string, uint64_t> unhonoured;  // by kind: objects refused or fail-closed
    uint64_t events_posted = 0;
    uint64_t events_failed = 0;
};

class KubeSource {
public:
    /// Starts watching. `cfg` from load_kubeconfig() or load_in_cluster().
    /// `service_cidr`: the cluster's Service range, checked by the dataplane when known.
    KubeSource(const k8s::ClusterConfig& cfg,
               std::string node,
               std::optional<Prefix4> service_cidr = std::nullopt);
    ~KubeSource();
    KubeSource(const KubeSource&) = delete;
    KubeSource& operator=(const KubeSource&) = delete;

    /// nullopt: nothing new. Otherwise the newly compiled tables, or an inner nullopt when the
    /// new state does not compile (logged; the last good tables stay in force).
    std::optional<std::optional<table::TableSpec>> poll();

    KubeSourceStats stats() const;

    /// Once each: the last-change-trigger-times of the EndpointSlice changes compiled by poll()
    /// so far (those newer than this source, as kube-proxy counts them), for the network
    /// programming latency. Call after the tables poll() returned are in the dataplane.
    std::vector<std::chrono::system_clock::time_point> take_trigger_times();

    class Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace kdp::control::standalone
