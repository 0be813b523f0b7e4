// Reads a YAML node config into NodeConfig and validates all of it before anything starts.
//
// Runs once on the main thread. Every check throws ConfigError("<key.path>: <problem>") for the
// first problem found, in the order the sections are read (node, vxlan, dpdk, workers, uplink,
// pods, remote_nodes, host, api, limits, then the checks across sections). Nothing here needs DPDK:
// what only the EAL can tell (do the lcores exist, does the device probe) is the dataplane's job.
#include "config/node_config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <unistd.h>

#include <cstring>
#include <initializer_list>
#include <map>
#include <set>
#include <string_view>
#include <utility>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace kdp::config {
namespace {

// RTE_MAX_LCORE is 128 in Debian's DPDK 22.11; lcore 0 is the main lcore, never a worker.
constexpr uint64_t kMaxWorkerLcore = 127;

// sockaddr_un::sun_path is 108 bytes including the terminating NUL.
constexpr size_t kMaxSocketPath = 107;

// Linux IFNAMSIZ is 16 including the NUL.
constexpr size_t kMaxIfaceName = 15;

// DPDK puts its runtime files under /var/run/dpdk/<prefix>/ and a secondary process (dpdk-proc-
// info, dpdk-dumpcap) binds "mp_socket_<pid>_<tsc>" there: 14 + prefix + 1 + 10 + 7 + 1 + 16
// bytes must fit in sun_path's 107, and DPDK truncates silently if it does not. 48 leaves room.
constexpr size_t kMaxFilePrefix = 48;

// Uplink MTU bounds: 1280 is IPv6's minimum link MTU, 9000 the usual jumbo frame.
constexpr uint64_t kMinMtu = 1280;
constexpr uint64_t kMaxMtu = 9000;

[[noreturn]] void fail(std::string_view path, std::string_view problem) {
    throw ConfigError(fmt::format("{}: {}", path, problem));
}

// Quotes a user string for a one-line message: control characters escaped, long values cut.
std::string quote(std::string_view s) {
    constexpr size_t kMaxShown = 80;
    std::string out = "\"";
    for (size_t i = 0; i < s.size() && i < kMaxShown; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20 || c == 0x7f) {
            out += fmt::format("\\x{:02x}", c);
        } else {
            out += static_cast<char>(c);
        }
    }
    if (s.size() > kMaxShown) {
        out += "...";
    }
    out += '"';
    return out;
}

std::string describe(const YAML::Node& n) {
    switch (n.Type()) {
        case YAML::NodeType::Map:
            return "a map";
        case YAML::NodeType::Sequence:
            return "a list";
        case YAML::NodeType::Scalar:
            return "the scalar " + quote(n.Scalar());
        case YAML::NodeType::Null:
        case YAML::NodeType::Undefined:
            break;
    }
    return "nothing (null)";
}

std::string item_path(const std::string& list, size_t i) {
    return fmt::format("{}[{}]", list, i);
}

// A value in the document and its key path, e.g. {"4789", "vxlan.port"}.
struct Field {
    YAML::Node node;
    std::string path;
};

const std::string& as_string(const Field& f) {
    if (!f.node.IsScalar()) {
        fail(f.path, "expected a string, got " + describe(f.node));
    }
    return f.node.Scalar();
}

std::string as_nonempty_string(const Field& f) {
    const std::string& s = as_string(f);
    if (s.empty()) {
        fail(f.path, "must not be empty");
    }
    return s;
}

// A plain decimal integer in [lo, hi]. Quoted numbers, signs other than '-', leading zeros,
// hex, octal and fractions are refused: a config value means what it looks like.
uint64_t as_uint(const Field& f, uint64_t lo, uint64_t hi) {
    if (!f.node.IsScalar()) {
        fail(f.path, "expected an integer, got " + describe(f.node));
    }
    const std::string& s = f.node.Scalar();
    if (f.node.Tag() == "!") {
        fail(f.path, "expected an integer, got the quoted string " + quote(s));
    }
    const bool negative = !s.empty() && s[0] == '-';
    const std::string_view digits = std::string_view(s).substr(negative ? 1 : 0);
    bool ok = !digits.empty() && (digits.size() == 1 || digits[0] != '0');
    uint64_t v = 0;
    for (const char c : digits) {
        ok = ok && c >= '0' && c <= '9';
        v = v * 10 + static_cast<uint64_t>(c - '0');  // wraps past 19 digits; checked below
    }
    if (!ok) {
        fail(f.path, "expected an integer, got " + quote(s));
    }
    if (negative || digits.size() > 19 || v < lo || v > hi) {
        fail(f.path, fmt::format("{} is out of range {}..{}", s, lo, hi));
    }
    return v;
}

bool is_unicast_host(Ip4 ip) {
    const uint32_t h = ip.host();
    const uint32_t first = h >> 24;
    return first != 0 && first != 127 && first < 224;
}

