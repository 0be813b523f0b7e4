#include "kdpctl/commands.h"

#include <time.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "common/version.h"
#include "compile/node_tables.h"
#include "kdpctl/status.h"
#include "manifest/manifest.h"
#include "offline/cluster.h"
#include "push/dataplane_client.h"

namespace kdp::control::kdpctl {
namespace {

using json = Json;

constexpr const char* kUsage = R"(usage: kdpctl [--dataplane SOCK] [-o table|json|yaml] COMMAND

commands:
  get nodes|routes|pods|ports|services|endpoints|policy
                                 list what the dataplane has in force (policy: each isolated
                                 pod's allowed peers and ports, and the rule allowing each)
  get conntrack [--limit N]      tracked connections and affinity records (at most N)
  trace --from NS/POD|host|IP --to NS/POD|service:NS/NAME|SVC.NS|IP --port N [--proto tcp|udp|sctp]
        [--peer NODE=SOCK]...    run a crafted packet through the dataplane's real pipeline
                                 (no state left behind) and show each stage's decision; a
                                 packet leaving for NODE is followed on through its dataplane
  trace --manifests FILE... (--from ... --to ... --port N [--enters-at NODE] | --probes FILE)
        [--what-if FILE...] [--what-if-delete FILE...]
                                 the same without a dataplane: every node of the cluster the
                                 files describe, built in-process (real compiler, tables and
                                 pipelines), the probe followed from node to node and its reply
                                 back. --probes: a YAML/JSON list of {from, to, port, protocol,
                                 enters_at}, one result per probe (-o json: one object a line).
                                 from: NS/POD, node:NAME or IP; to: NS/POD, service:NS/NAME,
                                 node:NAME or IP. --what-if: the probes whose outcome the files
                                 would change, applied on top of the manifests;
                                 --what-if-delete: the same for deleting the objects the files
                                 name (a Namespace with its objects)
  port add NS/POD [--type tap|vhostuser] [--iface IF] [--socket PATH] [--ip IP] [--mtu N]
           [--queues N]          create a pod port at run time (what kdp-cni does): a TAP
                                 named IF, or a vhost-user socket at PATH (N queue pairs,
                                 1..64, shared by the workers); IP binds the pod
  port remove NS/POD             take a pod port out of service and destroy it
  info                           the dataplane's node, config and table generation
  status [--control HOST:PORT] [--cni-conf-dir DIR] [--cni-bin-dir DIR] [--node NAME]
                                 one screen: is this node healthy? The dataplane (ports up,
                                 policy synced, packet and drop rates over --interval-ms),
                                 kdp-control (/readyz, API lists, last sync; default
                                 127.0.0.1:10249), the CNI network the runtime would load
                                 (default /etc/cni/net.d) and kdp-cni's STATUS (default
                                 /opt/cni/bin), versions. Exit 0 when healthy, 1 when not
  events [--count N]             stream table events (first: the tables in force)
  stats [--interval-ms N]        per port and per worker counters, drops, Mpps, busy %,
                                 cycles per packet by phase of the worker loop
                                 (rates over a sample of N ms, default 1000)
  apply -f FILE... [--node NAME] compile manifests for NAME (default: the dataplane's own
                                 node) and replace the dataplane's tables with the result

options:
  --dataplane SOCK   the dataplane's unix socket (default /run/kdp/dataplane.sock)
  -o, --output FMT   table (default), json or yaml
  --version          kdpctl's version and API revision (info: the dataplane's)
)";

class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct Args {
    std::string socket = kDefaultDataplaneSocket;
    Format format = Format::kTable;
    std::vector<std::string> files;
    std::optional<std::string> node;
    int interval_ms = 1000;
    int count = 0;  // events: stop after this many (0: until interrupted)
    int limit = 0;  // get conntrack: at most this many entries (0: the dataplane's cap)
    bool help = false;
    bool version = false;
    std::string from, to, proto = "tcp";  // trace
    int port = 0;
    std::map<std::string, std::string> peers;  // trace: node name -> its dataplane socket
    std::vector<std::string> manifests, what_if, what_if_delete;  // trace offline
    std::string probes, enters_at;
    std::string type = "tap", iface, socket_path, ip;  // port add
    int mtu = 0;
    int queues = 0;        // port add: vhost-user queue pairs
    StatusOptions status;  // status: where kdp-control and the CNI files are
    bool interval_given = false;
    std::vector<std::string> positional;
};

// The integer value of option `name`, which must be in lo..hi.
int int_arg(const std::string& name, const std::string& v, int lo, int hi) {
    int n = lo - 1;
    try {
        size_t used = 0;
        n = std::stoi(v, &used);
        n = used == v.size() ? n : lo - 1;
    } catch (const std::exception&) {
        n = lo - 1;
    }
    if (n < lo || n > hi) {
        throw UsageError(hi == std::numeric_limits<int>::max()
                             ? fmt::format("{}: \"{}\" is not a positive number", name, v)
                             : fmt::format("{}: \"{}\" is not in {}..{}", name, v, lo, hi));
    }
    return n;
}

