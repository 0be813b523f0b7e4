#include "api/telemetry.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <string_view>

#include <fmt/format.h>
#include <rte_telemetry.h>
#include <rte_version.h>

#include "api/backend.h"
#include "common/thread_annotations.h"

#ifndef KDP_VERSION
#define KDP_VERSION "unknown"
#endif

namespace kdp::api {
namespace {

SharedMutex g_mu;
Backend* g_backend KDP_GUARDED_BY(g_mu) = nullptr;
std::atomic<int> g_refuse_from{0};  // set_telemetry_refusal_for_test

// Bytes of JSON a u64 value takes at most.
constexpr size_t kU64Json = 20;

// JSON bytes of `"name":` plus a separator.
size_t key_json(std::string_view name) {
    return name.size() + 4;
}

// JSON bytes of a string value as the library writes it: quoted, '"' and '\' escaped, other
// control characters as \uXXXX (the bound is what matters, not the exact figure).
size_t string_json(std::string_view v) {
    size_t n = 2;
    for (const char c : v) {
        n += static_cast<unsigned char>(c) < 0x20 ? 6 : (c == '"' || c == '\\') ? 2 : 1;
    }
    return n;
}

// A dictionary being filled, with the JSON bytes it will take in the reply. Every add is
// checked: the first refusal is kept, and the dictionary is then no longer added to. Owns its
// container (a child's) until release(); the reply's own dictionary is only borrowed.
class Dict {
public:
    // A new container of its own.
    Dict() : d_(rte_tel_data_alloc()), owned_(true) {
        rc_ = d_ == nullptr ? -ENOMEM : rte_tel_data_start_dict(d_);
    }
    // The reply's dictionary, which the library owns.
    explicit Dict(rte_tel_data* reply) : d_(reply), owned_(false) {
        rc_ = rte_tel_data_start_dict(d_);
    }
    Dict(const Dict&) = delete;
    Dict& operator=(const Dict&) = delete;
    ~Dict() {
        if (owned_ && d_ != nullptr) {
            rte_tel_data_free(d_);
        }
    }

    void u64(const char* name, uint64_t v) {
        if (rc_ == 0) {
            rc_ = rte_tel_data_add_dict_u64(d_, name, v);
        }
        json_ += key_json(name) + kU64Json;
    }
    // A string value; one longer than the library keeps is stored cut (22.11 returns a
    // positive E2BIG for that: a notice, not a failure) and `<name>_cut: 1` says so.
    void str(const char* name, std::string_view v) {
        const std::string s(v);
        if (rc_ == 0) {
            const int rc = rte_tel_data_add_dict_string(d_, name, s.c_str());
            if (rc == E2BIG || rc == -E2BIG) {
                u64(fmt::format("{}_cut", name).c_str(), 1);
            } else {
                rc_ = rc;
            }
        }
        json_ += key_json(name) + string_json(v.substr(0, RTE_TEL_MAX_STRING_LEN - 1));
    }
    // Moves `child` into this dictionary under `name`; the library frees it after writing the
    // reply. If the add is refused, `child` still owns (and frees) it.
    void child(const char* name, Dict& child) {
        if (rc_ == 0) {
            rc_ = child.rc_;
        }
        const int refuse = g_refuse_from.load(std::memory_order_relaxed);
        if (rc_ == 0 && refuse != 0 && ++children_ >= refuse) {
            rc_ = -ENOSPC;
        }
        if (rc_ == 0) {
            rc_ = rte_tel_data_add_dict_container(d_, name, child.d_, 0);
            if (rc_ == 0) {
                child.d_ = nullptr;
            }
        }
        json_ += key_json(name) + child.json_;
    }

