// One source of truth: for each Service semantic and NetworkPolicy case tested at packet level,
// kdpctl trace (TableManager::trace) and the real packet of the same flow must agree on the
// verdict, the backend (pod and port) and the source the backend sees. Each case runs the
// trace, checks that it left conntrack, every counter and the neighbour table exactly as they
// were, sends the real packet, compares, and then does both again now that the connection is
// established. Topology: service_fixture.h (pods a, b, c on node1; node2's pods behind the
// overlay), plus outside clients on the uplink:
//
//   client 203.0.113.7 (router 02:..:0e:0e) --> node1 198.51.100.1:30080 (NodePort)
//                                           --> 192.0.2.10:80 (LoadBalancer), 192.0.2.20:80
//                                           (externalIP)
//   pod a --> 198.51.100.50:443 (a host on the node network: masqueraded)
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "service_fixture.h"

namespace kdp::test {
namespace {

using dataplane::DropReason;
using table::PolicyDir;

using namespace svc;  // NOLINT: the fixture's names are this file's vocabulary

constexpr uint16_t kTraceSport = 47000;  // the client port of the trace's crafted packet
const Ip4 kClient = ip("203.0.113.7");
const Mac kRouter = mac("02:00:00:00:0e:0e");
const Ip4 kLbIp = ip("192.0.2.10");
const Ip4 kExternalIp = ip("192.0.2.20");
const Ip4 kServer = ip("198.51.100.50");
const Mac kServerMac = mac("02:00:00:00:05:05");
const Ip4 kOtherRemote = ip("10.244.2.21");

// What one flow's first packet did: the verdict, the backend it was DNATed to and the source
// it carried when it left (inner headers when encapsulated).
struct Outcome {
    std::string verdict;  // allow | deny | reject
    std::string backend;  // NS/POD, "" when not DNATed
    uint16_t backend_port = 0;
    std::string seen_src;  // "" unless allowed
    std::string str() const {
        return fmt::format("{{verdict {}, backend '{}' port {}, seen_src '{}'}}", verdict, backend,
                           backend_port, seen_src);
    }
};

Outcome of_trace(const api::TraceResult& r) {
    Outcome o{r.verdict, r.backend, r.backend_port, r.verdict == "allow" ? r.seen_src : ""};
    return o;
}

std::string hops_text(const api::TraceResult& r) {
    std::string s;
    for (const auto& h : r.hops) {
        s += fmt::format("\n  [{}] {}: {}", h.node, h.stage, h.detail);
    }
    return s;
}

// Everything a trace must leave as it was: the conntrack listing, every counter of the node's
// worker, and the neighbour table (resolution state and request times).
std::string state_of(NodeHarness& h) {
    std::string s;
    const api::ConntrackListing l = h.manager().conntrack(api::kConntrackListCap);
    s += fmt::format("conntrack total {} size {}\n", l.total, h.conntrack().size());
    for (const auto& e : l.entries) {
        std::string nat;
        for (const auto& n : e.nat) {
            nat += n + ",";
        }
        s += fmt::format("  {} {}:{}>{}:{} reply {}:{}>{}:{} nat {} {} {}s aff {}\n", e.proto,
                         e.original.src.str(), e.original.sport, e.original.dst.str(),
                         e.original.dport, e.reply.src.str(), e.reply.sport, e.reply.dst.str(),
                         e.reply.dport, nat, e.state, e.expires_in_s, e.affinity);
    }
    const dataplane::WorkerCounters& c = h.worker().counters;
    for (size_t p = 0; p < RTE_MAX_ETHPORTS; ++p) {
        const auto& pc = c.port[p];
        std::string d;
        for (size_t r = 0; r < dataplane::kDropReasonCount; ++r) {
            if (pc.drops[r].load() != 0) {
                d += fmt::format(" {}={}", dataplane::kDropReasonInfo[r].label, pc.drops[r].load());
            }
        }
        if (pc.rx_packets.load() + pc.tx_packets.load() != 0 || !d.empty()) {
            s += fmt::format("port {}: rx {}/{} tx {}/{}{}\n", p, pc.rx_packets.load(),
                             pc.rx_bytes.load(), pc.tx_packets.load(), pc.tx_bytes.load(), d);
        }
    }
    s += fmt::format("loops {} busy {} total {}\n", c.loops.load(), c.busy_cycles.load(),
                     c.total_cycles.load());
    table::NeighborTable& nt = h.neighbors();
    for (uint32_t i = 0; i < nt.capacity(); ++i) {
        if (!nt.ip(i).is_zero()) {
            s += fmt::format("neighbour {} {}: mac {:x} confirmed {} requested {}\n", i,
                             nt.ip(i).str(), nt.mac_state(i), nt.confirmed_tsc(i),
                             nt.requested_tsc(i));
        }
    }
    for (const char* p : {"uplink", "default/a", "default/b", "default/c"}) {
        s += fmt::format("peer mac {}: {:x}\n", p, h.node().ports->port[h.port(p)].peer_mac.load());
    }
    return s;
}

class TraceVsPacket : public ::testing::Test {
protected:
    TraceVsPacket() : h(three_pods()) {
        // The trace runs at the harness's time, as on a node both read the TSC.
        h.manager().set_clock_for_test([this] { return now_; });
    }

