// An endpoint change applied as a delta while traffic flows through the real worker loop on
// its own lcore. Client pod a has 64 TCP connections through the Service VIP to backends b and
// c; a control thread removes c by UpdateTables' delta path (one block swapped in place, one
// grace period) while a steady stream of segments of every connection is in flight.
//
//   a 10.244.1.10 --(64 flows)--> VIP 10.96.0.10:80 --Maglev--> b 10.244.1.11:8080
//                                                         \---> c 10.244.1.12:8080 (removed)
//
// After the update has returned, nothing may reach c: its connections are answered with a TCP
// RST (or, once the worker's expiry scan has cleared them, balanced afresh to b); b's
// connections lose nothing; new connections all go to b. Before it, nothing changes.
#include <atomic>
#include <chrono>
#include <map>
#include <thread>

#include <gtest/gtest.h>
#include <rte_cycles.h>

#include "service_fixture.h"

namespace kdp::test {
namespace {

using dataplane::DropReason;
using namespace svc;  // NOLINT: the fixture's names are this file's vocabulary

constexpr uint16_t kFlows = 64;
constexpr uint16_t kFirstPort = 50000;

Bytes segment(const NodeHarness& h, uint16_t sport, uint8_t flags) {
    return ether(h.params().gateway_mac, kMacA, 0x0800, ipv4(kA, kVip, {6, sport, 80, flags}, 8));
}

// What one port transmitted, counted per client port: at a backend the segment's source port,
// at the client the RST's destination port.
struct Seen {
    std::map<uint16_t, uint64_t> b, c, rst;
    uint64_t total() const {
        uint64_t n = 0;
        for (const auto* m : {&b, &c, &rst}) {
            for (const auto& [_, k] : *m) {
                n += k;
            }
        }
        return n;
    }
};

void collect(NodeHarness& h, Seen& s) {
    for (const Bytes& f : h.collect("default/b")) {
        ASSERT_EQ(get32(&f[14 + 16]), kB.host()) << "DNAT to b";
        ++s.b[get16(&f[34])];
    }
    for (const Bytes& f : h.collect("default/c")) {
        ASSERT_EQ(get32(&f[14 + 16]), kC.host()) << "DNAT to c";
        ++s.c[get16(&f[34])];
    }
    for (const Bytes& f : h.collect("default/a")) {
        ASSERT_EQ(f[34 + 13] & 0x04, 0x04) << "only RSTs come back to the client";
        EXPECT_EQ(get32(&f[14 + 12]), kVip.host()) << "the RST comes from the VIP";
        ++s.rst[get16(&f[34 + 2])];
    }
}

TEST(DeltaUnderTraffic, RemovedBackendGetsNoNewFlowsItsConnectionsAreResetOthersUntouched) {
    ensure_eal("0@(0-1),1@(0-1)");
    NodeParams params = three_pods();
    params.real_worker = true;
    // A large table makes the expiry scan's sweep long (~65,000 loops), so that c's
    // connections are still tracked when their next segments arrive and are answered with a
    // RST, rather than already cleared and balanced afresh (also allowed, checked below).
    params.conntrack = 1 << 20;
    params.tsc_hz = rte_get_tsc_hz();  // the real loop reads the real TSC: real timeouts
    NodeHarness h(params);
    const table::TableSpec initial = spec(1, {backend(kB, "default/b"), backend(kC, "default/c")});
    ASSERT_EQ(h.manager().apply_tables(initial), std::nullopt);
    h.launch();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);

    // 1. Open the connections; Maglev spreads them over b and c.
    Seen open;
    for (uint16_t i = 0; i < kFlows; ++i) {
        ASSERT_EQ(h.enqueue("default/a", segment(h, kFirstPort + i, 0x02), 1), 1u);
    }
    while (open.total() < kFlows && std::chrono::steady_clock::now() < deadline) {
        collect(h, open);
    }
    ASSERT_EQ(open.total(), kFlows) << h.drop_summary("default/a");
    ASSERT_TRUE(open.rst.empty());
    ASSERT_FALSE(open.b.empty());
    ASSERT_FALSE(open.c.empty()) << "some connections must go to c for the test to mean much";

