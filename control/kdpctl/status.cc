#include "kdpctl/status.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "common/version.h"

namespace kdp::control::kdpctl {
namespace {

using json = Json;
namespace fs = std::filesystem;

constexpr int kTimeoutMs = 2000;

// A file descriptor closed on scope exit.
struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) {
            ::close(fd);
        }
    }
};

// Reads `fd` until EOF or `deadline`; false on timeout or error.
bool read_all(int fd, std::string& out, std::chrono::steady_clock::time_point deadline) {
    char buf[4096];
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                              deadline - std::chrono::steady_clock::now())
                              .count();
        pollfd p{fd, POLLIN, 0};
        if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) {
            return false;
        }
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            return false;
        }
        if (n == 0) {
            return true;
        }
        out.append(buf, static_cast<size_t>(n));
    }
}

// The samples of a Prometheus text page, "name{labels}" -> value.
std::map<std::string, double> parse_metrics(const std::string& page) {
    std::map<std::string, double> m;
    std::istringstream in(page);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') {
            continue;
        }
        const size_t sp = line.rfind(' ');
        if (sp == std::string::npos) {
            continue;
        }
        try {
            m[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
        } catch (const std::exception&) {
        }
    }
    return m;
}

std::string ago(double seconds) {
    if (seconds < 0) {
        return "in the future";
    }
    if (seconds < 120) {
        return fmt::format("{:.0f}s ago", seconds);
    }
    if (seconds < 7200) {
        return fmt::format("{:.0f}m ago", seconds / 60);
    }
    return fmt::format("{:.1f}h ago", seconds / 3600);
}

double now_unix() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Runs `argv` with `env` only, `input` on its standard input; its exit status (-1: could not
// run or timed out) and standard output.
std::pair<int, std::string> run_program(const std::vector<std::string>& argv,
                                        const std::vector<std::string>& env,
                                        const std::string& input) {
    int in[2], out[2];
    if (::pipe(in) != 0) {
        return {-1, std::strerror(errno)};
    }
    if (::pipe(out) != 0) {
        ::close(in[0]);
        ::close(in[1]);
        return {-1, std::strerror(errno)};
    }
    std::vector<char*> av, ev;
    for (const auto& s : argv) {
        av.push_back(const_cast<char*>(s.c_str()));
    }
    av.push_back(nullptr);
    for (const auto& s : env) {
        ev.push_back(const_cast<char*>(s.c_str()));
    }
    ev.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(in[0], 0);
        ::dup2(out[1], 1);
        ::close(in[0]);
        ::close(in[1]);
        ::close(out[0]);
        ::close(out[1]);
        ::execve(av[0], av.data(), ev.data());
        ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    Fd rd{out[0]};
    if (pid < 0) {
        ::close(in[1]);
        return {-1, std::strerror(errno)};
    }
    // The configuration is small (well under a pipe's 64 KiB): it never blocks.
    [[maybe_unused]] const ssize_t w = ::write(in[1], input.data(), input.size());
    ::close(in[1]);
    std::string output;
    const bool done = read_all(
        rd.fd, output, std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs));
    if (!done) {
        ::kill(pid, SIGKILL);
    }
    int st = 0;
    ::waitpid(pid, &st, 0);
    return {done && WIFEXITED(st) ? WEXITSTATUS(st) : -1, output};
}

// The conflist a runtime would load: libcni takes the first file by name (.conf, .conflist,
// .json) in the directory. Its path and contents, or nothing.
std::optional<std::pair<std::string, json>> first_network(const std::string& dir) {
    std::vector<fs::path> files;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const auto ext = e.path().extension();
        if (e.is_regular_file(ec) && (ext == ".conf" || ext == ".conflist" || ext == ".json")) {
            files.push_back(e.path());
        }
    }
    if (files.empty()) {
        return std::nullopt;
    }
    std::sort(files.begin(), files.end());
    std::ifstream in(files.front());
    std::stringstream text;
    text << in.rdbuf();
    return std::make_pair(files.front().string(), json::parse(text.str(), nullptr, false));
}

