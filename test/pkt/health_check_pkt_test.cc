// Packet-level tests of the healthCheckNodePort server of externalTrafficPolicy: Local
// Services: a load balancer's TCP connection to node_ip:31000 on the uplink, handshake,
// request, response parsed, close; 200 with a local endpoint, 503 without.
//
//   load balancer 203.0.113.7 --(router MAC)--> node1 198.51.100.1:31000 (health check)
//                                                node1 198.51.100.1:30080 (NodePort, ETP Local)
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "service_fixture.h"

namespace kdp::test {
namespace {

using dataplane::DropReason;
using namespace svc;  // NOLINT: the fixture's names are this file's vocabulary

const Ip4 kLb = ip("203.0.113.7");
const Mac kRouterMac = mac("02:00:00:00:0e:0e");
constexpr uint16_t kHealthPort = 31000;
constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;

table::TableSpec local_spec(uint64_t gen, std::vector<table::BackendSpec> backends) {
    table::TableSpec s = spec(gen, std::move(backends));
    table::ServiceSpec& sv = s.services[0];
    sv.frontends.push_back({table::FrontendKind::kNodePort, ip("198.51.100.1"), 30080});
    sv.external_local = true;
    sv.health_check_node_port = kHealthPort;
    return s;
}

struct Segment {
    uint32_t seq = 0;
    uint32_t ack = 0;
    uint8_t flags = 0;
    std::string payload;
};

class HealthCheck : public ::testing::Test {
protected:
    HealthCheck() : h(three_pods()) {}

    void apply(const table::TableSpec& s) { ASSERT_EQ(h.manager().apply_tables(s), std::nullopt); }

    // Sends one segment from the load balancer and returns what the node answered (flags 0 and
    // no payload when it answered nothing).
    Segment send(uint16_t sport, uint32_t seq, uint32_t ack, uint8_t flags, std::string data = "") {
        h.inject("uplink", ether(h.params().node_mac, kRouterMac, 0x0800,
                                 tcp_segment(kLb, h.params().node_ip, sport, kHealthPort, seq, ack,
                                             flags, data)));
        const auto out = h.collect("uplink");
        EXPECT_LE(out.size(), 1u);
        if (out.empty()) {
            return {};
        }
        const Bytes& f = out[0];
        EXPECT_EQ(read_mac_at(f, 0), kRouterMac) << "back to the MAC it came from";
        EXPECT_EQ(read_mac_at(f, 6), h.params().node_mac);
        EXPECT_EQ(get32(&f[14 + 12]), h.params().node_ip.host());
        EXPECT_EQ(get32(&f[14 + 16]), kLb.host());
        EXPECT_EQ(get16(&f[34]), kHealthPort);
        EXPECT_EQ(get16(&f[36]), sport);
        expect_valid(f, 14, "answer");
        Segment s{get32(&f[34 + 4]), get32(&f[34 + 8]), f[34 + 13], {}};
        const size_t total = get16(&f[14 + 2]);
        s.payload.assign(f.begin() + 54, f.begin() + 14 + static_cast<long>(total));
        return s;
    }

    // A whole health check from `sport`: handshake, GET, response, close. Returns the response.
    std::string check(uint16_t sport) {
        const Segment synack = send(sport, 1000, 0, kSyn);
        EXPECT_EQ(synack.flags, kSyn | kAck);
        EXPECT_EQ(synack.ack, 1001u);
        const uint32_t isn = synack.seq;
        EXPECT_EQ(send(sport, 1001, isn + 1, kAck).flags, 0) << "the handshake's ACK: nothing";
        const std::string get =
            "GET /healthz HTTP/1.1\r\nHost: 198.51.100.1:31000\r\nUser-Agent: lb\r\n\r\n";
        const Segment resp = send(sport, 1001, isn + 1, kPsh | kAck, get);
        EXPECT_EQ(resp.flags, kAck | kPsh | kFin) << "the whole response, then FIN";
        EXPECT_EQ(resp.seq, isn + 1);
        EXPECT_EQ(resp.ack, 1001u + get.size());
        // The client acknowledges response and FIN, and closes its side.
        const uint32_t end = isn + 1 + static_cast<uint32_t>(resp.payload.size()) + 1;
        EXPECT_EQ(send(sport, 1001 + static_cast<uint32_t>(get.size()), end, kAck).flags, 0);
        const Segment last =
            send(sport, 1001 + static_cast<uint32_t>(get.size()), end, kFin | kAck);
        EXPECT_EQ(last.flags, kAck);
        EXPECT_EQ(last.seq, end);
        EXPECT_EQ(last.ack, 1001u + get.size() + 1) << "FIN acknowledged";
        return resp.payload;
    }

