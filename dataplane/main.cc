// kdp-dataplane: one process per node. Loads and validates the node config before the EAL
// starts, sets up the ports, publishes the first tables, launches one poll-mode worker per
// configured lcore, serves statistics through DPDK telemetry, and shuts down cleanly on
// SIGINT/SIGTERM (workers stop, ports close, the EAL releases its hugepages).
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_pdump.h>
#include <rte_rcu_qsbr.h>

#include "api/grpc_server.h"
#include "api/table_manager.h"
#include "api/telemetry.h"
#include "common/netlink.h"
#include "common/version.h"
#include "config/node_config.h"
#include "core/worker.h"
#include "port/ethdev.h"
#include "port/tap_keeper.h"

namespace kdp::dataplane {
namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) {
    g_stop.store(true);
}

[[noreturn]] void die(const std::string& msg) {
    std::fprintf(stderr, "kdp-dataplane: %s\n", msg.c_str());
    std::exit(1);
}

// Tells systemd (Type=notify) that the node is ready, when started by it: one "READY=1"
// datagram to $NOTIFY_SOCKET (sd_notify(3); a leading '@' is an abstract socket). The protocol
// is this one datagram, so no libsystemd. Best effort: a failure is logged, never fatal.
void notify_ready() {
    const char* path = std::getenv("NOTIFY_SOCKET");
    if (path == nullptr || path[0] == '\0') {
        return;
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const size_t len = std::strlen(path);
    if (len >= sizeof(addr.sun_path) || (path[0] != '/' && path[0] != '@')) {
        std::fprintf(stderr, "kdp-dataplane: warning: NOTIFY_SOCKET \"%s\" not usable\n", path);
        return;
    }
    std::memcpy(addr.sun_path, path, len);
    if (path[0] == '@') {
        addr.sun_path[0] = '\0';
    }
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    const char msg[] = "READY=1";
    const auto addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
    if (fd < 0 ||
        ::sendto(fd, msg, sizeof(msg) - 1, 0, reinterpret_cast<sockaddr*>(&addr), addr_len) < 0) {
        std::fprintf(stderr, "kdp-dataplane: warning: sd_notify READY=1 to %s: %s\n", path,
                     std::strerror(errno));
    }
    if (fd >= 0) {
        ::close(fd);
    }
}

void usage(FILE* to) {
    std::fprintf(to,
                 "usage: kdp-dataplane --config FILE | --version\n"
                 "  Runs the kdp node dataplane described by the YAML node config FILE\n"
                 "  (see the README's configuration reference).\n");
}

std::vector<std::string> eal_argv(const config::NodeConfig& c) {
    std::vector<std::string> a{"kdp-dataplane", "--file-prefix", c.file_prefix};
    if (!c.lcores.empty()) {
        a.insert(a.end(), {"--lcores", c.lcores});
    } else {
        std::string l = "0";
        for (unsigned lc : c.worker_lcores) {
            l += "," + std::to_string(lc);
        }
        a.insert(a.end(), {"-l", l});
    }
    const auto has = [&](const char* opt) {
        return std::find(c.eal_args.begin(), c.eal_args.end(), opt) != c.eal_args.end();
    };
    // dpdk.huge_unlink: nothing left behind even if the process is killed, and no secondary
    // process (dpdk-dumpcap, dpdk-pdump, dpdk-proc-info) can map the memory. Off by default.
    if (c.huge_unlink && !has("--no-huge") && !has("--in-memory") && !has("--huge-unlink")) {
        a.push_back("--huge-unlink");
    }
    a.insert(a.end(), c.eal_args.begin(), c.eal_args.end());
    return a;
}

// Why DPDK secondary processes cannot attach to this dataplane (empty if they can): they map
// its hugepage files through the runtime directory of its file prefix.
std::string no_secondary_reason(const std::vector<std::string>& eal) {
    for (const char* opt : {"--huge-unlink", "--in-memory", "--no-shconf", "--no-huge"}) {
        if (std::find(eal.begin(), eal.end(), opt) != eal.end()) {
            return fmt::format("the EAL runs with {}", opt);
        }
    }
    return "";
}

// Removes this process's hugepage files, `<prefix>map_<n>` in every hugetlbfs mount: unless
// they were unlinked at start (dpdk.huge_unlink), the EAL leaves them behind on a clean exit,
// and they hold their pages until the next start with the same prefix. Returns how many.
size_t remove_hugepage_files(const std::string& prefix) {
    size_t removed = 0;
    try {
        std::ifstream mounts("/proc/mounts");
        std::string dev, dir, type, rest;
        while (mounts >> dev >> dir >> type && std::getline(mounts, rest)) {
            if (type != "hugetlbfs") {
                continue;
            }
            std::error_code ec;
            for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
                if (e.path().filename().string().rfind(prefix + "map_", 0) == 0 &&
                    std::filesystem::remove(e.path(), ec)) {
                    ++removed;
                }
            }
        }
    } catch (const std::exception& e) {
        fmt::print(stderr, "kdp-dataplane: hugepage files of {}: {}\n", prefix, e.what());
    }
    return removed;
}