    // 2. Stream segments of every connection; remove c by a delta in the middle of it.
    std::atomic<bool> streaming{false};
    std::atomic<bool> applied{false};
    std::optional<std::string> apply_err;
    std::thread control([&] {
        while (!streaming.load()) {
            std::this_thread::yield();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        table::TableUpdate u;
        u.generation = 2;
        u.upsert_services.push_back(initial.services[0]);
        u.upsert_services[0].backends = {backend(kB, "default/b")};
        apply_err = h.manager().apply_update(u);
        applied.store(true);
    });
    Seen before;  // output of segments the worker handled before the update returned
    Seen after;   // output once it had returned, when every worker sees the new block
    std::map<uint16_t, uint64_t> sent;
    uint64_t sent_total = 0;
    uint64_t sent_after = 0;
    bool post = false;
    constexpr uint64_t kRoundsAfter = 200;
    streaming.store(true);
    while (sent_after < kRoundsAfter * kFlows && std::chrono::steady_clock::now() < deadline) {
        if (!post && applied.load()) {
            // Every segment handled before the grace period ended has been flushed by now.
            collect(h, before);
            post = true;
        }
        Seen& into = post ? after : before;
        collect(h, into);
        if (sent_total - before.total() - after.total() + kFlows > 512) {
            continue;  // at most 512 in flight: the rings (1024) never overflow
        }
        for (uint16_t i = 0; i < kFlows; ++i) {
            ASSERT_EQ(h.enqueue("default/a", segment(h, kFirstPort + i, 0x10), 1), 1u);
            ++sent[kFirstPort + i];
        }
        sent_total += kFlows;
        sent_after += post ? kFlows : 0;
    }
    control.join();
    ASSERT_EQ(apply_err, std::nullopt);
    ASSERT_TRUE(post) << "the update never returned";
    while (before.total() + after.total() < sent_total &&
           std::chrono::steady_clock::now() < deadline) {
        collect(h, after);
    }
    EXPECT_EQ(h.manager().path_counts().delta, 1u) << "the update took the delta path";

    // 3. New connections: all to b.
    Seen fresh;
    for (uint16_t i = 0; i < kFlows; ++i) {
        ASSERT_EQ(h.enqueue("default/a", segment(h, kFirstPort + kFlows + i, 0x02), 1), 1u);
    }
    while (fresh.total() < kFlows && std::chrono::steady_clock::now() < deadline) {
        collect(h, fresh);
    }
    h.stop();
    collect(h, fresh);

    EXPECT_EQ(before.total() + after.total(), sent_total) << "every segment accounted for";
    EXPECT_EQ(sent_after, kRoundsAfter * kFlows);
    EXPECT_TRUE(after.c.empty()) << after.c.size() << " connections still reached c";
    uint64_t resets = 0;
    for (uint16_t i = 0; i < kFlows; ++i) {
        const uint16_t port = kFirstPort + i;
        const uint64_t got = before.b[port] + before.c[port] + before.rst[port] + after.b[port] +
                             after.c[port] + after.rst[port];
        EXPECT_EQ(got, sent[port]) << "connection " << port;
        if (open.b.count(port) != 0) {
            EXPECT_EQ(before.b[port] + after.b[port], sent[port])
                << "b's connection " << port << " lost or moved segments";
        } else {
            EXPECT_EQ(before.b[port] + after.b[port] + before.rst[port] + after.rst[port] +
                          before.c[port],
                      sent[port]);
            EXPECT_GE(before.rst[port] + after.rst[port], 1u)
                << "c's connection " << port << " was never reset";
            resets += before.rst[port] + after.rst[port];
        }
    }
    EXPECT_EQ(h.drops("default/a", DropReason::kStaleBackend), resets);
    EXPECT_EQ(h.total_drops("default/a"), resets) << h.drop_summary("default/a");
    EXPECT_EQ(fresh.b.size(), kFlows) << "new connections avoid the removed backend";
    EXPECT_TRUE(fresh.c.empty());
    EXPECT_TRUE(fresh.rst.empty());
    std::printf("%zu of %u connections were on c; %llu segments streamed, %llu resets\n",
                open.c.size(), kFlows, static_cast<unsigned long long>(sent_total),
                static_cast<unsigned long long>(resets));
}

}  // namespace
}  // namespace kdp::test