Ip4 as_ip(const Field& f) {
    const std::string& s = as_string(f);
    const auto ip = Ip4::parse(s);
    if (!ip) {
        fail(f.path, quote(s) + " is not an IPv4 address");
    }
    return *ip;
}

// An address another host can send to: not 0/8, loopback, multicast or class E.
Ip4 as_unicast_ip(const Field& f) {
    const Ip4 ip = as_ip(f);
    if (!is_unicast_host(ip)) {
        fail(f.path, ip.str() + " is not a unicast host address");
    }
    return ip;
}

Ip4 broadcast(const Prefix4& p) {
    return Ip4::from_host(p.addr.host() | ~p.mask_host());
}

// A CIDR with no host bits and a length in [min_len, max_len].
Prefix4 as_cidr(const Field& f, uint8_t min_len, uint8_t max_len) {
    const std::string& s = as_string(f);
    const auto p = Prefix4::parse(s, /*strict=*/true);
    if (!p) {
        const auto loose = Prefix4::parse(s, /*strict=*/false);
        if (loose) {
            fail(f.path, fmt::format("{} has host bits set (the network is {})", s, loose->str()));
        }
        fail(f.path, quote(s) + " is not an IPv4 CIDR (a.b.c.d/len)");
    }
    if (p->len < min_len || p->len > max_len) {
        fail(f.path, fmt::format("{}: prefix length {} is out of range {}..{}", s, p->len, min_len,
                                 max_len));
    }
    // Every CIDR here holds pods, and pods need addresses other hosts can send to.
    if (!is_unicast_host(p->addr) || !is_unicast_host(broadcast(*p))) {
        fail(f.path, p->str() + " is not unicast host address space");
    }
    return *p;
}

Mac as_mac(const Field& f) {
    const std::string& s = as_string(f);
    const auto m = Mac::parse(s);
    if (!m) {
        fail(f.path, quote(s) + " is not a MAC address (aa:bb:cc:dd:ee:ff)");
    }
    if (m->is_zero() || m->is_multicast()) {
        fail(f.path, m->str() + " is not a unicast MAC address");
    }
    return *m;
}

// An absolute path that fits a unix socket address.
std::string as_socket_path(const Field& f) {
    std::string s = as_nonempty_string(f);
    if (s[0] != '/') {
        fail(f.path, quote(s) + " is not an absolute path");
    }
    if (s.back() == '/') {
        fail(f.path, quote(s) + " names a directory, not a socket");
    }
    if (s.size() > kMaxSocketPath) {
        fail(f.path, fmt::format("{} is {} bytes, longer than a unix socket path may be ({})",
                                 quote(s), s.size(), kMaxSocketPath));
    }
    return s;
}

bool is_lower_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

// RFC 1123 label as Kubernetes checks it: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63.
bool is_dns_label(std::string_view s) {
    if (s.empty() || s.size() > 63 || !is_lower_alnum(s.front()) || !is_lower_alnum(s.back())) {
        return false;
    }
    for (const char c : s) {
        if (!is_lower_alnum(c) && c != '-') {
            return false;
        }
    }
    return true;
}

// RFC 1123 subdomain (Kubernetes object names): dot-separated labels, at most 253.
bool is_dns_subdomain(std::string_view s) {
    if (s.empty() || s.size() > 253) {
        return false;
    }
    while (true) {
        const size_t dot = s.find('.');
        if (!is_dns_label(s.substr(0, dot))) {
            return false;
        }
        if (dot == std::string_view::npos) {
            return true;
        }
        s.remove_prefix(dot + 1);
    }
}

std::string as_dns_label(const Field& f) {
    const std::string& s = as_string(f);
    if (!is_dns_label(s)) {
        fail(f.path,
             quote(s) + " is not a DNS-1123 label ([a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63)");
    }
    return s;
}

bool contains(const Prefix4& outer, const Prefix4& inner) {
    return outer.len <= inner.len && outer.contains(inner.addr);
}

// [A-Za-z0-9_-]: DPDK file prefixes, and the plain words of key paths.
bool is_prefix_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

// A YAML map being read. The constructor refuses anything but a map of unique string keys
// that are all in `allowed`, so every lookup afterwards is of a known key.
class Section {
public:
    // An absent section reads as an empty map so that its required keys report themselves.
    static Section absent(std::string path) { return Section(std::move(path)); }

    Section(const YAML::Node& node,
            std::string path,
            std::initializer_list<std::string_view> allowed)
        : node_(node), path_(std::move(path)) {
        if (!node_.IsMap()) {
            fail(where(), "expected a map, got " + describe(node_));
        }
        std::set<std::string, std::less<>> seen;
        for (const auto& kv : node_) {
            if (!kv.first.IsScalar()) {
                fail(where(), "map keys must be strings, got " + describe(kv.first));
            }
            const std::string& key = kv.first.Scalar();
            bool known = false;
            for (const std::string_view a : allowed) {
                known = known || a == key;
            }
            if (!known) {
                fail(child_path(key), "unknown key");
            }
            if (!seen.insert(key).second) {
                fail(child_path(key), "duplicate key");
            }
        }
    }

