// A single node's real pipeline on virtual ports, for packet-level tests and benchmarks.
//
//            +------------------- NodeHarness -------------------+
//   inject ->| ring port "uplink" --\                            |
//   inject ->| ring port "pod a"  ---+-> process_burst -> flush ->|-> collect
//   inject ->| ring port "pod b"  --/   (the worker's own code)   |
//            +----------------------------------------------------+
//
// Ports are net_ring ethdevs configured by the production port code; tables are built and
// published by the production TableManager; packets go through the same process_burst,
// service_held and flush_tx the worker loop calls. Only the loop itself is not running: the
// test thread plays the worker, so every step is deterministic.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <rte_eal.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include "api/table_manager.h"
#include "common/pkt_builder.h"
#include "common/tsan.h"
#include "core/worker.h"
#include "port/ethdev.h"

namespace kdp::test {

/// Starts the EAL once per test process, without hugepages or shared files. `lcores` is the
/// EAL --lcores map (a second lcore for tests that run the real worker loop).
inline void ensure_eal(const char* lcores = "0") {
    static bool done = false;
    if (done) {
        return;
    }
    std::string prefix = "kdp-test-" + std::to_string(getpid());
    std::vector<std::string> args = {
        "kdp-test", "--no-huge", "--no-pci",      "--no-shconf", "-m",          "512",
        "--lcores", lcores,      "--file-prefix", prefix,        "--log-level", "*:error"};
    std::vector<char*> argv;
    for (auto& a : args) {
        argv.push_back(a.data());
    }
    if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0) {
        std::fprintf(stderr, "EAL init failed\n");
        std::abort();
    }
    done = true;
}

struct NodeParams {
    bool real_worker = false;  // run worker_main on lcore 1 (needs ensure_eal with lcore 1)
    std::string name = "node1";
    Ip4 node_ip = ip("198.51.100.1");
    Mac node_mac = mac("02:00:00:00:01:01");
    Prefix4 pod_cidr = *Prefix4::parse("10.244.1.0/24");
    Ip4 gateway = ip("10.244.1.1");
    Mac gateway_mac = Mac::from_ip(ip("10.244.1.1"));
    Mac vtep_mac = Mac::from_ip(ip("198.51.100.1"));
    uint16_t vxlan_port = 4789;
    uint32_t vni = 1;
    uint16_t mtu = 1500;
    std::vector<std::string> pod_ports = {"default/a", "default/b"};
    bool host_port = false;  // a ring port "host" as the node's host interface (config `host`)
    bool host_node_address = false;  // host.node_address: the kernel holds node_ip too
    uint32_t held = 8;
    uint32_t conntrack = 4096;  // connections (benchmarks size it up)
    /// Workers sharing the node's tables and conntrack. The test thread plays each of them in
    /// turn (run_as / inject_as), as when RSS or a reply's other queue hands a connection's
    /// packets to different workers.
    uint32_t workers = 1;
    /// TSC ticks per conntrack second. The default suits tests that drive time themselves (1
    /// "tsc" = 1 us); a test on the real worker loop, which reads the real TSC, passes
    /// rte_get_tsc_hz() so that timeouts are in real seconds.
    uint64_t tsc_hz = 1000000;
    table::CtTimeouts timeouts;  // conntrack idle timeouts (benchmarks shorten tcp_syn)
    /// limits.conntrack_source_share: % of a worker's range one source may hold unreplied.
    uint32_t source_share = table::Conntrack::kDefaultSourceShare;
};

