#include "serve/server.h"

#include <chrono>
#include <exception>
#include <utility>

#include "push/dataplane_client.h"
#include "serve/metrics.h"

namespace kdp::control::serve {
namespace {

// A scrape must answer well within Prometheus' default 10 s timeout and a probe's 1 s, even
// with the dataplane stuck: every call of a scrape gets this much.
constexpr std::chrono::milliseconds kScrapeDeadline{1000};

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
        const Readiness r = readiness(status_.snapshot());
        return {r.ready ? 200u : 503u, "text/plain; charset=utf-8", r.text};
    }
    return not_found();
}

}  // namespace kdp::control::serve