std::string tap_devargs(const config::PodPortConfig& p, size_t index) {
    return fmt::format("net_tap_kdp{},iface={}", index, p.iface);
}

std::string netns_path(const std::string& name) {
    return "/run/netns/" + name;
}

// Moves the interface `iface` of the dataplane's namespace into the one named `netns` (under
// /run/netns). Throws NetlinkError.
void move_iface(const std::string& iface, const std::string& netns) {
    const NetnsFile ns(netns_path(netns));
    Netlink nl;
    const auto idx = nl.index(iface);
    if (!idx) {
        throw NetlinkError(iface + ": no such interface after creating it", ENODEV);
    }
    nl.move_to_netns(*idx, ns.fd());
}

// The host interface's kernel side (config `host`, see config/README.md): moved into its
// namespace, IPv6 off, up with the pod MTU, the gateway address, and link routes into the pod
// network with that address as their source. The TAP must be set up and started already:
// net_tap asks for its link by name in the dataplane's namespace. Throws NetlinkError.
void configure_host_iface(const config::NodeConfig& cfg) {
    const config::HostConfig& h = *cfg.host;
    std::optional<NetnsGuard> in;
    if (!h.netns.empty()) {
        move_iface(h.iface, h.netns);
        in.emplace(netns_path(h.netns));
    }
    Netlink nl;  // in the namespace the TAP is in now
    const auto idx = nl.index(h.iface);
    if (!idx) {
        throw NetlinkError(h.iface + ": no such interface after creating it", ENODEV);
    }
    // No IPv6 on it (router solicitations and the like would only be dropped); the sysctl is
    // the calling thread's namespace's. Not fatal where IPv6 is off altogether.
    if (const int fd =
            ::open(fmt::format("/proc/sys/net/ipv6/conf/{}/disable_ipv6", h.iface).c_str(),
                   O_WRONLY | O_CLOEXEC);
        fd >= 0) {
        (void)!::write(fd, "1", 1);
        ::close(fd);
    }
    nl.configure(*idx, "", cfg.pod_mtu());
    nl.add_address(*idx, Prefix4{cfg.gateway_ip, 32}, cfg.gateway_ip);
    if (h.node_address) {
        // The kernel's own address and subnet (its prefix route comes with it), and its way
        // off the subnet, as it had them on the NIC the dataplane now owns.
        nl.add_address(*idx, cfg.underlay_subnet(), cfg.node_ip);
        if (cfg.uplink.gateway) {
            try {
                nl.add_default_route(*idx, *cfg.uplink.gateway);
            } catch (const NetlinkError& e) {
                if (e.error() != EEXIST) {
                    throw;
                }
                fmt::print(stderr,
                           "kdp-dataplane: warning: host: a default route exists already; the "
                           "kernel keeps it instead of uplink.gateway {} on {}\n",
                           cfg.uplink.gateway->str(), h.iface);
            }
        }
    }
    std::vector<Prefix4> routes{cfg.pod_cidr};
    if (cfg.cluster_cidr) {
        routes.push_back(*cfg.cluster_cidr);
    }
    for (const Prefix4& r : h.routes) {
        if (std::find(routes.begin(), routes.end(), r) == routes.end()) {
            routes.push_back(r);
        }
    }
    for (const Prefix4& r : routes) {
        nl.add_link_route(*idx, r, cfg.gateway_ip);
    }
}