    // The path of a key in this map. A key that is not a plain word is quoted, so that a
    // stray newline or dot in an unknown key cannot break the one-line message or its path.
    std::string child_path(std::string_view key) const {
        bool plain = !key.empty();
        for (const char c : key) {
            plain = plain && (is_prefix_char(c) || c == '<' || c == '>');
        }
        const std::string shown = plain ? std::string(key) : quote(key);
        return path_.empty() ? shown : fmt::format("{}.{}", path_, shown);
    }

    std::optional<Field> get(std::string_view key) const {
        if (!node_.IsMap()) {
            return std::nullopt;
        }
        const YAML::Node v = node_[std::string(key)];
        if (!v.IsDefined()) {
            return std::nullopt;
        }
        return Field{v, child_path(key)};
    }

    Field require(std::string_view key) const {
        auto f = get(key);
        if (!f) {
            fail(child_path(key), "missing");
        }
        return *f;
    }

    Section section(std::string_view key, std::initializer_list<std::string_view> allowed) const {
        const auto f = get(key);
        if (!f) {
            return absent(child_path(key));
        }
        return Section(f->node, f->path, allowed);
    }

    // The items of an optional list; an absent key is an empty list.
    std::vector<Field> list(std::string_view key) const {
        std::vector<Field> items;
        const auto f = get(key);
        if (!f) {
            return items;
        }
        if (!f->node.IsSequence()) {
            fail(f->path, "expected a list, got " + describe(f->node));
        }
        for (size_t i = 0; i < f->node.size(); ++i) {
            items.push_back(Field{f->node[i], item_path(f->path, i)});
        }
        return items;
    }

    // Sets `out` from the key if present.
    template <class T, class Conv>
    void read(std::string_view key, T& out, Conv&& conv) const {
        if (const auto f = get(key)) {
            out = conv(*f);
        }
    }

    template <class T>
    void read_uint(std::string_view key, T& out, uint64_t lo, uint64_t hi) const {
        if (const auto f = get(key)) {
            out = static_cast<T>(as_uint(*f, lo, hi));
        }
    }

private:
    explicit Section(std::string path) : path_(std::move(path)) {}

    std::string where() const { return path_.empty() ? "(top level)" : path_; }

    YAML::Node node_;
    std::string path_;
};

void read_node(const Section& s, NodeConfig& c) {
    c.node_name = as_dns_label(s.require("name"));
    c.node_ip = as_unicast_ip(s.require("ip"));
    s.read("mac", c.node_mac, as_mac);
    c.pod_cidr = as_cidr(s.require("pod_cidr"), 8, 30);

    c.gateway_ip = Ip4::from_host(c.pod_cidr.addr.host() + 1);
    if (const auto f = s.get("gateway")) {
        const Ip4 gw = as_ip(*f);
        if (!c.pod_cidr.contains(gw)) {
            fail(f->path,
                 fmt::format("{} is outside node.pod_cidr {}", gw.str(), c.pod_cidr.str()));
        }
        if (gw == c.pod_cidr.addr || gw == broadcast(c.pod_cidr)) {
            fail(f->path,
                 fmt::format("{} is the {} address of node.pod_cidr {}", gw.str(),
                             gw == c.pod_cidr.addr ? "network" : "broadcast", c.pod_cidr.str()));
        }
        c.gateway_ip = gw;
    }
    c.gateway_mac = Mac::from_ip(c.gateway_ip);
    s.read("gateway_mac", c.gateway_mac, as_mac);

    if (const auto f = s.get("cluster_cidr")) {
        const Prefix4 cluster = as_cidr(*f, 8, 30);
        if (!contains(cluster, c.pod_cidr)) {
            fail(f->path, fmt::format("{} does not contain node.pod_cidr {}", cluster.str(),
                                      c.pod_cidr.str()));
        }
        c.cluster_cidr = cluster;
    }
    s.read_uint("mtu", c.mtu, kMinMtu, kMaxMtu);

    // The underlay must not be routed into the overlay, or encapsulated packets would loop.
    if (c.pod_cidr.contains(c.node_ip)) {
        fail(s.child_path("ip"),
             fmt::format("{} is inside node.pod_cidr {}", c.node_ip.str(), c.pod_cidr.str()));
    }
    if (c.cluster_cidr && c.cluster_cidr->contains(c.node_ip)) {
        fail(s.child_path("ip"), fmt::format("{} is inside node.cluster_cidr {}", c.node_ip.str(),
                                             c.cluster_cidr->str()));
    }
}

