#include "control/bootstrap/command.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "common/log.h"
#include "control/bootstrap/node_config.h"
#include "control/k8s/kubeconfig.h"

namespace kdp::control::bootstrap {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kUsage =
    R"(usage: kdp-control node-config --template FILE [--out FILE] [--node NAME]
                               [--node-ip IP] [--pod-cidr CIDR]
                               [--kubeconfig FILE | --in-cluster] [--api-server HOST:PORT]
                               [--wait-seconds N]

Renders this node's kdp-dataplane config from the node config shared by every node: what it
leaves out is taken from the Node object (node.ip from its InternalIP, node.pod_cidr from
spec.podCIDRs, the zone label) and from the kernel (uplink.interface NAME or PCI address:
node.mac, node.mtu, uplink.prefix_len, uplink.devargs). Explicit values win; a conflict between
them and the Node or the kernel is an error naming both.

  --template FILE       the shared node config (keys: config/README.md)
  --out FILE            where to write the result, atomically (default: standard output)
  --node NAME           this node (default: $NODE_NAME)
  --node-ip IP, --pod-cidr CIDR   explicit values, as if in the template
  --kubeconfig FILE, --in-cluster   read the Node from the API server (else it is not read)
  --api-server HOST:PORT   the API server's real address (default: $KDP_API_SERVER, else the
                        kubeconfig's or KUBERNETES_SERVICE_HOST/PORT)
  --wait-seconds N      wait up to N s for the API server, the Node and its pod CIDR (default
                        300; 0: try once)
)";

struct Args {
    std::string template_file;
    std::string out = "-";
    Explicit given;
    std::string kubeconfig;
    bool in_cluster = false;
    std::string api_server;
    int wait_seconds = 300;
};

std::string env_or(const char* name, std::string fallback) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

void write_atomically(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp, std::ios::trunc);
        f << text;
        f.close();
        if (!f) {
            throw BootstrapError(fmt::format("cannot write {}", tmp));
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        throw BootstrapError(fmt::format("cannot rename {} to {}: {}", tmp, path, ec.message()));
    }
}

}  // namespace

int node_config_command(const std::vector<std::string>& args,
                        std::ostream& out,
                        std::ostream& err,
                        const std::atomic<bool>& stop) {
    Args a;
    a.given.node_name = env_or("NODE_NAME", "");
    a.api_server = env_or("KDP_API_SERVER", "");
    auto usage_error = [&err](const std::string& msg) {
        err << fmt::format("kdp-control node-config: {} (see kdp-control node-config --help)\n",
                           msg);
        return 2;
    };
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& k = args[i];
        if (k == "-h" || k == "--help") {
            out << kUsage;
            return 0;
        }
        if (k == "--in-cluster") {
            a.in_cluster = true;
            continue;
        }
        if (i + 1 >= args.size()) {
            return usage_error(k.rfind("--", 0) == 0 ? k + " needs a value"
                                                     : "unknown argument \"" + k + "\"");
        }
        const std::string& v = args[++i];
        if (k == "--template") {
            a.template_file = v;
        } else if (k == "--out") {
            a.out = v;
        } else if (k == "--node") {
            a.given.node_name = v;
        } else if (k == "--node-ip") {
            a.given.node_ip = Ip4::parse(v);
            if (!a.given.node_ip) {
                return usage_error(fmt::format("--node-ip \"{}\" is not an IPv4 address", v));
            }
        } else if (k == "--pod-cidr") {
            a.given.pod_cidr = Prefix4::parse(v, /*strict=*/true);
            if (!a.given.pod_cidr) {
                return usage_error(
                    fmt::format("--pod-cidr \"{}\" is not a CIDR without host bits", v));
            }
        } else if (k == "--kubeconfig") {
            a.kubeconfig = v;
        } else if (k == "--api-server") {
            a.api_server = v;
        } else if (k == "--wait-seconds") {
            try {
                size_t used = 0;
                a.wait_seconds = std::stoi(v, &used);
                if (used != v.size() || a.wait_seconds < 0) {
                    throw std::invalid_argument(v);
                }
            } catch (const std::exception&) {
                return usage_error(
                    fmt::format("--wait-seconds \"{}\" is not a number of seconds", v));
            }
        } else {
            return usage_error(fmt::format("unknown argument \"{}\"", k));
        }
    }
    if (a.template_file.empty()) {
        return usage_error("--template is required");
    }
    if (a.in_cluster && !a.kubeconfig.empty()) {
        return usage_error("--kubeconfig and --in-cluster exclude each other");
    }
    auto log = [](const std::string& m) { kdp::log::info("node-config: {}", m); };
    try {
        std::ifstream in(a.template_file);
        if (!in) {
            throw BootstrapError(fmt::format("cannot read the node config {}", a.template_file));
        }
        std::stringstream text;
        text << in.rdbuf();

        std::optional<k8s::ClusterConfig> api;
        if (a.in_cluster) {
            api = k8s::load_in_cluster({}, {}, a.api_server);
        } else if (!a.kubeconfig.empty()) {
            api = k8s::load_kubeconfig(a.kubeconfig);
            if (!a.api_server.empty()) {
                k8s::set_api_server(*api, a.api_server);
            }
        }
        const auto give_up = Clock::now() + std::chrono::seconds(a.wait_seconds);
        auto last_said = Clock::time_point{};
        for (;;) {
            try {
                std::optional<NodeFacts> node;
                if (api) {
                    if (a.given.node_name.empty()) {
                        throw BootstrapError("no --node (NODE_NAME) to read the Node of");
                    }
                    node =
                        node_facts(fetch_node(*api, a.given.node_name, std::chrono::seconds(10)));
                }
                const Rendered r =
                    render_node_config(text.str(), a.given, node,
                                       [](const std::string& iface) { return read_uplink(iface); });
                for (const auto& s : r.sources) {
                    log(s);
                }
                if (a.out == "-") {
                    out << r.yaml;
                } else {
                    write_atomically(a.out, r.yaml);
                    log(fmt::format("wrote {}", a.out));
                }
                return 0;
            } catch (const NotYet& e) {
                if (stop || Clock::now() >= give_up) {
                    throw;
                }
                if (Clock::now() - last_said >= std::chrono::seconds(30)) {
                    log(fmt::format("waiting: {}", e.what()));
                    last_said = Clock::now();
                }
                std::this_thread::sleep_for(std::chrono::seconds(1));
            }
        }
    } catch (const std::exception& e) {
        kdp::log::error("node-config: {}", e.what());
        return 1;
    }
}

}  // namespace kdp::control::bootstrap