// A run-time TAP pod port. A new one: net_tap creates the interface here (the caller moves it
// into the pod's namespace) and a keeper holds it persistent. One recorded by an earlier
// process (its record carries the TUN flags): the interface is looked for where the caller put
// it, in the pod's namespace, else still here; net_tap attaches to it there, with its MAC, and
// a new keeper holds it.
std::optional<std::string> create_runtime_tap(
    const api::PodPortRequest& r, uint32_t n, PortSetup& s, PortTable& ports, api::PortEntry& e) {
    e.kind = "tap";
    std::string why;
    std::optional<NetnsScope> ns;
    std::string name = r.iface;
    uint32_t flags = r.tun_flags;
    if (flags == 0) {
        s.devargs = fmt::format("net_tap_kdpr{},iface={}", n, r.iface);
    } else {
        if (!r.netns.empty()) {
            ns.emplace(r.netns, why);
            std::string absent;
            if (ns->ok() && iface_mac(r.netns_iface, absent)) {
                name = r.netns_iface;
            } else {
                ns.reset();  // namespace or interface gone: the TAP may not have moved yet
            }
        }
        const auto mac = iface_mac(name, why);
        if (!mac) {
            return fmt::format("its interface is gone ({}{})",
                               r.netns.empty() ? "" : r.netns + ": ", why);
        }
        s.devargs = fmt::format("net_tap_kdpr{},iface={},mac={}", n, name, mac->str());
    }
    const auto pid = setup_port(s, ports, why);
    if (!pid) {
        return why;
    }
    if (flags == 0) {
        if (const auto f = tap_flags(name, why)) {
            flags = *f;
        }
    }
    const auto fd = flags != 0 ? tap_hold(name, flags, why) : std::nullopt;
    if (!fd) {
        teardown_port(*pid);
        return fmt::format("keeping {} across restarts: {}", name, why);
    }
    e.devargs = s.devargs;
    e.port_id = *pid;
    e.tap_keeper = *fd;
    e.tun_flags = flags;
    return std::nullopt;
}

void print_stats(const api::StatsSnapshot& s) {
    for (const api::PortStats& p : s.ports) {
        std::string drops;
        for (size_t i = 1; i < kDropReasonCount; ++i) {
            if (p.counters.drops[i] != 0) {
                drops += fmt::format(" {}={}", kDropReasonInfo[i].label, p.counters.drops[i]);
            }
        }
        std::printf("  port %-20s rx %llu pkts %llu B, tx %llu pkts %llu B%s%s\n", p.name.c_str(),
                    static_cast<unsigned long long>(p.counters.rx_packets),
                    static_cast<unsigned long long>(p.counters.rx_bytes),
                    static_cast<unsigned long long>(p.counters.tx_packets),
                    static_cast<unsigned long long>(p.counters.tx_bytes),
                    drops.empty() ? "" : ", drops:", drops.c_str());
    }
}

