// Shared by the Service packet tests: one node with three pods and a Service port whose
// backends the test chooses.
//
//   client a 10.244.1.10 --\                      /-- backend b 10.244.1.11:8080
//                           >-- node1 --------- <--- backend c 10.244.1.12:8080
//   VIP 10.96.0.10:80 -----/   (uplink) ---------\-- node2: backend 10.244.2.20:8080
#pragma once

#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "node_harness.h"

namespace kdp::test::svc {

inline const Mac kMacA = mac("02:00:00:00:0a:0a");
inline const Mac kMacB = mac("02:00:00:00:0b:0b");
inline const Ip4 kA = ip("10.244.1.10");
inline const Ip4 kB = ip("10.244.1.11");
inline const Ip4 kC = ip("10.244.1.12");
inline const Ip4 kRemote = ip("10.244.2.20");
inline const Ip4 kVip = ip("10.96.0.10");
inline const Ip4 kNode2 = ip("198.51.100.2");
inline const Mac kNode2Mac = mac("02:00:00:00:02:02");

inline NodeParams three_pods() {
    NodeParams p;
    p.pod_ports = {"default/a", "default/b", "default/c"};
    return p;
}

inline table::BackendSpec backend(Ip4 at,
                                  const char* pod,
                                  bool ready = true,
                                  bool terminating = false) {
    table::BackendSpec b;
    b.ip = at;
    b.port = 8080;
    b.pod = pod;
    b.ready = ready;
    b.serving = true;
    b.terminating = terminating;
    return b;
}

/// Pods a, b, c on this node, node2's pod CIDR behind the overlay, and one Service port
/// default/web:http (VIP:80 -> backends:8080).
inline table::TableSpec spec(uint64_t gen,
                             std::vector<table::BackendSpec> backends,
                             uint8_t proto = 6) {
    table::TableSpec s;
    s.generation = gen;
    s.policy.present = true;  // managed, no NetworkPolicy: nothing isolated
    s.routes.push_back({"node2", kNode2, *Prefix4::parse("10.244.2.0/24"), Mac::from_ip(kNode2)});
    s.pods = {{"default/a", kA, "default/a"},
              {"default/b", kB, "default/b"},
              {"default/c", kC, "default/c"}};
    table::ServiceSpec sv;
    sv.name = "default/web:http";
    sv.proto = proto;
    sv.frontends.push_back({table::FrontendKind::kClusterIp, kVip, 80});
    sv.backends = std::move(backends);
    s.services.push_back(sv);
    return s;
}

/// The IPv4 datagram at `l3` has a valid header checksum and L4 checksum.
inline void expect_valid(const Bytes& f, size_t l3, const char* what) {
    EXPECT_EQ(ref_checksum(&f[l3], (f[l3] & 0xf) * 4u), 0) << what << ": IP checksum";
    EXPECT_TRUE(l4_checksum_ok(&f[l3])) << what << ": L4 checksum";
}

/// node1 learns node2's underlay MAC, so that encapsulated packets leave at once.
inline void resolve_node2(NodeHarness& h) {
    h.inject("uplink", ether(h.params().node_mac, kNode2Mac, 0x0806,
                             arp(2, kNode2Mac, kNode2, h.params().node_mac, h.params().node_ip)));
}

}  // namespace kdp::test::svc
