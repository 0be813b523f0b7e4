#include "serve/metrics.h"

#include <chrono>
#include <map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "common/version.h"
#include "push/dataplane_client.h"

namespace kdp::control::serve {
namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Writes families in the text format: HELP and TYPE once, then the samples.
class Page {
public:
    void family(const std::string& name, const char* type, const char* help) {
        out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    }

    void sample(const std::string& name, const Labels& labels, double value) {
        out_ += name;
        if (!labels.empty()) {
            out_ += '{';
            for (size_t i = 0; i < labels.size(); ++i) {
                out_ += fmt::format("{}{}=\"{}\"", i == 0 ? "" : ",", labels[i].first,
                                    escape_label(labels[i].second));
            }
            out_ += '}';
        }
        out_ += fmt::format(" {}\n", value);
    }

    void histogram(const std::string& name, const char* help, const Histogram& h) {
        family(name, "histogram", help);
        uint64_t cumulative = 0;
        for (size_t i = 0; i < h.bounds.size(); ++i) {
            cumulative += h.counts[i];
            sample(name + "_bucket", {{"le", fmt::format("{}", h.bounds[i])}},
                   static_cast<double>(cumulative));
        }
        sample(name + "_bucket", {{"le", "+Inf"}}, static_cast<double>(h.count));
        sample(name + "_sum", {}, h.sum);
        sample(name + "_count", {}, static_cast<double>(h.count));
    }

