// kdp-control's HTTP endpoints, wired to its Status and the dataplane:
//
//   --healthz-bind-address (default 0.0.0.0:10256, kube-proxy's port and flag name)
//       /healthz   kube-proxy's node health: 200 or 503 with {"lastUpdated","currentTime",
//                  "nodeHealthy"}; cloud load balancers and externalTrafficPolicy: Local checks
//                  probe it
//   --metrics-bind-address (default 127.0.0.1:10249, kube-proxy's)
//       /metrics   Prometheus text format (metrics.h)
//       /healthz   liveness: 200 while kdp-control's loop iterates
//       /readyz    readiness: 200 once API lists are complete, the dataplane answers and the
//                  first sync applied; one line per check either way
// An empty address turns that listener off. A listener that cannot bind (port in use) is
// reported and left off, the rest of kdp-control runs on, as kube-proxy does with its health
// server: the readiness probe then fails, which is what shows the operator. Threads: see
// http_server.h.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "serve/http_server.h"
#include "serve/status.h"

namespace kdp::control {
class DataplaneClient;
}

namespace kdp::control::serve {

struct ServeOptions {
    std::string healthz_address = "0.0.0.0:10256";
    std::string metrics_address = "127.0.0.1:10249";
    HealthPolicy policy;
};

class Server {
public:
    /// Binds both listeners and starts serving; `errors()` says which could not bind. `status`
    /// must outlive the server.
    Server(const ServeOptions& options,
           const Status& status,
           const std::string& dataplane_socket,
           std::string node);
    ~Server();

    uint16_t healthz_port() const { return healthz_port_; }
    uint16_t metrics_port() const { return metrics_port_; }
    /// One message per listener that could not bind, naming its address.
    const std::vector<std::string>& errors() const { return errors_; }

private:
    HttpResponse node_health_page() const;
    HttpResponse metrics_page(const std::string& path) const;
    /// Whether the dataplane's workers make progress (status.h readiness()): two samples of
    /// their loop counters, the last probe's and this one's, or this one's and another 100 ms
    /// later when the last is too recent or missing.
    std::optional<std::string> worker_progress() const;

    ServeOptions options_;
    const Status& status_;
    std::string node_;
    std::unique_ptr<DataplaneClient> client_;  // for scrapes, with a short deadline
    HttpServer http_;
    uint16_t healthz_port_ = 0;
    uint16_t metrics_port_ = 0;
    std::vector<std::string> errors_;
    mutable std::mutex progress_mu_;  // probes may overlap: one sample pair at a time
    mutable std::optional<
        std::pair<std::chrono::steady_clock::time_point, std::vector<WorkerSample>>>
        last_workers_;
};

}  // namespace kdp::control::serve
