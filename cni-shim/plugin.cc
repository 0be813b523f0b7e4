#include "plugin.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "common/netlink.h"
#include "ipam.h"
#include "pod_info.h"
#include "push/dataplane_client.h"

namespace kdp::cni {

namespace {

using nlohmann::json;

constexpr const char* kVersion = "1.1.0";
constexpr const char* kDefaultSocket = "/run/kdp/dataplane.sock";
constexpr const char* kDefaultDataDir = "/var/lib/kdp/ipam";
constexpr std::array<const char*, 5> kSupported = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};

// CNI error codes (SPEC.md "Error" section).
enum Code : int {
    kIncompatibleVersion = 1,
    kUnsupportedField = 2,
    kUnknownContainer = 3,
    kInvalidEnv = 4,
    kIoFailure = 5,
    kDecodeFailure = 6,
    kInvalidConfig = 7,
    kTryAgainLater = 11,
    kNotAvailable = 50,  // STATUS: the plugin cannot serve ADDs now
    // Ours (100 and up are the plugin's): 100 the pod CIDR is exhausted, 101 the requested
    // address (CNI_ARGS IP=, runtimeConfig ips) cannot be given.
    kAddressUnavailable = 101,
};

struct CniError : std::runtime_error {
    CniError(int c, const std::string& msg, std::string d = {})
        : std::runtime_error(msg), code(c), details(std::move(d)) {}
    int code;
    std::string details;
};

struct Config {
    std::string cni_version;
    std::string name;
    std::string socket = kDefaultSocket;
    std::string data_dir = kDefaultDataDir;
    uint32_t mtu = 0;
    std::string port_type = "tap";
    std::string vhost_dir = "/var/run/kdp/vhost";
    uint32_t vhost_queues = 1;  // queue pairs of a vhost-user port
    std::string kubeconfig;     // kubernetes.kubeconfig: per-pod annotations are read with it
    json ipam;                  // may be null
    json raw;
};

Config parse_config(const std::string& text) {
    Config c;
    try {
        c.raw = json::parse(text);
    } catch (const json::exception& e) {
        throw CniError(kDecodeFailure, "the network configuration on stdin is not JSON", e.what());
    }
    if (!c.raw.is_object()) {
        throw CniError(kDecodeFailure, "the network configuration is not a JSON object");
    }
    const auto str = [&](const char* key, std::string& out, bool required) {
        const auto it = c.raw.find(key);
        if (it == c.raw.end()) {
            if (required) {
                throw CniError(kInvalidConfig,
                               fmt::format("network configuration: {} is missing", key));
            }
            return;
        }
        if (!it->is_string()) {
            throw CniError(kInvalidConfig,
                           fmt::format("network configuration: {} must be a string", key));
        }
        out = it->get<std::string>();
    };
    str("cniVersion", c.cni_version, true);
    str("name", c.name, true);
    str("dataplane_socket", c.socket, false);
    str("data_dir", c.data_dir, false);
    str("port_type", c.port_type, false);
    str("vhost_dir", c.vhost_dir, false);
    if (c.port_type != "tap" && c.port_type != "vhostuser") {
        throw CniError(kInvalidConfig, fmt::format("network configuration: port_type \"{}\" is "
                                                   "not tap or vhostuser",
                                                   c.port_type));
    }
    if (c.vhost_dir.empty() || c.vhost_dir[0] != '/') {
        throw CniError(
            kInvalidConfig,
            fmt::format("network configuration: vhost_dir \"{}\" is not absolute", c.vhost_dir));
    }
    if (const auto it = c.raw.find("mtu"); it != c.raw.end()) {
        if (!it->is_number_unsigned() || it->get<uint64_t>() < 576 || it->get<uint64_t>() > 9000) {
            throw CniError(kInvalidConfig,
                           "network configuration: mtu must be a number in 576..9000");
        }
        c.mtu = it->get<uint32_t>();
    }
    if (const auto it = c.raw.find("vhost_queues"); it != c.raw.end()) {
        if (!it->is_number_unsigned() || it->get<uint64_t>() < 1 || it->get<uint64_t>() > 64) {
            throw CniError(kInvalidConfig,
                           "network configuration: vhost_queues must be a number in 1..64");
        }
        c.vhost_queues = it->get<uint32_t>();
    }
    if (const auto it = c.raw.find("kubernetes"); it != c.raw.end()) {
        if (!it->is_object() || (it->contains("kubeconfig") && !(*it)["kubeconfig"].is_string())) {
            throw CniError(kInvalidConfig,
                           "network configuration: kubernetes must be {\"kubeconfig\": PATH}");
        }
        c.kubeconfig = it->value("kubeconfig", "");
    }
    if (const auto it = c.raw.find("ipam"); it != c.raw.end() && !it->is_null()) {
        if (!it->is_object()) {
            throw CniError(kInvalidConfig, "network configuration: ipam must be an object");
        }
        c.ipam = *it;
    }
    if (c.name.empty() || c.name.find('/') != std::string::npos) {
        throw CniError(
            kInvalidConfig,
            fmt::format("network configuration: name \"{}\" is not a network name", c.name));
    }
    if (std::find(std::begin(kSupported), std::end(kSupported), c.cni_version) ==
        std::end(kSupported)) {
        throw CniError(kIncompatibleVersion,
                       fmt::format("cniVersion {} is not supported ({})", c.cni_version,
                                   fmt::join(kSupported, ", ")));
    }
    return c;
}

std::string env_or(const Env& env, const char* key, bool required) {
    const auto it = env.find(key);
    if (it == env.end() || it->second.empty()) {
        if (required) {
            throw CniError(kInvalidEnv, fmt::format("{} is not set", key));
        }
        return {};
    }
    return it->second;
}

// CNI_ARGS "K=V;K=V": the pod's namespace and name, as the kubelet passes them.
std::map<std::string, std::string> cni_args(const std::string& s) {
    std::map<std::string, std::string> out;
    size_t at = 0;
    while (at <= s.size()) {
        const size_t end = s.find(';', at);
        const std::string kv =
            s.substr(at, end == std::string::npos ? std::string::npos : end - at);
        if (const size_t eq = kv.find('='); eq != std::string::npos) {
            out[kv.substr(0, eq)] = kv.substr(eq + 1);
        }
        if (end == std::string::npos) {
            break;
        }
        at = end + 1;
    }
    return out;
}

struct Invocation {
    std::string command, container_id, netns, ifname, pod;
    std::optional<Ip4> want;  // a requested address
    Config cfg;
    Env env;
};

// The address the runtime asks for, if any: CNI_ARGS IP= (as host-local reads it) or the first
// of runtimeConfig.ips (the "ips" capability).
std::optional<Ip4> requested_ip(const Env& env, const Config& cfg) {
    std::string want;
    const auto args = cni_args(env_or(env, "CNI_ARGS", false));
    if (const auto it = args.find("IP"); it != args.end()) {
        want = it->second;
    } else if (const auto rc = cfg.raw.find("runtimeConfig");
               rc != cfg.raw.end() && rc->is_object() && rc->contains("ips")) {
        const json& ips = (*rc)["ips"];
        if (!ips.is_array() || ips.empty() || !ips[0].is_string()) {
            throw CniError(kInvalidConfig, "runtimeConfig.ips must be a list of addresses");
        }
        want = ips[0].get<std::string>();
    }
    if (want.empty()) {
        return std::nullopt;
    }
    const auto ip = Ip4::parse(want.substr(0, want.find('/')));
    if (!ip) {
        throw CniError(kInvalidEnv,
                       fmt::format("requested address \"{}\" is not an IPv4 address", want));
    }
    return ip;
}

// The pod's port name: "namespace/pod" from CNI_ARGS, else "cni/<container id>".
std::string pod_name(const Env& env, const std::string& container_id) {
    const auto args = cni_args(env_or(env, "CNI_ARGS", false));
    const auto ns = args.find("K8S_POD_NAMESPACE");
    const auto name = args.find("K8S_POD_NAME");
    if (ns != args.end() && name != args.end() && !ns->second.empty() && !name->second.empty()) {
        return ns->second + "/" + name->second;
    }
    return "cni/" + container_id.substr(0, 32);
}

// The TAP's name in the node's namespace until it moves: unique per container, <= 15.
std::string tap_name(const std::string& container_id) {
    return "kdp" + container_id.substr(0, 11);
}

[[noreturn]] void rpc_failed(const control::RpcError& e, const char* what) {
    if (e.code() == grpc::StatusCode::UNAVAILABLE) {
        throw CniError(
            kTryAgainLater,
            fmt::format("the kdp dataplane is not reachable; try again later ({})", what),
            e.what());
    }
    throw CniError(kIoFailure, fmt::format("{}: {}", what, e.what()));
}

constexpr const char* kPortTypeAnnotation = "kdp.io/port-type";
constexpr const char* kVhostQueuesAnnotation = "kdp.io/vhost-queues";

// The pod's own choices, when the network configuration names a kubeconfig and the runtime
// named the pod: its annotations kdp.io/port-type ("tap" | "vhostuser") and
// kdp.io/vhost-queues (1..64) override the network's port_type and vhost_queues.
void pod_port_options(Invocation& in) {
    if (in.cfg.kubeconfig.empty()) {
        return;
    }
    const auto args = cni_args(env_or(in.env, "CNI_ARGS", false));
    const auto ns = args.find("K8S_POD_NAMESPACE");
    const auto name = args.find("K8S_POD_NAME");
    if (ns == args.end() || name == args.end() || ns->second.empty() || name->second.empty()) {
        return;  // not a Kubernetes pod: nothing to look up
    }
    std::map<std::string, std::string> annotations;
    try {
        annotations =
            pod_annotations(in.cfg.kubeconfig, ns->second, name->second, std::chrono::seconds(5));
    } catch (const PodLookupError& e) {
        using K = PodLookupError::Kind;
        switch (e.kind()) {
            case K::kUnreachable:
                throw CniError(kTryAgainLater,
                               "the Kubernetes API server does not answer; try again later",
                               e.what());
            case K::kNotFound:
                throw CniError(
                    kUnknownContainer,
                    fmt::format("pod {}/{} is not in the Kubernetes API", ns->second, name->second),
                    e.what());
            case K::kConfig:
                throw CniError(kInvalidConfig, e.what());
            case K::kRefused:
                break;
        }
        throw CniError(kIoFailure, e.what());
    }
    if (const auto it = annotations.find(kPortTypeAnnotation); it != annotations.end()) {
        if (it->second != "tap" && it->second != "vhostuser") {
            throw CniError(kInvalidConfig,
                           fmt::format("pod {}/{}: annotation {}: \"{}\" is not tap or vhostuser",
                                       ns->second, name->second, kPortTypeAnnotation, it->second));
        }
        in.cfg.port_type = it->second;
    }
    if (const auto it = annotations.find(kVhostQueuesAnnotation); it != annotations.end()) {
        const std::string& v = it->second;
        uint32_t n = 0;
        const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec != std::errc{} || end != v.data() + v.size() || n < 1 || n > 64) {
            throw CniError(kInvalidConfig,
                           fmt::format("pod {}/{}: annotation {}: \"{}\" is not a number in 1..64",
                                       ns->second, name->second, kVhostQueuesAnnotation, v));
        }
        in.cfg.vhost_queues = n;
    }
}