json dataplane_section(DataplaneClient& client, const StatusOptions& o, json& problems) {
    json d{{"socket", client.socket_path()}};
    try {
        const auto i = client.node_info();
        d["reachable"] = true;
        d["node"] = i.node_name();
        d["node_ip"] = i.node_ip();
        d["pod_cidr"] = i.pod_cidr();
        d["version"] = i.version();
        d["api_revision"] = i.api_revision();
        d["generation"] = i.generation();
        d["workers"] = i.workers();
        d["started_unix"] = static_cast<double>(i.started_unix_ns()) / 1e9;
        if (!speaks_api_revision(i.api_revision())) {
            problems.push_back(
                fmt::format("the dataplane speaks kdp.v1 API revision {}, this kdpctl revision {}",
                            i.api_revision(), kApiRevision));
        }
        if (!o.node.empty() && i.node_name() != o.node) {
            problems.push_back(fmt::format("the dataplane at {} serves node {}, not {}",
                                           client.socket_path(), i.node_name(), o.node));
        }
    } catch (const std::exception& e) {
        d["reachable"] = false;
        d["error"] = e.what();
        problems.push_back(fmt::format("dataplane at {}: {}", client.socket_path(), e.what()));
    }
    return d;
}

json ports_section(DataplaneClient& client, json& problems) {
    json p{{"up", 0}, {"down", 0}, {"down_names", json::array()}};
    const auto ports = client.list_ports();
    for (const auto& port : ports.ports()) {
        if (port.link_up()) {
            p["up"] = p["up"].get<int>() + 1;
        } else {
            p["down"] = p["down"].get<int>() + 1;
            p["down_names"].push_back(port.name());
            if (port.kind() == "uplink") {
                problems.push_back("the uplink's link is down");
            }
        }
    }
    return p;
}

json traffic_section(DataplaneClient& client, int interval_ms) {
    const auto t0 = std::chrono::steady_clock::now();
    const v1::Stats a = client.stats();
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
    const v1::Stats b = client.stats();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (a.taken_unix_ns() != 0 && b.taken_unix_ns() > a.taken_unix_ns()) {
        secs = static_cast<double>(b.taken_unix_ns() - a.taken_unix_ns()) / 1e9;
    }
    auto sum = [](const v1::Stats& s, std::map<std::string, uint64_t>* by_reason) {
        uint64_t rx = 0, drops = 0;
        for (const auto& w : s.workers()) {
            rx += w.counters().rx_packets();
            for (const auto& d : w.counters().drops()) {
                drops += d.packets();
                if (by_reason != nullptr) {
                    (*by_reason)[d.reason()] += d.packets();
                }
            }
        }
        return std::make_pair(rx, drops);
    };
    std::map<std::string, uint64_t> ra, rb;
    const auto [rx_a, drops_a] = sum(a, &ra);
    const auto [rx_b, drops_b] = sum(b, &rb);
    const double rx_rate = static_cast<double>(rx_b - rx_a) / secs;
    const double drop_rate = static_cast<double>(drops_b - drops_a) / secs;
    std::vector<std::pair<uint64_t, std::string>> grew;
    for (const auto& [reason, n] : rb) {
        const uint64_t before = ra.count(reason) != 0 ? ra[reason] : 0;
        if (n > before) {
            grew.emplace_back(n - before, reason);
        }
    }
    std::sort(grew.rbegin(), grew.rend());
    json reasons = json::array();
    for (size_t i = 0; i < grew.size() && i < 3; ++i) {
        reasons.push_back(json{{"reason", grew[i].second},
                               {"per_second", std::round(grew[i].first / secs * 10) / 10}});
    }
    return json{{"interval_s", std::round(secs * 1000) / 1000},
                {"rx_packets_per_second", std::round(rx_rate * 10) / 10},
                {"drops_per_second", std::round(drop_rate * 10) / 10},
                {"drops_total", drops_b},
                {"top_drop_reasons", reasons}};
}

