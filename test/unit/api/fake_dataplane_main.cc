// kdp-fake-dataplane: the gRPC server over the in-test Backend, as a process, for trying
// kdp-control and kdpctl without DPDK. Not installed.
//
//   kdp-fake-dataplane --socket /tmp/kdp/dp.sock [--node node-a] [--pod-cidr 10.244.1.0/24]
//
// Counters grow at about 1 Mpps per worker so that `kdpctl stats` has rates to show.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "api/fake_backend.h"
#include "api/grpc_server.h"

namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) {
    g_stop = true;
}

}  // namespace

int main(int argc, char** argv) {
    std::string socket = "/run/kdp/dataplane.sock";
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--socket" && i + 1 < argc) {
            socket = argv[++i];
        } else {
            fmt::print(stderr, "usage: kdp-fake-dataplane [--socket PATH]\n");
            return 2;
        }
    }
    kdp::api::testing::FakeBackend backend;
    kdp::api::PortInfo uplink;
    uplink.name = "uplink";
    uplink.kind = "uplink";
    uplink.devargs = "net_null0";
    uplink.link_up = true;
    uplink.rx_queues = uplink.tx_queues = 2;
    backend.set_ports_for_test({uplink});

    kdp::api::GrpcServer server(backend, socket);
    try {
        server.start();
    } catch (const std::exception& e) {
        fmt::print(stderr, "kdp-fake-dataplane: {}\n", e.what());
        return 1;
    }
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    fmt::print(stderr, "kdp-fake-dataplane: serving unix:{}\n", socket);

    const auto start = std::chrono::system_clock::now();
    while (!g_stop) {
        const auto now = std::chrono::system_clock::now();
        const double s = std::chrono::duration<double>(now - start).count();
        kdp::api::StatsSnapshot snap;
        snap.taken_unix_ns = static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count());
        kdp::api::PortStats port{.name = "uplink", .port_id = 0, .counters = {}};
        for (uint32_t w = 0; w < 2; ++w) {
            kdp::api::WorkerStats ws;
            ws.worker = w;
            ws.lcore = w + 1;
            ws.counters.rx_packets = static_cast<uint64_t>(s * 1e6);
            ws.counters.rx_bytes = ws.counters.rx_packets * 64;
            ws.counters.tx_packets = ws.counters.rx_packets * 99 / 100;
            ws.counters.tx_bytes = ws.counters.tx_packets * 64;
            ws.counters.drops[static_cast<size_t>(kdp::dataplane::DropReason::kNoRoute)] =
                ws.counters.rx_packets / 100;
            ws.tsc_hz = 2'000'000'000;
            ws.total_cycles = static_cast<uint64_t>(s * 2e9);
            ws.busy_cycles = ws.total_cycles * (40 + 20 * w) / 100;
            port.counters.rx_packets += ws.counters.rx_packets;
            port.counters.rx_bytes += ws.counters.rx_bytes;
            port.counters.tx_packets += ws.counters.tx_packets;
            port.counters.tx_bytes += ws.counters.tx_bytes;
            snap.workers.push_back(ws);
        }
        snap.ports.push_back(port);
        backend.set_stats_for_test(std::move(snap));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    server.shutdown();
    return 0;
}