struct NodeFacts {
    Prefix4 pod_cidr;
    Ip4 gateway;
    uint32_t mtu = 0;
};

NodeFacts node_facts(control::DataplaneClient& dp) {
    try {
        const auto info = dp.node_info();
        control::check_api_revision(info, dp.socket_path(), "kdp-cni");
        NodeFacts f;
        const auto cidr = Prefix4::parse(info.pod_cidr());
        const auto gw = Ip4::parse(info.gateway_ip());
        if (!cidr || !gw) {
            throw CniError(kIoFailure, "the dataplane reported no pod CIDR or gateway");
        }
        f.pod_cidr = *cidr;
        f.gateway = *gw;
        f.mtu = info.pod_mtu();
        return f;
    } catch (const control::RpcError& e) {
        rpc_failed(e, "asking the dataplane for the node's pod network");
    } catch (const control::ApiRevisionError& e) {
        throw CniError(kIoFailure, e.what());
    }
}

std::string ipam_dir(const Config& c) {
    return c.data_dir + "/" + c.name;
}

// What kdp-cni attached, one file per (container id, interface) under
// <data_dir>/<network>/attachments: the pod's port name, address and port type. GC reads them
// to find what the runtime no longer knows about.
struct Attachment {
    std::string container_id, ifname, pod, port_type;
    std::string ip;
    std::string vhost_dir;  // vhost_dir at ADD time
};