json control_section(const StatusOptions& o, json& problems) {
    json c{{"address", o.control_address}};
    const auto [code, body] = http_get(o.control_address, "/readyz");
    if (code == 0) {
        c["reachable"] = false;
        c["error"] = body;
        problems.push_back(fmt::format("kdp-control at {}: {}", o.control_address, body));
        return c;
    }
    c["reachable"] = true;
    c["ready"] = code == 200;
    json checks = json::array();
    std::istringstream in(body);
    std::string line;
    while (std::getline(in, line)) {
        if (line.size() > 3 && line[0] == '[' && line[2] == ']') {
            checks.push_back(line);
            if (line[1] == '-') {
                problems.push_back("kdp-control not ready: " + line.substr(3));
            }
        }
    }
    c["checks"] = checks;
    const auto [mcode, page] = http_get(o.control_address, "/metrics");
    if (mcode != 200) {
        return c;
    }
    const auto m = parse_metrics(page);
    auto get = [&m](const std::string& k) -> std::optional<double> {
        const auto it = m.find(k);
        return it == m.end() ? std::nullopt : std::optional<double>(it->second);
    };
    if (const auto v = get("kdp_api_lists_complete")) {
        c["api_lists_complete"] = *v == 1;
    }
    if (const auto v = get("kubeproxy_sync_proxy_rules_last_timestamp_seconds"); v && *v > 0) {
        c["last_sync_unix"] = *v;
        c["last_sync_ago_s"] = std::round(now_unix() - *v);
    }
    if (const auto v = get("kdp_table_generation")) {
        c["generation"] = static_cast<uint64_t>(*v);
    }
    static const std::regex build(R"re(^kdp_build_info\{.*version="([^"]*)".*\}$)re");
    for (const auto& [k, v] : m) {
        std::smatch s;
        if (k.find("component=\"kdp-control\"") != std::string::npos &&
            std::regex_match(k, s, build)) {
            c["version"] = s[1].str();
        }
    }
    return c;
}

json cni_section(const StatusOptions& o, json& problems) {
    json c{{"conf_dir", o.cni_conf_dir}, {"bin_dir", o.cni_bin_dir}};
    const auto net = first_network(o.cni_conf_dir);
    const std::string bin = (fs::path(o.cni_bin_dir) / "kdp-cni").string();
    if (::access(bin.c_str(), X_OK) == 0) {
        const auto [rc, v] = run_program({bin, "--version"}, {}, "");
        c["plugin"] = bin;
        // "kdp-cni VERSION, kdp.v1 API revision N" (common/version.h version_line).
        static const std::regex line(R"(^kdp-cni (.*), kdp\.v1 API revision (\d+)\n?$)");
        std::smatch m;
        if (rc == 0 && std::regex_match(v, m, line)) {
            c["version"] = m[1].str();
            c["api_revision"] = std::stoul(m[2].str());
            if (!speaks_api_revision(c["api_revision"].get<uint32_t>())) {
                problems.push_back(fmt::format("kdp-cni in {} speaks kdp.v1 API revision {}",
                                               o.cni_bin_dir, m[2].str()));
            }
        } else {
            problems.push_back(fmt::format("{} --version: exit {}", bin, rc));
        }
    } else {
        problems.push_back(fmt::format("kdp-cni is not installed in {}", o.cni_bin_dir));
    }
    if (!net) {
        c["conflist"] = nullptr;
        problems.push_back(
            fmt::format("no CNI network in {}: the node's network is not ready", o.cni_conf_dir));
        return c;
    }
    c["conflist"] = net->first;
    const json& conf = net->second;
    json plugin;
    if (conf.is_object()) {
        c["cni_version"] = conf.value("cniVersion", "");
        c["network"] = conf.value("name", "");
        if (conf.contains("plugins") && conf["plugins"].is_array()) {
            for (const auto& p : conf["plugins"]) {
                if (p.is_object() && p.value("type", "") == "kdp-cni") {
                    plugin = p;
                }
            }
        } else if (conf.value("type", "") == "kdp-cni") {
            plugin = conf;
        }
    }
    if (plugin.is_null()) {
        c["kdp"] = false;
        problems.push_back(
            fmt::format("the runtime's CNI network is {}, which is not kdp's", net->first));
        return c;
    }
    c["kdp"] = true;
    if (!c.contains("plugin")) {
        return c;
    }
    // STATUS as a runtime sends it (CNI 1.1): the plugin's configuration with the network's
    // name and version; asked as 1.1.0 whatever the file says, to learn whether an ADD would work.
    plugin["name"] = conf.value("name", "");
    plugin["cniVersion"] = "1.1.0";
    const auto [rc, answer] =
        run_program({bin}, {"CNI_COMMAND=STATUS", "CNI_PATH=" + o.cni_bin_dir}, plugin.dump());
    c["status"] = rc == 0 ? "ready" : "not ready";
    if (rc != 0) {
        const json err = json::parse(answer, nullptr, false);
        const std::string msg =
            err.is_object() ? fmt::format("code {}: {}", err.value("code", 0), err.value("msg", ""))
                            : fmt::format("exit {}", rc);
        c["error"] = msg;
        problems.push_back("CNI STATUS: " + msg);
    }
    return c;
}

}  // namespace