class NodeHarness {
public:
    explicit NodeHarness(NodeParams p = {}) : params_(std::move(p)) {
        ensure_eal();
        static int instance = 0;
        const int id = instance++;
        id_ = id;
        pool_ = rte_pktmbuf_pool_create(("pool" + std::to_string(id)).c_str(), 4095, 0, 0,
                                        RTE_MBUF_DEFAULT_BUF_SIZE, 0);
        if (pool_ == nullptr) {
            std::abort();
        }
        std::vector<std::string> names = {"uplink"};
        names.insert(names.end(), params_.pod_ports.begin(), params_.pod_ports.end());
        for (size_t i = 0; i < names.size(); ++i) {
            add_ring_port(names[i],
                          i == 0 ? dataplane::PortKind::kUplink : dataplane::PortKind::kPod, id);
        }
        if (params_.host_port) {
            add_ring_port("host", dataplane::PortKind::kHost, id);
            node_.host_port = port("host");
            node_.host_node_address = params_.host_node_address;
        }
        node_.node_ip = params_.node_ip;
        node_.node_mac = params_.node_mac;
        node_.underlay_subnet = *Prefix4::parse(params_.node_ip.str() + "/24", false);
        node_.gateway_ip = params_.gateway;
        node_.gateway_mac = params_.gateway_mac;
        node_.pod_cidr = params_.pod_cidr;
        node_.cluster_cidr = *Prefix4::parse("10.244.0.0/16");
        node_.vtep_mac = params_.vtep_mac;
        node_.vxlan_port_be = to_be16(params_.vxlan_port);
        node_.vni = params_.vni;
        node_.mtu = params_.mtu;
        node_.uplink_port = port("uplink");
        node_.tsc_hz = params_.tsc_hz;
        node_.arp_retry_tsc = 100000;
        node_.arp_timeout_tsc = 1000000;
        node_.arp_stale_tsc = 300000000;
        node_.neighbors = &neighbors_;
        node_.conntrack = &conntrack_;
        node_.ports = &ports_;
        node_.tables = &ref_;
        worker_.node = &node_;
        worker_.pool = pool_;
        worker_.held.resize(params_.held);
        node_.workers = params_.workers;
        for (uint32_t i = 1; i < params_.workers; ++i) {
            auto w = std::make_unique<dataplane::Worker>();
            w->index = i;
            w->node = &node_;
            w->pool = pool_;
            w->held.resize(params_.held);
            others_.push_back(std::move(w));
        }
        api::NodeInfo info;
        info.node_name = params_.name;
        if (params_.real_worker) {
            qsbr_ = static_cast<rte_rcu_qsbr*>(
                rte_zmalloc("qsbr", rte_rcu_qsbr_get_memsize(1), RTE_CACHE_LINE_SIZE));
            rte_rcu_qsbr_init(qsbr_, 1);
            worker_.qsbr = qsbr_;
            worker_.stop = &stop_;
            worker_.idle = dataplane::IdlePolicy{64, 0, 0};  // busy-poll: the test wants speed
            for (auto& [name, pid] : port_ids_) {
                worker_.rxqs.push_back({pid, 0});
            }
        }
        manager_ = std::make_unique<api::TableManager>(
            info, node_, ref_, qsbr_, std::vector<dataplane::Worker*>{&worker_}, entries_);
        manager_->set_trace_pool(pool_);
    }

    /// Launches the real worker loop on lcore 1 (params.real_worker).
    void launch() {
        rte_eal_remote_launch(dataplane::worker_main, &worker_, 1);
        launched_ = true;
    }
    void stop() {
        stop_.store(true);
        rte_eal_wait_lcore(1);
        // The EAL's join is invisible to ThreadSanitizer; the worker released on exit.
        KDP_TSAN_ACQUIRE(&ports_);
        launched_ = false;
    }
    /// Enqueues frames on a port's receive ring without running anything (the real worker
    /// is polling). Returns how many fit.
    size_t enqueue(const std::string& port_name, const Bytes& frame, size_t copies) {
        return enqueue(port(port_name), frame, copies);
    }
    /// As enqueue, by port id (port(name)): the benchmarks' rounds look no name up.
    size_t enqueue(uint16_t pid, const Bytes& frame, size_t copies) {
        rte_ring* rx = rx_rings_.at(pid);
        size_t n = 0;
        // With the real worker running, mbufs and rings are handed over through DPDK code
        // ThreadSanitizer does not see: the edges are stated (common/tsan.h, worker.cc).
        KDP_TSAN_ACQUIRE(&ports_);  // what the worker freed may come back from the pool
        for (; n < copies; ++n) {
            rte_mbuf* m = rte_pktmbuf_alloc(pool_);
            if (m == nullptr) {
                break;
            }
            std::memcpy(rte_pktmbuf_append(m, static_cast<uint16_t>(frame.size())), frame.data(),
                        frame.size());
            KDP_TSAN_RELEASE(&ports_);  // the bytes, to the worker that receives them
            if (rte_ring_enqueue(rx, m) != 0) {
                rte_pktmbuf_free(m);
                break;
            }
        }
        return n;
    }
    /// Frees and counts what a port transmitted.
    size_t drain(const std::string& port_name) { return drain(port(port_name)); }
    size_t drain(uint16_t pid) {
        rte_ring* tx = tx_rings_.at(pid);
        void* objs[64];
        size_t total = 0;
        unsigned n;
        while ((n = rte_ring_dequeue_burst(tx, objs, 64, nullptr)) != 0) {
            KDP_TSAN_ACQUIRE(&ports_);  // the worker released before transmitting
            for (unsigned i = 0; i < n; ++i) {
                rte_pktmbuf_free(static_cast<rte_mbuf*>(objs[i]));
            }
            total += n;
        }
        KDP_TSAN_RELEASE(&ports_);  // the freed mbufs may be the worker's next allocation
        return total;
    }