// The command line: the config path, or an exit code (help, version, usage error).
std::optional<int> parse_args(int argc,
                              char** argv,
                              std::string& config_path,
                              std::optional<uint32_t>& api_revision_for_test) {
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if ((a == "--config" || a == "-c") && i + 1 < argc) {
            config_path = argv[++i];
        } else if (a == "--api-revision-for-test" && i + 1 < argc) {
            // Hidden: NodeInfo reports this API revision, so that the e2e tests see kdp-control
            // and kdp-cni refuse a dataplane of another revision (test/e2e/deploy_test.sh).
            char* end = nullptr;
            const unsigned long r = std::strtoul(argv[++i], &end, 10);
            if (end == argv[i] || *end != '\0' || r > UINT32_MAX) {
                usage(stderr);
                return 2;
            }
            api_revision_for_test = static_cast<uint32_t>(r);
        } else if (a.rfind("--config=", 0) == 0) {
            config_path = a.substr(9);
        } else if (a == "--help" || a == "-h") {
            usage(stdout);
            return 0;
        } else if (a == "--version") {
            std::printf("%s\n", version_line("kdp-dataplane").c_str());
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (config_path.empty()) {
        usage(stderr);
        return 2;
    }
    return std::nullopt;
}

// Starts the EAL with the config's arguments (returned: the shutdown needs them), packet
// capture for secondary processes, and checks that every worker has an lcore of its own.
std::vector<std::string> start_eal(const config::NodeConfig& cfg) {
    std::vector<std::string> args = eal_argv(cfg);
    std::vector<char*> cargs;
    for (std::string& s : args) {
        cargs.push_back(s.data());
    }
    if (rte_eal_init(static_cast<int>(cargs.size()), cargs.data()) < 0) {
        die(fmt::format("EAL init failed: {}", rte_strerror(rte_errno)));
    }
    // Packet capture: dpdk-dumpcap and dpdk-pdump are secondary processes that ask this one,
    // over the EAL's multi-process channel, to copy a port's packets to them (ethdev rx/tx
    // callbacks: nothing on the workers' path until someone captures).
    if (const std::string why = no_secondary_reason(args); !why.empty()) {
        fmt::print(stderr,
                   "kdp-dataplane: warning: packet capture unavailable: {}, so dpdk-dumpcap "
                   "and other secondary processes cannot attach (dpdk.huge_unlink, "
                   "dpdk.eal_args)\n",
                   why);
    } else if (rte_pdump_init() != 0) {
        fmt::print(stderr, "kdp-dataplane: warning: packet capture unavailable: {}\n",
                   rte_strerror(rte_errno));
    }
    const unsigned main_lcore = rte_get_main_lcore();
    for (size_t i = 0; i < cfg.worker_lcores.size(); ++i) {
        const unsigned lc = cfg.worker_lcores[i];
        if (lc == main_lcore || !rte_lcore_is_enabled(lc)) {
            die(
                fmt::format("workers.lcores[{}]: lcore {} is {} (EAL lcores: add it to "
                            "dpdk.lcores)",
                            i, lc, lc == main_lcore ? "the main lcore" : "not enabled"));
        }
    }
    return args;
}

// Packet memory, sized up front from the config.
rte_mempool* create_pool(const config::NodeConfig& cfg) {
    const uint16_t data_room = static_cast<uint16_t>(
        std::max<uint32_t>(RTE_MBUF_DEFAULT_DATAROOM, cfg.mtu + 14u + 4u + 64u) +
        RTE_PKTMBUF_HEADROOM);
    rte_mempool* pool = rte_pktmbuf_pool_create("kdp_mbufs", cfg.limits.mbufs, 256, 0, data_room,
                                                static_cast<int>(rte_socket_id()));
    if (pool == nullptr) {
        die(fmt::format("mbuf pool of {} x {} B: {}", cfg.limits.mbufs, data_room,
                        rte_strerror(rte_errno)));
    }
    return pool;
}

// What the node's workers share, made once at start-up and alive until the process exits
// (workers, the table manager and the run-time port factory point into it).
struct NodeState {
    explicit NodeState(const config::NodeConfig& cfg, uint16_t nb_workers)
        : neighbors(cfg.limits.max_routes + 8),
          conntrack(cfg.limits.conntrack,
                    nb_workers,
                    cfg.conntrack_timeouts,
                    cfg.limits.conntrack_source_share) {}

    PortTable ports;
    std::vector<api::PortEntry> entries;  // the config's ports, in start-up order
    uint16_t uplink = 0;
    std::optional<uint16_t> host_port;
    Mac node_mac;
    table::TableRef tables;
    table::NeighborTable neighbors;
    table::Conntrack conntrack;
    NodeContext node;
    uint32_t next_runtime_port = 0;  // names of the ports added at run time
};

// Opens the config's ports: the uplink, the pods' and the host interface.
void open_ports(const config::NodeConfig& cfg,
                rte_mempool* pool,
                uint16_t nb_workers,
                NodeState& st) {
    std::string err;
    PortSetup up;
    up.devargs = cfg.uplink.devargs;
    up.kind = PortKind::kUplink;
    up.rx_queues = cfg.uplink.rx_queues;
    up.workers = nb_workers;
    up.mtu = cfg.mtu;
    up.pool = pool;
    const auto uplink = setup_port(up, st.ports, err);
    if (!uplink) {
        die("uplink: " + err);
    }
    st.uplink = *uplink;
    st.node_mac = cfg.node_mac.value_or(port_mac(*uplink));
    if (cfg.node_mac && *cfg.node_mac != port_mac(*uplink)) {
        rte_eth_promiscuous_enable(*uplink);
    }
    st.entries.push_back({"uplink", "uplink", cfg.uplink.devargs, *uplink});
    for (size_t i = 0; i < cfg.pods.size(); ++i) {
        const config::PodPortConfig& p = cfg.pods[i];
        PortSetup s;
        s.kind = PortKind::kPod;
        s.workers = nb_workers;
        s.mtu = cfg.pod_mtu();
        s.pool = pool;
        s.peer_mac = p.mac;
        std::string kind;
        switch (p.type) {
            case config::PortType::kTap:
                s.devargs = tap_devargs(p, i);
                kind = "tap";
                break;
            case config::PortType::kVhostUser:
                // Several queue pairs let several workers take one pod's traffic (the
                // virtio side picks the queue, as RSS would on a NIC).
                s.devargs =
                    fmt::format("net_vhost_kdp{},iface={},queues={}", i, p.socket, p.queues);
                s.rx_queues = p.queues;
                kind = "vhostuser";
                break;
            case config::PortType::kDevargs:
                s.devargs = p.devargs;
                kind = "devargs";
                break;
        }
        const auto pid = setup_port(s, st.ports, err);
        if (!pid) {
            die(fmt::format("pods[{}] ({}): {}", i, p.name, err));
        }
        if (p.type == config::PortType::kTap && !p.netns.empty()) {
            try {
                move_iface(p.iface, p.netns);  // started already: net_tap found it here
            } catch (const NetlinkError& e) {
                die(fmt::format("pods[{}] ({}): netns {}: {}", i, p.name, p.netns, e.what()));
            }
        }
        st.entries.push_back({p.name, kind, s.devargs, *pid});
    }
    if (cfg.host) {
        PortSetup s;
        s.devargs = fmt::format("net_tap_kdphost,iface={}", cfg.host->iface);
        s.kind = PortKind::kHost;
        s.workers = nb_workers;
        s.mtu = cfg.pod_mtu();
        s.pool = pool;
        st.host_port = setup_port(s, st.ports, err);
        if (!st.host_port) {
            die("host: " + err);
        }
        try {
            configure_host_iface(cfg);
        } catch (const NetlinkError& e) {
            die(fmt::format("host ({}{}): {}", cfg.host->iface,
                            cfg.host->netns.empty() ? "" : " in netns " + cfg.host->netns,
                            e.what()));
        }
        st.entries.push_back({"host", "host", s.devargs, *st.host_port});
        const bool remote_pods =
            cfg.cluster_cidr.has_value() ||
            std::any_of(cfg.host->routes.begin(), cfg.host->routes.end(), [&](const Prefix4& r) {
                return r.contains(cfg.pod_cidr.addr) && r.len < cfg.pod_cidr.len;
            });
        if (!remote_pods) {
            fmt::print(stderr,
                       "kdp-dataplane: warning: host: the node's kernel reaches only this node's "
                       "pods and host.routes: set node.cluster_cidr (or list the cluster's pod "
                       "CIDR in host.routes) for pods on other nodes\n");
        }
    }
}

// The node's identity and shared objects, as the workers see them (NodeContext).
void fill_node_context(const config::NodeConfig& cfg, uint16_t nb_workers, NodeState& st) {
    NodeContext& node = st.node;
    node.node_ip = cfg.node_ip;
    node.node_mac = st.node_mac;
    node.underlay_subnet = cfg.underlay_subnet();
    node.gateway_ip = cfg.gateway_ip;
    node.gateway_mac = cfg.gateway_mac;
    node.pod_cidr = cfg.pod_cidr;
    node.cluster_cidr = cfg.cluster_cidr.value_or(cfg.pod_cidr);
    node.vtep_mac = cfg.vtep_mac;
    node.vxlan_port_be = to_be16(cfg.vxlan_port);
    node.vni = cfg.vni;
    node.mtu = cfg.mtu;
    node.uplink_port = st.uplink;
    node.host_port = st.host_port.value_or(table::kNoPort);
    node.host_node_address = cfg.host && cfg.host->node_address;
    node.workers = nb_workers;
    node.tsc_hz = rte_get_tsc_hz();
    node.arp_retry_tsc = node.tsc_hz / 10;  // 100 ms between requests for one address
    node.arp_timeout_tsc = node.tsc_hz * cfg.limits.arp_timeout_ms / 1000;
    node.arp_stale_tsc = node.tsc_hz * cfg.limits.arp_reachable_s;
    node.neighbors = &st.neighbors;
    node.conntrack = &st.conntrack;
    node.ports = &st.ports;
    node.tables = &st.tables;
    if (cfg.uplink.gateway) {
        node.underlay_gateway_slot = st.neighbors.slot_for(*cfg.uplink.gateway);
    }
}

rte_rcu_qsbr* create_qsbr(uint16_t nb_workers) {
    const size_t qs_size = rte_rcu_qsbr_get_memsize(nb_workers);
    auto* qsbr = static_cast<rte_rcu_qsbr*>(rte_zmalloc("kdp_qsbr", qs_size, RTE_CACHE_LINE_SIZE));
    if (qsbr == nullptr || rte_rcu_qsbr_init(qsbr, nb_workers) != 0) {
        die("RCU QSBR init failed");
    }
    return qsbr;
}

// One Worker per worker lcore, every (port, rx queue) of the config spread over them
// round-robin.
std::vector<std::unique_ptr<Worker>> create_workers(const config::NodeConfig& cfg,
                                                    rte_mempool* pool,
                                                    rte_rcu_qsbr* qsbr,
                                                    const NodeState& st) {
    const auto nb_workers = static_cast<uint16_t>(cfg.worker_lcores.size());
    std::vector<std::unique_ptr<Worker>> workers;
    for (uint16_t i = 0; i < nb_workers; ++i) {
        auto w = std::make_unique<Worker>();
        w->index = i;
        w->lcore = cfg.worker_lcores[i];
        w->pool = pool;
        w->node = &st.node;
        w->qsbr = qsbr;
        w->idle = IdlePolicy{cfg.idle.spin_polls, cfg.idle.sleep_us, cfg.idle.max_sleep_us};
        w->stop = &g_stop;
        w->held.resize(cfg.limits.arp_pending);
        workers.push_back(std::move(w));
    }
    size_t next = 0;
    for (const api::PortEntry& e : st.entries) {
        for (uint16_t q = 0; q < st.ports.port[e.port_id].nb_rxq; ++q) {
            workers[next++ % nb_workers]->rxqs.push_back(RxQueue{e.port_id, q});
        }
    }
    return workers;
}

api::NodeInfo node_info(const config::NodeConfig& cfg, const NodeState& st) {
    api::NodeInfo info;
    info.node_name = cfg.node_name;
    info.node_ip = cfg.node_ip;
    info.node_mac = st.node_mac;
    info.pod_cidr = cfg.pod_cidr;
    info.gateway_ip = cfg.gateway_ip;
    info.gateway_mac = cfg.gateway_mac;
    info.vxlan_mode = cfg.vxlan_mode == config::VxlanMode::kFlannel ? "flannel" : "standard";
    info.vxlan_port = cfg.vxlan_port;
    info.vni = cfg.vni;
    info.vtep_mac = cfg.vtep_mac;
    info.mtu = cfg.mtu;
    info.pod_mtu = cfg.pod_mtu();
    info.workers = static_cast<uint16_t>(cfg.worker_lcores.size());
    return info;
}

// Pod ports created at run time (AddPort, from kdp-cni or kdpctl): TAPs, and vhost-user in
// client mode with reconnection: the pod's application (QEMU, virtio_user server=1) owns
// the socket and the dataplane connects to it, so that either side may restart: a
// restarted application is reconnected to, and a restarted dataplane finds the socket
// where it was (its ports are recorded next to the API socket and brought back).
api::PortFactory runtime_port_factory(const config::NodeConfig& cfg,
                                      rte_mempool* pool,
                                      NodeState& st) {
    const auto nb_workers = static_cast<uint16_t>(cfg.worker_lcores.size());
    return api::PortFactory{
        [&cfg, pool, &st, nb_workers](const api::PodPortRequest& r,
                                      api::PortEntry& e) -> std::optional<std::string> {
            PortSetup s;
            s.kind = PortKind::kPod;
            s.workers = nb_workers;
            s.mtu = r.mtu != 0 ? r.mtu : cfg.pod_mtu();
            s.pool = pool;
            const uint32_t n = st.next_runtime_port++;
            if (r.type == "tap") {
                return create_runtime_tap(r, n, s, st.ports, e);
            } else {
                const uint32_t queues = std::max<uint32_t>(r.queues, 1);
                s.devargs = fmt::format("net_vhost_kdpr{},iface={},queues={},client=1", n,
                                        r.socket_path, queues);
                s.rx_queues = static_cast<uint16_t>(queues);
                e.kind = "vhostuser";
            }
            std::string why;
            const auto pid = setup_port(s, st.ports, why);
            if (!pid) {
                return why;
            }
            e.devargs = s.devargs;
            e.port_id = *pid;
            return std::nullopt;
        },
        [&st](const api::PortEntry& e) {
            rte_eth_dev_stop(e.port_id);
            rte_eth_dev_close(e.port_id);
            const std::string dev = e.devargs.substr(0, e.devargs.find(','));
            if (int rc = rte_eal_hotplug_remove("vdev", dev.c_str()); rc != 0) {
                fmt::print(stderr, "kdp-dataplane: port {}: unplugging {}: {}\n", e.name, dev,
                           rte_strerror(-rc));
            }
            st.ports.port[e.port_id].peer_mac.store(0, std::memory_order_relaxed);
            tap_release(e.tap_keeper);  // the interface goes with the port
        }};
}

// The static tables from the config: generation 1. The control plane replaces them.
void apply_config_tables(const config::NodeConfig& cfg, api::TableManager& manager) {
    table::TableSpec initial;
    initial.generation = 1;
    for (const config::RemoteNodeConfig& r : cfg.remote_nodes) {
        initial.routes.push_back(
            table::RouteSpec{r.name, r.ip, r.pod_cidr, r.vtep_mac.value_or(Mac::from_ip(r.ip))});
    }
    for (const config::PodPortConfig& p : cfg.pods) {
        initial.pods.push_back(table::PodSpec{p.name, p.ip, p.name});
    }
    // No policy (nothing isolated) when the config says so; otherwise none is in force until
    // the control plane sends it, and pod traffic waits for it.
    initial.policy.present = cfg.policy_allow_before_sync;
    if (auto e = manager.apply_tables(initial)) {
        die("tables from the config: " + *e);
    }
}

// Run-time ports of the previous process come back: vhost-user ones connect to the pod's
// socket again; TAPs were kept persistent (tap_keeper.h), and net_tap attaches to the same
// interface in the pod's namespace, so the pod keeps its address, routes and MAC. From now on
// the port state file records them.
void restore_runtime_ports(const std::string& port_state, api::TableManager& manager) {
    std::string why;
    for (const api::PodPortRequest& r : api::TableManager::read_port_state(port_state, why)) {
        api::PortInfo restored;
        if (auto e = manager.add_pod_port(r, restored)) {
            std::printf("kdp-dataplane: port %s not restored: %s\n", r.name.c_str(),
                        e->message.c_str());
        } else {
            std::printf("kdp-dataplane: port %s restored (%s)\n", r.name.c_str(),
                        restored.devargs.c_str());
        }
    }
    if (!why.empty()) {
        std::printf("kdp-dataplane: run-time ports not restored: %s\n", why.c_str());
    }
    manager.set_port_state_file(port_state);
}

void print_ready(const config::NodeConfig& cfg, const NodeState& st, const api::NodeInfo& info) {
    std::printf(
        "kdp-dataplane: node %s ready: ip %s mac %s pod_cidr %s gateway %s, %u worker(s), "
        "%zu port(s), vxlan %s port %u vni %u, pod mtu %u\n",
        cfg.node_name.c_str(), cfg.node_ip.str().c_str(), st.node_mac.str().c_str(),
        cfg.pod_cidr.str().c_str(), cfg.gateway_ip.str().c_str(), info.workers, st.entries.size(),
        info.vxlan_mode.c_str(), cfg.vxlan_port, cfg.vni, cfg.pod_mtu());
    for (const api::PortEntry& e : st.entries) {
        std::printf("  port %u %-20s %s\n", e.port_id, e.name.c_str(), e.devargs.c_str());
    }
    std::printf("  api %s\n", cfg.api_socket.c_str());
    std::fflush(stdout);
}

// The process, step by step: config, EAL, packet memory, ports, the node's shared state,
// workers, the table manager and its static tables, the API, the workers' launch; then, on
// SIGINT or SIGTERM, everything in reverse.
int run(int argc, char** argv) {
    std::string config_path;
    std::optional<uint32_t> api_revision_for_test;
    if (const std::optional<int> exit_code =
            parse_args(argc, argv, config_path, api_revision_for_test)) {
        return *exit_code;
    }
    config::NodeConfig cfg;
    try {
        cfg = config::load_node_config(config_path);
    } catch (const config::ConfigError& e) {
        std::fprintf(stderr, "kdp-dataplane: %s\n", e.what());
        return 2;
    }
    std::printf("kdp-dataplane: %s, node %s\n", version_line("kdp-dataplane").c_str(),
                cfg.node_name.c_str());

    const std::vector<std::string> args = start_eal(cfg);
    const auto nb_workers = static_cast<uint16_t>(cfg.worker_lcores.size());
    rte_mempool* pool = create_pool(cfg);
    // Workers, the table manager and the port factory point into it: it goes last.
    const auto st = std::make_unique<NodeState>(cfg, nb_workers);
    open_ports(cfg, pool, nb_workers, *st);
    fill_node_context(cfg, nb_workers, *st);
    rte_rcu_qsbr* qsbr = create_qsbr(nb_workers);
    std::vector<std::unique_ptr<Worker>> workers = create_workers(cfg, pool, qsbr, *st);
    std::vector<Worker*> worker_ptrs;
    for (const auto& w : workers) {
        worker_ptrs.push_back(w.get());
    }

    const api::NodeInfo info = node_info(cfg, *st);
    auto manager = std::make_unique<api::TableManager>(info, st->node, st->tables, qsbr,
                                                       worker_ptrs, st->entries);
    manager->set_port_factory(runtime_port_factory(cfg, pool, *st));
    manager->set_trace_pool(pool);
    apply_config_tables(cfg, *manager);
    restore_runtime_ports(cfg.api_socket + ".ports.json", *manager);

    api::set_telemetry_backend(manager.get());
    if (auto e = api::register_telemetry()) {
        die(*e);
    }
    api::GrpcServer grpc(*manager, cfg.api_socket, cfg.api_gid);
    if (api_revision_for_test) {
        fmt::print(stderr,
                   "kdp-dataplane: warning: NodeInfo reports API revision {} "
                   "(--api-revision-for-test), not {}\n",
                   *api_revision_for_test, kApiRevision);
        grpc.set_api_revision_for_test(*api_revision_for_test);
    }
    try {
        grpc.start();
    } catch (const std::exception& e) {
        die(fmt::format("api.socket {}: {}", cfg.api_socket, e.what()));
    }

    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    for (Worker* w : worker_ptrs) {
        if (rte_eal_remote_launch(worker_main, w, w->lcore) != 0) {
            die(fmt::format("cannot launch worker on lcore {}", w->lcore));
        }
    }
    print_ready(cfg, *st, info);
    notify_ready();

    while (!g_stop.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }

    std::printf("kdp-dataplane: node %s stopping\n", cfg.node_name.c_str());
    grpc.shutdown();
    rte_eal_mp_wait_lcore();
    print_stats(manager->stats());
    // Every port in service now: those of the config and those added at run time (less any
    // removed), all closed before their mempool goes.
    const std::vector<api::PortInfo> live = manager->ports();
    api::set_telemetry_backend(nullptr);  // waits for a telemetry client being answered
    manager.reset();
    for (const api::PortInfo& p : live) {
        teardown_port(p.port_id);
    }
    rte_free(qsbr);
    rte_mempool_free(pool);
    rte_pdump_uninit();
    rte_eal_cleanup();
    if (no_secondary_reason(args).empty()) {
        remove_hugepage_files(cfg.file_prefix);
    }
    std::fflush(stdout);
    return 0;
}

}  // namespace
}  // namespace kdp::dataplane

int main(int argc, char** argv) {
    return kdp::dataplane::run(argc, argv);
}