void read_vxlan(const Section& s, NodeConfig& c) {
    if (const auto f = s.get("mode")) {
        const std::string& mode = as_string(*f);
        if (mode == "standard") {
            c.vxlan_mode = VxlanMode::kStandard;
        } else if (mode == "flannel") {
            c.vxlan_mode = VxlanMode::kFlannel;
        } else {
            fail(f->path, quote(mode) + " is not one of standard, flannel");
        }
    }
    const bool flannel = c.vxlan_mode == VxlanMode::kFlannel;
    // IANA's VXLAN port, and the one Flannel's vxlan backend (and the Linux default) uses.
    c.vxlan_port = flannel ? 8472 : 4789;
    s.read_uint("port", c.vxlan_port, 1, 65535);
    c.vni = 1;
    s.read_uint("vni", c.vni, 0, (1u << 24) - 1);
    if (flannel && c.vni != 1) {
        fail(s.child_path("vni"),
             fmt::format("flannel mode requires VNI 1 (Flannel's default), got {}", c.vni));
    }
    c.vtep_mac = Mac::from_ip(c.node_ip);
    s.read("vtep_mac", c.vtep_mac, as_mac);
}

// EAL options the dataplane derives from other keys; giving them twice would let the two
// disagree about which files and lcores the process owns.
bool is_derived_eal_option(std::string_view arg) {
    for (const std::string_view opt :
         {"--file-prefix", "--lcores", "--main-lcore", "--master-lcore", "-l", "-c"}) {
        if (arg == opt || (arg.starts_with(opt) && arg.size() > opt.size() &&
                           (arg[opt.size()] == '=' || opt.size() == 2))) {
            return true;
        }
    }
    return false;
}

bool as_bool(const Field& f);

void read_dpdk(const Section& s, NodeConfig& c) {
    if (const auto f = s.get("file_prefix")) {
        c.file_prefix = as_nonempty_string(*f);
    } else {
        c.file_prefix = "kdp-" + c.node_name;
    }
    const std::string prefix_path = s.child_path("file_prefix");
    for (const char ch : c.file_prefix) {
        if (!is_prefix_char(ch)) {
            fail(prefix_path, quote(c.file_prefix) + " may only hold [A-Za-z0-9_-]");
        }
    }
    if (c.file_prefix.size() > kMaxFilePrefix) {
        fail(prefix_path,
             fmt::format("{}{} is {} characters, more than {} (DPDK's runtime socket paths "
                         "would not fit); set a shorter one",
                         s.get("file_prefix") ? "" : "the default ", quote(c.file_prefix),
                         c.file_prefix.size(), kMaxFilePrefix));
    }

    if (const auto f = s.get("lcores")) {
        c.lcores = as_nonempty_string(*f);
        for (const char ch : c.lcores) {
            if (std::strchr("0123456789,()@-", ch) == nullptr) {
                fail(f->path,
                     quote(c.lcores) + " is not an EAL --lcores list (digits and , ( ) @ - only)");
            }
        }
    }
    for (const Field& arg : s.list("eal_args")) {
        std::string a = as_nonempty_string(arg);
        if (is_derived_eal_option(a)) {
            fail(arg.path, quote(a) +
                               " is set by kdp from dpdk.file_prefix, dpdk.lcores and "
                               "workers.lcores; use those keys");
        }
        c.eal_args.push_back(std::move(a));
    }
    s.read("huge_unlink", c.huge_unlink, as_bool);
}

void read_workers(const Section& s, NodeConfig& c) {
    const Field lcores = s.require("lcores");
    if (!lcores.node.IsSequence()) {
        fail(lcores.path, "expected a list, got " + describe(lcores.node));
    }
    if (lcores.node.size() == 0) {
        fail(lcores.path, "must list at least one lcore");
    }
    std::map<unsigned, size_t> seen;
    for (const Field& f : s.list("lcores")) {
        if (f.node.IsScalar() && f.node.Scalar() == "0") {
            fail(f.path, "0 is the main lcore and cannot run a worker (use 1..127)");
        }
        const auto id = static_cast<unsigned>(as_uint(f, 1, kMaxWorkerLcore));
        const auto [it, fresh] = seen.emplace(id, c.worker_lcores.size());
        if (!fresh) {
            fail(f.path,
                 fmt::format("{} is already listed at {}", id, item_path(lcores.path, it->second)));
        }
        c.worker_lcores.push_back(id);
    }

    const Section idle = s.section("idle", {"spin_polls", "sleep_us", "max_sleep_us"});
    // A sleeping worker leaves its rx ring unserved; past 100 ms any NIC ring has overflowed.
    constexpr uint64_t kMaxSleepUs = 100'000;
    idle.read_uint("spin_polls", c.idle.spin_polls, 0, UINT32_MAX);
    idle.read_uint("sleep_us", c.idle.sleep_us, 0, kMaxSleepUs);
    idle.read_uint("max_sleep_us", c.idle.max_sleep_us, 0, kMaxSleepUs);
    if (c.idle.sleep_us > c.idle.max_sleep_us) {
        fail(idle.child_path(idle.get("sleep_us") ? "sleep_us" : "max_sleep_us"),
             fmt::format("sleep_us {} is greater than max_sleep_us {}", c.idle.sleep_us,
                         c.idle.max_sleep_us));
    }
}

// The device name in devargs, the part before the first ',' ("net_tap0" in "net_tap0,iface=x").
std::string_view device_name(std::string_view devargs) {
    return devargs.substr(0, devargs.find(','));
}

