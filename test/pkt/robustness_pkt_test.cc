// Robustness of the whole pipeline: seeded random mutations of well-formed frames, injected on
// every port. The pipeline must never crash or read out of bounds (this suite also runs under
// AddressSanitizer), every mbuf must come back to the pool, and what it does send must still
// parse.
#include <random>

#include <gtest/gtest.h>

#include "node_harness.h"
#include "pkt/parse.h"

namespace kdp::test {
namespace {

const Ip4 kVip = ip("10.96.0.10");

std::vector<Bytes> seeds(const NodeParams& p) {
    const Mac a = mac("02:00:00:00:0a:0a");
    const Mac n2 = mac("02:00:00:00:02:02");
    L4 echo;
    echo.proto = 1;
    const Mac b = mac("02:00:00:00:0b:0b");
    const Ip4 ia = ip("10.244.1.10");
    return {
        ether(p.gateway_mac, a, 0x0800, ipv4(ia, ip("10.244.1.11"), {6, 1, 2}, 40)),
        ether(p.gateway_mac, a, 0x0800, ipv4(ia, ip("10.244.2.5"), {17, 1, 2}, 40)),
        ether(p.gateway_mac, a, 0x0800, ipv4(ia, p.gateway, echo, 40)),
        ether(p.gateway_mac, a, 0x0800, ipv4(ia, ip("10.244.2.5"), {6, 1, 2}, 1460)),
        ether(mac("ff:ff:ff:ff:ff:ff"), a, 0x0806, arp(1, a, ia, Mac{}, p.gateway)),
        ether(p.node_mac, n2, 0x0806, arp(2, n2, ip("198.51.100.2"), p.node_mac, p.node_ip)),
        ether(p.node_mac, n2, 0x0800,
              vxlan(ip("198.51.100.2"), p.node_ip, 5000, 4789, 1,
                    ether(p.vtep_mac, n2, 0x0800, ipv4(ip("10.244.2.5"), ia, {6, 1, 2}, 20)))),
        // Services: a new connection to the VIP, its backend's port unreachable, an outside
        // router's frag-needed and the health check port's request.
        ether(p.gateway_mac, a, 0x0800, ipv4(ia, kVip, {17, 3000, 80}, 24)),
        ether(p.gateway_mac, b, 0x0800,
              icmp_error(ip("10.244.1.11"), ia, 3, 3,
                         ipv4(ia, ip("10.244.1.11"), {17, 3000, 8080}, 24))),
        ether(
            p.node_mac, n2, 0x0800,
            icmp_error(ip("198.51.100.254"), p.node_ip, 3, 4,
                       ipv4(p.node_ip, ip("198.51.100.9"), {6, 33000, 443, 0x10}, 100), 28, 1280)),
        ether(p.node_mac, n2, 0x0800,
              tcp_segment(ip("203.0.113.7"), p.node_ip, 40000, 31000, 1, 2, 0x18,
                          "GET / HTTP/1.1\r\n\r\n")),
        ether(p.node_mac, n2, 0x0800,
              tcp_segment(ip("203.0.113.7"), p.node_ip, 40000, 31000, 1, 0, 0x02)),
    };
}

TEST(Robustness, RandomMutationsNeverCrashOrLeak) {
    NodeHarness h;
    table::TableSpec s;
    s.generation = 1;
    s.policy.present = true;  // managed, no NetworkPolicy: nothing isolated
    s.routes.push_back({"node2", ip("198.51.100.2"), *Prefix4::parse("10.244.2.0/24"),
                        Mac::from_ip(ip("198.51.100.2"))});
    s.pods.push_back({"default/a", ip("10.244.1.10"), "default/a"});
    s.pods.push_back({"default/b", ip("10.244.1.11"), "default/b"});
    table::ServiceSpec sv;  // UDP with affinity, and a Local TCP one with a health check port
    sv.name = "default/dns:udp";
    sv.proto = 17;
    sv.frontends = {{table::FrontendKind::kClusterIp, kVip, 80}};
    sv.backends = {{ip("10.244.1.11"), 8080, "default/b", "node1", true, true, false}};
    sv.affinity_timeout_s = 60;
    s.services.push_back(sv);
    sv.name = "default/web:http";
    sv.proto = 6;
    sv.frontends.push_back({table::FrontendKind::kNodePort, h.params().node_ip, 30080});
    sv.affinity_timeout_s = 0;
    sv.external_local = true;
    sv.health_check_node_port = 31000;
    s.services.push_back(sv);
    ASSERT_EQ(h.manager().apply_tables(s), std::nullopt);
    const unsigned baseline = h.pool_available();
    const std::vector<Bytes> base = seeds(h.params());
    const char* ports[] = {"uplink", "default/a", "default/b"};
    std::mt19937 rng(20261122);
    uint64_t now = 1;
    size_t sent = 0;
    for (int round = 0; round < 3000; ++round) {
        std::vector<Bytes> burst;
        for (int i = 0; i < 8; ++i) {
            Bytes f = base[rng() % base.size()];
            switch (rng() % 4) {
                case 0:  // flip a few bytes
                    for (int k = 0; k < 1 + static_cast<int>(rng() % 4); ++k) {
                        f[rng() % f.size()] = static_cast<uint8_t>(rng());
                    }
                    break;
                case 1:  // truncate
                    f.resize(rng() % f.size());
                    break;
                case 2:  // grow with garbage
                    f.resize(f.size() + rng() % 64, static_cast<uint8_t>(rng()));
                    break;
                default:  // set a length-ish byte to an extreme
                    f[std::min<size_t>(f.size() - 1, 14 + rng() % 40)] = (rng() & 1) ? 0xff : 0x00;
                    break;
            }
            burst.push_back(std::move(f));
        }
        now += rng() % 50000;
        h.inject(ports[rng() % 3], burst, now);
        for (const char* p : ports) {
            for (const Bytes& out : h.collect(p)) {
                ++sent;
                dataplane::PacketMeta m;
                // Whatever leaves must parse (ARP and IPv4 only), whatever came in.
                ASSERT_EQ(pkt::parse_frame(out.data(), static_cast<uint32_t>(out.size()), m),
                          dataplane::DropReason::kNone)
                    << "emitted an unparseable frame on " << p;
            }
        }
    }
    h.run(now + 10000000);  // expire anything held
    for (const char* p : ports) {
        h.collect(p);
    }
    EXPECT_EQ(h.worker().held_count, 0u);
    EXPECT_EQ(h.pool_available(), baseline) << "mbufs leaked";
    EXPECT_GT(sent, 100u) << "the seeds should mostly still forward";
}

}  // namespace
}  // namespace kdp::test
