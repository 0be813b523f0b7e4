// Pod ports added and removed at run time, on the real worker loop (its own lcore): a port
// created while traffic flows between two other pods is polled and bound to its pod, then
// taken away and given back, and the stream between the other pods loses nothing meanwhile.
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "node_harness.h"

namespace kdp::test {
namespace {

using dataplane::DropReason;

const Ip4 kA = ip("10.244.1.10");
const Ip4 kB = ip("10.244.1.11");
const Ip4 kC = ip("10.244.1.12");

table::TableSpec spec() {
    table::TableSpec s;
    s.generation = 1;
    s.policy.present = true;
    // c is known before its port exists, as when the API server has the pod before the CNI
    // ADD: unbound until the port comes.
    s.pods = {{"default/a", kA, "default/a"},
              {"default/b", kB, "default/b"},
              {"default/c", kC, "default/c"}};
    return s;
}

TEST(RuntimePorts, AddedAndRemovedWhileOtherPodsTrafficFlowsWithoutLoss) {
    ensure_eal("0@(0-1),1@(0-1)");
    NodeParams params;
    params.real_worker = true;
    NodeHarness h(params);
    ASSERT_EQ(h.manager().apply_tables(spec()), std::nullopt);
    const Mac gw = h.params().gateway_mac;
    const Bytes to_b =
        ether(gw, mac("02:00:00:00:0a:0a"), 0x0800, ipv4(kA, kB, {17, 1000, 2000}, 18));
    const Bytes to_c =
        ether(gw, mac("02:00:00:00:0a:0a"), 0x0800, ipv4(kA, kC, {17, 1001, 3000}, 18));
    const Bytes from_c =
        ether(gw, mac("02:00:00:00:0c:0c"), 0x0800, ipv4(kC, kA, {17, 3000, 1001}, 18));
    h.launch();

    std::atomic<bool> streaming{true};
    std::atomic<size_t> sent{0}, received{0};
    std::atomic<size_t> to_c_wanted{0};  // a's ring has one producer: this thread sends to c too
    std::thread stream([&] {
        // a -> b all along, at most 256 in flight so that no ring overflows.
        size_t to_c_sent = 0;
        while (streaming.load()) {
            if (sent.load() - received.load() < 256) {
                sent += h.enqueue("default/a", to_b, 16);
            }
            while (to_c_sent < to_c_wanted.load()) {
                to_c_sent += h.enqueue("default/a", to_c, 1);
            }
            received += h.drain("default/b");
        }
    });
    const auto wait_for = [&](const std::string& port, size_t n) {
        std::vector<Bytes> got;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (got.size() < n && std::chrono::steady_clock::now() < deadline) {
            for (auto& f : h.collect(port)) {
                got.push_back(std::move(f));
            }
        }
        return got;
    };
    std::this_thread::sleep_for(std::chrono::milliseconds(50));

    for (int round = 0; round < 3; ++round) {
        SCOPED_TRACE("round " + std::to_string(round));
        // c's port comes: polled, and its pod bound to it.
        const api::PortEntry e = h.create_port("default/c");
        ASSERT_EQ(h.manager().add_port(e), std::nullopt);
        to_c_wanted += 4;
        const auto at_c = wait_for("default/c", 4);
        ASSERT_EQ(at_c.size(), 4u) << h.drop_summary("default/a");
        EXPECT_EQ(get32(&at_c[0][14 + 16]), kC.host());
        ASSERT_EQ(h.enqueue("default/c", from_c, 2), 2u);
        EXPECT_EQ(wait_for("default/a", 2).size(), 2u) << "c's own packets are polled";
        const auto listed = h.manager().ports();
        EXPECT_TRUE(std::any_of(listed.begin(), listed.end(),
                                [](const auto& p) { return p.name == "default/c"; }));

        // And goes: unbound, no longer polled; then the device is closed.
        const auto removed = h.manager().remove_port("default/c");
        ASSERT_TRUE(removed.has_value());
        EXPECT_EQ(*removed, e.port_id);
        h.destroy_port("default/c");
        const uint64_t before = h.drops("default/a", DropReason::kNoPortForPod);
        to_c_wanted += 3;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (h.drops("default/a", DropReason::kNoPortForPod) < before + 3 &&
               std::chrono::steady_clock::now() < deadline) {
            std::this_thread::yield();
        }
        EXPECT_EQ(h.drops("default/a", DropReason::kNoPortForPod), before + 3)
            << "a pod without its port: dropped and counted";
        EXPECT_EQ(h.manager().remove_port("default/c"), std::nullopt) << "already gone";
    }
    EXPECT_NE(h.manager().add_port({"default/a", "ring", "", 99}), std::nullopt)
        << "a name in use is refused";

    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    streaming = false;
    stream.join();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (received.load() < sent.load() && std::chrono::steady_clock::now() < deadline) {
        received += h.drain("default/b");
    }
    h.stop();
    EXPECT_GT(sent.load(), 1000u);
    EXPECT_EQ(received.load(), sent.load()) << "a -> b lost packets while ports came and went";
    EXPECT_EQ(h.total_drops("default/b"), 0u) << h.drop_summary("default/b");
    EXPECT_EQ(h.drops("default/a", DropReason::kNoPortForPod), 9u) << h.drop_summary("default/a");
}

}  // namespace
}  // namespace kdp::test