    int rc() const { return rc_; }
    size_t json_bytes() const { return json_; }

private:
    rte_tel_data* d_;
    bool owned_;
    int rc_ = 0;
    int children_ = 0;
    size_t json_ = 2;  // {}
};

// Runs `fill(backend, reply)` under the shared lock. Without a backend: an error (the
// library answers null). Once anything is in the reply, the handler must return success:
// DPDK 22.11 frees the reply's containers only while writing them out (perform_command skips
// output_json on an error, and they would leak). So an add refused midway, or a snapshot that
// cannot be allocated, ends the answer with an "error" entry saying why, after what was
// already added.
template <class Fill>
int answer(rte_tel_data* d, Fill&& fill) {
    ReaderLock lock(g_mu);
    if (g_backend == nullptr) {
        return -ENODEV;
    }
    Dict reply(d);
    if (reply.rc() != 0) {
        return reply.rc();  // nothing added
    }
    std::string error;
    try {
        fill(*g_backend, reply);
        if (reply.rc() != 0) {
            error = fmt::format("incomplete: {}", std::strerror(-reply.rc()));
        }
    } catch (const std::exception& e) {
        error = fmt::format("incomplete: {}", e.what());
    }
    if (!error.empty()) {
        // Its own failure (a full dictionary) leaves nothing more to do: the reply is sent
        // as it is, and its containers freed.
        (void)rte_tel_data_add_dict_string(d, "error", error.c_str());
    }
    return 0;
}

int telemetry_info(const char*, const char*, rte_tel_data* d) {
    return answer(d, [](Backend& b, Dict& r) {
        const NodeInfo n = b.node_info();
        r.str("version", KDP_VERSION);
        r.str("dpdk", rte_version());
        r.str("node", n.node_name);
        r.str("node_ip", n.node_ip.str());
        r.str("node_mac", n.node_mac.str());
        r.str("pod_cidr", n.pod_cidr.str());
        r.str("gateway_ip", n.gateway_ip.str());
        r.str("vxlan_mode", n.vxlan_mode);
        r.u64("vxlan_port", n.vxlan_port);
        r.u64("vni", n.vni);
        r.u64("mtu", n.mtu);
        r.u64("pod_mtu", n.pod_mtu);
        r.u64("ports", b.ports().size());
        r.u64("workers", n.workers);
        r.u64("generation", n.generation);
        r.u64("started_unix_ns", n.started_unix_ns);
    });
}

void add_counters(Dict& c, const CounterSet& s) {
    c.u64("rx_packets", s.rx_packets);
    c.u64("rx_bytes", s.rx_bytes);
    c.u64("tx_packets", s.tx_packets);
    c.u64("tx_bytes", s.tx_bytes);
    for (size_t i = 1; i < dataplane::kDropReasonCount; ++i) {
        if (s.drops[i] != 0) {
            const std::string k = fmt::format("drop_{}", dataplane::kDropReasonInfo[i].label);
            c.u64(k.c_str(), s.drops[i]);
        }
    }
}

// The port id a page starts at: the parameter, if any (a decimal port id).
std::optional<uint32_t> page_start(const char* params) {
    if (params == nullptr || *params == '\0') {
        return 0;
    }
    const std::string_view p(params);
    uint32_t v = 0;
    const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    if (ec != std::errc() || end != p.data() + p.size()) {
        return std::nullopt;
    }
    return v;
}

int telemetry_stats(const char*, const char* params, rte_tel_data* d) {
    const std::optional<uint32_t> from = page_start(params);
    if (!from) {
        return -EINVAL;
    }
    return answer(d, [&](Backend& b, Dict& r) {
        StatsSnapshot s = b.stats();
        std::sort(s.ports.begin(), s.ports.end(),
                  [](const PortStats& x, const PortStats& y) { return x.port_id < y.port_id; });
        // Room for the "next" key, and for the dictionary's entry limit.
        const size_t budget = kTelemetryReplyBudget - key_json("next") - kU64Json;
        size_t entries = 0;
        for (const PortStats& p : s.ports) {
            if (p.port_id < *from) {
                continue;
            }
            Dict c;
            c.str("name", p.name);
            add_counters(c, p.counters);
            const std::string key = std::to_string(p.port_id);
            if (entries + 1 >= RTE_TEL_MAX_DICT_ENTRIES ||
                r.json_bytes() + key_json(key) + c.json_bytes() > budget) {
                r.u64("next", p.port_id);  // the rest: /kdp/stats,<next>
                return;
            }
            r.child(key.c_str(), c);
            if (r.rc() != 0) {
                return;
            }
            ++entries;
        }
    });
}

int telemetry_workers(const char*, const char*, rte_tel_data* d) {
    return answer(d, [](Backend& b, Dict& r) {
        const StatsSnapshot s = b.stats();
        for (const WorkerStats& w : s.workers) {
            Dict c;
            c.u64("lcore", w.lcore);
            c.u64("tsc_hz", w.tsc_hz);
            c.u64("total_cycles", w.total_cycles);
            c.u64("busy_cycles", w.busy_cycles);
            // Telemetry has no floating point: the busy share in thousandths.
            c.u64("busy_permille", w.total_cycles == 0 ? 0 : w.busy_cycles * 1000 / w.total_cycles);
            c.u64("rx_packets", w.counters.rx_packets);
            c.u64("tx_packets", w.counters.tx_packets);
            uint64_t drops = 0;
            for (size_t i = 1; i < dataplane::kDropReasonCount; ++i) {
                drops += w.counters.drops[i];
            }
            c.u64("drops", drops);
            const uint64_t rx = w.counters.rx_packets;
            for (size_t i = 0; i < dataplane::kPhaseCount; ++i) {
                const std::string_view ph = dataplane::kPhaseNames[i];
                c.u64(fmt::format("cycles_{}", ph).c_str(), w.phase_cycles[i]);
                c.u64(fmt::format("cycles_per_packet_{}", ph).c_str(),
                      rx == 0 ? 0 : w.phase_cycles[i] / rx);
            }
            r.child(std::to_string(w.worker).c_str(), c);
        }
    });
}

int telemetry_conntrack(const char*, const char*, rte_tel_data* d) {
    return answer(d, [](Backend& b, Dict& r) {
        const ConntrackStats s = b.conntrack_stats();
        ConntrackWorkerStats sum;
        for (const ConntrackWorkerStats& w : s.workers) {
            sum.inserts += w.inserts;
            sum.insert_full += w.insert_full;
            sum.insert_clash += w.insert_clash;
            sum.insert_share += w.insert_share;
            sum.early_drops += w.early_drops;
            sum.expiries += w.expiries;
            sum.removals += w.removals;
        }
        const auto fill = [](Dict& c, const ConntrackWorkerStats& w) {
            c.u64("inserts", w.inserts);
            c.u64("insert_full", w.insert_full);
            c.u64("insert_clash", w.insert_clash);
            c.u64("insert_share", w.insert_share);
            c.u64("early_drops", w.early_drops);
            c.u64("expiries", w.expiries);
            c.u64("removals", w.removals);
        };
        r.u64("entries", s.entries);
        r.u64("capacity", s.capacity);
        fill(r, sum);
        for (const ConntrackWorkerStats& w : s.workers) {
            Dict c;
            c.u64("entries", w.entries);
            c.u64("capacity", w.capacity);
            fill(c, w);
            r.child(fmt::format("worker{}", w.worker).c_str(), c);
        }
    });
}

}  // namespace

std::optional<std::string> register_telemetry() {
    struct Command {
        const char* name;
        telemetry_cb cb;
        const char* help;
    };
    // Help texts: at most RTE_TEL_MAX_STRING_LEN - 1 bytes, or DPDK refuses the command.
    static constexpr Command kCommands[] = {
        {"/kdp/info", telemetry_info,
         "Node name, addresses, kdp and DPDK versions, ports, workers. No parameters."},
        {"/kdp/stats", telemetry_stats,
         "Per port id: name, packets, bytes, drops. Parameter: first port id; \"next\" is the "
         "next page's."},
        {"/kdp/workers", telemetry_workers,
         "Per worker: busy permille, TSC cycles by loop phase and per packet. No parameters."},
        {"/kdp/conntrack", telemetry_conntrack,
         "Conntrack entries, capacity, inserts, refusals, expiries; total and per worker."},
    };
    static_assert([] {
        for (const Command& c : kCommands) {
            if (std::string_view(c.help).size() >= RTE_TEL_MAX_STRING_LEN) {
                return false;
            }
        }
        return true;
    }());
    for (const Command& c : kCommands) {
        if (const int rc = rte_telemetry_register_cmd(c.name, c.cb, c.help); rc != 0) {
            return fmt::format("telemetry command {}: {}", c.name, std::strerror(-rc));
        }
    }
    return std::nullopt;
}

void set_telemetry_backend(Backend* backend) {
    WriterLock lock(g_mu);
    g_backend = backend;
}

void set_telemetry_refusal_for_test(int nth) {
    g_refuse_from.store(nth, std::memory_order_relaxed);
}

}  // namespace kdp::api