    void apply(const table::TableSpec& s) { ASSERT_EQ(h.manager().apply_tables(s), std::nullopt); }

    // The real packet of the trace's flow from a pod port (TCP SYN or UDP, client port 47000).
    Bytes from_pod(Ip4 src, Ip4 dst, uint16_t dport, uint8_t proto = 6, const Mac& m = kMacA) {
        return ether(h.params().gateway_mac, m, 0x0800,
                     ipv4(src, dst, {proto, kTraceSport, dport, 0x02}, 0));
    }
    Bytes from_outside(Ip4 src, Ip4 dst, uint16_t dport, uint8_t proto = 6) {
        return ether(h.params().node_mac, kRouter, 0x0800,
                     ipv4(src, dst, {proto, kTraceSport, dport, 0x02}, 0));
    }
    Bytes from_node2(Ip4 src, Ip4 dst, uint16_t dport, uint8_t proto = 6) {
        const Bytes inner = ether(h.params().vtep_mac, Mac::from_ip(kNode2), 0x0800,
                                  ipv4(src, dst, {proto, kTraceSport, dport, 0x02}, 0));
        return ether(h.params().node_mac, kNode2Mac, 0x0800,
                     vxlan(kNode2, h.params().node_ip, 55555, 4789, 1, inner));
    }

    // Sends `frame` on `in_port` and reads what came out of every port.
    Outcome real(const std::string& in_port, const Bytes& frame, uint64_t now) {
        const auto* ip4 = &frame[frame.size() > 50 && get16(&frame[36]) == 4789 ? 64 : 14];
        const Ip4 client = Ip4::from_host(get32(ip4 + 12));
        const Ip4 dst = Ip4::from_host(get32(ip4 + 16));
        const uint16_t dport = get16(ip4 + 22);
        h.inject(in_port, frame, now);
        Outcome o{"deny", "", 0, ""};
        int out = 0;
        for (const char* port : {"uplink", "default/a", "default/b", "default/c"}) {
            for (const Bytes& f : h.collect(port)) {
                if (get16(&f[12]) != 0x0800) {
                    ADD_FAILURE() << "a non-IPv4 frame (an ARP request?) left " << port
                                  << ": resolve the next hop before comparing";
                    continue;
                }
                const bool vx =
                    std::string(port) == "uplink" && f[14 + 9] == 17 && get16(&f[36]) == 4789;
                const uint8_t* l3 = &f[vx ? 64 : 14];
                const Ip4 s = Ip4::from_host(get32(l3 + 12));
                const Ip4 d = Ip4::from_host(get32(l3 + 16));
                const uint16_t dp = get16(l3 + 22);
                ++out;
                if (port == in_port && d == client && s == dst &&
                    (l3[9] == 1 || get16(l3 + 20) == dport)) {
                    o.verdict = "reject";
                    continue;
                }
                o.verdict = "allow";
                o.seen_src = s.str();
                if (d != dst || dp != dport) {
                    o.backend = pod_at(d);
                    o.backend_port = dp;
                }
            }
        }
        EXPECT_LE(out, 1) << "one packet in, at most one out";
        return o;
    }

    static std::string pod_at(Ip4 a) {
        const std::map<uint32_t, std::string> pods = {{kA.be, "default/a"},
                                                      {kB.be, "default/b"},
                                                      {kC.be, "default/c"},
                                                      {kRemote.be, "default/r"}};
        const auto it = pods.find(a.be);
        return it == pods.end() ? a.str() : it->second;
    }

