#include "standalone/standalone.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <fmt/format.h>

#include "common/log.h"
#include "common/version.h"
#include "compile/node_tables.h"
#include "k8s/kubeconfig.h"
#include "manifest/manifest.h"
#include "push/dataplane_client.h"
#include "standalone/kube_source.h"

namespace kdp::control::standalone {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kUsage =
    R"(usage: kdp-control --node NAME (--manifests PATH... | --kubeconfig FILE | --in-cluster)
                   [--api-server HOST:PORT] [--dataplane SOCK] [--watch | --once]
       kdp-control node-config --template FILE ...   (see kdp-control node-config --help)

  --node NAME         the Kubernetes Node this dataplane serves (default: $NODE_NAME)
  --manifests PATH... YAML/JSON manifest files or directories (standalone mode)
  --dataplane SOCK    the dataplane's unix socket (default /run/kdp/dataplane.sock)
  --watch             keep running: re-read the manifests on change and push the difference
  --once              push once and exit (the default)
  --kubeconfig FILE, --in-cluster   watch the Kubernetes API (list+watch over HTTPS)
  --api-server HOST:PORT   the API server's real address (default: $KDP_API_SERVER), in
                      place of the kubeconfig's server or KUBERNETES_SERVICE_HOST/PORT: as
                      kube-proxy's replacement kdp must not reach it through a Service it serves
  --service-cidr CIDR the cluster's Service range: unallocated addresses in it are dropped
                      (default 10.96.0.0/12 with --manifests; unchecked in Kubernetes mode
                      unless given)
  --healthz-bind-address HOST:PORT   kube-proxy's node health, /healthz (default
                      0.0.0.0:10256; "" turns it off)
  --metrics-bind-address HOST:PORT   /metrics, /healthz (liveness) and /readyz (default
                      127.0.0.1:10249; "" turns it off)
  --log-level L       error, warning, info (default) or debug ($KDP_LOG_LEVEL)
  --log-format F      text (default: "TIME LEVEL kdp-control: message") or json, one object
                      a line with ts, level, component, msg ($KDP_LOG_FORMAT)
  --version           print kdp-control's version and API revision
)";

using kdp::log::error;
using kdp::log::info;
using kdp::log::warning;

}  // namespace

std::variant<Options, int> parse_args(const std::vector<std::string>& args,
                                      std::ostream& out,
                                      std::ostream& err,
                                      const GetEnv& getenv) {
    Options o;
    auto env = [&getenv](const char* name) -> std::string {
        std::optional<std::string> v;
        if (getenv) {
            v = getenv(name);
        } else if (const char* p = std::getenv(name)) {
            v = p;
        }
        return v.value_or("");
    };
    o.node = env("NODE_NAME");
    o.api_server = env("KDP_API_SERVER");
    auto usage_error = [&err](const std::string& msg) {
        err << fmt::format("kdp-control: {} (see kdp-control --help)\n", msg);
        return 2;
    };
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        auto has_value = [&] { return i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0; };
        if (a == "-h" || a == "--help") {
            out << kUsage;
            return 0;
        } else if (a == "--version") {
            out << version_line("kdp-control") << "\n";
            return 0;
        } else if (a == "--node" || a == "--dataplane" || a == "--kubeconfig" ||
                   a == "--healthz-bind-address" || a == "--metrics-bind-address" ||
                   a == "--service-cidr" || a == "--api-server") {
            if (!has_value()) {
                return usage_error(a + " needs a value");
            }
            const std::string& v = args[++i];
            if (a == "--node") {
                o.node = v;
            } else if (a == "--dataplane") {
                o.socket = v;
            } else if (a == "--api-server") {
                o.api_server = v;
            } else if (a == "--healthz-bind-address") {
                o.serve.healthz_address = v;
            } else if (a == "--metrics-bind-address") {
                o.serve.metrics_address = v;
            } else if (a == "--service-cidr") {
                o.service_cidr = Prefix4::parse(v, /*strict=*/true);
                if (!o.service_cidr) {
                    return usage_error(
                        fmt::format("--service-cidr \"{}\" is not an IPv4 CIDR "
                                    "(without host bits)",
                                    v));
                }
            } else {
                o.kube = true;
                o.kubeconfig = v;
            }
        } else if (a == "--manifests") {
            if (!has_value()) {
                return usage_error("--manifests needs at least one path");
            }
            while (has_value()) {
                o.manifests.push_back(args[++i]);
            }
        } else if (a == "--in-cluster") {
            o.kube = true;
            o.in_cluster = true;
        } else if (a == "--watch") {
            o.watch = true;
        } else if (a == "--once") {
            o.once = true;
        } else {
            return usage_error(fmt::format("unknown argument \"{}\"", a));
        }
    }
    if (o.node.empty()) {
        return usage_error("--node (or NODE_NAME) is required");
    }
    if (o.watch && o.once) {
        return usage_error("--watch and --once exclude each other");
    }
    if (o.kube && !o.manifests.empty()) {
        return usage_error("--manifests excludes --kubeconfig/--in-cluster");
    }
    if (!o.kube && !o.api_server.empty() && o.manifests.empty()) {
        return usage_error("--api-server needs --kubeconfig or --in-cluster");
    }
    if (!o.kube && o.manifests.empty()) {
        return usage_error("one of --manifests, --kubeconfig or --in-cluster is required");
    }
    return o;
}