void read_uplink(const Section& s, NodeConfig& c) {
    c.uplink.devargs = as_nonempty_string(s.require("devargs"));
    s.read_uint("rx_queues", c.uplink.rx_queues, 1, 64);
    s.read_uint("prefix_len", c.uplink.prefix_len, 8, 32);
    const Prefix4 subnet = c.underlay_subnet();
    if (c.uplink.prefix_len <= 30 && (c.node_ip == subnet.addr || c.node_ip == broadcast(subnet))) {
        fail(s.child_path("prefix_len"),
             fmt::format("node.ip {} is the {} address of its subnet {}", c.node_ip.str(),
                         c.node_ip == subnet.addr ? "network" : "broadcast", subnet.str()));
    }
    if (const auto f = s.get("gateway")) {
        const Ip4 gw = as_unicast_ip(*f);
        if (gw == c.node_ip) {
            fail(f->path, gw.str() + " is node.ip itself");
        }
        // With a /32 the gateway is on-link by definition (a route with the onlink flag).
        if (c.uplink.prefix_len < 32 && !subnet.contains(gw)) {
            fail(f->path, fmt::format("{} is off the node's subnet {} (node.ip/uplink.prefix_len)",
                                      gw.str(), subnet.str()));
        }
        c.uplink.gateway = gw;
    }
}

PortType as_port_type(const Field& f) {
    const std::string& t = as_string(f);
    if (t == "tap") {
        return PortType::kTap;
    }
    if (t == "vhostuser") {
        return PortType::kVhostUser;
    }
    if (t == "devargs") {
        return PortType::kDevargs;
    }
    fail(f.path, quote(t) + " is not one of tap, vhostuser, devargs");
}

const char* port_type_name(PortType t) {
    switch (t) {
        case PortType::kTap:
            return "tap";
        case PortType::kVhostUser:
            return "vhostuser";
        case PortType::kDevargs:
            return "devargs";
    }
    return "?";
}

std::string as_iface(const Field& f) {
    const std::string s = as_nonempty_string(f);
    if (s.size() > kMaxIfaceName) {
        fail(f.path, fmt::format("{} is {} characters, longer than a Linux interface name may "
                                 "be ({})",
                                 quote(s), s.size(), kMaxIfaceName));
    }
    for (const char ch : s) {
        if (!is_prefix_char(ch) && ch != '.') {
            fail(f.path, quote(s) + " may only hold [A-Za-z0-9_.-]");
        }
    }
    if (s == "." || s == "..") {
        fail(f.path, quote(s) + " is not a valid interface name");
    }
    return s;
}

// YAML 1.2's booleans: true or false, nothing else (no yes/no/on/off guessing).
bool as_bool(const Field& f) {
    const std::string& v = as_string(f);
    if (v == "true") {
        return true;
    }
    if (v == "false") {
        return false;
    }
    fail(f.path, quote(v) + " is not true or false");
}

// A network namespace by its name under /run/netns (as `ip netns` makes them).
std::string as_netns_name(const Field& f) {
    std::string n = as_nonempty_string(f);
    if (n.find('/') != std::string::npos || n == "." || n == ".." || n.size() > 255) {
        fail(f.path, quote(n) + " is not a name under /run/netns");
    }
    return n;
}

PodPortConfig read_pod(const Field& item, size_t index, const NodeConfig& c) {
    const Section s(item.node, item.path,
                    {"name", "ip", "type", "iface", "socket", "queues", "devargs", "mac", "netns"});
    PodPortConfig p;
    const Field name = s.require("name");
    p.name = as_string(name);
    const size_t slash = p.name.find('/');
    if (slash == std::string::npos || !is_dns_label(p.name.substr(0, slash)) ||
        !is_dns_subdomain(p.name.substr(slash + 1))) {
        fail(name.path, quote(p.name) +
                            " is not \"namespace/name\" (a DNS-1123 label, '/', a DNS-1123 "
                            "subdomain)");
    }

    const Field ip = s.require("ip");
    p.ip = as_ip(ip);
    if (!c.pod_cidr.contains(p.ip)) {
        fail(ip.path, fmt::format("{} is outside node.pod_cidr {}", p.ip.str(), c.pod_cidr.str()));
    }
    if (p.ip == c.pod_cidr.addr || p.ip == broadcast(c.pod_cidr)) {
        fail(ip.path,
             fmt::format("{} is the {} address of node.pod_cidr {}", p.ip.str(),
                         p.ip == c.pod_cidr.addr ? "network" : "broadcast", c.pod_cidr.str()));
    }
    if (p.ip == c.gateway_ip) {
        fail(ip.path, p.ip.str() + " is the pod gateway (node.gateway)");
    }

    s.read("type", p.type, as_port_type);
    s.read("mac", p.mac, as_mac);

    // Keys of the other port types are refused rather than ignored: they show a misunderstanding.
    const auto only_for = [&](std::string_view key, PortType t) {
        if (p.type != t && s.get(key)) {
            fail(s.child_path(key), fmt::format("only valid for type {} (this port is {})",
                                                port_type_name(t), port_type_name(p.type)));
        }
    };
    only_for("iface", PortType::kTap);
    only_for("netns", PortType::kTap);
    only_for("socket", PortType::kVhostUser);
    only_for("queues", PortType::kVhostUser);
    only_for("devargs", PortType::kDevargs);

    switch (p.type) {
        case PortType::kTap:
            p.iface = fmt::format("kdp{}", index);
            s.read("iface", p.iface, as_iface);
            s.read("netns", p.netns, as_netns_name);
            break;
        case PortType::kVhostUser:
            p.socket = as_socket_path(s.require("socket"));
            s.read_uint("queues", p.queues, 1, 64);
            break;
        case PortType::kDevargs:
            p.devargs = as_nonempty_string(s.require("devargs"));
            break;
    }
    return p;
}

