#include "serve/status.h"

#include <algorithm>
#include <cstring>
#include <ctime>

#include <fmt/format.h>

#include "common/log.h"

namespace kdp::control::serve {

void Histogram::observe(double seconds) {
    for (size_t i = 0; i < bounds.size(); ++i) {
        if (seconds <= bounds[i]) {
            ++counts[i];
            break;
        }
    }
    sum += seconds;
    ++count;
}

std::vector<double> sync_buckets() {
    std::vector<double> b;
    double v = 0.001;
    for (int i = 0; i < 15; ++i, v *= 2) {
        b.push_back(v);
    }
    return b;
}

std::vector<double> network_programming_buckets() {
    // As kube-proxy: 0.25 s steps to 1 s, then 1 s steps to a minute, 5 s steps to 2 minutes,
    // 30 s steps to 5 minutes.
    std::vector<double> b{0.25, 0.5};
    for (int s = 1; s < 60; ++s) {
        b.push_back(s);
    }
    for (int s = 60; s < 120; s += 5) {
        b.push_back(s);
    }
    for (int s = 120; s <= 300; s += 30) {
        b.push_back(s);
    }
    return b;
}

std::optional<WallClock::time_point> parse_rfc3339(const std::string& text) {
    struct tm tm {};
    const char* p = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == nullptr) {
        return std::nullopt;
    }
    std::chrono::nanoseconds frac{0};
    if (*p == '.') {
        int64_t scale = 100'000'000;
        for (++p; *p >= '0' && *p <= '9'; ++p) {
            frac += std::chrono::nanoseconds((*p - '0') * scale);
            scale /= 10;
        }
    }
    int offset_s = 0;
    if (*p == 'Z' || *p == 'z') {
        ++p;
    } else if ((*p == '+' || *p == '-') && std::strlen(p) == 6 && p[3] == ':') {
        const int sign = *p == '-' ? -1 : 1;
        const int h = (p[1] - '0') * 10 + (p[2] - '0');
        const int m = (p[4] - '0') * 10 + (p[5] - '0');
        offset_s = sign * (h * 3600 + m * 60);
        p += 6;
    } else {
        return std::nullopt;
    }
    if (*p != '\0') {
        return std::nullopt;
    }
    const time_t secs = timegm(&tm) - offset_s;
    return WallClock::time_point(
        std::chrono::duration_cast<WallClock::duration>(std::chrono::seconds(secs) + frac));
}

Status::Status(WallClock::time_point now) {
    s_.last_heartbeat = now;
}

void Status::heartbeat(WallClock::time_point now) {
    LockGuard lock(mu_);
    s_.last_heartbeat = now;
}

void Status::lists_complete() {
    LockGuard lock(mu_);
    s_.lists_complete = true;
}

void Status::queued(WallClock::time_point now) {
    LockGuard lock(mu_);
    if (!s_.oldest_queued) {
        s_.oldest_queued = now;
    }
    s_.last_queued = now;
}

void Status::pushed(WallClock::time_point now,
                    bool changed,
                    bool full_sync,
                    uint64_t generation,
                    std::chrono::duration<double> duration) {
    LockGuard lock(mu_);
    s_.dataplane_reachable = true;
    s_.synced_once = true;
    s_.last_error.clear();
    s_.last_updated = now;
    s_.oldest_queued.reset();
    s_.generation = generation;
    if (changed) {
        (full_sync ? s_.syncs : s_.updates) += 1;
        s_.sync_duration.observe(duration.count());
    }
}

void Status::push_failed(const std::string& why, bool reachable) {
    LockGuard lock(mu_);
    s_.dataplane_reachable = reachable;
    s_.last_error = why;
    ++s_.push_errors;
}

void Status::programmed(WallClock::time_point now,
                        const std::vector<WallClock::time_point>& triggers) {
    LockGuard lock(mu_);
    for (const auto t : triggers) {
        // A trigger time ahead of this node's clock (skew) counts as no delay, not a negative one.
        s_.network_programming.observe(
            std::max(0.0, std::chrono::duration<double>(now - t).count()));
    }
}

void Status::source_stats(std::map<std::string, uint64_t> unhonoured,
                          uint64_t events_posted,
                          uint64_t events_failed) {
    LockGuard lock(mu_);
    s_.unhonoured = std::move(unhonoured);
    s_.events_posted = events_posted;
    s_.events_failed = events_failed;
}

Status::Snapshot Status::snapshot() const {
    LockGuard lock(mu_);
    return s_;
}

std::string rfc3339(WallClock::time_point t) {
    return kdp::log::rfc3339(t);
}

NodeHealth node_health(const Status::Snapshot& s,
                       WallClock::time_point now,
                       const HealthPolicy& p) {
    const bool healthy = !s.oldest_queued || now - *s.oldest_queued < p.node_health_timeout;
    // kube-proxy reports the zero time before the first update; so do we, in RFC 3339.
    const std::string last = s.last_updated ? rfc3339(*s.last_updated) : "0001-01-01T00:00:00Z";
    return {healthy, fmt::format(R"({{"lastUpdated": "{}","currentTime": "{}","nodeHealthy": {}}})",
                                 last, rfc3339(now), healthy ? "true" : "false")};
}

std::string stalled_workers(const std::vector<WorkerSample>& before,
                            const std::vector<WorkerSample>& after,
                            std::chrono::milliseconds elapsed) {
    std::string out;
    for (const auto& a : after) {
        for (const auto& b : before) {
            if (b.worker == a.worker && b.loop_cycles == a.loop_cycles) {
                out += fmt::format("{}worker {} (lcore {}) made no progress in {} ms",
                                   out.empty() ? "" : "; ", a.worker, a.lcore, elapsed.count());
            }
        }
    }
    return out;
}

Readiness readiness(const Status::Snapshot& s, const std::optional<std::string>& workers) {
    Readiness r;
    r.ready =
        s.lists_complete && s.dataplane_reachable && s.synced_once && workers && workers->empty();
    r.text += s.lists_complete ? "[+]api-lists ok\n"
                               : "[-]api-lists failed: not every resource has been listed yet\n";
    if (s.dataplane_reachable) {
        r.text += "[+]dataplane ok\n";
    } else {
        r.text += fmt::format("[-]dataplane failed: {}\n",
                              s.last_error.empty() ? "not contacted yet" : s.last_error);
    }
    r.text += s.synced_once ? fmt::format("[+]first-sync ok (generation {})\n", s.generation)
                            : "[-]first-sync failed: no tables pushed yet\n";
    if (!workers) {
        r.text += "[-]workers failed: the dataplane's counters could not be read\n";
    } else if (!workers->empty()) {
        r.text += fmt::format("[-]workers failed: {}\n", *workers);
    } else {
        r.text += "[+]workers ok\n";
    }
    r.text += r.ready ? "readyz check passed\n" : "readyz check failed\n";
    return r;
}

bool live(const Status::Snapshot& s, WallClock::time_point now, const HealthPolicy& p) {
    return now - s.last_heartbeat < p.liveness_timeout;
}

}  // namespace kdp::control::serve
