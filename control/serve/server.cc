#include "serve/server.h"

#include <chrono>
#include <exception>
#include <thread>
#include <utility>

#include "push/dataplane_client.h"
#include "serve/metrics.h"

namespace kdp::control::serve {
namespace {

// A scrape must answer well within Prometheus' default 10 s timeout and a probe's 1 s, even
// with the dataplane stuck: every call of a scrape gets this much.
constexpr std::chrono::milliseconds kScrapeDeadline{1000};

// The shortest interval over which a worker must have advanced: far above its longest idle
// sleep (workers.idle.max_sleep_us, at most 100 ms), so a quiet node is not a stuck one.
constexpr std::chrono::milliseconds kProgressInterval{150};

std::optional<std::vector<WorkerSample>> sample_workers(DataplaneClient& client) {
    try {
        std::vector<WorkerSample> out;
        const auto stats = client.stats();
        for (const auto& w : stats.workers()) {
            out.push_back({w.worker(), w.lcore(), w.total_cycles()});
        }
        return out;
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

HttpResponse not_found() {
    return {404, "text/plain; charset=utf-8", "404 page not found\n"};
}

}  // namespace

Server::Server(const ServeOptions& options,
               const Status& status,
               const std::string& dataplane_socket,
               std::string node)
    : options_(options),
      status_(status),
      node_(std::move(node)),
      client_(std::make_unique<DataplaneClient>(dataplane_socket, kScrapeDeadline)) {
    auto listen = [this](const std::string& address, uint16_t& port, HttpHandler h) {
        if (address.empty()) {
            return;
        }
        try {
            port = http_.listen(address, std::move(h));
        } catch (const std::exception& e) {
            errors_.push_back(e.what());
        }
    };
    listen(options_.healthz_address, healthz_port_, [this](const std::string& path) {
        return path == "/healthz" ? node_health_page() : not_found();
    });
    listen(options_.metrics_address, metrics_port_,
           [this](const std::string& path) { return metrics_page(path); });
    http_.start();
}

Server::~Server() = default;

HttpResponse Server::node_health_page() const {
    const NodeHealth h = node_health(status_.snapshot(), WallClock::now(), options_.policy);
    return {h.healthy ? 200u : 503u, "application/json", h.json};
}

HttpResponse Server::metrics_page(const std::string& path) const {
    if (path == "/metrics") {
        const auto sample = sample_dataplane(*client_, nullptr);
        return {200, kMetricsContentType, render_metrics(status_.snapshot(), sample, node_)};
    }
    if (path == "/healthz" || path == "/livez") {
        const bool ok = live(status_.snapshot(), WallClock::now(), options_.policy);
        return {ok ? 200u : 503u, "text/plain; charset=utf-8",
                ok ? "ok\n" : "kdp-control's loop has stopped iterating\n"};
    }
    if (path == "/readyz") {
        const Readiness r = readiness(status_.snapshot(), worker_progress());
        return {r.ready ? 200u : 503u, "text/plain; charset=utf-8", r.text};
    }
    return not_found();
}

std::optional<std::string> Server::worker_progress() const {
    using Steady = std::chrono::steady_clock;
    std::lock_guard lock(progress_mu_);
    auto now = sample_workers(*client_);
    if (!now) {
        last_workers_.reset();
        return std::nullopt;
    }
    auto at = Steady::now();
    if (!last_workers_ || at - last_workers_->first < kProgressInterval ||
        last_workers_->second.size() != now->size()) {
        last_workers_.emplace(at, std::move(*now));
        std::this_thread::sleep_for(kProgressInterval);
        now = sample_workers(*client_);
        if (!now) {
            last_workers_.reset();
            return std::nullopt;
        }
        at = Steady::now();
    }
    const auto elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(at - last_workers_->first);
    std::string stalled = stalled_workers(last_workers_->second, *now, elapsed);
    last_workers_.emplace(at, std::move(*now));
    return stalled;
}

}  // namespace kdp::control::serve