void read_pods(const Section& top, NodeConfig& c) {
    const std::string list = top.child_path("pods");
    std::map<std::string, size_t, std::less<>> names, ifaces, sockets, devices;
    std::map<Ip4, size_t> ips;
    const auto unique = [&](auto& seen, const auto& key, size_t i, std::string_view field,
                            const std::string& shown) {
        const auto [it, fresh] = seen.emplace(key, i);
        if (!fresh) {
            fail(fmt::format("{}.{}", item_path(list, i), field),
                 fmt::format("{} is already used by {}", shown, item_path(list, it->second)));
        }
    };
    const std::vector<Field> items = top.list("pods");
    for (size_t i = 0; i < items.size(); ++i) {
        PodPortConfig p = read_pod(items[i], i, c);
        unique(names, p.name, i, "name", quote(p.name));
        unique(ips, p.ip, i, "ip", p.ip.str());
        if (p.type == PortType::kTap) {
            unique(ifaces, p.iface, i, "iface", quote(p.iface));
        }
        if (p.type == PortType::kVhostUser) {
            unique(sockets, p.socket, i, "socket", quote(p.socket));
        }
        if (p.type == PortType::kDevargs) {
            const std::string dev(device_name(p.devargs));
            if (dev == device_name(c.uplink.devargs)) {
                fail(item_path(list, i) + ".devargs",
                     fmt::format("device {} is already used by uplink.devargs", quote(dev)));
            }
            unique(devices, dev, i, "devargs", "device " + quote(dev));
        }
        c.pods.push_back(std::move(p));
    }
}

void read_host(const Section& s, bool present, NodeConfig& c) {
    if (!present) {
        return;
    }
    HostConfig h;
    const Field iface = s.require("iface");
    h.iface = as_iface(iface);
    for (size_t i = 0; i < c.pods.size(); ++i) {
        if (c.pods[i].type == PortType::kTap && c.pods[i].iface == h.iface) {
            fail(iface.path, fmt::format("{} is already used by pods[{}]", quote(h.iface), i));
        }
    }
    s.read("netns", h.netns, as_netns_name);
    s.read("node_address", h.node_address, as_bool);
    const std::vector<Field> routes = s.list("routes");
    for (const Field& f : routes) {
        const Prefix4 r = as_cidr(f, 1, 32);
        if (std::find(h.routes.begin(), h.routes.end(), r) != h.routes.end()) {
            fail(f.path, r.str() + " is listed twice");
        }
        h.routes.push_back(r);
    }
    c.host = std::move(h);
}