std::pair<int, std::string> http_get(const std::string& address, const std::string& path) {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) {
        return {0, fmt::format("\"{}\" is not HOST:PORT", address)};
    }
    std::string host = address.substr(0, colon);
    if (host.size() > 1 && host.front() == '[') {
        host = host.substr(1, host.size() - 2);
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (const int e = ::getaddrinfo(host.c_str(), address.substr(colon + 1).c_str(), &hints, &res);
        e != 0) {
        return {0, ::gai_strerror(e)};
    }
    const std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(res, &::freeaddrinfo);
    Fd s{::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    const timeval tv{kTimeoutMs / 1000, 0};
    ::setsockopt(s.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (s.fd < 0 || ::connect(s.fd, res->ai_addr, res->ai_addrlen) != 0) {
        return {0, fmt::format("connect: {}", std::strerror(errno))};
    }
    const std::string req =
        fmt::format("GET {} HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n", path, address);
    if (::send(s.fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
        return {0, fmt::format("send: {}", std::strerror(errno))};
    }
    std::string resp;
    if (!read_all(s.fd, resp,
                  std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs))) {
        return {0, "no complete answer within 2 s"};
    }
    int code = 0;
    if (std::sscanf(resp.c_str(), "HTTP/%*s %d", &code) != 1) {
        return {0, "not an HTTP answer"};
    }
    const size_t body = resp.find("\r\n\r\n");
    return {code, body == std::string::npos ? "" : resp.substr(body + 4)};
}

Json status_report(DataplaneClient& client, const StatusOptions& o) {
    json problems = json::array();
    json r;
    r["dataplane"] = dataplane_section(client, o, problems);
    const bool dp = r["dataplane"]["reachable"].get<bool>();
    if (dp) {
        try {
            r["ports"] = ports_section(client, problems);
            const auto pol = client.get_policy();
            r["policy"] = json{{"synced", pol.synced()}, {"generation", pol.generation()}};
            if (!pol.synced()) {
                problems.push_back("policy not synced: no control plane has sent the tables");
            }
            r["traffic"] = traffic_section(client, o.interval_ms);
        } catch (const std::exception& e) {
            problems.push_back(fmt::format("dataplane: {}", e.what()));
        }
    }
    r["control"] = control_section(o, problems);
    r["cni"] = cni_section(o, problems);
    json versions{{"kdpctl", version()}, {"api_revision", kApiRevision}};
    if (dp) {
        versions["dataplane"] = r["dataplane"]["version"];
        versions["dataplane_api_revision"] = r["dataplane"]["api_revision"];
    }
    if (r["control"].contains("version")) {
        versions["kdp-control"] = r["control"]["version"];
    }
    if (r["cni"].contains("version")) {
        versions["kdp-cni"] = r["cni"]["version"];
    }
    r["versions"] = versions;
    json out{{"healthy", problems.empty()}, {"problems", problems}};
    for (auto& [k, v] : r.items()) {
        out[k] = v;
    }
    return out;
}

std::string render_status(const Json& r) {
    std::string s;
    auto line = [&s](const std::string& label, const std::string& text) {
        s += fmt::format("{:<15}{}\n", label + ":", text);
    };
    auto str = [](const json& j, const char* k) {
        return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string("-");
    };
    const json& d = r["dataplane"];
    if (d.value("reachable", false)) {
        line("Node", fmt::format("{} ({}, pod CIDR {})", str(d, "node"), str(d, "node_ip"),
                                 str(d, "pod_cidr")));
        line("Dataplane",
             fmt::format("OK   {}, {} worker(s), started {}, generation {}", str(d, "socket"),
                         d.value("workers", 0), ago(now_unix() - d.value("started_unix", 0.0)),
                         d.value("generation", uint64_t{0})));
    } else {
        line("Dataplane", fmt::format("DOWN {}: {}", str(d, "socket"), str(d, "error")));
    }
    if (r.contains("ports")) {
        const json& p = r["ports"];
        std::string down;
        for (const auto& n : p["down_names"]) {
            down += (down.empty() ? " (down: " : ", ") + n.get<std::string>();
        }
        line("Ports", fmt::format("{} up, {} down{}", p["up"].get<int>(), p["down"].get<int>(),
                                  down.empty() ? "" : down + ")"));
    }
    if (r.contains("policy")) {
        line("Policy",
             r["policy"]["synced"].get<bool>()
                 ? fmt::format("synced, generation {}", r["policy"]["generation"].get<uint64_t>())
                 : "NOT SYNCED (pod traffic waits for the control plane)");
    }
    if (r.contains("traffic")) {
        const json& t = r["traffic"];
        std::string reasons;
        for (const auto& x : t["top_drop_reasons"]) {
            reasons += fmt::format("{}{} {}/s", reasons.empty() ? "; " : ", ",
                                   x["reason"].get<std::string>(), x["per_second"].get<double>());
        }
        line("Traffic", fmt::format("{} pkt/s received, {} drops/s over {} s{}",
                                    t["rx_packets_per_second"].get<double>(),
                                    t["drops_per_second"].get<double>(),
                                    t["interval_s"].get<double>(), reasons));
    }
    const json& c = r["control"];
    if (!c.value("reachable", false)) {
        line("kdp-control", fmt::format("DOWN {}: {}", str(c, "address"), str(c, "error")));
    } else {
        std::string checks;
        for (const auto& x : c["checks"]) {
            checks += (checks.empty() ? "" : ", ") + x.get<std::string>();
        }
        line("kdp-control", fmt::format("{} {}: {}", c.value("ready", false) ? "OK  " : "NOT READY",
                                        str(c, "address"), checks));
        if (c.contains("api_lists_complete")) {
            line("  API lists", c["api_lists_complete"].get<bool>() ? "complete" : "NOT COMPLETE");
        }
        if (c.contains("last_sync_unix")) {
            line("  Last sync",
                 fmt::format("{}, generation {}", ago(c["last_sync_ago_s"].get<double>()),
                             c.value("generation", uint64_t{0})));
        }
    }
    const json& n = r["cni"];
    if (n["conflist"].is_null()) {
        line("CNI", fmt::format("NO NETWORK in {}", str(n, "conf_dir")));
    } else {
        line("CNI", fmt::format("{}{} (cniVersion {}){}", n.value("kdp", false) ? "" : "NOT KDP: ",
                                str(n, "conflist"), str(n, "cni_version"),
                                n.contains("status")
                                    ? ", STATUS " + str(n, "status") +
                                          (n.contains("error") ? " (" + str(n, "error") + ")" : "")
                                    : ""));
    }
    const json& v = r["versions"];
    std::string vs;
    for (const char* k : {"dataplane", "kdp-control", "kdp-cni"}) {
        if (v.contains(k)) {
            vs += fmt::format("{}{} {}", vs.empty() ? "" : "; ", k, v[k].get<std::string>());
        }
    }
    line("Versions", fmt::format("kdpctl {}, kdp.v1 API revision {}{}{}", str(v, "kdpctl"),
                                 v["api_revision"].get<uint32_t>(), vs.empty() ? "" : "; ", vs));
    line("Status", r["healthy"].get<bool>() ? "HEALTHY" : "NOT HEALTHY");
    for (const auto& p : r["problems"]) {
        s += "  - " + p.get<std::string>() + "\n";
    }
    return s;
}

}  // namespace kdp::control::kdpctl
