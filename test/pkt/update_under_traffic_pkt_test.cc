// Table updates under traffic: the real worker loop forwards a steady stream pod a -> pod b on
// its own lcore while the control side publishes a thousand table versions through RCU. Not
// one packet may be lost to the updates, by the counters and by count at the far end, and
// every retired version must be freed only after the worker has moved past it (ASan would see
// a use after free otherwise). The NetworkPolicy changes with every version too — b isolated
// for ingress, a for egress, both or neither, always allowing the stream — so the connection's
// cached verdict is judged again after every change, racing the updates; later policy-only
// updates take the in-place swap path.
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "node_harness.h"

namespace kdp::test {
namespace {

// A policy that isolates b (gen & 1) and a (gen & 2), each allowing the a -> b stream.
table::PolicySpec policy(uint64_t gen) {
    table::PolicySpec p;
    p.present = true;
    p.peers = {{ip("10.244.1.10"), 1}, {ip("10.244.1.11"), 2}};
    p.rule_names = {"default/b-in ingress[0]", "default/a-out egress[0]"};
    if (gen & 1) {
        p.pods.push_back({"default/b",
                          ip("10.244.1.11"),
                          true,
                          false,
                          {{table::PolicyDir::kIngress, 1, 17, 2000,
                            static_cast<uint16_t>(2000 + gen % 7), 0}}});
    }
    if (gen & 2) {
        p.pods.push_back({"default/a",
                          ip("10.244.1.10"),
                          false,
                          true,
                          {{table::PolicyDir::kEgress, 2, 0, 0, 65535, 1}}});
    }
    return p;
}

table::TableSpec spec(uint64_t gen) {
    table::TableSpec s;
    s.generation = gen;
    s.policy = policy(gen);
    s.pods = {{"default/a", ip("10.244.1.10"), "default/a"},
              {"default/b", ip("10.244.1.11"), "default/b"}};
    // Churn that does not change the a -> b path: remote nodes come and go, services change.
    for (uint64_t i = 0; i < gen % 50; ++i) {
        s.routes.push_back({"node" + std::to_string(i + 2),
                            Ip4::from_host(0xc6336402 + static_cast<uint32_t>(i)),
                            Prefix4{Ip4::from_host(0x0af40000 + ((i + 2) << 8)), 24},
                            Mac::from_ip(Ip4::from_host(0xc6336402 + static_cast<uint32_t>(i)))});
    }
    table::ServiceSpec sv;
    sv.name = "default/svc";
    sv.frontends.push_back(
        {table::FrontendKind::kClusterIp, ip("10.96.0.1"), static_cast<uint16_t>(1 + gen % 1000)});
    sv.backends.push_back({ip("10.244.1.11"), 8080, "default/b", "node1", true, true, false});
    s.services.push_back(sv);
    return s;
}

TEST(UpdateUnderTraffic, NoPacketIsLostToAThousandUpdates) {
    ensure_eal("0@(0-1),1@(0-1)");
    NodeParams params;
    params.real_worker = true;
    NodeHarness h(params);
    ASSERT_EQ(h.manager().apply_tables(spec(1)), std::nullopt);
    const Bytes frame = ether(h.params().gateway_mac, mac("02:00:00:00:0a:0a"), 0x0800,
                              ipv4(ip("10.244.1.10"), ip("10.244.1.11"), {17, 1000, 2000}, 18));
    h.launch();

    constexpr size_t kPackets = 300000;
    std::atomic<bool> sending{true};
    std::atomic<uint64_t> updates{0};
    std::thread control([&] {
        for (uint64_t gen = 2; gen <= 1001; ++gen) {
            ASSERT_EQ(h.manager().apply_tables(spec(gen)), std::nullopt);
            updates.fetch_add(1);
        }
        // Keep updating until the stream is over, so every packet races some update; a short
        // pause leaves the two CPUs to the worker and the traffic as well.
        uint64_t gen = 1002;
        while (sending.load()) {
            if (gen % 2 == 0) {
                ASSERT_EQ(h.manager().apply_tables(spec(gen++)), std::nullopt);
            } else {
                table::TableUpdate u;  // policy only: swapped in place
                u.generation = gen;
                u.policy = policy(gen++);
                ASSERT_EQ(h.manager().apply_update(u), std::nullopt);
            }
            updates.fetch_add(1);
            std::this_thread::sleep_for(std::chrono::microseconds(20));
        }
    });
    size_t sent = 0;
    size_t received = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    // At most 512 packets in flight, so that neither ring (1024) can overflow: any loss is
    // the dataplane's, not the test's.
    while (sent < kPackets && std::chrono::steady_clock::now() < deadline) {
        if (sent - received < 512) {
            sent += h.enqueue("default/a", frame, std::min<size_t>(64, kPackets - sent));
        }
        received += h.drain("default/b");
    }
    while (received < sent && std::chrono::steady_clock::now() < deadline) {
        received += h.drain("default/b");
    }
    sending = false;
    control.join();
    h.stop();
    received += h.drain("default/b");

    EXPECT_EQ(sent, kPackets);
    EXPECT_EQ(received, sent) << "packets lost while " << updates.load() << " updates applied";
    EXPECT_GE(updates.load(), 1000u);
    EXPECT_EQ(h.total_drops("default/a"), 0u) << h.drop_summary("default/a");
    EXPECT_EQ(h.total_drops("default/b"), 0u) << h.drop_summary("default/b");
    EXPECT_EQ(h.manager().tables().generation, 1 + updates.load());
    std::printf("forwarded %zu packets across %llu table updates without loss\n", received,
                static_cast<unsigned long long>(updates.load()));
}

}  // namespace
}  // namespace kdp::test
