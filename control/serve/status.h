// What kdp-control's loop knows about its own progress, for the health endpoints and /metrics.
//
// The loop thread reports (heartbeat, lists_complete, queued, pushed, push_failed); the HTTP
// server's threads read a Snapshot. One mutex guards everything; no call blocks or allocates
// under it beyond a histogram bucket update.
//
// Meanings, after kube-proxy's (pkg/proxy/healthcheck):
// - queued(): the loop has desired state the dataplane does not have yet. The oldest such
//   moment is kept until a push brings the dataplane in step.
// - pushed(): the dataplane was found (or made) equal to the desired state; lastUpdated moves,
//   and a push that changed something also adds its duration to the sync histogram.
// - node healthy (port 10256): nothing has waited for the dataplane longer than the health
//   timeout. A node that has never synced and has nothing queued is healthy, as in kube-proxy.
// - ready (/readyz): every API list completed (or the manifests loaded), the dataplane answered
//   the last push, at least one push applied, and every worker of the dataplane is making
//   progress (its loop's cycle counter advanced between two samples taken at the probe).
// - live (/healthz): the loop iterated within the liveness timeout.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/thread_annotations.h"

namespace kdp::control::serve {

using WallClock = std::chrono::system_clock;

/// A Prometheus histogram with fixed upper bounds (le) in seconds.
struct Histogram {
    std::vector<double> bounds;
    std::vector<uint64_t> counts;  // per bound, not cumulative; +Inf is `count`
    double sum = 0;
    uint64_t count = 0;

    explicit Histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size()) {}
    void observe(double seconds);
};

/// kube-proxy's buckets for its sync histograms: 1 ms doubling to 16.4 s.
std::vector<double> sync_buckets();

/// kube-proxy's buckets for network programming latency: 0.25 s to 5 min.
std::vector<double> network_programming_buckets();

/// The annotation the EndpointSlice controller sets to when the change that the slice reflects
/// happened (a Pod or Service update), RFC 3339.
inline constexpr const char* kLastChangeTriggerTime =
    "endpoints.kubernetes.io/last-change-trigger-time";

/// "2026-12-07T21:03:51Z", with optional fraction and a Z or ±HH:MM offset; nullopt otherwise.
std::optional<WallClock::time_point> parse_rfc3339(const std::string& text);

class Status {
public:
    struct Snapshot {
        bool lists_complete = false;
        bool dataplane_reachable = false;
        bool synced_once = false;
        std::string last_error;  // why the last push failed; empty after a success
        std::optional<WallClock::time_point> last_updated;
        std::optional<WallClock::time_point> oldest_queued;
        std::optional<WallClock::time_point> last_queued;
        WallClock::time_point last_heartbeat;
        uint64_t generation = 0;  // pushed last
        uint64_t syncs = 0;       // full syncs
        uint64_t updates = 0;     // incremental updates
        uint64_t push_errors = 0;
        Histogram sync_duration{sync_buckets()};
        Histogram network_programming{network_programming_buckets()};
        // Kubernetes mode only (nullopt otherwise): objects kdp could not honour, by kind, and
        // the Warning Events about them posted and failed.
        std::optional<std::map<std::string, uint64_t>> unhonoured;
        uint64_t events_posted = 0;
        uint64_t events_failed = 0;
    };

    explicit Status(WallClock::time_point now = WallClock::now());

    void heartbeat(WallClock::time_point now);
    void lists_complete();
    void queued(WallClock::time_point now);
    /// `changed`: a sync or update was sent (its `duration` counts); else the dataplane was
    /// found in step.
    void pushed(WallClock::time_point now,
                bool changed,
                bool full_sync,
                uint64_t generation,
                std::chrono::duration<double> duration);
    /// `reachable`: the dataplane answered, refusing the tables.
    void push_failed(const std::string& why, bool reachable);
    /// The changes that triggered `triggers` (EndpointSlices' last-change-trigger-time) are now
    /// in the dataplane: each one's delay joins the network programming histogram.
    void programmed(WallClock::time_point now, const std::vector<WallClock::time_point>& triggers);
    /// The API source's own counters (standalone/kube_source.h KubeSourceStats).
    void source_stats(std::map<std::string, uint64_t> unhonoured,
                      uint64_t events_posted,
                      uint64_t events_failed);

    Snapshot snapshot() const;

private:
    mutable Mutex mu_;
    Snapshot s_ KDP_GUARDED_BY(mu_);
};

struct HealthPolicy {
    std::chrono::seconds node_health_timeout{60};  // kube-proxy: 2 x its 30 s sync period
    std::chrono::seconds liveness_timeout{30};
};

/// kube-proxy's node health answer (port 10256, /healthz): 200 or 503 and its JSON.
struct NodeHealth {
    bool healthy = false;
    std::string json;
};
NodeHealth node_health(const Status::Snapshot& s, WallClock::time_point now, const HealthPolicy& p);

/// One worker's loop counter at one moment: WorkerStats.total_cycles, which the worker stores
/// at the end of every iteration of its loop (busy or idle), so it stands still only when the
/// loop does.
struct WorkerSample {
    uint32_t worker = 0;
    uint32_t lcore = 0;
    uint64_t loop_cycles = 0;
};

/// The workers whose loop did not advance from `before` to `after`, `elapsed` apart: "" when
/// all did (or there are no samples), else "worker 0 (lcore 1) made no progress in 120 ms".
std::string stalled_workers(const std::vector<WorkerSample>& before,
                            const std::vector<WorkerSample>& after,
                            std::chrono::milliseconds elapsed);

/// /readyz: ready or not, and one line per check ("[+]api-lists ok", "[-]dataplane failed: ...").
/// `workers`: nullopt when not known (the dataplane did not answer), "" when every worker made
/// progress, else why not (stalled_workers()).
struct Readiness {
    bool ready = false;
    std::string text;
};
Readiness readiness(const Status::Snapshot& s,
                    const std::optional<std::string>& workers = std::string());

/// /healthz: whether the loop is alive.
bool live(const Status::Snapshot& s, WallClock::time_point now, const HealthPolicy& p);

/// RFC 3339 UTC with milliseconds, "2026-12-07T21:03:51.123Z".
std::string rfc3339(WallClock::time_point t);

}  // namespace kdp::control::serve
