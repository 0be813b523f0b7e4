// The whole packet path (process_burst, service_held, flush_tx) on a scratch node: frames from
// the fuzzer arrive on the uplink, a pod port or the host port of one node of a small fixed
// cluster (three local pods, a remote node behind VXLAN, a ClusterIP and a NodePort Service,
// a NetworkPolicy isolating pod b), and go through the production worker code on net_ring
// ports (test/pkt/node_harness.h). Properties, beyond "no crash, no leak, no read outside a
// frame":
// - every received packet ends in exactly one outcome: transmitted, dropped and counted once
//   against its ingress port under the reason it was given, consumed (answered or learned),
//   or held for ARP; none is left undecided. One packet may be both: refused with an answer
//   (a TCP RST or ICMP port unreachable, as kube-proxy's reject rules), counted once as
//   refused while its mbuf leaves as the answer (stage/service.h reject);
// - the drop counters grow by exactly that, the tx counters by exactly what the ports took,
//   and what the ports took is what came out of them;
// - what is held for ARP is released or counted as timed out once time passes;
// - afterwards every mbuf is back in the pool.
//
// Input: records of [ingress][length: 2 bytes, big-endian][frame]. The ingress byte's low two
// bits pick the port (uplink, pod a, pod b, host); bit 7 starts a new loop iteration first,
// with time advanced by bits 2..6 times 100 ms. A short last record takes what is left.
#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <vector>

#include <rte_ethdev.h>

#include "fuzz.h"
#include "pkt/node_harness.h"

namespace {

using kdp::Ip4;
using kdp::Mac;
using kdp::Prefix4;
using kdp::dataplane::Action;
using kdp::dataplane::DropReason;
using kdp::dataplane::kDropReasonCount;
namespace table = kdp::table;

constexpr uint64_t kHz = 1000000;  // the harness's default: one tick per microsecond
constexpr const char* kPorts[] = {"uplink", "default/a", "default/b", "host"};

Ip4 ip(const char* s) {
    return kdp::test::ip(s);
}

table::BackendSpec backend(const char* at, uint16_t port, const char* pod, const char* node) {
    table::BackendSpec b;
    b.ip = ip(at);
    b.port = port;
    b.pod = pod;
    b.node = node;
    return b;
}

// The cluster: node1 (this one: pods a, b, c) and node2 (10.244.2.0/24 behind VXLAN);
// default/web a ClusterIP 10.96.0.10:80 and NodePort 30080 over b, c and node2's pod;
// default/dns UDP 10.96.0.53:53 over c; pod b isolated for ingress but TCP 8080 from a.
table::TableSpec cluster() {
    table::TableSpec s;
    s.generation = 1;
    s.routes.push_back({"node2", ip("198.51.100.2"), *Prefix4::parse("10.244.2.0/24"),
                        Mac::from_ip(ip("198.51.100.2"))});
    s.pods = {{"default/a", ip("10.244.1.10"), "default/a"},
              {"default/b", ip("10.244.1.11"), "default/b"},
              {"default/c", ip("10.244.1.12"), "default/c"}};
    s.service_cidrs = {*Prefix4::parse("10.96.0.0/12")};
    table::ServiceSpec web;
    web.name = "default/web:http";
    web.proto = 6;
    web.frontends = {{table::FrontendKind::kClusterIp, ip("10.96.0.10"), 80},
                     {table::FrontendKind::kNodePort, ip("198.51.100.1"), 30080}};
    web.backends = {backend("10.244.1.11", 8080, "default/b", "node1"),
                    backend("10.244.1.12", 8080, "default/c", "node1"),
                    backend("10.244.2.20", 8080, "default/r", "node2")};
    web.affinity_timeout_s = 60;
    table::ServiceSpec dns;
    dns.name = "default/dns:dns";
    dns.proto = 17;
    dns.frontends = {{table::FrontendKind::kClusterIp, ip("10.96.0.53"), 53}};
    dns.backends = {backend("10.244.1.12", 53, "default/c", "node1")};
    s.services = {web, dns};
    table::PolicySpec& p = s.policy;
    p.present = true;
    p.peers = {{ip("10.244.1.10"), 1}, {ip("10.244.1.12"), 2}, {ip("10.244.2.20"), 3}};
    p.cidrs = {{*Prefix4::parse("0.0.0.0/0"), 4}};
    p.rule_names = {"default/b-web ingress[0]"};
    table::PodPolicySpec b{"default/b", ip("10.244.1.11"), true, false, {}};
    b.rules = {{table::PolicyDir::kIngress, 1, 6, 8080, 8080, 0}};
    p.pods = {b};
    return s;
}

struct Scratch {
    std::unique_ptr<kdp::test::NodeHarness> h;
    unsigned pool_full = 0;
    uint64_t now = 0;