    ~NodeHarness() {
        if (launched_) {
            stop();  // a failed assertion returned early: the worker must not outlive us
        }
        for (auto& [name, pid] : port_ids_) {
            rte_eth_dev_stop(pid);
            rte_eth_dev_close(pid);
        }
        for (rte_ring* r : rings_) {
            rte_ring_free(r);
        }
        manager_.reset();
        rte_free(qsbr_);
        rte_mempool_free(pool_);
    }

    uint16_t port(const std::string& name) const { return port_ids_.at(name); }
    /// Creates a ring pod port at run time, as a CNI ADD has the dataplane create a TAP, and
    /// returns its registry entry for manager().add_port.
    api::PortEntry create_port(const std::string& name) {
        add_ring_port(name, dataplane::PortKind::kPod, id_);
        return entries_.back();
    }
    /// Stops and closes a port the manager has let go of (remove_port).
    void destroy_port(const std::string& name) {
        const uint16_t pid = port(name);
        rte_eth_dev_stop(pid);
        rte_eth_dev_close(pid);
        port_ids_.erase(name);
    }
    api::TableManager& manager() { return *manager_; }
    dataplane::Worker& worker() { return worker_; }
    const dataplane::NodeContext& node() const { return node_; }
    table::NeighborTable& neighbors() { return neighbors_; }

    /// Puts frames on a port's receive side and runs one worker iteration at time `now`.
    void inject(const std::string& port_name, const std::vector<Bytes>& frames, uint64_t now = 1) {
        inject_as(0, port_name, frames, now);
    }
    void inject(const std::string& port_name, const Bytes& frame, uint64_t now = 1) {
        inject(port_name, std::vector<Bytes>{frame}, now);
    }
    /// As inject, with worker `w` (of params.workers) receiving and processing the frames.
    void inject_as(uint32_t w,
                   const std::string& port_name,
                   const std::vector<Bytes>& frames,
                   uint64_t now = 1) {
        const uint16_t pid = port(port_name);
        rte_ring* rx = rx_rings_.at(pid);
        for (const Bytes& f : frames) {
            rte_mbuf* m = rte_pktmbuf_alloc(pool_);
            char* d = rte_pktmbuf_append(m, static_cast<uint16_t>(f.size()));
            std::memcpy(d, f.data(), f.size());
            rte_ring_enqueue(rx, m);
        }
        run_as(w, now);
    }

    /// One iteration of the worker loop body (rx every port, stages, held packets, flush).
    void run(uint64_t now) { run_as(0, now); }
    void run_as(uint32_t index, uint64_t now) {
        dataplane::Worker& w = index == 0 ? worker_ : *others_.at(index - 1);
        const table::TableSet* t = ref_.current.load(std::memory_order_acquire);
        w.lap_tsc = rte_rdtsc();  // phases counted as the loop counts them
        for (auto& [name, pid] : port_ids_) {
            dataplane::Burst& b = w.burst;
            const uint16_t n = rte_eth_rx_burst(pid, 0, b.pkts, dataplane::kBurstSize);
            if (n != 0) {
                w.lap(dataplane::Phase::kRx);
                b.count = n;
                dataplane::process_burst(w, t, pid, b, now);
            }
        }
        if (w.held_count != 0) {
            dataplane::service_held(w, now);
        }
        dataplane::flush_tx(w);
        w.lap(dataplane::Phase::kTx);
    }

    /// Runs the conntrack expiry scan over the whole table at time `now`.
    void expire(uint64_t now) {
        for (int i = 0; i < 4096 / 256 + 1; ++i) {
            dataplane::conntrack_maintenance(worker_, ref_.current.load(), now);
        }
    }
    table::Conntrack& conntrack() { return conntrack_; }