    std::string take() { return std::move(out_); }

private:
    std::string out_;
};

double seconds_since_epoch(WallClock::time_point t) {
    return std::chrono::duration<double>(t.time_since_epoch()).count();
}

void control_families(Page& p, const Status::Snapshot& s, const std::string& node) {
    p.family("kdp_build_info", "gauge",
             "Always 1; the labels say which kdp-control this is and the API revision it speaks.");
    p.sample("kdp_build_info",
             {{"component", "kdp-control"},
              {"version", version()},
              {"api_revision", fmt::format("{}", kApiRevision)}},
             1);
    p.family("kdp_node_info", "gauge", "Always 1; the Kubernetes Node this kdp-control serves.");
    p.sample("kdp_node_info", {{"node", node}}, 1);

    p.histogram("kubeproxy_sync_proxy_rules_duration_seconds",
                "Time to compile the cluster state and push the changed tables to the dataplane, "
                "for pushes that changed something.",
                s.sync_duration);
    p.histogram("kubeproxy_network_programming_duration_seconds",
                "From the change that an EndpointSlice reflects (its last-change-trigger-time) to "
                "the dataplane holding it.",
                s.network_programming);
    p.family("kubeproxy_sync_proxy_rules_last_timestamp_seconds", "gauge",
             "When the dataplane was last found or made equal to the desired state (Unix time).");
    p.sample("kubeproxy_sync_proxy_rules_last_timestamp_seconds", {},
             s.last_updated ? seconds_since_epoch(*s.last_updated) : 0);
    p.family("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", "gauge",
             "When a change of the desired state was last queued for the dataplane (Unix time).");
    p.sample("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", {},
             s.last_queued ? seconds_since_epoch(*s.last_queued) : 0);

    p.family("kdp_api_lists_complete", "gauge",
             "1 once every watched resource has been listed (or the manifests were read).");
    p.sample("kdp_api_lists_complete", {}, s.lists_complete ? 1 : 0);
    p.family("kdp_table_pushes_total", "counter",
             "Table pushes to the dataplane that changed something, by kind.");
    p.sample("kdp_table_pushes_total", {{"kind", "sync"}}, static_cast<double>(s.syncs));
    p.sample("kdp_table_pushes_total", {{"kind", "update"}}, static_cast<double>(s.updates));
    p.family("kdp_table_push_errors_total", "counter",
             "Pushes that failed: dataplane unreachable or tables refused.");
    p.sample("kdp_table_push_errors_total", {}, static_cast<double>(s.push_errors));
    if (s.unhonoured) {
        p.family("kdp_objects_not_honoured_total", "counter",
                 "API objects kdp could not read, by kind: left out, kept at their last readable "
                 "version, or (NetworkPolicy) enforced fail closed; each also gets a Warning "
                 "Event.");
        // Every kind kdp reads, so that a query sees 0 rather than no series.
        std::map<std::string, uint64_t> by_kind{{"Namespace", 0},     {"Node", 0},
                                                {"Pod", 0},           {"Service", 0},
                                                {"EndpointSlice", 0}, {"NetworkPolicy", 0}};
        for (const auto& [kind, n] : *s.unhonoured) {
            by_kind[kind] = n;
        }
        for (const auto& [kind, n] : by_kind) {
            p.sample("kdp_objects_not_honoured_total", {{"kind", kind}}, static_cast<double>(n));
        }
        p.family("kdp_events_total", "counter",
                 "Warning Events about objects kdp could not honour, by outcome of the POST.");
        p.sample("kdp_events_total", {{"result", "posted"}}, static_cast<double>(s.events_posted));
        p.sample("kdp_events_total", {{"result", "failed"}}, static_cast<double>(s.events_failed));
    }
}

void dataplane_families(Page& p, const DataplaneSample& d) {
    p.family("kdp_dataplane_build_info", "gauge",
             "Always 1; the labels say which kdp-dataplane answers and its API revision.");
    p.sample(
        "kdp_dataplane_build_info",
        {{"version", d.info.version()}, {"api_revision", fmt::format("{}", d.info.api_revision())}},
        1);
    p.family("kdp_table_generation", "gauge",
             "Generation of the tables in force in the dataplane.");
    p.sample("kdp_table_generation", {}, static_cast<double>(d.info.generation()));
    p.family("kdp_dataplane_start_time_seconds", "gauge",
             "When the dataplane process started (Unix time).");
    p.sample("kdp_dataplane_start_time_seconds", {},
             static_cast<double>(d.info.started_unix_ns()) / 1e9);
    p.family("kdp_conntrack_entries", "gauge",
             "Tracked connections and affinity records (approximate while traffic flows).");
    p.sample("kdp_conntrack_entries", {}, d.conntrack_entries);
    p.family("kdp_conntrack_capacity", "gauge", "Size of the conntrack table.");
    p.sample("kdp_conntrack_capacity", {}, d.conntrack_capacity);

    struct Counter {
        const char* name;
        const char* help;
        uint64_t (v1::Counters::*get)() const;
    };
    const Counter counters[] = {
        {"kdp_port_receive_packets_total", "Packets received on the port.",
         &v1::Counters::rx_packets},
        {"kdp_port_receive_bytes_total", "Bytes received on the port.", &v1::Counters::rx_bytes},
        {"kdp_port_transmit_packets_total", "Packets sent on the port.", &v1::Counters::tx_packets},
        {"kdp_port_transmit_bytes_total", "Bytes sent on the port.", &v1::Counters::tx_bytes},
    };
    for (const Counter& c : counters) {
        p.family(c.name, "counter", c.help);
        for (const auto& port : d.stats.ports()) {
            p.sample(c.name, {{"port", port.name()}},
                     static_cast<double>((port.counters().*c.get)()));
        }
    }
    p.family("kdp_port_drops_total", "counter",
             "Packets received on the port and dropped, by reason (dataplane/core/"
             "drop_reasons.def).");
    for (const auto& port : d.stats.ports()) {
        for (const auto& drop : port.counters().drops()) {
            p.sample("kdp_port_drops_total", {{"port", port.name()}, {"reason", drop.reason()}},
                     static_cast<double>(drop.packets()));
        }
    }

    // Counters, not a ratio since start: rate() of the busy seconds is the busy ratio over
    // whatever window the query picks.
    const auto seconds = [](uint64_t cycles, const v1::WorkerStats& w) {
        return w.tsc_hz() == 0 ? 0.0
                               : static_cast<double>(cycles) / static_cast<double>(w.tsc_hz());
    };
    p.family("kdp_worker_busy_seconds_total", "counter",
             "Time a worker spent in loop iterations that received packets; its rate is the "
             "worker's busy ratio.");
    for (const auto& w : d.stats.workers()) {
        p.sample("kdp_worker_busy_seconds_total", {{"worker", fmt::format("{}", w.worker())}},
                 seconds(w.busy_cycles(), w));
    }
    p.family("kdp_worker_seconds_total", "counter", "Time since a worker started (its TSC).");
    for (const auto& w : d.stats.workers()) {
        p.sample("kdp_worker_seconds_total", {{"worker", fmt::format("{}", w.worker())}},
                 seconds(w.total_cycles(), w));
    }
    p.family("kdp_worker_phase_seconds_total", "counter",
             "Busy time of a worker by phase of its loop (TSC cycles / TSC frequency).");
    for (const auto& w : d.stats.workers()) {
        for (const auto& ph : w.phases()) {
            p.sample("kdp_worker_phase_seconds_total",
                     {{"worker", fmt::format("{}", w.worker())}, {"phase", ph.phase()}},
                     seconds(ph.cycles(), w));
        }
    }
}

}  // namespace

std::string escape_label(const std::string& v) {
    std::string out;
    out.reserve(v.size());
    for (const char c : v) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '"') {
            out += "\\\"";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

std::optional<DataplaneSample> sample_dataplane(DataplaneClient& client, std::string* error) {
    try {
        DataplaneSample d;
        d.info = client.node_info();
        d.stats = client.stats();
        const auto ct = client.list_conntrack(1);
        d.conntrack_entries = ct.total();
        d.conntrack_capacity = ct.capacity();
        return d;
    } catch (const std::exception& e) {
        if (error != nullptr) {
            *error = e.what();
        }
        return std::nullopt;
    }
}

std::string render_metrics(const Status::Snapshot& status,
                           const std::optional<DataplaneSample>& dataplane,
                           const std::string& node) {
    Page p;
    control_families(p, status, node);
    p.family("kdp_dataplane_up", "gauge", "1 if the dataplane answered this scrape.");
    p.sample("kdp_dataplane_up", {}, dataplane ? 1 : 0);
    if (dataplane) {
        dataplane_families(p, *dataplane);
    }
    return p.take();
}

}  // namespace kdp::control::serve