namespace {

// What identifies a version of the inputs: every file's path, mtime and size.
using Stamp = std::map<std::string, std::pair<std::filesystem::file_time_type, uintmax_t>>;

Stamp stamp(const std::vector<std::string>& paths) {
    Stamp s;
    std::error_code ec;
    std::vector<std::string> files;
    try {
        files = expand_manifest_paths(paths);
    } catch (const ManifestError&) {
        files = paths;  // a missing path: stamp what exists; reading reports the error
    }
    for (const auto& f : files) {
        const auto t = std::filesystem::last_write_time(f, ec);
        const auto size = std::filesystem::file_size(f, ec);
        s[f] = {ec ? std::filesystem::file_time_type{} : t, ec ? 0 : size};
    }
    return s;
}

// Reads and compiles; logs every error and returns nullopt if there was any.
std::optional<kdp::table::TableSpec> load(const Options& o) {
    try {
        Model model;
        const auto errors = load_manifests(expand_manifest_paths(o.manifests), model);
        if (!errors.empty()) {
            for (const auto& e : errors) {
                error("{}", e);
            }
            error("{} error(s) in the manifests; nothing pushed", errors.size());
            return std::nullopt;
        }
        std::vector<CompileWarning> warnings;
        ServiceOptions so;
        if (o.service_cidr) {
            so.service_cidr = *o.service_cidr;
        }
        auto spec = compile_node_tables(model, o.node, so, &warnings);
        for (const auto& w : warnings) {
            warning("{}", w.message);
        }
        return spec;
    } catch (const std::exception& e) {
        error("{}; nothing pushed", e.what());
        return std::nullopt;
    }
}

// Whether trying again later may succeed: the dataplane is down, restarting (its shutdown
// cancels calls in flight) or slow. Anything else is an answer about our state.
bool retryable(const RpcError& e) {
    return e.code() == grpc::StatusCode::UNAVAILABLE ||
           e.code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
           e.code() == grpc::StatusCode::CANCELLED;
}

void sleep_for(std::chrono::milliseconds d, const std::atomic<bool>& stop) {
    const auto until = Clock::now() + d;
    while (!stop && Clock::now() < until) {
        std::this_thread::sleep_for(
            std::min<Clock::duration>(std::chrono::milliseconds(50), until - Clock::now()));
    }
}

void report(const Pusher::Result& r, const kdp::table::TableSpec& spec) {
    switch (r.action) {
        case Pusher::Action::kNone:
            break;
        case Pusher::Action::kSync:
            info("synced generation {} ({}): {} routes, {} pods", r.generation, r.reason,
                 spec.routes.size(), spec.pods.size());
            break;
        case Pusher::Action::kUpdate:
            info("updated to generation {}: {} change(s)", r.generation, r.changes);
            break;
    }
}

int run_once(const Options& o, const std::atomic<bool>& stop) {
    const auto spec = load(o);
    if (!spec) {
        return 1;
    }
    DataplaneClient client(o.socket);
    Pusher pusher(client);
    auto backoff = std::chrono::milliseconds(200);
    const auto give_up = Clock::now() + o.once_timeout;
    while (!stop) {
        try {
            report(pusher.push(*spec), *spec);
            return 0;
        } catch (const RpcError& e) {
            if (!retryable(e) || Clock::now() + backoff > give_up) {
                error("{}", e.what());
                return 1;
            }
            warning("dataplane not reachable at {} ({}); retrying in {} ms", o.socket, e.what(),
                    backoff.count());
            sleep_for(backoff, stop);
            backoff = std::min(backoff * 2, o.max_backoff);
        }
    }
    return 1;
}

// Keeps the dataplane in step with a source of desired tables. `next()` returns nullopt when
// nothing changed, else the new tables or an inner nullopt when the new input does not compile
// (the last good tables stay). Pushes differences, retries an unreachable dataplane with
// backoff, and after a refusal waits for the input to change.
// `take_triggers()`: the trigger times of the changes now pushed (network programming latency).
template <class Next, class TakeTriggers>
int push_loop(const Options& o,
              const std::atomic<bool>& stop,
              serve::Status& status,
              Next&& next,
              TakeTriggers&& take_triggers) {
    DataplaneClient client(o.socket);
    Pusher pusher(client);
    std::optional<kdp::table::TableSpec> desired;
    bool refused = false;  // the dataplane refused `desired`: wait for the input to change
    auto backoff = std::chrono::milliseconds(200);
    bool unreachable_logged = false;
    while (!stop) {
        const auto started = Clock::now();
        status.heartbeat(serve::WallClock::now());
        if (auto changed = next()) {
            status.lists_complete();  // a source answers only once its lists are complete
            if (*changed) {
                desired = std::move(*changed);
                refused = false;
                status.queued(serve::WallClock::now());
            } else if (desired) {
                warning("keeping the last good state");
            }
        }
        auto wait = o.poll;
        if (desired && !refused) {
            try {
                const Pusher::Result r = pusher.push(*desired);
                status.pushed(serve::WallClock::now(), r.action != Pusher::Action::kNone,
                              r.action == Pusher::Action::kSync, r.generation,
                              Clock::now() - started);
                status.programmed(serve::WallClock::now(), take_triggers());
                report(r, *desired);
                backoff = std::chrono::milliseconds(200);
                if (unreachable_logged) {
                    info("dataplane at {} reachable again", o.socket);
                    unreachable_logged = false;
                }
            } catch (const RpcError& e) {
                status.push_failed(e.what(), !retryable(e));
                if (retryable(e)) {
                    if (!unreachable_logged || backoff >= o.max_backoff) {
                        warning("dataplane not reachable at {} ({}); retrying in {} ms", o.socket,
                                e.what(), backoff.count());
                        unreachable_logged = true;
                    }
                    wait = backoff;
                    backoff = std::min(backoff * 2, o.max_backoff);
                } else {
                    error("{}; waiting for the input to change", e.what());
                    refused = true;
                }
            }
        }
        sleep_for(wait, stop);
    }
    info("stopping");
    return 0;
}

int run_watch(const Options& o, const std::atomic<bool>& stop, serve::Status& status) {
    std::optional<Stamp> last_stamp;
    info("watching {} path(s) for node {}", o.manifests.size(), o.node);
    // Manifest files carry no EndpointSlice trigger times worth timing.
    return push_loop(
        o, stop, status,
        [&]() -> std::optional<std::optional<kdp::table::TableSpec>> {
            const Stamp now = stamp(o.manifests);
            if (last_stamp && now == *last_stamp) {
                return std::nullopt;
            }
            last_stamp = now;
            return load(o);
        },
        [] { return std::vector<serve::WallClock::time_point>{}; });
}

int run_kube(const Options& o, const std::atomic<bool>& stop, serve::Status& status) {
    auto cfg = o.in_cluster ? k8s::load_in_cluster({}, {}, o.api_server)
                            : k8s::load_kubeconfig(o.kubeconfig);
    if (!o.in_cluster && !o.api_server.empty()) {
        k8s::set_api_server(cfg, o.api_server);
    }
    if (o.in_cluster && o.api_server.empty()) {
        warning(
            "reaching the API server at {} (KUBERNETES_SERVICE_HOST): if that is the "
            "`kubernetes` Service's ClusterIP, only kdp serves it; set --api-server "
            "(KDP_API_SERVER) to the API server's real address",
            cfg.server);
    }
    info("watching the Kubernetes API at {} for node {}", cfg.server, o.node);
    KubeSource source(cfg, o.node, o.service_cidr);
    return push_loop(
        o, stop, status,
        [&] {
            auto r = source.poll();
            KubeSourceStats st = source.stats();
            status.source_stats(std::move(st.unhonoured), st.events_posted, st.events_failed);
            return r;
        },
        [&] { return source.take_trigger_times(); });
}

}  // namespace

int run(const Options& o, const std::atomic<bool>& stop) {
    info("{}", version_line("kdp-control"));
    try {
        if (!o.kube && !o.watch) {
            return run_once(o, stop);
        }
        serve::Status status;
        const serve::Server server(o.serve, status, o.socket, o.node);
        for (const auto& e : server.errors()) {
            warning("{}; serving without it", e);
        }
        if (server.healthz_port() != 0) {
            info("serving node health on {} (port {})", o.serve.healthz_address,
                 server.healthz_port());
        }
        if (server.metrics_port() != 0) {
            info("serving /metrics, /healthz, /readyz on {} (port {})", o.serve.metrics_address,
                 server.metrics_port());
        }
        return o.kube ? run_kube(o, stop, status) : run_watch(o, stop, status);
    } catch (const std::exception& e) {
        error("{}", e.what());
        return 1;
    }
}

}  // namespace kdp::control::standalone