    // The one-liner of each case: trace, check it left no state, send the real packet,
    // compare; then the same once the connection exists (when it was allowed). Returns the
    // first outcome for the case's own expectations.
    Outcome same(const api::TraceQuery& q, const std::string& in_port, const Bytes& frame) {
        Outcome first;
        for (int round = 0; round < 2; ++round) {
            const std::string before = state_of(h);
            api::TraceResult r;
            const auto err = h.manager().trace(q, r);
            EXPECT_EQ(err, std::nullopt) << *err;
            EXPECT_EQ(state_of(h), before) << "the trace of " << q.from << " -> " << q.to << ":"
                                           << q.port << " changed the node's state";
            const Outcome t = of_trace(r);
            now_ += 1000;
            const Outcome p = real(in_port, frame, now_);
            EXPECT_EQ(t.str(), p.str())
                << (round == 0 ? "new" : "established") << " flow " << q.from << " -> " << q.to
                << ":" << q.port << "/" << int(q.proto) << ": trace (left) and packet (right) "
                << "disagree; hops:" << hops_text(r) << "\n"
                << h.drop_summary(in_port);
            if (round == 0) {
                first = p;
            }
            if (p.verdict != "allow") {
                break;
            }
        }
        return first;
    }

    void resolve_server() {
        // A first connection creates the server's neighbour slot and its ARP request; the
        // answer resolves it.
        h.inject("default/a", from_pod(kA, kServer, 8443), now_);
        h.collect("uplink");
        h.inject("uplink",
                 ether(h.params().node_mac, kServerMac, 0x0806,
                       arp(2, kServerMac, kServer, h.params().node_mac, h.params().node_ip)),
                 now_);
        h.collect("uplink");
    }

