// The healthCheckNodePort server of externalTrafficPolicy: Local Services, as kube-proxy's:
// TCP to node_ip:health_check_node_port on the uplink gets HTTP 200 with
//   {"service":{"namespace":"..","name":".."},"localEndpoints":N,"serviceProxyHealthy":true}
// when this node has usable endpoints of the Service, 503 with the same body otherwise, so
// that a cloud load balancer sends external traffic only to nodes that can serve it.
//
// There is no kernel stack behind the node IP (the dataplane owns the uplink), so this is a
// stateless TCP responder, answering in place in the received mbuf (no allocation, no state):
//   SYN                          -> SYN/ACK, ISN a keyed hash of the 4-tuple (a cookie)
//   segment with data, ack=ISN+1 -> the whole HTTP response with FIN (one segment)
//   FIN (after the response)     -> ACK
//   pure ACK of ours, RST        -> nothing
//   anything else                -> RST
// A lost response is sent again when the client retransmits its request. Health checks are a
// few packets a second per load balancer: this runs on the worker but off the fast path.
// Worker-only.
#pragma once

#include <string_view>

#include "stage/context.h"
#include "stage/node_context.h"
#include "stage/tcp_answer.h"

namespace kdp::dataplane::stage {

/// Room for the response: the status line and headers (~150 bytes) and the body (at most
/// ~100 bytes plus a Service's namespace and name, 63 + 253 bytes as Kubernetes allows).
inline constexpr uint16_t kHealthResponseMax = 768;

/// Appends text to a fixed buffer; what does not fit is cut (never happens within the limits
/// above, and a cut response is still answered, not overrun).
struct TextOut {
    char* p;
    char* end;
    void put(std::string_view s) noexcept {
        for (const char c : s) {
            if (p != end) {
                *p++ = c;
            }
        }
    }
    void num(uint32_t v) noexcept {
        char digits[10];
        int n = 0;
        do {
            digits[n++] = static_cast<char>('0' + v % 10);
            v /= 10;
        } while (v != 0);
        while (n != 0) {
            put(std::string_view(&digits[--n], 1));
        }
    }
    /// A Kubernetes name: DNS label characters only, so that nothing needs JSON escaping.
    void name(std::string_view s) noexcept {
        for (const char c : s) {
            const bool ok =
                (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
            if (ok) {
                put(std::string_view(&c, 1));
            }
        }
    }
};

/// The HTTP response for Service port `name` ("namespace/name:port") with `local` usable
/// endpoints on this node. Returns its length.
inline uint16_t health_response(char* buf, std::string_view name, uint32_t local) noexcept {
    const size_t slash = name.find('/');
    const std::string_view ns = slash == std::string_view::npos ? "" : name.substr(0, slash);
    std::string_view svc = slash == std::string_view::npos ? name : name.substr(slash + 1);
    svc = svc.substr(0, svc.find(':'));
    char body[kHealthResponseMax / 2];
    TextOut b{body, body + sizeof body};
    b.put(R"({"service":{"namespace":")");
    b.name(ns);
    b.put(R"(","name":")");
    b.name(svc);
    b.put(R"("},"localEndpoints":)");
    b.num(local);
    b.put(R"(,"serviceProxyHealthy":true})");
    TextOut o{buf, buf + kHealthResponseMax};
    o.put(local != 0 ? "HTTP/1.1 200 OK\r\n" : "HTTP/1.1 503 Service Unavailable\r\n");
    o.put("Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n");
    o.put("Content-Length: ");
    o.num(static_cast<uint32_t>(b.p - body));
    o.put("\r\nConnection: close\r\n\r\n");
    o.put(std::string_view(body, static_cast<size_t>(b.p - body)));
    return static_cast<uint16_t>(o.p - buf);
}

/// The responder's initial sequence number for a connection: a keyed hash of its 4-tuple, so
/// that later segments are recognised without state (the key is the node's MAC: this guards
/// against stray segments, not against an attacker on the path).
inline uint32_t health_isn(const NodeContext& n, const Tuple4& t) noexcept {
    const uint64_t a = uint64_t{t.src.be} << 32 | t.dst.be;
    const uint64_t b = uint64_t{t.sport} << 16 | t.dport;
    return static_cast<uint32_t>(mix64(a ^ mix64(b ^ n.node_mac.pack() ^ 0x6b64702d68636e70ull)));
}

/// Answers one TCP segment to the health check port of Service port `name`, which has
/// `local` usable endpoints on this node.
inline void health_check(const NodeContext& n,
                         rte_mbuf* m,
                         PacketMeta& p,
                         std::string_view name,
                         uint32_t local) noexcept {
    if (p.flags & pkt_flag::kFragment) [[unlikely]] {
        p.drop(DropReason::kHostPath);
        return;
    }
    const TcpSeg s = tcp_seg(m, p);
    const uint32_t isn = health_isn(n, p.tuple);
    if (s.flags & kTcpRst) {
        p.action = Action::kConsumed;
        return;
    }
    if ((s.flags & (kTcpSyn | kTcpAck)) == kTcpSyn) {
        tcp_answer(m, p, n.node_mac, isn, s.seq + 1, kTcpSyn | kTcpAck);
        return;
    }
    // Every other segment acknowledges something of ours: at most our SYN, the response and
    // its FIN. Anything else is no connection of this responder.
    const uint32_t acked = s.ack - (isn + 1);
    if (!(s.flags & kTcpAck) || (s.flags & kTcpSyn) || acked > kHealthResponseMax + 1u) {
        tcp_reset(m, p, n.node_mac);
        return;
    }
    const uint32_t fin = (s.flags & kTcpFin) ? 1 : 0;
    if (s.payload != 0 && acked == 0) {
        char resp[kHealthResponseMax];
        const uint16_t len = health_response(resp, name, local);
        tcp_answer(m, p, n.node_mac, isn + 1, s.seq + s.payload + fin, kTcpAck | kTcpPsh | kTcpFin,
                   resp, len);
        return;
    }
    if (fin != 0) {
        tcp_answer(m, p, n.node_mac, s.ack, s.seq + s.payload + 1, kTcpAck);
        return;
    }
    p.action = Action::kConsumed;  // an ACK of our data or FIN
}

/// The health check stage: TCP to the node IP (`dst`, as received) on a Service's
/// healthCheckNodePort is answered here, as kube-proxy's health server does; kRoute otherwise.
inline Next node_health_check(
    const NodeContext& n, const table::TableSet& t, rte_mbuf* m, PacketMeta& p, Ip4 dst) noexcept {
    if (dst == n.node_ip && p.tuple.proto == pkt::kProtoTcp) {
        if (const uint32_t* hc = t.health_checks.find(from_be16(p.tuple.dport))) {
            const table::ServiceBlock& b = t.services[*hc].current();
            health_check(n, m, p, b.spec.name, b.local_backends);
            return Next::kDone;
        }
    }
    return Next::kRoute;
}

}  // namespace kdp::dataplane::stage