std::string attachments_dir(const Config& c) {
    return ipam_dir(c) + "/attachments";
}

std::string attachment_file(const Config& c, const std::string& id, const std::string& ifname) {
    return attachments_dir(c) + "/" + id + "." + ifname;
}

void record_attachment(const Invocation& in, Ip4 ip) {
    std::filesystem::create_directories(attachments_dir(in.cfg));
    const std::string path = attachment_file(in.cfg, in.container_id, in.ifname);
    std::ofstream f(path + ".tmp", std::ios::trunc);
    f << json{{"containerID", in.container_id},
              {"ifname", in.ifname},
              {"pod", in.pod},
              {"ip", ip.str()},
              {"port_type", in.cfg.port_type},
              {"vhost_dir", in.cfg.vhost_dir}}
             .dump()
      << "\n";
    f.close();
    if (!f || ::rename((path + ".tmp").c_str(), path.c_str()) != 0) {
        throw CniError(kIoFailure, fmt::format("cannot record the attachment in {}", path));
    }
}

std::optional<Attachment> find_attachment(const Config& c,
                                          const std::string& id,
                                          const std::string& ifname) {
    std::ifstream f(attachment_file(c, id, ifname));
    const json j = json::parse(f, nullptr, false);
    if (!f || !j.is_object()) {
        return std::nullopt;
    }
    return Attachment{id,
                      ifname,
                      j.value("pod", ""),
                      j.value("port_type", "tap"),
                      j.value("ip", ""),
                      j.value("vhost_dir", c.vhost_dir)};
}