    Scratch() {
        kdp::test::NodeParams p;
        p.pod_ports = {"default/a", "default/b", "default/c"};
        p.host_port = true;
        h = std::make_unique<kdp::test::NodeHarness>(p);
        FUZZ_CHECK(!h->manager().apply_tables(cluster()).has_value());
        pool_full = h->pool_available();
    }
};

Scratch& scratch() {
    static Scratch s;  // one EAL and one node per process; every input starts from idle
    return s;
}

// The reasons a packet refused with an answer is counted under (stage/service.h reject).
bool answered_reason(DropReason r) {
    return r == DropReason::kNoEndpoints || r == DropReason::kNoServicePort ||
           r == DropReason::kStaleBackend;
}

struct Totals {
    uint64_t rx = 0;
    uint64_t tx = 0;
    uint64_t drops = 0;
    uint64_t tx_full = 0;
    std::array<uint64_t, kDropReasonCount> by_reason{};
};

Totals totals(const kdp::dataplane::Worker& w) {
    Totals t;
    constexpr auto r = std::memory_order_relaxed;
    for (const auto& pc : w.counters.port) {
        t.rx += pc.rx_packets.load(r);
        t.tx += pc.tx_packets.load(r);
        for (size_t i = 0; i < kDropReasonCount; ++i) {
            t.by_reason[i] += pc.drops[i].load(r);
            t.drops += pc.drops[i].load(r);
        }
    }
    t.tx_full = t.by_reason[static_cast<size_t>(DropReason::kTxFull)];
    return t;
}

// ARP requests the worker sent itself for held packets (broadcast, from the node).
bool originated_arp(const kdp::test::Bytes& f, const kdp::test::NodeHarness& h) {
    const Mac& node = h.params().node_mac;
    return f.size() >= 42 &&
           std::all_of(f.begin(), f.begin() + 6, [](uint8_t b) { return b == 0xff; }) &&
           std::memcmp(&f[6], node.b.data(), 6) == 0 && f[12] == 0x08 && f[13] == 0x06 &&
           f[20] == 0 && f[21] == 1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Scratch& s = scratch();
    kdp::test::NodeHarness& h = *s.h;
    kdp::dataplane::Worker& w = h.worker();

    // Idle since the last input: a day later every connection, neighbour and reply token of
    // the last input has expired, so that an input's outcome depends on the input alone.
    s.now += 86400 * 2 * kHz;
    for (int i = 0; i < 2; ++i) {
        h.expire(s.now);
    }
    const table::TableSet* t = h.node().tables->current.load(std::memory_order_acquire);

    uint64_t received = 0;
    uint64_t dropped = 0;   // packets decided kDrop, and held ones that timed out
    uint64_t answered = 0;  // refused with an answer: counted as refused, transmitted
    uint64_t sent_out = 0;  // packets decided kTx, including those released from the ARP hold
    uint64_t out = 0;       // frames that came out of the ports
    uint64_t arps = 0;      // of which ARP requests the worker made for held packets
    const Totals before = totals(w);

    // One loop iteration, as worker_main and NodeHarness::run do it (a burst of at most 32
    // from each port), checking each burst. Returns how many packets it received.
    const auto iteration = [&] {
        const uint64_t received_before = received;
        for (const char* name : kPorts) {
            const uint16_t pid = h.port(name);
            kdp::dataplane::Burst& b = w.burst;
            const uint16_t n = rte_eth_rx_burst(pid, 0, b.pkts, kdp::dataplane::kBurstSize);
            if (n == 0) {
                continue;
            }
            b.count = n;
            received += n;
            const uint32_t held_before = w.held_count;
            const Totals t0 = totals(w);
            kdp::dataplane::process_burst(w, t, pid, b, s.now);
            uint64_t held = 0;
            uint64_t sent = 0;
            std::array<uint64_t, kDropReasonCount> drops{};
            for (uint16_t i = 0; i < n; ++i) {
                const Action a = b.meta[i].action;
                FUZZ_CHECK(a != Action::kPending);  // every packet decided
                sent += a == Action::kTx;
                held += a == Action::kHeld;
                if (a == Action::kDrop) {
                    FUZZ_CHECK(b.meta[i].reason != DropReason::kNone);
                    FUZZ_CHECK(b.meta[i].reason != DropReason::kTxFull);
                    ++drops[static_cast<size_t>(b.meta[i].reason)];
                    ++dropped;
                }
            }
            const Totals t1 = totals(w);
            FUZZ_CHECK(w.held_count == held_before + held);
            FUZZ_CHECK(t1.rx - t0.rx == n);
            // Each dropped packet counted once under its reason; beyond that only refusals
            // answered (at most one per packet transmitted), and kTxFull when a full tx
            // buffer's flush found the port full.
            uint64_t extra = 0;
            for (size_t r = 0; r < kDropReasonCount; ++r) {
                if (r == static_cast<size_t>(DropReason::kTxFull)) {
                    continue;
                }
                const uint64_t counted = t1.by_reason[r] - t0.by_reason[r];
                FUZZ_CHECK(counted >= drops[r]);
                FUZZ_CHECK(counted == drops[r] || answered_reason(static_cast<DropReason>(r)));
                extra += counted - drops[r];
            }
            FUZZ_CHECK(extra <= sent);
            answered += extra;
            sent_out += sent;
        }
        const uint32_t held_before = w.held_count;
        const Totals t0 = totals(w);
        if (w.held_count != 0) {
            kdp::dataplane::service_held(w, s.now);
        }
        const Totals t1 = totals(w);
        // Released ones are sent; the rest stay or time out (counted as drops).
        const uint64_t timed_out = t1.drops - t0.drops - (t1.tx_full - t0.tx_full);
        FUZZ_CHECK(timed_out <= held_before - w.held_count);
        sent_out += held_before - w.held_count - timed_out;
        dropped += timed_out;
        kdp::dataplane::flush_tx(w);
        // What the ports took, every iteration (their rings never fill).
        for (const char* name : kPorts) {
            for (const auto& f : h.collect(name)) {
                ++out;
                arps += originated_arp(f, h);
            }
        }
        out += h.drain("default/c");
        return received - received_before;
    };

    size_t at = 0;
    while (at < size) {
        const uint8_t ingress = data[at];
        size_t len = at + 2 < size ? size_t{data[at + 1]} << 8 | data[at + 2] : 0;
        at = std::min(size, at + 3);
        len = std::min({len, size - at, size_t{2048}});
        if (ingress & 0x80) {
            iteration();
            s.now += static_cast<uint64_t>((ingress >> 2) & 0x1f) * kHz / 10;
        }
        if (len == 0) {
            continue;
        }
        kdp::test::Bytes frame(data + at, data + at + len);
        at += len;
        if (h.enqueue(kPorts[ingress & 3], frame, 1) != 1) {
            iteration();  // a ring full: run the loop, as the worker would have meanwhile
            FUZZ_CHECK(h.enqueue(kPorts[ingress & 3], frame, 1) == 1);
        }
    }
    while (iteration() != 0) {
        // until every receive ring is empty
    }
    // Time passes: held packets time out (no neighbour answers here), everything is flushed.
    s.now += h.node().arp_timeout_tsc + 1;
    FUZZ_CHECK(iteration() == 0);
    FUZZ_CHECK(w.held_count == 0);

    // What the ports took is what they counted: the packets sent plus the worker's ARP
    // requests, less what a full port refused (kTxFull, counted as a drop).
    const Totals after = totals(w);
    FUZZ_CHECK(after.rx - before.rx == received);
    FUZZ_CHECK(after.tx - before.tx == out);
    FUZZ_CHECK(after.drops - before.drops == dropped + answered + (after.tx_full - before.tx_full));
    FUZZ_CHECK(out + (after.tx_full - before.tx_full) == sent_out + arps);
    FUZZ_CHECK(h.pool_available() == s.pool_full);
    return 0;
}