Args parse_args(const std::vector<std::string>& args) {
    Args a;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        auto value = [&]() -> const std::string& {
            if (i + 1 >= args.size()) {
                throw UsageError(fmt::format("{} needs a value", arg));
            }
            return args[++i];
        };
        if (arg == "-h" || arg == "--help") {
            a.help = true;
        } else if (arg == "--version") {
            a.version = true;
        } else if (arg == "--dataplane") {
            a.socket = value();
        } else if (arg == "-o" || arg == "--output") {
            const std::string& f = value();
            if (f == "table") {
                a.format = Format::kTable;
            } else if (f == "json") {
                a.format = Format::kJson;
            } else if (f == "yaml") {
                a.format = Format::kYaml;
            } else {
                throw UsageError(fmt::format("-o: unknown format \"{}\" (table, json, yaml)", f));
            }
        } else if (arg == "-f" || arg == "--filename") {
            a.files.push_back(value());
        } else if (arg == "--node") {
            a.node = value();
        } else if (arg == "--interval-ms") {
            a.interval_ms = int_arg(arg, value(), 1, 60'000);
            a.interval_given = true;
        } else if (arg == "--control") {
            a.status.control_address = value();
        } else if (arg == "--cni-conf-dir") {
            a.status.cni_conf_dir = value();
        } else if (arg == "--cni-bin-dir") {
            a.status.cni_bin_dir = value();
        } else if (arg == "--count") {
            a.count = int_arg(arg, value(), 1, std::numeric_limits<int>::max());
        } else if (arg == "--limit") {
            a.limit = int_arg(arg, value(), 1, 100'000);
        } else if (arg == "--manifests" || arg == "--what-if" || arg == "--what-if-delete") {
            // One file or more: every following argument up to the next option.
            auto& list = arg == "--manifests" ? a.manifests
                         : arg == "--what-if" ? a.what_if
                                              : a.what_if_delete;
            list.push_back(value());
            while (i + 1 < args.size() && !args[i + 1].empty() && args[i + 1][0] != '-') {
                list.push_back(args[++i]);
            }
        } else if (arg == "--peer") {
            const std::string& v = value();
            const size_t eq = v.find('=');
            if (eq == 0 || eq == std::string::npos || eq + 1 == v.size()) {
                throw UsageError(fmt::format("--peer: \"{}\" is not NODE=SOCKET", v));
            }
            a.peers[v.substr(0, eq)] = v.substr(eq + 1);
        } else if (arg == "--probes") {
            a.probes = value();
        } else if (arg == "--enters-at") {
            a.enters_at = value();
        } else if (arg == "--from") {
            a.from = value();
        } else if (arg == "--to") {
            a.to = value();
        } else if (arg == "--proto") {
            a.proto = value();
            if (a.proto != "tcp" && a.proto != "udp" && a.proto != "sctp") {
                throw UsageError(fmt::format("--proto: \"{}\" is not tcp, udp or sctp", a.proto));
            }
        } else if (arg == "--port") {
            a.port = int_arg(arg, value(), 1, 65535);
        } else if (arg == "--type") {
            a.type = value();
            if (a.type != "tap" && a.type != "vhostuser") {
                throw UsageError(fmt::format("--type: \"{}\" is not tap or vhostuser", a.type));
            }
        } else if (arg == "--iface") {
            a.iface = value();
        } else if (arg == "--socket") {
            a.socket_path = value();
        } else if (arg == "--ip") {
            a.ip = value();
        } else if (arg == "--mtu") {
            a.mtu = int_arg(arg, value(), 576, 9000);
        } else if (arg == "--queues") {
            a.queues = int_arg(arg, value(), 1, 64);
        } else if (arg.size() > 1 && arg[0] == '-') {
            throw UsageError(fmt::format("unknown option {}", arg));
        } else {
            a.positional.push_back(arg);
        }
    }
    return a;
}

std::string cell(const json& v) {
    if (v.is_null()) {
        return "-";
    }
    if (v.is_string()) {
        const auto& s = v.get_ref<const std::string&>();
        return s.empty() ? "-" : s;
    }
    if (v.is_number_float()) {
        return fmt::format("{:.3f}", v.get<double>());
    }
    if (v.is_object()) {  // drops: "reason=n reason=n"
        std::string s;
        for (const auto& [k, n] : v.items()) {
            s += fmt::format("{}{}={}", s.empty() ? "" : " ", k, cell(n));
        }
        return s.empty() ? "-" : s;
    }
    return v.dump();
}

void emit_yaml(YAML::Emitter& e, const json& j) {
    if (j.is_object()) {
        e << YAML::BeginMap;
        for (const auto& [k, v] : j.items()) {
            e << YAML::Key << k << YAML::Value;
            emit_yaml(e, v);
        }
        e << YAML::EndMap;
    } else if (j.is_array()) {
        e << YAML::BeginSeq;
        for (const auto& v : j) {
            emit_yaml(e, v);
        }
        e << YAML::EndSeq;
    } else if (j.is_string()) {
        const auto& s = j.get_ref<const std::string&>();
        if (s.empty() || !yaml_plain_scalar(s).is_string()) {
            e << YAML::DoubleQuoted << s;
        } else {
            e << s;
        }
    } else if (j.is_null()) {
        e << YAML::Null;
    } else {
        e << j.dump();  // numbers and booleans print the same in YAML
    }
}

void print(std::ostream& out, Format f, const json& rows, const std::vector<Column>& cols) {
    switch (f) {
        case Format::kTable:
            out << render_table(rows, cols);
            break;
        case Format::kJson:
            out << render_json(rows);
            break;
        case Format::kYaml:
            out << render_yaml(rows);
            break;
    }
}

json route_json(const v1::Route& r, bool local) {
    return json{{"name", r.node_name()},
                {"node_ip", r.node_ip()},
                {"pod_cidr", r.pod_cidr()},
                {"vtep_mac", r.vtep_mac()},
                {"local", local}};
}

// A port as `get ports` and `port add` print it.
json port_json(const v1::Port& p) {
    return json{{"name", p.name()},           {"kind", p.kind()},
                {"port_id", p.port_id()},     {"mac", p.mac()},
                {"peer_mac", p.peer_mac()},   {"link", p.link_up() ? "up" : "down"},
                {"rx_queues", p.rx_queues()}, {"tx_queues", p.tx_queues()},
                {"devargs", p.devargs()}};
}

int get(DataplaneClient& client, const Args& a, std::ostream& out) {
    if (a.positional.size() != 2) {
        throw UsageError(
            "get needs one of: nodes, routes, pods, ports, services, endpoints, policy");
    }
    const std::string& what = a.positional[1];
    json rows = json::array();
    if (what == "nodes" || what == "node") {
        const auto info = client.node_info();
        v1::Route self;
        self.set_node_name(info.node_name());
        self.set_node_ip(info.node_ip());
        self.set_pod_cidr(info.pod_cidr());
        self.set_vtep_mac(info.vtep_mac());
        rows.push_back(route_json(self, true));
        const auto routes = client.list_routes();
        for (const auto& r : routes.routes()) {
            rows.push_back(route_json(r, false));
        }
        print(out, a.format, rows,
              {{"NAME", "name"},
               {"NODE-IP", "node_ip"},
               {"POD-CIDR", "pod_cidr"},
               {"VTEP-MAC", "vtep_mac"},
               {"LOCAL", "local"}});
    } else if (what == "routes" || what == "route") {
        const auto routes = client.list_routes();
        for (const auto& r : routes.routes()) {
            json j = route_json(r, false);
            j.erase("local");
            j["node"] = j["name"];
            j.erase("name");
            rows.push_back(std::move(j));
        }
        print(out, a.format, rows,
              {{"NODE", "node"},
               {"POD-CIDR", "pod_cidr"},
               {"NODE-IP", "node_ip"},
               {"VTEP-MAC", "vtep_mac"}});
    } else if (what == "pods" || what == "pod") {
        const auto pods = client.list_pods();
        for (const auto& p : pods.pods()) {
            rows.push_back(json{{"name", p.name()}, {"ip", p.ip()}, {"port", p.port_name()}});
        }
        print(out, a.format, rows, {{"NAME", "name"}, {"IP", "ip"}, {"PORT", "port"}});
    } else if (what == "ports" || what == "port") {
        const auto ports = client.list_ports();
        for (const auto& p : ports.ports()) {
            rows.push_back(port_json(p));
        }
        print(out, a.format, rows,
              {{"ID", "port_id"},
               {"NAME", "name"},
               {"KIND", "kind"},
               {"LINK", "link"},
               {"MAC", "mac"},
               {"PEER-MAC", "peer_mac"},
               {"RXQ", "rx_queues"},
               {"TXQ", "tx_queues"},
               {"DEVARGS", "devargs"}});
    } else if (what == "policy" || what == "policies" || what == "netpol") {
        // Per local pod that some NetworkPolicy selects: isolation, and each allowed
        // (direction, peer, protocol, ports) with the rule that allows it.
        const auto r = client.get_policy();
        const auto& p = r.policy();
        const auto id_name = [&](uint32_t id) -> std::string {
            if (id == table::kIdentityAny) {
                return "any";
            }
            return id >= 1 && static_cast<int>(id) <= p.identity_names_size()
                       ? p.identity_names(static_cast<int>(id - 1))
                       : fmt::format("identity {}", id);
        };
        if (a.format != Format::kTable) {
            json pods = json::array();
            for (const auto& pp : p.pods()) {
                json rules = json::array();
                for (const auto& x : pp.rules()) {
                    rules.push_back(json{{"direction", x.direction()},
                                         {"peer", id_name(x.identity())},
                                         {"protocol", x.protocol()},
                                         {"port_min", x.port_min()},
                                         {"port_max", x.port_max()},
                                         {"rule", static_cast<int>(x.rule()) < p.rule_names_size()
                                                      ? p.rule_names(static_cast<int>(x.rule()))
                                                      : std::string()}});
                }
                pods.push_back(json{{"pod", pp.pod()},
                                    {"ip", pp.ip()},
                                    {"ingress_isolated", pp.ingress_isolated()},
                                    {"egress_isolated", pp.egress_isolated()},
                                    {"rules", rules}});
            }
            const json j{{"generation", r.generation()},
                         {"synced", r.synced()},
                         {"identities", p.identity_names_size()},
                         {"pods", pods}};
            out << (a.format == Format::kJson ? render_json(j) : render_yaml(j));
            return 0;
        }
        for (const auto& pp : p.pods()) {
            const std::string iso = pp.ingress_isolated() && pp.egress_isolated() ? "ingress,egress"
                                    : pp.ingress_isolated()                       ? "ingress"
                                                                                  : "egress";
            if (pp.rules_size() == 0) {
                rows.push_back(json{{"pod", pp.pod()},
                                    {"isolated", iso},
                                    {"dir", "-"},
                                    {"peer", "(nothing allowed)"},
                                    {"ports", "-"},
                                    {"rule", "-"}});
            }
            for (const auto& x : pp.rules()) {
                const std::string ports =
                    x.protocol() == "any" ? "any"
                    : x.port_min() == x.port_max()
                        ? fmt::format("{}/{}", x.port_min(), x.protocol())
                    : x.port_min() == 0 && x.port_max() == 65535
                        ? fmt::format("*/{}", x.protocol())
                        : fmt::format("{}-{}/{}", x.port_min(), x.port_max(), x.protocol());
                rows.push_back(json{{"pod", pp.pod()},
                                    {"isolated", iso},
                                    {"dir", x.direction()},
                                    {"peer", id_name(x.identity())},
                                    {"ports", ports},
                                    {"rule", static_cast<int>(x.rule()) < p.rule_names_size()
                                                 ? p.rule_names(static_cast<int>(x.rule()))
                                                 : std::string()}});
            }
        }
        out << fmt::format("NetworkPolicy generation {}: {}; {} isolated pods, {} identities\n",
                           r.generation(),
                           r.synced() ? "synced" : "NOT SYNCED (pod traffic waits for control)",
                           p.pods_size(), p.identity_names_size());
        print(out, a.format, rows,
              {{"POD", "pod"},
               {"ISOLATED", "isolated"},
               {"DIR", "dir"},
               {"PEER", "peer"},
               {"PORTS", "ports"},
               {"RULE", "rule"}});
    } else if (what == "services" || what == "service" || what == "svc") {
        const auto services = client.list_services();
        for (const auto& sv : services.services()) {
            json fronts = json::array();
            std::string fronts_text;
            for (const auto& f : sv.frontends()) {
                fronts.push_back(json{{"kind", f.kind()}, {"ip", f.ip()}, {"port", f.port()}});
                fronts_text +=
                    fmt::format("{}{}:{}", fronts_text.empty() ? "" : ",", f.ip(), f.port());
            }
            int ready = 0;
            for (const auto& b : sv.backends()) {
                ready += b.ready() && !b.terminating() ? 1 : 0;
            }
            std::string policy;
            const auto flag = [&](bool on, const char* name) {
                if (on) {
                    policy += fmt::format("{}{}", policy.empty() ? "" : ",", name);
                }
            };
            flag(sv.external_local(), "etp=Local");
            flag(sv.internal_local(), "itp=Local");
            flag(sv.affinity_timeout_s() != 0,
                 fmt::format("affinity={}s", sv.affinity_timeout_s()).c_str());
            flag(sv.health_check_node_port() != 0,
                 fmt::format("hc={}", sv.health_check_node_port()).c_str());
            if (a.format == Format::kTable) {
                rows.push_back(json{{"name", sv.name()},
                                    {"protocol", sv.protocol()},
                                    {"frontends", fronts_text},
                                    {"endpoints", fmt::format("{}/{}", ready, sv.backends_size())},
                                    {"policy", policy.empty() ? "-" : policy}});
            } else {
                json backends = json::array();
                for (const auto& b : sv.backends()) {
                    backends.push_back(json{{"ip", b.ip()},
                                            {"port", b.port()},
                                            {"pod", b.pod()},
                                            {"node", b.node()},
                                            {"ready", b.ready()},
                                            {"serving", b.serving()},
                                            {"terminating", b.terminating()}});
                }
                json ranges = json::array();
                for (const auto& r : sv.source_ranges()) {
                    ranges.push_back(r);
                }
                rows.push_back(json{{"name", sv.name()},
                                    {"protocol", sv.protocol()},
                                    {"frontends", fronts},
                                    {"backends", backends},
                                    {"external_local", sv.external_local()},
                                    {"internal_local", sv.internal_local()},
                                    {"affinity_timeout_s", sv.affinity_timeout_s()},
                                    {"source_ranges", ranges},
                                    {"health_check_node_port", sv.health_check_node_port()}});
            }
        }
        print(out, a.format, rows,
              {{"NAME", "name"},
               {"PROTO", "protocol"},
               {"FRONTENDS", "frontends"},
               {"READY", "endpoints"},
               {"POLICY", "policy"}});
    } else if (what == "endpoints" || what == "endpoint" || what == "ep") {
        const auto services = client.list_services();
        for (const auto& sv : services.services()) {
            for (const auto& b : sv.backends()) {
                rows.push_back(json{{"service", sv.name()},
                                    {"endpoint", fmt::format("{}:{}", b.ip(), b.port())},
                                    {"pod", b.pod()},
                                    {"node", b.node()},
                                    {"ready", b.ready()},
                                    {"serving", b.serving()},
                                    {"terminating", b.terminating()}});
            }
        }
        print(out, a.format, rows,
              {{"SERVICE", "service"},
               {"ENDPOINT", "endpoint"},
               {"POD", "pod"},
               {"NODE", "node"},
               {"READY", "ready"},
               {"SERVING", "serving"},
               {"TERMINATING", "terminating"}});
    } else if (what == "conntrack" || what == "ct") {
        const auto ct = client.list_conntrack(static_cast<uint32_t>(a.limit));
        const auto ends = [](const v1::ConntrackTuple& t) {
            return fmt::format("{}:{} -> {}:{}", t.src(), t.sport(), t.dst(), t.dport());
        };
        const auto tuple = [](const v1::ConntrackTuple& t) {
            return json{
                {"src", t.src()}, {"sport", t.sport()}, {"dst", t.dst()}, {"dport", t.dport()}};
        };
        for (const auto& e : ct.entries()) {
            std::string nat;
            json nats = json::array();
            for (const auto& n : e.nat()) {
                nat += fmt::format("{}{}", nat.empty() ? "" : ",", n);
                nats.push_back(n);
            }
            if (a.format == Format::kTable) {
                // An affinity record's "reply" is the backend its client is held to.
                rows.push_back(json{
                    {"proto", e.affinity() ? e.protocol() + "/affinity" : e.protocol()},
                    {"original", e.affinity() ? fmt::format("client {}", e.original().src())
                                              : ends(e.original())},
                    {"reply", e.affinity()
                                  ? fmt::format("backend {}:{}", e.reply().src(), e.reply().sport())
                                  : ends(e.reply())},
                    {"nat", nat.empty() ? "-" : nat},
                    {"state", e.state()},
                    {"expires", fmt::format("{}s", e.expires_in_s())}});
            } else {
                rows.push_back(json{{"protocol", e.protocol()},
                                    {"original", tuple(e.original())},
                                    {"reply", tuple(e.reply())},
                                    {"nat", nats},
                                    {"state", e.state()},
                                    {"expires_in_s", e.expires_in_s()},
                                    {"affinity", e.affinity()},
                                    {"worker", e.worker()}});
            }
        }
        print(out, a.format, rows,
              {{"PROTO", "proto"},
               {"ORIGINAL", "original"},
               {"REPLY", "reply"},
               {"NAT", "nat"},
               {"STATE", "state"},
               {"EXPIRES", "expires"}});
        if (a.format == Format::kTable && ct.total() > static_cast<uint32_t>(ct.entries_size())) {
            out << fmt::format("({} of {} entries shown; --limit N for more)\n", ct.entries_size(),
                               ct.total());
        }
    } else {
        throw UsageError(
            fmt::format("get: unknown resource \"{}\" (nodes, routes, pods, ports, services, "
                        "endpoints, policy, conntrack)",
                        what));
    }
    return 0;
}

int stats(DataplaneClient& client, const Args& a, std::ostream& out) {
    if (a.positional.size() != 1) {
        throw UsageError("stats takes no arguments");
    }
    const auto t0 = std::chrono::steady_clock::now();
    const v1::Stats first = client.stats();
    std::this_thread::sleep_for(std::chrono::milliseconds(a.interval_ms));
    const v1::Stats second = client.stats();
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const json report = stats_report(first, second, wall);
    if (a.format != Format::kTable) {
        out << (a.format == Format::kJson ? render_json(report) : render_yaml(report));
        return 0;
    }
    out << render_table(report["ports"], {{"PORT", "name"},
                                          {"ID", "port_id"},
                                          {"RX-PKTS", "rx_packets"},
                                          {"RX-BYTES", "rx_bytes"},
                                          {"TX-PKTS", "tx_packets"},
                                          {"TX-BYTES", "tx_bytes"},
                                          {"RX-MPPS", "rx_mpps"},
                                          {"TX-MPPS", "tx_mpps"},
                                          {"DROPS", "drops"}});
    out << "\n";
    out << render_table(report["workers"], {{"WORKER", "worker"},
                                            {"LCORE", "lcore"},
                                            {"RX-PKTS", "rx_packets"},
                                            {"RX-BYTES", "rx_bytes"},
                                            {"TX-PKTS", "tx_packets"},
                                            {"TX-BYTES", "tx_bytes"},
                                            {"RX-MPPS", "rx_mpps"},
                                            {"TX-MPPS", "tx_mpps"},
                                            {"BUSY%", "busy_pct"},
                                            {"DROPS", "drops"}});
    // Where a worker's cycles go, per packet it received (the loop's own TSC counters).
    // Columns in loop order, as the dataplane lists its phases (JSON objects sort their keys).
    std::vector<Column> columns{{"WORKER", "worker"}};
    if (second.workers_size() != 0) {
        std::vector<std::string> names;
        for (const auto& ph : second.workers(0).phases()) {
            names.push_back(ph.phase());
        }
        names.push_back("total");
        for (const std::string& name : names) {
            std::string header = name;
            std::transform(header.begin(), header.end(), header.begin(),
                           [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
            columns.push_back({header, name});
        }
    }
    json phases = json::array();
    for (const auto& w : report["workers"]) {
        const auto per = w.find("cycles_per_packet");
        if (per == w.end()) {
            continue;
        }
        json row{{"worker", w["worker"]}};
        for (const auto& [phase, v] : per->items()) {
            row[phase] = static_cast<int64_t>(std::llround(v.get<double>()));
        }
        phases.push_back(std::move(row));
    }
    if (!phases.empty()) {
        out << "\ncycles per received packet, by phase of the worker loop:\n";
        out << render_table(phases, columns);
    }
    return 0;
}

int apply(DataplaneClient& client, const Args& a, std::ostream& out, std::ostream& err) {
    if (a.positional.size() != 1) {
        throw UsageError("apply takes its files with -f FILE");
    }
    if (a.files.empty()) {
        throw UsageError("apply needs -f FILE");
    }
    Model model;
    const auto errors = load_manifests(expand_manifest_paths(a.files), model);
    if (!errors.empty()) {
        for (size_t i = 0; i + 1 < errors.size(); ++i) {
            err << "kdpctl: " << errors[i] << "\n";
        }
        throw std::runtime_error(errors.back());
    }
    const std::string node = a.node ? *a.node : client.node_info().node_name();
    std::vector<CompileWarning> warnings;
    const table::TableSpec spec = compile_node_tables(model, node, {}, &warnings);
    for (const auto& w : warnings) {
        err << "kdpctl: warning: " << w.message << "\n";
    }
    Pusher pusher(client, "kdpctl");
    const auto result = pusher.push(spec);
    if (a.format == Format::kTable) {
        out << fmt::format(
            "applied generation {} to node {}: {} routes, {} pods, {} service ports, {} "
            "NetworkPolicies ({} pods isolated here)\n",
            result.generation, node, spec.routes.size(), spec.pods.size(), spec.services.size(),
            model.network_policies().size(), spec.policy.pods.size());
    } else {
        const json j{{"node", node},
                     {"generation", result.generation},
                     {"routes", spec.routes.size()},
                     {"pods", spec.pods.size()},
                     {"services", spec.services.size()},
                     {"network_policies", model.network_policies().size()},
                     {"isolated_pods", spec.policy.pods.size()}};
        out << (a.format == Format::kJson ? render_json(j) : render_yaml(j));
    }
    return 0;
}

std::string utc(uint64_t unix_ns) {
    const time_t secs = static_cast<time_t>(unix_ns / 1'000'000'000);
    struct tm tm {};
    gmtime_r(&secs, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    return fmt::format("{}.{:03}Z", buf, (unix_ns / 1'000'000) % 1000);
}

int info(DataplaneClient& client, const Args& a, std::ostream& out) {
    if (a.positional.size() != 1) {
        throw UsageError("info takes no arguments");
    }
    const auto i = client.node_info();
    const json j{{"node", i.node_name()},
                 {"node_ip", i.node_ip()},
                 {"node_mac", i.node_mac()},
                 {"pod_cidr", i.pod_cidr()},
                 {"gateway_ip", i.gateway_ip()},
                 {"gateway_mac", i.gateway_mac()},
                 {"vxlan_mode", i.vxlan_mode()},
                 {"vxlan_port", i.vxlan_port()},
                 {"vni", i.vni()},
                 {"vtep_mac", i.vtep_mac()},
                 {"mtu", i.mtu()},
                 {"pod_mtu", i.pod_mtu()},
                 {"workers", i.workers()},
                 {"generation", i.generation()},
                 {"started", i.started_unix_ns() == 0 ? "" : utc(i.started_unix_ns())},
                 {"version", i.version()},
                 {"api_revision", i.api_revision()}};
    if (a.format != Format::kTable) {
        out << (a.format == Format::kJson ? render_json(j) : render_yaml(j));
        return 0;
    }
    size_t width = 0;
    for (const auto& [k, _] : j.items()) {
        width = std::max(width, k.size());
    }
    for (const auto& [k, v] : j.items()) {
        out << fmt::format("{:<{}}  {}\n", k, width, cell(v));
    }
    return 0;
}

// "SVC.NS" (and SVC.NS.svc[.cluster.local]), the DNS name of a Service, as service:NS/SVC;
// anything else as given.
std::string service_name_form(const std::string& to) {
    if (Ip4::parse(to) || to.find('/') != std::string::npos || to.find(':') != std::string::npos) {
        return to;
    }
    const size_t dot = to.find('.');
    if (dot == std::string::npos || dot == 0 || dot + 1 == to.size()) {
        return to;
    }
    std::string ns = to.substr(dot + 1);
    for (const char* suffix : {".svc.cluster.local", ".svc"}) {
        const std::string sfx = suffix;
        if (ns.size() > sfx.size() && ns.compare(ns.size() - sfx.size(), sfx.size(), sfx) == 0) {
            ns.resize(ns.size() - sfx.size());
            break;
        }
    }
    if (ns.find('.') != std::string::npos) {
        return to;
    }
    return fmt::format("service:{}/{}", ns, to.substr(0, dot));
}

int trace(DataplaneClient& client, const Args& a, std::ostream& out) {
    if (a.from.empty() || a.to.empty() || a.port == 0) {
        throw UsageError("trace needs --from, --to and --port (or --manifests and --probes)");
    }
    if (!a.probes.empty() || !a.enters_at.empty() || !a.what_if.empty() ||
        !a.what_if_delete.empty()) {
        throw UsageError("--probes, --enters-at and --what-if go with --manifests");
    }
    // A pod of another node, by name: its address, from the dataplane that hosts it (a
    // dataplane knows its own pods by name, other nodes' only by their pod CIDR).
    std::string to = service_name_form(a.to);
    if (to.find('/') != std::string::npos && to.rfind("service:", 0) != 0 && !a.peers.empty()) {
        const auto find_in = [&](DataplaneClient& c) -> std::string {
            const v1::ListPodsResponse pods = c.list_pods();
            for (const auto& p : pods.pods()) {
                if (p.name() == to) {
                    return p.ip();
                }
            }
            return "";
        };
        if (find_in(client).empty()) {
            for (const auto& [node, sock] : a.peers) {
                DataplaneClient peer(sock);
                if (const std::string ip = find_in(peer); !ip.empty()) {
                    to = ip;
                    break;
                }
            }
        }
    }
    v1::TraceRequest req;
    req.set_from(a.from);
    req.set_to(to);
    req.set_port(static_cast<uint32_t>(a.port));
    req.set_protocol(a.proto);
    v1::TraceResponse r = client.trace(req);
    json hops = json::array();
    const auto add_hops = [&](const v1::TraceResponse& x) {
        for (const auto& h : x.hops()) {
            hops.push_back(json{{"node", h.node()}, {"stage", h.stage()}, {"detail", h.detail()}});
        }
    };
    add_hops(r);
    // Across nodes: the rest of the path from the next node's dataplane, as the packet arrives
    // there (its inner addresses and ports after this node's NAT), while --peer names it.
    std::string verdict = r.verdict(), seen_src = r.seen_src();
    const std::string backend = r.backend();  // chosen where the Service was: the first node
    const uint32_t backend_port = r.backend_port();
    for (int visits = 0; r.has_next() && visits < 4; ++visits) {
        const v1::TraceNext next = r.next();
        const std::string from_node = hops.empty() ? "" : hops.back()["node"].get<std::string>();
        const auto peer = a.peers.find(next.node());
        if (peer == a.peers.end()) {
            hops.push_back(json{{"node", from_node},
                                {"stage", "next_node"},
                                {"detail", fmt::format("the rest of the path is on node {}: give "
                                                       "--peer {}=SOCKET to follow it there",
                                                       next.node(), next.node())}});
            break;
        }
        v1::TraceRequest there;
        there.set_from(next.from());
        there.set_to(next.to());
        there.set_port(next.port());
        there.set_source_port(next.source_port());
        there.set_protocol(a.proto);
        DataplaneClient peer_client(peer->second);
        try {
            r = peer_client.trace(there);
        } catch (const RpcError& e) {
            throw std::runtime_error(fmt::format("tracing on from node {}'s dataplane at {}: {}",
                                                 next.node(), peer->second, e.what()));
        }
        add_hops(r);
        verdict = r.verdict();
        seen_src = r.seen_src();
    }
    const json j{{"verdict", verdict},
                 {"backend", backend.empty() ? json(nullptr) : json(backend)},
                 {"backend_port", backend_port},
                 {"seen_src", seen_src},
                 {"hops", hops}};
    if (a.format != Format::kTable) {
        out << (a.format == Format::kJson ? render_json(j) : render_yaml(j));
        return 0;
    }
    out << render_table(hops, {{"NODE", "node"}, {"STAGE", "stage"}, {"DETAIL", "detail"}});
    out << fmt::format("verdict: {}", verdict);
    if (!backend.empty()) {
        out << fmt::format(", backend {}:{}", backend, backend_port);
    }
    if (!seen_src.empty()) {
        out << fmt::format(", seen from {}", seen_src);
    }
    out << "\n";
    return 0;
}

// The hops of one trace as a table, then the verdict line.
void print_trace_text(std::ostream& out, const offline::ProbeResult& r) {
    json hops = json::array();
    for (const auto& h : r.trace.hops) {
        hops.push_back(json{{"node", h.node}, {"stage", h.stage}, {"detail", h.detail}});
    }
    out << render_table(hops, {{"NODE", "node"}, {"STAGE", "stage"}, {"DETAIL", "detail"}});
    out << fmt::format("verdict: {}", r.trace.verdict);
    if (!r.trace.backend.empty()) {
        out << fmt::format(", backend {}:{}", r.trace.backend, r.trace.backend_port);
    }
    if (!r.trace.seen_src.empty()) {
        out << fmt::format(", seen from {}", r.trace.seen_src);
    }
    if (!r.reply.empty()) {
        out << fmt::format(", reply {}", r.reply == "allow" ? "returns" : "lost");
    }
    out << "\n";
}

// What one probe came to, in a word for the tables: allow, deny, reject, or "allow, reply
// lost" when the connection is let through one way only.
std::string outcome(const offline::ProbeResult& r) {
    return r.trace.verdict == "allow" && r.reply == "deny" ? "allow, reply lost" : r.trace.verdict;
}

// The stage that decided a probe that did not get through: its last hop.
std::string why(const offline::ProbeResult& r) {
    if (r.trace.hops.empty()) {
        return "";
    }
    // A policy drop: the policy stage's own words name the pod and direction.
    const auto& hops = r.trace.hops;
    const auto& h = hops.size() >= 2 && hops.back().stage.ends_with("drop") &&
                            hops[hops.size() - 2].stage.ends_with("policy")
                        ? hops[hops.size() - 2]
                        : hops.back();
    return fmt::format("{} {}: {}", h.node, h.stage, h.detail);
}

// Every error of a manifest set, one a line.
void throw_errors(const std::vector<std::string>& errors) {
    if (!errors.empty()) {
        std::string all;
        for (const auto& e : errors) {
            all += (all.empty() ? "" : "\n") + e;
        }
        throw std::runtime_error(all);
    }
}

Model load_model(const std::vector<std::string>& files, Model model) {
    throw_errors(load_manifests(expand_manifest_paths(files), model));
    return model;
}

// `after_change`: a what-if's second run, where a probe whose source or destination the
// change deleted has the outcome "gone" instead of being an error.
std::vector<offline::ProbeResult> run_probes(const Model& model,
                                             const std::vector<offline::Probe>& probes,
                                             std::ostream& err,
                                             bool after_change = false) {
    offline::Cluster cluster(model);
    for (const auto& w : cluster.warnings()) {
        err << "kdpctl: warning: " << w << "\n";
    }
    std::vector<offline::ProbeResult> results;
    results.reserve(probes.size());
    for (size_t i = 0; i < probes.size(); ++i) {
        try {
            results.push_back(cluster.trace(probes[i]));
        } catch (const offline::OfflineError& e) {
            if (after_change) {
                offline::ProbeResult gone;
                gone.trace.verdict = "gone";
                gone.trace.hops.push_back({"cluster", "probe", e.what()});
                results.push_back(std::move(gone));
                continue;
            }
            throw offline::OfflineError(probes.size() == 1
                                            ? std::string(e.what())
                                            : fmt::format("probe {} ({} -> {}): {}", i + 1,
                                                          probes[i].from, probes[i].to, e.what()));
        }
    }
    return results;
}

// trace --manifests: the cluster the files describe, built in-process; one probe, a batch, or
// the batch's difference once --what-if files are applied on top.
int trace_offline(const Args& a, std::ostream& out, std::ostream& err) {
    const bool single = !a.from.empty() || !a.to.empty() || a.port != 0;
    if (single == !a.probes.empty()) {
        throw UsageError(
            "trace --manifests needs either --from, --to and --port, or --probes FILE");
    }
    std::vector<offline::Probe> probes;
    if (single) {
        if (a.from.empty() || a.to.empty() || a.port == 0) {
            throw UsageError("trace needs --from, --to and --port");
        }
        nlohmann::json j{{"from", a.from},
                         {"to", service_name_form(a.to)},
                         {"port", a.port},
                         {"protocol", a.proto}};
        if (!a.enters_at.empty()) {
            j["enters_at"] = a.enters_at;
        }
        probes.push_back(offline::parse_probe(j, ""));
    } else {
        if (!a.enters_at.empty()) {
            throw UsageError("--enters-at is a field of each probe in --probes");
        }
        probes = offline::read_probes(a.probes);
        for (auto& p : probes) {
            p.to = service_name_form(p.to);
        }
    }
    const Model before = load_model(a.manifests, Model{});
    const std::vector<offline::ProbeResult> now = run_probes(before, probes, err);

    const auto key_of = [](const offline::Probe& p) {
        return json{{"from", p.from},
                    {"to", p.to},
                    {"port", p.port},
                    {"protocol", p.proto == 6    ? "TCP"
                                 : p.proto == 17 ? "UDP"
                                                 : "SCTP"}};
    };
    if (a.what_if.empty() && a.what_if_delete.empty()) {
        if (single && a.format == Format::kTable) {
            print_trace_text(out, now[0]);
            return 0;
        }
        if (a.format == Format::kJson) {
            // One object per probe, one a line, in order (a single probe: indented).
            for (size_t i = 0; i < probes.size(); ++i) {
                const Json j = offline::result_json(probes[i], now[i]);
                out << (single ? j.dump(2) : j.dump()) << "\n";
            }
            return 0;
        }
        if (a.format == Format::kYaml) {
            Json all = Json::array();
            for (size_t i = 0; i < probes.size(); ++i) {
                all.push_back(offline::result_json(probes[i], now[i]));
            }
            out << render_yaml(single ? all[0] : all);
            return 0;
        }
        json rows = json::array();
        size_t allowed = 0;
        for (size_t i = 0; i < probes.size(); ++i) {
            json row = key_of(probes[i]);
            row["verdict"] = outcome(now[i]);
            row["backend"] = now[i].trace.backend;
            row["seen_src"] = now[i].trace.seen_src;
            rows.push_back(std::move(row));
            allowed += now[i].trace.verdict == "allow" && now[i].reply != "deny" ? 1 : 0;
        }
        out << render_table(rows, {{"FROM", "from"},
                                   {"TO", "to"},
                                   {"PORT", "port"},
                                   {"PROTO", "protocol"},
                                   {"VERDICT", "verdict"},
                                   {"BACKEND", "backend"},
                                   {"SEEN-SRC", "seen_src"}});
        out << fmt::format("{} probes: {} connect, {} do not\n", probes.size(), allowed,
                           probes.size() - allowed);
        return 0;
    }

    // What-if: the same probes once the files are applied on top (and the objects of the
    // deletion files removed); the ones whose outcome changes.
    Model after = load_model(a.what_if, before);
    if (!a.what_if_delete.empty()) {
        throw_errors(delete_manifests(expand_manifest_paths(a.what_if_delete), after));
    }
    const std::vector<offline::ProbeResult> then = run_probes(after, probes, err, true);
    size_t broken = 0, opened = 0, moved = 0;
    json rows = json::array();
    Json lines = Json::array();
    for (size_t i = 0; i < probes.size(); ++i) {
        const std::string o_now = outcome(now[i]), o_then = outcome(then[i]);
        const bool backend_changed = now[i].trace.backend != then[i].trace.backend ||
                                     now[i].trace.seen_src != then[i].trace.seen_src;
        if (o_now == o_then && !backend_changed) {
            continue;
        }
        const bool ok_now = o_now == "allow", ok_then = o_then == "allow";
        const std::string change = ok_now && !ok_then   ? "broken"
                                   : !ok_now && ok_then ? "opened"
                                                        : "changed";
        (change == "broken" ? broken : change == "opened" ? opened : moved)++;
        json row = key_of(probes[i]);
        row["change"] = change;
        row["now"] = o_now;
        row["then"] = o_then;
        row["why"] = change == "broken" ? why(then[i]) : "";
        rows.push_back(std::move(row));
        Json j = offline::result_json(probes[i], then[i]);
        Json was;
        was["verdict"] = now[i].trace.verdict;
        was["backend"] = now[i].trace.backend.empty() ? Json(nullptr) : Json(now[i].trace.backend);
        was["seen_src"] = now[i].trace.seen_src;
        was["reply"] = now[i].reply.empty() ? Json(nullptr) : Json(now[i].reply);
        j["change"] = change;
        j["before"] = std::move(was);
        lines.push_back(std::move(j));
    }
    if (a.format == Format::kJson) {
        for (const auto& j : lines) {
            out << j.dump() << "\n";
        }
        return 0;
    }
    if (a.format == Format::kYaml) {
        out << render_yaml(lines);
        return 0;
    }
    if (!rows.empty()) {
        out << render_table(rows, {{"CHANGE", "change"},
                                   {"FROM", "from"},
                                   {"TO", "to"},
                                   {"PORT", "port"},
                                   {"PROTO", "protocol"},
                                   {"NOW", "now"},
                                   {"THEN", "then"},
                                   {"WHY", "why"}});
    }
    out << fmt::format(
        "{} probes: {} would be broken, {} opened, {} changed otherwise, {} as now\n",
        probes.size(), broken, opened, moved, probes.size() - broken - opened - moved);
    return 0;
}

// port add NAME ... / port remove NAME: a pod port created or destroyed at run time, as the CNI
// plugin does for a pod.
int port(DataplaneClient& client, const Args& a, std::ostream& out) {
    if (a.positional.size() != 3 || (a.positional[1] != "add" && a.positional[1] != "remove")) {
        throw UsageError("port needs: add NAMESPACE/POD ... | remove NAMESPACE/POD");
    }
    const std::string& name = a.positional[2];
    if (a.positional[1] == "remove") {
        client.remove_port(name);
        out << fmt::format("port {} removed\n", name);
        return 0;
    }
    v1::AddPortRequest req;
    req.set_name(name);
    req.set_type(a.type == "tap" ? v1::PORT_TYPE_TAP : v1::PORT_TYPE_VHOSTUSER);
    req.set_iface(a.iface);
    req.set_socket_path(a.socket_path);
    req.set_pod_ip(a.ip);
    req.set_mtu(static_cast<uint32_t>(a.mtu));
    req.set_queues(static_cast<uint32_t>(a.queues));
    const v1::AddPortResponse r = client.add_port(req);
    const auto& p = r.port();
    if (a.format != Format::kTable) {
        const json j = port_json(p);
        out << (a.format == Format::kJson ? render_json(j) : render_yaml(j));
        return 0;
    }
    out << fmt::format("port {} added: id {}, {} {}, MAC {}\n", p.name(), p.port_id(), p.kind(),
                       p.devargs(), p.mac());
    return 0;
}

int events(DataplaneClient& client, const Args& a, std::ostream& out) {
    if (a.positional.size() != 1) {
        throw UsageError("events takes no arguments");
    }
    int seen = 0;
    client.watch_events([&](const v1::Event& e) {
        const char* kind = e.kind() == v1::Event::KIND_CURRENT          ? "current"
                           : e.kind() == v1::Event::KIND_TABLES_APPLIED ? "tables_applied"
                                                                        : "unknown";
        const json j{{"time", utc(e.unix_ns())}, {"kind", kind},     {"generation", e.generation()},
                     {"routes", e.routes()},     {"pods", e.pods()}, {"source", e.source()}};
        if (a.format == Format::kTable) {
            out << fmt::format("{}  {:<14}  generation={} routes={} pods={}{}\n", utc(e.unix_ns()),
                               kind, e.generation(), e.routes(), e.pods(),
                               e.source().empty() ? "" : " source=" + e.source());
        } else if (a.format == Format::kJson) {
            out << j.dump() << "\n";  // one object per line, for tools that read a stream
        } else {
            out << "---\n" << render_yaml(j);
        }
        out.flush();
        return a.count == 0 || ++seen < a.count;
    });
    return 0;
}

json counters_json(const v1::Counters& c) {
    json drops = json::object();
    for (const auto& d : c.drops()) {
        if (d.packets() != 0) {
            drops[d.reason()] = d.packets();
        }
    }
    return json{{"rx_packets", c.rx_packets()},
                {"rx_bytes", c.rx_bytes()},
                {"tx_packets", c.tx_packets()},
                {"tx_bytes", c.tx_bytes()},
                {"drops", drops}};
}

double mpps(uint64_t before, uint64_t after, double seconds) {
    if (seconds <= 0 || after < before) {
        return 0.0;
    }
    return static_cast<double>(after - before) / seconds / 1e6;
}

}  // namespace

std::string render_table(const json& rows, const std::vector<Column>& columns) {
    std::vector<std::vector<std::string>> cells;
    cells.emplace_back();
    for (const auto& c : columns) {
        cells.back().push_back(c.header);
    }
    for (const auto& row : rows) {
        cells.emplace_back();
        for (const auto& c : columns) {
            const auto it = row.find(c.key);
            cells.back().push_back(it == row.end() ? "-" : cell(*it));
        }
    }
    std::vector<size_t> width(columns.size(), 0);
    for (const auto& r : cells) {
        for (size_t i = 0; i < r.size(); ++i) {
            width[i] = std::max(width[i], r[i].size());
        }
    }
    std::string out;
    for (const auto& r : cells) {
        std::string line;
        for (size_t i = 0; i < r.size(); ++i) {
            line += r[i];
            if (i + 1 < r.size()) {
                line.append(width[i] - r[i].size() + 2, ' ');
            }
        }
        out += line + "\n";
    }
    return out;
}

std::string render_json(const json& j) {
    return j.dump(2) + "\n";
}

std::string render_yaml(const json& j) {
    YAML::Emitter e;
    emit_yaml(e, j);
    return std::string(e.c_str()) + "\n";
}

json stats_report(const v1::Stats& a, const v1::Stats& b, double wall_seconds) {
    double seconds = wall_seconds;
    if (a.taken_unix_ns() != 0 && b.taken_unix_ns() > a.taken_unix_ns()) {
        seconds = static_cast<double>(b.taken_unix_ns() - a.taken_unix_ns()) / 1e9;
    }
    json ports = json::array();
    for (const auto& p : b.ports()) {
        json j{{"name", p.name()}, {"port_id", p.port_id()}};
        j.update(counters_json(p.counters()));
        const auto prev = std::find_if(a.ports().begin(), a.ports().end(),
                                       [&](const auto& x) { return x.port_id() == p.port_id(); });
        const v1::Counters before = prev == a.ports().end() ? v1::Counters{} : prev->counters();
        j["rx_mpps"] = mpps(before.rx_packets(), p.counters().rx_packets(), seconds);
        j["tx_mpps"] = mpps(before.tx_packets(), p.counters().tx_packets(), seconds);
        ports.push_back(std::move(j));
    }
    json workers = json::array();
    for (const auto& w : b.workers()) {
        json j{{"worker", w.worker()}, {"lcore", w.lcore()}};
        j.update(counters_json(w.counters()));
        const auto prev = std::find_if(a.workers().begin(), a.workers().end(),
                                       [&](const auto& x) { return x.worker() == w.worker(); });
        const v1::WorkerStats before = prev == a.workers().end() ? v1::WorkerStats{} : *prev;
        j["rx_mpps"] = mpps(before.counters().rx_packets(), w.counters().rx_packets(), seconds);
        j["tx_mpps"] = mpps(before.counters().tx_packets(), w.counters().tx_packets(), seconds);
        uint64_t busy = w.busy_cycles() - before.busy_cycles();
        uint64_t total = w.total_cycles() - before.total_cycles();
        if (w.total_cycles() < before.total_cycles() || total == 0) {
            busy = w.busy_cycles();  // no progress over the sample: report since start
            total = w.total_cycles();
        }
        j["busy_pct"] = total == 0 ? 0.0 : 100.0 * static_cast<double>(busy) / total;
        // Cycles per received packet by phase, over the interval (since start if no packet
        // arrived in it); phases a dataplane does not report are left out.
        uint64_t packets = w.counters().rx_packets() - before.counters().rx_packets();
        bool since_start = packets == 0 || w.phases_size() != before.phases_size();
        if (since_start) {
            packets = w.counters().rx_packets();
        }
        if (packets != 0 && w.phases_size() != 0) {
            json per = json::object();
            double sum = 0;
            for (int i = 0; i < w.phases_size(); ++i) {
                uint64_t c = w.phases(i).cycles();
                if (!since_start && before.phases(i).phase() == w.phases(i).phase() &&
                    c >= before.phases(i).cycles()) {
                    c -= before.phases(i).cycles();
                }
                const double v = static_cast<double>(c) / static_cast<double>(packets);
                per[w.phases(i).phase()] = std::round(v * 10) / 10;
                sum += v;
            }
            per["total"] = std::round(sum * 10) / 10;
            j["cycles_per_packet"] = std::move(per);
        }
        workers.push_back(std::move(j));
    }
    return json{{"interval_s", seconds}, {"ports", ports}, {"workers", workers}};
}

namespace {

int status(DataplaneClient& client, const Args& a, std::ostream& out) {
    if (a.positional.size() != 1) {
        throw UsageError("status takes no arguments");
    }
    StatusOptions o = a.status;
    o.node = a.node.value_or("");
    o.interval_ms = a.interval_given ? a.interval_ms : 500;
    const Json r = status_report(client, o);
    if (a.format == Format::kTable) {
        out << render_status(r);
    } else {
        out << (a.format == Format::kJson ? render_json(r) : render_yaml(r));
    }
    return r["healthy"].get<bool>() ? 0 : 1;
}

}  // namespace

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
    Args a;
    try {
        a = parse_args(args);
        if (a.help) {
            out << kUsage;
            return 0;
        }
        if (a.version) {
            out << version_line("kdpctl") << "\n";
            return 0;
        }
        if (a.positional.empty()) {
            throw UsageError("no command given");
        }
        const std::string& cmd = a.positional[0];
        if (cmd != "get" && cmd != "stats" && cmd != "apply" && cmd != "info" && cmd != "events" &&
            cmd != "trace" && cmd != "port" && cmd != "status") {
            throw UsageError(fmt::format("unknown command \"{}\"", cmd));
        }
        if (cmd == "trace" && !a.manifests.empty()) {
            return trace_offline(a, out, err);  // no dataplane involved
        }
        if (!a.manifests.empty() || !a.what_if.empty() || !a.what_if_delete.empty() ||
            !a.probes.empty()) {
            throw UsageError("--manifests, --probes and --what-if are options of trace");
        }
        DataplaneClient client(a.socket);
        if (cmd == "get") {
            return get(client, a, out);
        }
        if (cmd == "stats") {
            return stats(client, a, out);
        }
        if (cmd == "info") {
            return info(client, a, out);
        }
        if (cmd == "status") {
            return status(client, a, out);
        }
        if (cmd == "events") {
            return events(client, a, out);
        }
        if (cmd == "trace") {
            return trace(client, a, out);
        }
        if (cmd == "port") {
            return port(client, a, out);
        }
        return apply(client, a, out, err);
    } catch (const UsageError& e) {
        err << "kdpctl: " << e.what() << " (see kdpctl --help)\n";
        return 2;
    } catch (const RpcError& e) {
        if (e.code() == grpc::StatusCode::UNAVAILABLE) {
            err << fmt::format("kdpctl: cannot reach the dataplane at {}: {}\n", a.socket,
                               e.what());
        } else {
            err << "kdpctl: " << e.what() << "\n";
        }
        return 1;
    } catch (const std::exception& e) {
        err << "kdpctl: " << e.what() << "\n";
        return 1;
    }
}

}  // namespace kdp::control::kdpctl