void forget_attachment(const Config& c, const std::string& id, const std::string& ifname) {
    std::error_code ec;
    std::filesystem::remove(attachment_file(c, id, ifname), ec);
}

std::vector<Attachment> attachments(const Config& c) {
    std::vector<Attachment> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(attachments_dir(c), ec)) {
        std::ifstream f(e.path());
        const json j = json::parse(f, nullptr, false);
        if (!j.is_object() || !j.contains("containerID") || !j.contains("ifname")) {
            continue;  // a .tmp cut short, or not ours
        }
        out.push_back(Attachment{j.value("containerID", ""), j.value("ifname", ""),
                                 j.value("pod", ""), j.value("port_type", "tap"), j.value("ip", ""),
                                 j.value("vhost_dir", c.vhost_dir)});
    }
    return out;
}

// Runs the IPAM plugin named in ipam.type as the spec says: found in CNI_PATH, the same
// environment (CNI_COMMAND as given) and configuration; its result or error JSON back.
json delegate_ipam(const Invocation& in, const std::string& command) {
    const std::string type = in.cfg.ipam.value("type", "");
    if (type.empty() || type.find('/') != std::string::npos) {
        throw CniError(kInvalidConfig, fmt::format("ipam.type \"{}\" is not a plugin name", type));
    }
    std::string path;
    const std::string dirs = env_or(in.env, "CNI_PATH", true);
    for (size_t at = 0; at <= dirs.size();) {
        const size_t end = dirs.find(':', at);
        const std::string dir =
            dirs.substr(at, end == std::string::npos ? std::string::npos : end - at);
        if (!dir.empty() && ::access((dir + "/" + type).c_str(), X_OK) == 0) {
            path = dir + "/" + type;
            break;
        }
        if (end == std::string::npos) {
            break;
        }
        at = end + 1;
    }
    if (path.empty()) {
        throw CniError(kInvalidConfig,
                       fmt::format("ipam plugin {} is not in CNI_PATH {}", type, dirs));
    }
    std::vector<std::string> env_text;
    for (const auto& [k, v] : in.env) {
        if (k != "CNI_COMMAND") {
            env_text.push_back(k + "=" + v);
        }
    }
    env_text.push_back("CNI_COMMAND=" + command);
    std::vector<char*> envp;
    for (auto& s : env_text) {
        envp.push_back(s.data());
    }
    envp.push_back(nullptr);
    int to_child[2], from_child[2];
    if (::pipe2(to_child, O_CLOEXEC) != 0 || ::pipe2(from_child, O_CLOEXEC) != 0) {
        throw CniError(kIoFailure, fmt::format("pipe: {}", std::strerror(errno)));
    }
    const pid_t pid = ::fork();
    if (pid < 0) {
        throw CniError(kIoFailure, fmt::format("fork: {}", std::strerror(errno)));
    }
    if (pid == 0) {
        ::dup2(to_child[0], 0);
        ::dup2(from_child[1], 1);
        char* argv[] = {path.data(), nullptr};
        ::execve(path.c_str(), argv, envp.data());
        _exit(127);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    const std::string conf = in.cfg.raw.dump();
    (void)!::write(to_child[1], conf.data(), conf.size());
    ::close(to_child[1]);
    std::string text;
    char buf[4096];
    for (ssize_t n; (n = ::read(from_child[0], buf, sizeof(buf))) > 0;) {
        text.append(buf, static_cast<size_t>(n));
    }
    ::close(from_child[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    json r = json::parse(text, nullptr, false);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        const std::string msg = r.is_object() ? r.value("msg", text) : text;
        const int code = r.is_object() ? r.value("code", static_cast<int>(kIoFailure)) : kIoFailure;
        throw CniError(code, fmt::format("ipam plugin {} ({}): {}", type, command, msg));
    }
    return r;
}

// Where the pod's address comes from: kdp's own store, or the plugin named in ipam.type.
class Addresses {
public:
    Addresses(const Invocation& in, const NodeFacts& f) : in_(in), f_(f) {}
    bool delegated() const { return !in_.cfg.ipam.is_null() && in_.cfg.ipam.contains("type"); }
    Ip4 take() {
        if (!delegated()) {
            return in_.want ? store().allocate(in_.container_id, in_.ifname, *in_.want)
                            : store().allocate(in_.container_id, in_.ifname);
        }
        const json r = delegate_ipam(in_, "ADD");
        std::optional<Ip4> ip;
        if (r.contains("ips") && r["ips"].is_array() && !r["ips"].empty() &&
            r["ips"][0].is_object()) {
            const std::string a = r["ips"][0].value("address", "");
            ip = Ip4::parse(a.substr(0, a.find('/')));
        }
        if (!ip || !f_.pod_cidr.contains(*ip)) {
            give_back();
            throw CniError(
                kInvalidConfig,
                fmt::format("ipam plugin {} gave {}, not an address of the node's pod "
                            "CIDR {}",
                            in_.cfg.ipam.value("type", ""), r.dump(), f_.pod_cidr.str()));
        }
        return *ip;
    }
    void give_back() {
        if (!delegated()) {
            std::error_code ec;
            if (std::filesystem::exists(ipam_dir(in_.cfg), ec)) {
                store().release(in_.container_id, in_.ifname);
            }
            return;
        }
        delegate_ipam(in_, "DEL");
    }
    std::optional<Ip4> held() {
        return delegated() ? std::nullopt : store().find(in_.container_id, in_.ifname);
    }

private:
    IpamStore store() { return IpamStore(ipam_dir(in_.cfg), f_.pod_cidr, f_.gateway); }
    const Invocation& in_;
    const NodeFacts& f_;
};

// The file next to a vhost-user socket that tells the pod's application what it got.
std::string vhost_socket(const Config& c, const std::string& id, const std::string& ifname) {
    return fmt::format("{}/{}/{}.sock", c.vhost_dir, id.substr(0, 32), ifname);
}

std::string vhost_socket(const Invocation& in) {
    return vhost_socket(in.cfg, in.container_id, in.ifname);
}

json result(const Invocation& in, const Mac& mac, Ip4 ip, const NodeFacts& f) {
    json r;
    r["cniVersion"] = in.cfg.cni_version;
    json iface = {{"name", in.ifname}, {"mac", mac.str()}};
    if (in.cfg.port_type == "vhostuser") {
        iface["socketPath"] = vhost_socket(in);  // the field CNI 1.1 gives it
    } else {
        iface["sandbox"] = in.netns;
    }
    r["interfaces"] = json::array({iface});
    json addr = {{"address", fmt::format("{}/{}", ip.str(), f.pod_cidr.len)},
                 {"gateway", f.gateway.str()},
                 {"interface", 0}};
    if (in.cfg.cni_version == "0.3.0" || in.cfg.cni_version == "0.3.1") {
        addr["version"] = "4";
    }
    r["ips"] = json::array({addr});
    r["routes"] = json::array({{{"dst", "0.0.0.0/0"}, {"gw", f.gateway.str()}}});
    r["dns"] = json::object();
    return r;
}

// A vhost-user port: a socket path in a directory of its own under vhost_dir (shared with the
// pod), and next to it <ifname>.json with what the pod's DPDK application or VM needs. The
// application creates the socket (vhost-user server: QEMU, virtio_user server=1) and the
// dataplane connects to it, now and after either side restarts.
int add_vhost(const Invocation& in,
              control::DataplaneClient& dp,
              Addresses& addresses,
              Ip4 ip,
              const NodeFacts& f,
              std::ostream& out) {
    const std::string sock = vhost_socket(in);
    const std::string dir = sock.substr(0, sock.rfind('/'));
    try {
        std::filesystem::create_directories(dir);
        v1::AddPortRequest req;
        req.set_name(in.pod);
        req.set_type(v1::PORT_TYPE_VHOSTUSER);
        req.set_socket_path(sock);
        req.set_pod_ip(ip.str());
        req.set_mtu(in.cfg.mtu != 0 ? in.cfg.mtu : f.mtu);
        req.set_queues(in.cfg.vhost_queues);
        v1::AddPortResponse r;
        try {
            r = dp.add_port(req);
        } catch (const control::RpcError& e) {
            rpc_failed(e, fmt::format("creating the pod's port {}", in.pod).c_str());
        }
        const auto gw_mac = Mac::parse(r.port().mac());
        const json j = result(in, gw_mac.value_or(Mac{}), ip, f);
        std::ofstream(dir + "/" + in.ifname + ".json")
            << json{{"socket", sock},
                    {"mode", "server"},  // the pod's application listens; the dataplane connects
                    {"ip", fmt::format("{}/{}", ip.str(), f.pod_cidr.len)},
                    {"gateway", f.gateway.str()},
                    {"mtu", req.mtu()},
                    {"queues", req.queues()}}
                   .dump(2)
            << "\n";
        record_attachment(in, ip);
        out << j.dump() << "\n";
        return 0;
    } catch (...) {
        try {
            dp.remove_port(in.pod);
        } catch (...) {
        }
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
        addresses.give_back();
        throw;
    }
}

int cmd_add(const Invocation& in, std::ostream& out) {
    control::DataplaneClient dp(in.cfg.socket);
    const NodeFacts f = node_facts(dp);
    Addresses addresses(in, f);
    const Ip4 ip = addresses.take();
    if (in.cfg.port_type == "vhostuser") {
        return add_vhost(in, dp, addresses, ip, f, out);
    }
    const std::string tap = tap_name(in.container_id);
    const uint32_t mtu = in.cfg.mtu != 0 ? in.cfg.mtu : f.mtu;
    bool port_added = false;
    try {
        v1::AddPortRequest req;
        req.set_name(in.pod);
        req.set_type(v1::PORT_TYPE_TAP);
        req.set_iface(tap);
        // Where the TAP goes: a restarted dataplane takes it back there (the pod keeps it).
        req.set_netns(in.netns);
        req.set_netns_iface(in.ifname);
        req.set_pod_ip(ip.str());
        req.set_mtu(mtu);
        try {
            dp.add_port(req);
        } catch (const control::RpcError& e) {
            rpc_failed(e, fmt::format("creating the pod's port {}", in.pod).c_str());
        }
        port_added = true;
        Mac mac{};
        {
            Netlink host;
            const auto idx = host.index(tap);
            if (!idx) {
                throw CniError(kIoFailure,
                               fmt::format("the dataplane's TAP {} did not appear", tap));
            }
            std::optional<NetnsFile> ns;
            try {
                ns.emplace(in.netns);
            } catch (const NetlinkError& e) {
                throw CniError(kUnknownContainer,
                               fmt::format("CNI_NETNS {}: {}", in.netns, std::strerror(e.error())));
            }
            host.move_to_netns(*idx, ns->fd());
        }
        {
            NetnsGuard enter(in.netns);
            Netlink pod;
            const auto idx = pod.index(tap);
            if (!idx) {
                throw CniError(kIoFailure,
                               fmt::format("{} is not in {} after the move", tap, in.netns));
            }
            pod.configure(*idx, in.ifname, mtu);
            pod.add_address(*idx, f.pod_cidr, ip);
            pod.add_default_route(*idx, f.gateway);
            mac = pod.mac(*idx);
        }
        record_attachment(in, ip);
        out << result(in, mac, ip, f).dump() << "\n";
        return 0;
    } catch (...) {
        if (port_added) {
            try {
                dp.remove_port(in.pod);  // closing the TAP also removes it from the pod
            } catch (...) {
            }
        }
        addresses.give_back();
        throw;
    }
}

int cmd_del(const Invocation& in, std::ostream&) {
    control::DataplaneClient dp(in.cfg.socket);
    try {
        dp.remove_port(in.pod);
    } catch (const control::RpcError& e) {
        if (e.code() != grpc::StatusCode::NOT_FOUND) {
            rpc_failed(e, fmt::format("removing the pod's port {}", in.pod).c_str());
        }
    }
    // The lease goes whatever the dataplane said; a store that never existed holds nothing.
    const NodeFacts f = node_facts(dp);
    Addresses(in, f).give_back();
    if (in.cfg.port_type == "vhostuser") {
        const std::string sock = vhost_socket(in);
        std::error_code ec;
        std::filesystem::remove_all(sock.substr(0, sock.rfind('/')), ec);
    }
    forget_attachment(in.cfg, in.container_id, in.ifname);
    return 0;
}

// GC (CNI 1.1): undoes every attachment of this network that is not in
// cni.dev/valid-attachments — its port, its address (own store, or a DEL to the IPAM plugin
// for that container), its vhost-user directory — and frees leases of the own store that no
// valid attachment holds (an ADD cut short by a crash).
int cmd_gc(const Invocation& in, std::ostream&) {
    const auto it = in.cfg.raw.find("cni.dev/valid-attachments");
    if (it == in.cfg.raw.end() || !it->is_array()) {
        throw CniError(kInvalidConfig,
                       "GC: cni.dev/valid-attachments is missing or not a list; nothing removed");
    }
    std::vector<std::pair<std::string, std::string>> keep;
    for (const json& a : *it) {
        if (!a.is_object() || !a.contains("containerID") || !a["containerID"].is_string() ||
            !a.contains("ifname") || !a["ifname"].is_string()) {
            throw CniError(kInvalidConfig,
                           fmt::format("GC: valid attachment {} lacks containerID or ifname; "
                                       "nothing removed",
                                       a.dump()));
        }
        keep.emplace_back(a["containerID"].get<std::string>(), a["ifname"].get<std::string>());
    }
    control::DataplaneClient dp(in.cfg.socket);
    const NodeFacts f = node_facts(dp);
    for (const Attachment& a : attachments(in.cfg)) {
        if (std::find(keep.begin(), keep.end(), std::pair{a.container_id, a.ifname}) !=
            keep.end()) {
            continue;
        }
        try {
            dp.remove_port(a.pod);
        } catch (const control::RpcError& e) {
            if (e.code() != grpc::StatusCode::NOT_FOUND) {
                rpc_failed(e, fmt::format("GC: removing the port {}", a.pod).c_str());
            }
        }
        Invocation stale = in;
        stale.container_id = a.container_id;
        stale.ifname = a.ifname;
        stale.env["CNI_CONTAINERID"] = a.container_id;
        stale.env["CNI_IFNAME"] = a.ifname;
        Addresses addresses(stale, f);
        if (addresses.delegated()) {
            addresses.give_back();
        }
        if (a.port_type == "vhostuser") {
            Config at_add = in.cfg;
            at_add.vhost_dir = a.vhost_dir;
            const std::string sock = vhost_socket(at_add, a.container_id, a.ifname);
            std::error_code ec;
            std::filesystem::remove_all(sock.substr(0, sock.rfind('/')), ec);
        }
        forget_attachment(in.cfg, a.container_id, a.ifname);
    }
    std::error_code ec;
    if (!Addresses(in, f).delegated() && std::filesystem::exists(ipam_dir(in.cfg), ec)) {
        IpamStore(ipam_dir(in.cfg), f.pod_cidr, f.gateway).release_except(keep);
    }
    return 0;
}

// STATUS (CNI 1.1): can an ADD succeed now? The dataplane must answer and the address store
// must be writable with an address left.
int cmd_status(const Invocation& in, std::ostream&) {
    control::DataplaneClient dp(in.cfg.socket);
    NodeFacts f;
    try {
        f = node_facts(dp);
    } catch (const CniError& e) {
        throw CniError(kNotAvailable,
                       fmt::format("the kdp dataplane at {} does not answer", in.cfg.socket),
                       e.what());
    }
    Addresses addresses(in, f);
    if (!addresses.delegated()) {
        try {
            IpamStore store(ipam_dir(in.cfg), f.pod_cidr, f.gateway);
            const uint64_t usable = f.pod_cidr.size() - 3;  // network, broadcast, gateway
            if (store.leases().size() >= usable) {
                throw CniError(kNotAvailable,
                               fmt::format("every address of {} is in use", f.pod_cidr.str()));
            }
        } catch (const IpamError& e) {
            throw CniError(kNotAvailable, fmt::format("the address store: {}", e.what()));
        }
    }
    return 0;
}

int cmd_check(const Invocation& in, std::ostream&) {
    control::DataplaneClient dp(in.cfg.socket);
    const NodeFacts f = node_facts(dp);
    Addresses addresses(in, f);
    if (!addresses.delegated() && !addresses.held()) {
        throw CniError(kUnknownContainer,
                       fmt::format("no address is held for {} {}", in.container_id, in.ifname));
    }
    v1::ListPortsResponse ports;
    try {
        ports = dp.list_ports();
    } catch (const control::RpcError& e) {
        rpc_failed(e, "listing the dataplane's ports");
    }
    bool found = false;
    for (int i = 0; i < ports.ports_size(); ++i) {
        found |= ports.ports(i).name() == in.pod;
    }
    if (!found) {
        throw CniError(kUnknownContainer, fmt::format("the dataplane has no port {}", in.pod));
    }
    if (in.cfg.port_type == "vhostuser") {
        return 0;  // the socket is the pod application's: there while it runs
    }
    NetnsGuard enter(in.netns);
    Netlink pod;
    if (!pod.index(in.ifname)) {
        throw CniError(kUnknownContainer,
                       fmt::format("{} has no interface {}", in.netns, in.ifname));
    }
    return 0;
}

}  // namespace

int run_plugin(const Env& env, const std::string& config, std::ostream& out) {
    std::string version = kVersion;
    try {
        const std::string command = env_or(env, "CNI_COMMAND", true);
        if (command == "VERSION") {
            out << json{{"cniVersion", kVersion}, {"supportedVersions", kSupported}}.dump() << "\n";
            return 0;
        }
        Invocation in;
        in.command = command;
        in.env = env;
        in.cfg = parse_config(config);
        version = in.cfg.cni_version;
        if (command == "STATUS") {
            return cmd_status(in, out);
        }
        if (command == "GC") {
            return cmd_gc(in, out);
        }
        in.container_id = env_or(env, "CNI_CONTAINERID", true);
        if (in.container_id.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                              "0123456789_.-") != std::string::npos ||
            !std::isalnum(static_cast<unsigned char>(in.container_id[0]))) {
            throw CniError(kInvalidEnv,
                           fmt::format("CNI_CONTAINERID \"{}\" is not a container ID (letters, "
                                       "digits, _ . -, starting with a letter or digit)",
                                       in.container_id));
        }
        in.ifname = env_or(env, "CNI_IFNAME", true);
        if (in.ifname.size() > 15 || in.ifname == "." || in.ifname == ".." ||
            in.ifname.find_first_of("/ \t\n:") != std::string::npos) {
            throw CniError(kInvalidEnv,
                           fmt::format("CNI_IFNAME \"{}\" is not an interface name (at most 15 "
                                       "characters, no '/', ':' or spaces)",
                                       in.ifname));
        }
        in.pod = pod_name(env, in.container_id);
        if (command == "ADD") {
            in.want = requested_ip(env, in.cfg);
            pod_port_options(in);
        } else if (const auto a = find_attachment(in.cfg, in.container_id, in.ifname)) {
            in.cfg.port_type = a->port_type;  // what ADD made, whatever the config says now
            in.cfg.vhost_dir = a->vhost_dir;
        }
        in.netns = env_or(env, "CNI_NETNS",
                          (command == "ADD" || command == "CHECK") && in.cfg.port_type == "tap");
        if (command == "ADD") {
            return cmd_add(in, out);
        }
        if (command == "DEL") {
            return cmd_del(in, out);
        }
        if (command == "CHECK") {
            return cmd_check(in, out);
        }
        throw CniError(
            kInvalidEnv,
            fmt::format("CNI_COMMAND \"{}\" is not ADD, DEL, CHECK, GC, STATUS or VERSION",
                        command));
    } catch (const CniError& e) {
        out << json{{"cniVersion", version},
                    {"code", e.code},
                    {"msg", e.what()},
                    {"details", e.details}}
                   .dump()
            << "\n";
    } catch (const IpamError& e) {
        out << json{{"cniVersion", version},
                    {"code", e.kind() == IpamError::Kind::kExhausted     ? 100
                             : e.kind() == IpamError::Kind::kUnavailable ? kAddressUnavailable
                                                                         : kIoFailure},
                    {"msg", fmt::format("pod address: {}", e.what())},
                    {"details", ""}}
                   .dump()
            << "\n";
    } catch (const std::exception& e) {  // NetlinkError, file system, anything else
        out << json{{"cniVersion", version},
                    {"code", kIoFailure},
                    {"msg", e.what()},
                    {"details", ""}}
                   .dump()
            << "\n";
    }
    return 1;
}

}  // namespace kdp::cni
