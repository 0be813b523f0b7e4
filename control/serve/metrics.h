// kdp-control's /metrics, in the Prometheus text exposition format (version 0.0.4).
//
// Names follow kube-proxy where the meaning is the same (kubeproxy_sync_proxy_rules_*), and
// kdp_* otherwise; counters end in _total, durations are in seconds, sizes in bytes. The
// dataplane's counters are read over its gRPC API at scrape time (sample_dataplane); when it
// does not answer, its families are left out and kdp_dataplane_up is 0.
// Pure functions apart from sample_dataplane (which calls the dataplane); thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "kdp/v1/dataplane.pb.h"
#include "serve/status.h"

namespace kdp::control {
class DataplaneClient;
}

namespace kdp::control::serve {

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

/// What one scrape reads from the dataplane.
struct DataplaneSample {
    v1::NodeInfo info;
    v1::Stats stats;
    uint32_t conntrack_entries = 0;
    uint32_t conntrack_capacity = 0;
};

/// Reads NodeInfo, Stats and the conntrack size. nullopt, with the reason in `error`, when the
/// dataplane does not answer.
std::optional<DataplaneSample> sample_dataplane(DataplaneClient& client, std::string* error);

/// The whole /metrics page.
std::string render_metrics(const Status::Snapshot& status,
                           const std::optional<DataplaneSample>& dataplane,
                           const std::string& node);

/// A label value escaped for the text format (backslash, double quote, newline).
std::string escape_label(const std::string& v);

}  // namespace kdp::control::serve
