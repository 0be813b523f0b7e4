#include "port/ethdev.h"

#include <algorithm>
#include <cstring>

#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

namespace kdp::dataplane {

namespace {

// Ring sizes: 1024 descriptors absorb a few bursts of jitter on the worker at 10+ Mpps;
// devices that want other sizes get them adjusted by rte_eth_dev_adjust_nb_rx_tx_desc.
constexpr uint16_t kRxDesc = 1024;
constexpr uint16_t kTxDesc = 1024;
// A pod port carries one pod's traffic. Some PMDs (net_tap) fill their RX ring with mbufs from
// the shared pool at set-up, so smaller pod rings let many more run-time pods share one pool.
constexpr uint16_t kPodRxDesc = 512;
constexpr uint16_t kPodTxDesc = 512;

std::string dev_name_of(const std::string& devargs) {
    return devargs.substr(0, devargs.find(','));
}

std::string errstr(int rc) {
    return std::strerror(rc < 0 ? -rc : rc);
}

}  // namespace

Mac port_mac(uint16_t port_id) {
    rte_ether_addr a{};
    Mac m;
    if (rte_eth_macaddr_get(port_id, &a) == 0) {
        std::copy(std::begin(a.addr_bytes), std::end(a.addr_bytes), m.b.begin());
    }
    return m;
}

std::optional<uint16_t> setup_port(const PortSetup& s, PortTable& table, std::string& err) {
    const std::string name = dev_name_of(s.devargs);
    int rc = rte_dev_probe(s.devargs.c_str());
    if (rc != 0) {
        err = "probe " + s.devargs + ": " + errstr(rc);
        return std::nullopt;
    }
    uint16_t pid = 0;
    if (rte_eth_dev_get_port_by_name(name.c_str(), &pid) != 0) {
        err = "probe " + s.devargs + ": no ethdev named " + name + " appeared";
        return std::nullopt;
    }
    if (!configure_port(pid, s, table, err)) {
        return std::nullopt;
    }
    return pid;
}

bool configure_port(uint16_t pid, const PortSetup& s, PortTable& table, std::string& err) {
    const std::string name =
        s.devargs.empty() ? "port " + std::to_string(pid) : dev_name_of(s.devargs);
    if (pid >= RTE_MAX_ETHPORTS) {
        err = "port id out of range";
        return false;
    }
    rte_eth_dev_info info{};
    int rc = rte_eth_dev_info_get(pid, &info);
    if (rc != 0) {
        err = name + ": device info: " + errstr(rc);
        return false;
    }
    const uint16_t nb_rxq = std::max<uint16_t>(1, std::min(s.rx_queues, info.max_rx_queues));
    const uint16_t nb_txq = std::max<uint16_t>(1, std::min(s.workers, info.max_tx_queues));
    rte_eth_conf conf{};
    if (nb_rxq > 1) {
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_hf =
            (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
    }
    if (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_IPV4_CKSUM) {
        conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_IPV4_CKSUM;
    }
    rc = rte_eth_dev_configure(pid, nb_rxq, nb_txq, &conf);
    if (rc != 0) {
        err = name + ": configure " + std::to_string(nb_rxq) + " rx / " + std::to_string(nb_txq) +
              " tx queues: " + errstr(rc);
        return false;
    }
    const bool pod = s.kind != PortKind::kUplink;  // pod and host ports: small rings
    uint16_t nb_rxd = pod ? kPodRxDesc : kRxDesc;
    uint16_t nb_txd = pod ? kPodTxDesc : kTxDesc;
    rte_eth_dev_adjust_nb_rx_tx_desc(pid, &nb_rxd, &nb_txd);
    const int socket = std::max(0, rte_eth_dev_socket_id(pid));
    for (uint16_t q = 0; q < nb_rxq; ++q) {
        rc = rte_eth_rx_queue_setup(pid, q, nb_rxd, static_cast<unsigned>(socket), nullptr, s.pool);
        if (rc == -ENOMEM) {
            err = name + ": rx queue " + std::to_string(q) + ": the mbuf pool has not " +
                  std::to_string(nb_rxd) + " mbufs left for its ring (" +
                  std::to_string(rte_mempool_avail_count(s.pool)) +
                  " free; raise limits.mbufs in the node config)";
            return false;
        }
        if (rc != 0) {
            err = name + ": rx queue " + std::to_string(q) + ": " + errstr(rc);
            return false;
        }
    }
    for (uint16_t q = 0; q < nb_txq; ++q) {
        rc = rte_eth_tx_queue_setup(pid, q, nb_txd, static_cast<unsigned>(socket), nullptr);
        if (rc != 0) {
            err = name + ": tx queue " + std::to_string(q) + ": " + errstr(rc);
            return false;
        }
    }
    rc = rte_eth_dev_set_mtu(pid, s.mtu);
    if (rc != 0 && rc != -ENOTSUP) {
        err = name + ": set MTU " + std::to_string(s.mtu) + ": " + errstr(rc);
        return false;
    }
    rc = rte_eth_dev_start(pid);
    if (rc != 0) {
        err = name + ": start: " + errstr(rc);
        return false;
    }
    if (s.promiscuous) {
        rte_eth_promiscuous_enable(pid);
    }
    PortRuntime& rt = table.port[pid];
    rt.kind = s.kind;
    rt.nb_rxq = nb_rxq;
    rt.nb_txq = nb_txq;
    rt.txq_shared = nb_txq < s.workers;
    // A TAP's kernel netdev carries the port's MAC, so that is the peer's (the pod's, the
    // host's) until it says otherwise; other pod ports learn it from the pod's first frame.
    if (s.peer_mac) {
        rt.peer_mac.store(s.peer_mac->pack(), std::memory_order_relaxed);
    } else if (s.kind != PortKind::kUplink && name.rfind("net_tap", 0) == 0) {
        rt.peer_mac.store(port_mac(pid).pack(), std::memory_order_relaxed);
    }
    return true;
}

void teardown_port(uint16_t port_id) {
    rte_eth_dev_stop(port_id);
    rte_eth_dev_info info{};
    rte_device* dev = nullptr;
    if (rte_eth_dev_info_get(port_id, &info) == 0) {
        dev = info.device;
    }
    rte_eth_dev_close(port_id);
    if (dev != nullptr) {
        rte_dev_remove(dev);
    }
}

}  // namespace kdp::dataplane