void read_remote_nodes(const Section& top, NodeConfig& c) {
    const std::string list = top.child_path("remote_nodes");
    const bool flannel = c.vxlan_mode == VxlanMode::kFlannel;
    std::map<std::string, size_t, std::less<>> names;
    std::map<Ip4, size_t> ips;
    const std::vector<Field> items = top.list("remote_nodes");
    for (size_t i = 0; i < items.size(); ++i) {
        const Section s(items[i].node, items[i].path, {"name", "ip", "pod_cidr", "vtep_mac"});
        RemoteNodeConfig r;

        r.name = as_dns_label(s.require("name"));
        if (r.name == c.node_name) {
            fail(s.child_path("name"), quote(r.name) + " is this node (node.name)");
        }
        if (const auto [it, fresh] = names.emplace(r.name, i); !fresh) {
            fail(s.child_path("name"), fmt::format("{} is already used by {}", quote(r.name),
                                                   item_path(list, it->second)));
        }

        r.ip = as_unicast_ip(s.require("ip"));
        const std::string ip_path = s.child_path("ip");
        if (r.ip == c.node_ip) {
            fail(ip_path, r.ip.str() + " is this node's IP (node.ip)");
        }
        if (const auto [it, fresh] = ips.emplace(r.ip, i); !fresh) {
            fail(ip_path,
                 fmt::format("{} is already used by {}", r.ip.str(), item_path(list, it->second)));
        }
        if (c.pod_cidr.contains(r.ip)) {
            fail(ip_path,
                 fmt::format("{} is inside node.pod_cidr {}", r.ip.str(), c.pod_cidr.str()));
        }
        if (c.cluster_cidr && c.cluster_cidr->contains(r.ip)) {
            fail(ip_path, fmt::format("{} is inside node.cluster_cidr {}", r.ip.str(),
                                      c.cluster_cidr->str()));
        }
        const Prefix4 subnet = c.underlay_subnet();
        if (!c.uplink.gateway && !subnet.contains(r.ip)) {
            fail(ip_path, fmt::format("{} is off the node's subnet {} and uplink.gateway is not "
                                      "set, so it cannot be reached",
                                      r.ip.str(), subnet.str()));
        }

        const Field cidr = s.require("pod_cidr");
        r.pod_cidr = as_cidr(cidr, 8, 30);
        if (r.pod_cidr.overlaps(c.pod_cidr)) {
            fail(cidr.path,
                 fmt::format("{} overlaps node.pod_cidr {}", r.pod_cidr.str(), c.pod_cidr.str()));
        }
        for (size_t j = 0; j < c.remote_nodes.size(); ++j) {
            if (r.pod_cidr.overlaps(c.remote_nodes[j].pod_cidr)) {
                fail(cidr.path, fmt::format("{} overlaps {}.pod_cidr {}", r.pod_cidr.str(),
                                            item_path(list, j), c.remote_nodes[j].pod_cidr.str()));
            }
        }
        if (c.cluster_cidr && !contains(*c.cluster_cidr, r.pod_cidr)) {
            fail(cidr.path, fmt::format("{} is outside node.cluster_cidr {}", r.pod_cidr.str(),
                                        c.cluster_cidr->str()));
        }
        // Node IPs are pod traffic's next hop, never its destination: an overlap would loop.
        if (r.pod_cidr.contains(c.node_ip)) {
            fail(cidr.path,
                 fmt::format("{} contains node.ip {}", r.pod_cidr.str(), c.node_ip.str()));
        }
        for (size_t j = 0; j < c.remote_nodes.size(); ++j) {
            if (r.pod_cidr.contains(c.remote_nodes[j].ip) ||
                c.remote_nodes[j].pod_cidr.contains(r.ip)) {
                fail(cidr.path, fmt::format("{} and {} mix pod and node addresses",
                                            item_path(list, j), item_path(list, i)));
            }
        }

        s.read("vtep_mac", r.vtep_mac, as_mac);
        if (flannel && !r.vtep_mac) {
            // A kernel flannel.1 has a random MAC; guessing would blackhole every packet.
            fail(s.child_path("vtep_mac"),
                 "missing (required in flannel mode: the MAC of the remote's flannel.1, from "
                 "its flannel.alpha.coreos.com/backend-data annotation)");
        }
        if (!r.vtep_mac) {
            r.vtep_mac = Mac::from_ip(r.ip);  // what a kdp peer uses for itself by default
        }
        c.remote_nodes.push_back(std::move(r));
    }
}

void read_api(const Section& s, NodeConfig& c) {
    s.read("socket", c.api_socket, as_socket_path);
    if (const auto f = s.get("group")) {
        const std::string name = as_nonempty_string(*f);
        std::vector<char> buf(16384);
        group gr{};
        group* found = nullptr;
        if (::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found) != 0 ||
            found == nullptr) {
            fail(f->path, quote(name) + " is not a group on this host (getent group " + name + ")");
        }
        c.api_group = name;
        c.api_gid = gr.gr_gid;
    }
    for (size_t i = 0; i < c.pods.size(); ++i) {
        if (c.pods[i].socket == c.api_socket) {
            fail(fmt::format("pods[{}].socket", i),
                 quote(c.api_socket) + " is the gRPC socket (api.socket)");
        }
    }
}