    /// Everything transmitted on a port since the last collect.
    std::vector<Bytes> collect(const std::string& port_name) {
        std::vector<Bytes> out;
        rte_ring* tx = tx_rings_.at(port(port_name));
        void* obj = nullptr;
        while (rte_ring_dequeue(tx, &obj) == 0) {
            KDP_TSAN_ACQUIRE(&ports_);  // as drain
            auto* m = static_cast<rte_mbuf*>(obj);
            const auto* d = rte_pktmbuf_mtod(m, const uint8_t*);
            out.emplace_back(d, d + m->data_len);
            rte_pktmbuf_free(m);
        }
        KDP_TSAN_RELEASE(&ports_);
        return out;
    }

    uint64_t drops(const std::string& port_name, dataplane::DropReason r) const {
        return worker_.counters.port[port(port_name)].drops[static_cast<size_t>(r)].load(
            std::memory_order_relaxed);
    }
    uint64_t total_drops(const std::string& port_name) const {
        uint64_t n = 0;
        for (const auto& c : worker_.counters.port[port(port_name)].drops) {
            n += c.load(std::memory_order_relaxed);
        }
        return n;
    }
    /// Drop reasons with a non-zero count on a port, for failure messages.
    std::string drop_summary(const std::string& port_name) const {
        std::string s;
        const auto& d = worker_.counters.port[port(port_name)].drops;
        for (size_t i = 0; i < dataplane::kDropReasonCount; ++i) {
            if (d[i].load() != 0) {
                s += std::string(dataplane::kDropReasonInfo[i].label) + "=" +
                     std::to_string(d[i].load()) + " ";
            }
        }
        return s.empty() ? "none" : s;
    }

    const NodeParams& params() const { return params_; }
    unsigned pool_available() const { return rte_mempool_avail_count(pool_); }

private:
    void add_ring_port(const std::string& name, dataplane::PortKind kind, int id) {
        const std::string base = "h" + std::to_string(id) + "_" + std::to_string(rings_.size());
        rte_ring* rx =
            rte_ring_create((base + "rx").c_str(), 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
        rte_ring* tx =
            rte_ring_create((base + "tx").c_str(), 1024, 0, RING_F_SP_ENQ | RING_F_SC_DEQ);
        rings_.push_back(rx);
        rings_.push_back(tx);
        const int pid = rte_eth_from_rings((base + "eth").c_str(), &rx, 1, &tx, 1, 0);
        if (pid < 0) {
            std::abort();
        }
        dataplane::PortSetup s;
        s.kind = kind;
        s.pool = pool_;
        std::string err;
        if (!dataplane::configure_port(static_cast<uint16_t>(pid), s, ports_, err)) {
            std::fprintf(stderr, "%s\n", err.c_str());
            std::abort();
        }
        const auto p = static_cast<uint16_t>(pid);
        port_ids_[name] = p;
        rx_rings_[p] = rx;
        tx_rings_[p] = tx;
        const char* k = kind == dataplane::PortKind::kUplink ? "uplink"
                        : kind == dataplane::PortKind::kHost ? "host"
                                                             : "ring";
        entries_.push_back({name, k, "", p});
    }

    NodeParams params_;
    int id_ = 0;
    rte_mempool* pool_ = nullptr;
    std::vector<rte_ring*> rings_;
    std::map<std::string, uint16_t> port_ids_;
    std::map<uint16_t, rte_ring*> rx_rings_;
    std::map<uint16_t, rte_ring*> tx_rings_;
    std::vector<api::PortEntry> entries_;
    dataplane::PortTable ports_;
    table::NeighborTable neighbors_{64};
    table::Conntrack conntrack_{params_.conntrack, params_.workers, params_.timeouts,
                                params_.source_share};
    table::TableRef ref_;
    dataplane::NodeContext node_;
    dataplane::Worker worker_;
    std::vector<std::unique_ptr<dataplane::Worker>> others_;  // workers 1.. (params.workers)
    std::unique_ptr<api::TableManager> manager_;
    bool launched_ = false;
    rte_rcu_qsbr* qsbr_ = nullptr;
    std::atomic<bool> stop_{false};
};

}  // namespace kdp::test