    NodeHarness h;
};

// Splits an HTTP response into status line, Content-Length and body.
struct Http {
    std::string status;
    size_t content_length = 0;
    std::string body;
};

Http parse(const std::string& r) {
    Http h;
    const size_t eol = r.find("\r\n");
    h.status = r.substr(0, eol);
    const size_t cl = r.find("Content-Length: ");
    if (cl != std::string::npos) {
        h.content_length = std::stoul(r.substr(cl + 16));
    }
    const size_t sep = r.find("\r\n\r\n");
    h.body = sep == std::string::npos ? "" : r.substr(sep + 4);
    return h;
}

TEST_F(HealthCheck, AnswersOkWithTheLocalEndpointCountThenUnavailableWhenItGoes) {
    apply(local_spec(
        1, {backend(kB, "default/b"), backend(kC, "default/c"), backend(kRemote, "default/r")}));
    Http r = parse(check(40000));
    EXPECT_EQ(r.status, "HTTP/1.1 200 OK");
    ASSERT_EQ(r.content_length, r.body.size());
    auto j = nlohmann::json::parse(r.body);
    EXPECT_EQ(j["service"]["namespace"], "default");
    EXPECT_EQ(j["service"]["name"], "web");
    EXPECT_EQ(j["localEndpoints"], 2) << "b and c; the remote one is not local";

    apply(local_spec(2, {backend(kRemote, "default/r")}));
    r = parse(check(40001));
    EXPECT_EQ(r.status, "HTTP/1.1 503 Service Unavailable");
    ASSERT_EQ(r.content_length, r.body.size());
    j = nlohmann::json::parse(r.body);
    EXPECT_EQ(j["localEndpoints"], 0);
    EXPECT_EQ(j["service"]["name"], "web");
    EXPECT_EQ(h.total_drops("uplink"), 0u) << h.drop_summary("uplink");
}

TEST_F(HealthCheck, StrayAndLostSegmentsGetTheRightAnswer) {
    apply(local_spec(1, {backend(kB, "default/b")}));
    // No handshake behind this ACK: refused.
    Segment s = send(40100, 5000, 12345, kAck);
    EXPECT_EQ(s.flags, kRst);
    EXPECT_EQ(s.seq, 12345u) << "RST carries their ack as its sequence";
    // A RST is never answered.
    EXPECT_EQ(send(40100, 5000, 0, kRst).flags, 0);
    // A lost response: the client sends its request again and gets the response again.
    const Segment synack = send(40101, 7000, 0, kSyn);
    const std::string get = "GET /healthz HTTP/1.1\r\n\r\n";
    const Segment a = send(40101, 7001, synack.seq + 1, kPsh | kAck, get);
    const Segment b = send(40101, 7001, synack.seq + 1, kPsh | kAck, get);
    EXPECT_EQ(a.payload, b.payload);
    EXPECT_EQ(a.seq, b.seq);
    // The same port on another node address, or without a Local policy, is not answered.
    table::TableSpec cluster = local_spec(2, {backend(kB, "default/b")});
    cluster.services[0].external_local = false;
    apply(cluster);
    EXPECT_EQ(send(40102, 1, 0, kSyn).flags, 0);
    EXPECT_EQ(h.drops("uplink", DropReason::kHostPath), 1u);
}

TEST_F(HealthCheck, PortsThatClashAreRefused) {
    table::TableSpec s = local_spec(1, {backend(kB, "default/b")});
    s.services[0].health_check_node_port = 30080;
    auto err = h.manager().apply_tables(s);
    ASSERT_NE(err, std::nullopt);
    EXPECT_NE(err->find("health_check_node_port 30080 is a TCP frontend of the node IP"),
              std::string::npos)
        << *err;
    // Two ports of one Service share theirs; another Service may not take it.
    s = local_spec(1, {backend(kB, "default/b")});
    table::ServiceSpec other = s.services[0];
    other.name = "default/web:https";
    other.frontends = {{table::FrontendKind::kNodePort, ip("198.51.100.1"), 30443}};
    s.services.push_back(other);
    EXPECT_EQ(h.manager().validate(s), std::nullopt);
    s.services[1].name = "default/api:https";
    err = h.manager().apply_tables(s);
    ASSERT_NE(err, std::nullopt);
    EXPECT_NE(err->find("health_check_node_port 31000 is used by service default/web"),
              std::string::npos)
        << *err;
    EXPECT_EQ(h.manager().tables().generation, 0u) << "nothing applied";
}

}  // namespace
}  // namespace kdp::test