void read_limits(const Section& s, NodeConfig& c) {
    LimitsConfig& l = c.limits;
    // Upper bounds catch typos (an extra digit) before they turn into a failed hugepage
    // reservation: 2^24 mbufs of ~2.3 KB are already 38 GB.
    s.read_uint("mbufs", l.mbufs, 1, (1u << 24) - 1);
    s.read_uint("max_pods", l.max_pods, 1, 4096);
    s.read_uint("max_routes", l.max_routes, 1, 1u << 20);
    s.read_uint("arp_pending", l.arp_pending, 1, 4096);
    s.read_uint("arp_timeout_ms", l.arp_timeout_ms, 1, 60'000);
    s.read_uint("arp_reachable_s", l.arp_reachable_s, 1, 86'400);
    s.read_uint("conntrack", l.conntrack, 1024, 1u << 26);
    s.read_uint("conntrack_source_share", l.conntrack_source_share, 1, 100);
    if (c.pods.size() > l.max_pods) {
        fail(s.child_path("max_pods"),
             fmt::format("{} is less than the {} ports listed in pods", l.max_pods, c.pods.size()));
    }
    if (c.remote_nodes.size() > l.max_routes) {
        fail(s.child_path("max_routes"),
             fmt::format("{} is less than the {} entries in remote_nodes", l.max_routes,
                         c.remote_nodes.size()));
    }
}

void read_conntrack_timeouts(const Section& s, NodeConfig& c) {
    table::CtTimeouts& t = c.conntrack_timeouts;
    // At most a week: an established TCP entry idle longer than that is gone for good.
    constexpr uint32_t kWeek = 7 * 86'400;
    s.read_uint("tcp_syn", t.tcp_syn, 1, kWeek);
    s.read_uint("tcp_established", t.tcp_established, 1, kWeek);
    s.read_uint("tcp_closing", t.tcp_closing, 1, kWeek);
    s.read_uint("tcp_closed", t.tcp_closed, 1, kWeek);
    s.read_uint("udp", t.udp, 1, kWeek);
    s.read_uint("udp_stream", t.udp_stream, 1, kWeek);
    s.read_uint("sctp", t.sctp, 1, kWeek);
    s.read_uint("icmp", t.icmp, 1, kWeek);
    s.read_uint("other", t.other, 1, kWeek);
}

void read_network_policy(const Section& s, NodeConfig& c) {
    if (const auto f = s.get("before_sync")) {
        const std::string& v = as_string(*f);
        if (v == "deny") {
            c.policy_allow_before_sync = false;
        } else if (v == "allow") {
            c.policy_allow_before_sync = true;
        } else {
            fail(f->path, quote(v) + " is not one of deny, allow");
        }
    }
}

NodeConfig build(const YAML::Node& root) {
    const Section top =
        root.IsNull()
            ? Section::absent("")
            : Section(root, "",
                      {"node", "vxlan", "dpdk", "workers", "uplink", "pods", "remote_nodes", "host",
                       "api", "limits", "conntrack_timeouts", "network_policy"});
    NodeConfig c;
    read_node(top.section("node", {"name", "ip", "mac", "pod_cidr", "gateway", "gateway_mac",
                                   "cluster_cidr", "mtu"}),
              c);
    read_vxlan(top.section("vxlan", {"mode", "port", "vni", "vtep_mac"}), c);
    read_dpdk(top.section("dpdk", {"file_prefix", "lcores", "eal_args", "huge_unlink"}), c);
    read_workers(top.section("workers", {"lcores", "idle"}), c);
    read_uplink(top.section("uplink", {"devargs", "rx_queues", "gateway", "prefix_len"}), c);
    read_pods(top, c);
    read_remote_nodes(top, c);
    read_host(top.section("host", {"iface", "netns", "routes", "node_address"}),
              top.get("host").has_value(), c);
    read_api(top.section("api", {"socket", "group"}), c);
    read_limits(
        top.section("limits", {"mbufs", "max_pods", "max_routes", "arp_pending", "arp_timeout_ms",
                               "arp_reachable_s", "conntrack", "conntrack_source_share"}),
        c);
    read_conntrack_timeouts(top.section("conntrack_timeouts",
                                        {"tcp_syn", "tcp_established", "tcp_closing", "tcp_closed",
                                         "udp", "udp_stream", "sctp", "icmp", "other"}),
                            c);
    read_network_policy(top.section("network_policy", {"before_sync"}), c);
    return c;
}

// `source` names the text in syntax errors: the file path, or "<inline>".
NodeConfig parse(const std::string& text, std::string_view source) {
    std::vector<YAML::Node> docs;
    try {
        docs = YAML::LoadAll(text);
    } catch (const YAML::Exception& e) {
        if (e.mark.is_null()) {
            throw ConfigError(fmt::format("{}: {}", source, e.msg));
        }
        throw ConfigError(
            fmt::format("{}:{}:{}: {}", source, e.mark.line + 1, e.mark.column + 1, e.msg));
    }
    if (docs.size() > 1) {
        throw ConfigError(fmt::format("{}:{}:{}: expected one YAML document, found {}", source,
                                      docs[1].Mark().line + 1, docs[1].Mark().column + 1,
                                      docs.size()));
    }
    return build(docs.empty() ? YAML::Node() : docs[0]);
}

}  // namespace

NodeConfig parse_node_config(const std::string& yaml_text) {
    return parse(yaml_text, "<inline>");
}

NodeConfig load_node_config(const std::string& path) {
    // A node config is a few KB; anything near this is not one.
    constexpr size_t kMaxFileSize = 16u << 20;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        throw ConfigError(fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
    }
    std::string text;
    char buf[1 << 16];
    while (true) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            const int err = errno;
            ::close(fd);
            throw ConfigError(fmt::format("{}: cannot read: {}", path, std::strerror(err)));
        }
        if (n == 0) {
            break;
        }
        text.append(buf, static_cast<size_t>(n));
        if (text.size() > kMaxFileSize) {
            ::close(fd);
            throw ConfigError(
                fmt::format("{}: cannot read: larger than {} bytes", path, kMaxFileSize));
        }
    }
    ::close(fd);
    return parse(text, path);
}

}  // namespace kdp::config