    NodeHarness h;
    uint64_t now_ = 10;
};

table::TableSpec external(uint64_t gen, std::vector<table::BackendSpec> backends) {
    table::TableSpec s = spec(gen, std::move(backends));
    table::ServiceSpec& sv = s.services[0];
    sv.frontends.push_back({table::FrontendKind::kNodePort, ip("198.51.100.1"), 30080});
    sv.frontends.push_back({table::FrontendKind::kLoadBalancer, kLbIp, 80});
    sv.frontends.push_back({table::FrontendKind::kExternalIp, kExternalIp, 80});
    sv.source_ranges = {*Prefix4::parse("203.0.113.0/28")};
    return s;
}

TEST_F(TraceVsPacket, ClusterIpToLocalAndRemoteBackends) {
    apply(spec(
        1, {backend(kB, "default/b"), backend(kC, "default/c"), backend(kRemote, "default/r")}));
    resolve_node2(h);
    const Outcome o =
        same({"default/a", "service:default/web", 80, 6}, "default/a", from_pod(kA, kVip, 80));
    EXPECT_EQ(o.verdict, "allow");
    EXPECT_EQ(o.backend_port, 8080);
    EXPECT_EQ(o.seen_src, kA.str());
    same({"default/a", "10.96.0.10", 80, 6}, "default/a", from_pod(kA, kVip, 80));
}

TEST_F(TraceVsPacket, ClusterIpOverUdpAndDirectPodToPod) {
    apply(spec(1, {backend(kB, "default/b"), backend(kC, "default/c")}, 17));
    EXPECT_EQ(
        same({"default/a", "10.96.0.10", 80, 17}, "default/a", from_pod(kA, kVip, 80, 17)).verdict,
        "allow");
    EXPECT_EQ(
        same({"default/a", "default/c", 9000, 6}, "default/a", from_pod(kA, kC, 9000)).backend, "")
        << "no Service, no backend";
    EXPECT_EQ(
        same({"default/a", "default/a", 9000, 6}, "default/a", from_pod(kA, kA, 9000)).verdict,
        "allow")
        << "a pod's packet to itself comes back on its port, and is no reject";
    resolve_node2(h);
    same({"default/a", kRemote.str(), 9000, 6}, "default/a", from_pod(kA, kRemote, 9000));
}

TEST_F(TraceVsPacket, NodePortLoadBalancerAndExternalIpFromOutside) {
    apply(external(1, {backend(kB, "default/b")}));
    for (const auto& [to, port] : std::vector<std::pair<Ip4, uint16_t>>{
             {h.params().node_ip, 30080}, {kLbIp, 80}, {kExternalIp, 80}}) {
        const Outcome o =
            same({kClient.str(), to.str(), port, 6}, "uplink", from_outside(kClient, to, port));
        EXPECT_EQ(o.backend, "default/b") << to.str();
        EXPECT_EQ(o.seen_src, kClient.str()) << "the client address is kept";
    }
}

TEST_F(TraceVsPacket, NodePortToARemoteBackendIsSnatted) {
    apply(external(1, {backend(kRemote, "default/r")}));
    resolve_node2(h);
    const Outcome o = same({kClient.str(), h.params().node_ip.str(), 30080, 6}, "uplink",
                           from_outside(kClient, h.params().node_ip, 30080));
    EXPECT_EQ(o.backend, "default/r");
    EXPECT_EQ(o.seen_src, h.params().gateway.str());
}

TEST_F(TraceVsPacket, LoadBalancerSourceRanges) {
    apply(external(1, {backend(kB, "default/b")}));
    const Ip4 outside_range = ip("203.0.113.77");
    EXPECT_EQ(same({outside_range.str(), kLbIp.str(), 80, 6}, "uplink",
                   from_outside(outside_range, kLbIp, 80))
                  .verdict,
              "deny");
    EXPECT_EQ(h.drops("uplink", DropReason::kSourceRange), 1u);
    EXPECT_EQ(
        same({kClient.str(), kVip.str(), 80, 6}, "uplink", from_outside(kClient, kVip, 80)).verdict,
        "allow")
        << "a ClusterIP routed to the node from outside is served, as kube-proxy serves it";
}

TEST_F(TraceVsPacket, ExternalAndInternalTrafficPolicyLocal) {
    table::TableSpec s = external(1, {backend(kB, "default/b"), backend(kRemote, "default/r")});
    s.services[0].external_local = true;
    apply(s);
    resolve_node2(h);
    EXPECT_EQ(same({kClient.str(), h.params().node_ip.str(), 30080, 6}, "uplink",
                   from_outside(kClient, h.params().node_ip, 30080))
                  .backend,
              "default/b");
    s = external(2, {backend(kRemote, "default/r")});
    s.services[0].external_local = true;
    s.services[0].internal_local = true;
    apply(s);
    EXPECT_EQ(same({kClient.str(), h.params().node_ip.str(), 30080, 6}, "uplink",
                   from_outside(kClient, h.params().node_ip, 30080))
                  .verdict,
              "deny");
    EXPECT_EQ(same({"default/a", kVip.str(), 80, 6}, "default/a", from_pod(kA, kVip, 80)).verdict,
              "deny");
    EXPECT_EQ(h.drops("default/a", DropReason::kNoLocalEndpoint), 1u);
}

TEST_F(TraceVsPacket, NoEndpointsRejectsTcpAndUdp) {
    apply(spec(1, {}));
    EXPECT_EQ(same({"default/a", kVip.str(), 80, 6}, "default/a", from_pod(kA, kVip, 80)).verdict,
              "reject");
    apply(spec(2, {}, 17));
    EXPECT_EQ(
        same({"default/a", kVip.str(), 80, 17}, "default/a", from_pod(kA, kVip, 80, 17)).verdict,
        "reject");
}

TEST_F(TraceVsPacket, TerminatingEndpointsOnlyWhenNoneIsReady) {
    apply(spec(1, {backend(kB, "default/b", false), backend(kC, "default/c", false, true)}));
    EXPECT_EQ(same({"default/a", kVip.str(), 80, 6}, "default/a", from_pod(kA, kVip, 80)).backend,
              "default/c");
}

// An established connection stays on its backend when the Service changes: the trace must
// follow the connection, not pick again.
TEST_F(TraceVsPacket, EstablishedConnectionsStayPinnedAcrossUpdates) {
    apply(spec(1, {backend(kB, "default/b")}));
    h.inject("default/a", from_pod(kA, kVip, 80), now_);
    ASSERT_EQ(h.collect("default/b").size(), 1u);
    std::vector<table::BackendSpec> many;
    many.push_back(backend(kB, "default/b"));
    many.push_back(backend(kC, "default/c"));
    apply(spec(2, many));
    EXPECT_EQ(same({"default/a", kVip.str(), 80, 6}, "default/a", from_pod(kA, kVip, 80)).backend,
              "default/b");
    // A backend that left: the real packet's connection is reset (stale backend).
    apply(spec(3, {backend(kC, "default/c")}));
    same({"default/a", kVip.str(), 80, 6}, "default/a", from_pod(kA, kVip, 80));
}

// ClientIP affinity: a client's earlier connection recorded a backend; a new connection of the
// same client goes there even when Maglev would now pick another, in the trace as for the
// packet. The record is made while the Service has only the backend Maglev will not pick for
// the trace's flow, so that a trace ignoring it would disagree.
TEST_F(TraceVsPacket, ClientIpAffinityFollowsTheRecordedBackend) {
    table::TableSpec both = spec(1, {backend(kB, "default/b"), backend(kC, "default/c")});
    both.services[0].affinity_timeout_s = 10800;
    apply(both);
    api::TraceResult plain;
    ASSERT_EQ(h.manager().trace({"default/a", kVip.str(), 80, 6}, plain), std::nullopt);
    const bool b_picked = plain.backend == "default/b";
    table::TableSpec one =
        spec(2, {b_picked ? backend(kC, "default/c") : backend(kB, "default/b")});
    one.services[0].affinity_timeout_s = 10800;
    apply(one);
    h.inject("default/a",
             ether(h.params().gateway_mac, kMacA, 0x0800, ipv4(kA, kVip, {6, 20000, 80, 0x02}, 0)),
             now_);
    ASSERT_EQ(h.collect(b_picked ? "default/c" : "default/b").size(), 1u);
    both.generation = 3;
    apply(both);
    EXPECT_EQ(same({"default/a", kVip.str(), 80, 6}, "default/a", from_pod(kA, kVip, 80)).backend,
              b_picked ? "default/c" : "default/b")
        << "the affinity record wins over Maglev";
}

TEST_F(TraceVsPacket, HairpinThroughTheOwnServiceIsMasqueraded) {
    apply(spec(1, {backend(kB, "default/b")}));
    const Outcome o =
        same({"default/b", kVip.str(), 80, 6}, "default/b", from_pod(kB, kVip, 80, 6, kMacB));
    EXPECT_EQ(o.backend, "default/b");
    EXPECT_EQ(o.seen_src, h.params().gateway.str());
}

TEST_F(TraceVsPacket, EgressIsMasqueradedToTheNodeIp) {
    apply(spec(1, {}));
    resolve_server();
    const Outcome o =
        same({"default/a", kServer.str(), 443, 6}, "default/a", from_pod(kA, kServer, 443));
    EXPECT_EQ(o.verdict, "allow");
    EXPECT_EQ(o.seen_src, h.params().node_ip.str());
}

// --- NetworkPolicy (the policy_pkt_test cases; the compiled features, ipBlock with except,
// named ports and port ranges, are compared trace vs packet in policy_matrix_test) ---------

constexpr uint32_t kIdA = 1, kIdC = 2, kIdRemote = 3, kIdWorld = 4;

table::PolicySpec policies() {
    table::PolicySpec p;
    p.present = true;
    p.peers = {{kA, kIdA}, {kC, kIdC}, {kRemote, kIdRemote}};
    p.cidrs = {{*Prefix4::parse("0.0.0.0/0"), kIdWorld}};
    p.rule_names = {"default/b-web ingress[0]", "default/b-dns ingress[0]",
                    "default/a-out egress[0]"};
    table::PodPolicySpec b{"default/b", kB, true, false, {}};
    b.rules = {{PolicyDir::kIngress, kIdA, 6, 8080, 8080, 0},
               {PolicyDir::kIngress, kIdRemote, 6, 8080, 8080, 0},
               {PolicyDir::kIngress, table::kIdentityAny, 17, 53, 53, 1}};
    table::PodPolicySpec a{"default/a", kA, false, true, {}};
    a.rules = {{PolicyDir::kEgress, kIdRemote, 17, 5000, 5010, 2},
               {PolicyDir::kEgress, table::kIdentityAny, 6, 8080, 8080, 2}};
    p.pods = {b, a};
    return p;
}

TEST_F(TraceVsPacket, PolicyIngressEgressPortRangesAndServices) {
    table::TableSpec s = spec(1, {backend(kB, "default/b")});
    s.policy = policies();
    apply(s);
    resolve_node2(h);
    struct Case {
        const char* from;
        Ip4 src;
        Mac m;
        Ip4 dst;
        uint16_t port;
        uint8_t proto;
        const char* want;
    };
    const Case cases[] = {
        {"default/a", kA, kMacA, kB, 8080, 6, "allow"},            // ingress rule 0
        {"default/c", kC, kMacB, kB, 8080, 6, "deny"},             // no ingress rule for c
        {"default/a", kA, kMacA, kB, 8081, 6, "deny"},             // a's egress: 8080 only
        {"default/c", kC, kMacB, kB, 53, 17, "allow"},             // UDP 53 from anyone
        {"default/a", kA, kMacA, kRemote, 5005, 17, "allow"},      // egress range 5000-5010
        {"default/a", kA, kMacA, kRemote, 5011, 17, "deny"},       // past the range
        {"default/a", kA, kMacA, kOtherRemote, 5005, 17, "deny"},  // another identity
        {"default/a", kA, kMacA, kVip, 80, 6, "allow"},            // judged after DNAT: b:8080
        {"default/c", kC, kMacB, kVip, 80, 6, "deny"},
        {"default/b", kB, kMacB, kC, 9000, 6, "allow"},  // b is not isolated for egress
    };
    for (const Case& c : cases) {
        const Outcome o = same({c.from, c.dst.str(), c.port, c.proto}, c.from,
                               from_pod(c.src, c.dst, c.port, c.proto, c.m));
        EXPECT_EQ(o.verdict, c.want) << c.from << " -> " << c.dst.str() << ":" << c.port;
    }
    // From node2's pods, decapsulated and judged by b's ingress.
    EXPECT_EQ(same({kRemote.str(), "default/b", 8080, 6}, "uplink", from_node2(kRemote, kB, 8080))
                  .verdict,
              "allow");
    EXPECT_EQ(same({kOtherRemote.str(), "default/b", 8080, 6}, "uplink",
                   from_node2(kOtherRemote, kB, 8080))
                  .verdict,
              "deny");
}

TEST_F(TraceVsPacket, BeforeTheFirstPolicySync) {
    table::TableSpec s = spec(1, {backend(kB, "default/b")});
    s.policy = {};
    apply(s);
    EXPECT_EQ(same({"default/a", kB.str(), 8080, 6}, "default/a", from_pod(kA, kB, 8080)).verdict,
              "deny");
}

// Many traces of every kind in a row, over a node with live connections of every kind: the
// conntrack listing and count, every counter, the neighbour table and learnt peer MACs are
// exactly as before.
TEST_F(TraceVsPacket, ManyTracesLeaveNoState) {
    table::TableSpec s = external(1, {backend(kB, "default/b"), backend(kRemote, "default/r")});
    s.policy = policies();
    s.services[0].affinity_timeout_s = 60;
    apply(s);
    resolve_node2(h);
    resolve_server();
    // Live connections: a pod's Service connection, an outside client's NodePort, a
    // masqueraded egress, all on the trace's client port so that its traces are established.
    h.inject("default/a", from_pod(kA, kVip, 80), now_);
    h.inject("uplink", from_outside(kClient, h.params().node_ip, 30080), now_);
    h.inject("default/a", from_pod(kA, kServer, 8080), now_);
    for (const char* p : {"uplink", "default/a", "default/b", "default/c"}) {
        h.collect(p);
    }
    ASSERT_GE(h.conntrack().size(), 3u);
    const std::string before = state_of(h);
    const unsigned mbufs = h.pool_available();
    const std::vector<api::TraceQuery> queries = {
        {"default/a", "service:default/web", 80, 6},          // established, Service
        {"default/a", kVip.str(), 80, 17},                    // no such Service port over UDP
        {"default/c", kVip.str(), 80, 6},                     // denied after DNAT
        {"default/a", kServer.str(), 8080, 6},                // established egress
        {"default/a", "198.51.100.51", 8080, 6},              // new egress, unresolved next hop
        {"default/a", kRemote.str(), 5005, 17},               // to node2
        {"default/a", kOtherRemote.str(), 5005, 17},          // denied egress
        {kClient.str(), h.params().node_ip.str(), 30080, 6},  // established NodePort
        {"203.0.113.8", kLbIp.str(), 80, 6},                  // new LoadBalancer connection
        {"203.0.113.77", kLbIp.str(), 80, 6},                 // source range
        {kRemote.str(), "default/b", 8080, 6},                // from node2
        {"default/b", "default/a", 22, 6},                    // a is not isolated for ingress
    };
    int traced = 0;
    for (int round = 0; round < 20; ++round) {
        for (const auto& q : queries) {
            api::TraceResult r;
            ASSERT_EQ(h.manager().trace(q, r), std::nullopt) << q.from << " -> " << q.to;
            ++traced;
        }
    }
    EXPECT_EQ(traced, 20 * static_cast<int>(queries.size()));
    EXPECT_EQ(state_of(h), before);
    EXPECT_EQ(h.pool_available(), mbufs) << "every trace mbuf was freed";
}

}  // namespace
}  // namespace kdp::test
