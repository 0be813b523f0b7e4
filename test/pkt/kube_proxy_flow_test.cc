// kube-proxy's packet-flow tests (pkg/proxy/nftables/proxier_test.go, runPacketFlowTests),
// translated to kdp: the same Services and EndpointSlices written as manifests, run through the
// real compiler and every node's real pipeline in-process (control::offline::Cluster), and the
// same questions asked of the packets: which endpoints a client can reach, whether the backend
// sees the client's address, and REJECT / DROP. Each case names its upstream test and case.
//
// Upstream's conventions, kept where kdp allows: Service CIDR 172.30.0.0/16, pod IPs 10.180.x (.11,
// not .1, which is the node's gateway here), node IPs 192.168.0.x, external IPs 192.168.99.x,
// LoadBalancer IPs 1.2.3.4 / 5.6.7.8, clients outside the cluster in 203.0.113.0/24 (203.0.113.0/25
// allowed by source ranges). The test node is node1 (podCIDR 10.180.0.0/24, 192.168.0.2); node2
// (10.180.2.0/24, 192.168.0.3) holds the "remote" endpoints. Upstream's IsLocal (nodeName) is kdp's
// "in this node's pod CIDR".
//
// Where kdp answers differently on purpose, the case says so and asserts kdp's answer (README,
// Services, "Deliberate differences from kube-proxy"): an external client's connection to an
// endpoint on the node it entered keeps its address under externalTrafficPolicy: Cluster, and
// pods reaching external frontends are never masqueraded (their replies come back to the node
// that balanced them by the overlay).
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "manifest/manifest.h"
#include "offline/cluster.h"

namespace kdp::test {
namespace {

using control::offline::Cluster;
using control::offline::ClusterOptions;
using control::offline::Probe;
using control::offline::ProbeResult;

const char* const kNodes = R"(
apiVersion: v1
kind: Namespace
metadata: {name: ns1}
---
apiVersion: v1
kind: Node
metadata: {name: node1}
spec: {podCIDR: 10.180.0.0/24}
status: {addresses: [{type: InternalIP, address: 192.168.0.2}]}
---
apiVersion: v1
kind: Node
metadata: {name: node2}
spec: {podCIDR: 10.180.2.0/24}
status: {addresses: [{type: InternalIP, address: 192.168.0.3}]}
)";

// A pod `name` at `ip` on `node`.
std::string pod(const std::string& name, const std::string& ip, const std::string& node) {
    return fmt::format(R"(---
apiVersion: v1
kind: Pod
metadata: {{name: {}, namespace: ns1, labels: {{role: {}}}}}
spec: {{nodeName: {}, containers: [{{name: c, image: x}}]}}
status: {{phase: Running, podIP: {}}}
)",
                       name, name, node, ip);
}

// An EndpointSlice of Service `svc` with one port `port_name` (`port`/`proto`) and endpoints
// given as YAML flow mappings.
std::string slice(const std::string& svc,
                  const std::string& port_name,
                  int port,
                  const std::vector<std::string>& endpoints,
                  const std::string& proto = "TCP",
                  int n = 1) {
    std::string eps;
    for (const auto& e : endpoints) {
        eps += "  - " + e + "\n";
    }
    return fmt::format(R"(---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {}-{}
  namespace: ns1
  labels: {{kubernetes.io/service-name: {}}}
addressType: IPv4
ports: [{{name: "{}", port: {}, protocol: {}}}]
endpoints:
{})",
                       svc, n, svc, port_name, port, proto, eps.empty() ? "  []\n" : eps);
}

// A ready endpoint of pod `name` at `ip`.
std::string ep(const std::string& name, const std::string& ip, const std::string& node) {
    return fmt::format(
        "{{addresses: [{}], nodeName: {}, targetRef: {{kind: Pod, namespace: ns1, "
        "name: {}}}}}",
        ip, node, name);
}

// Clients: 16 pods on node1, so that "hits both endpoints" is asked of several flows.
constexpr int kClients = 16;
std::string clients() {
    std::string out;
    for (int i = 0; i < kClients; ++i) {
        out += pod(fmt::format("client{}", i), fmt::format("10.180.0.{}", 100 + i), "node1");
    }
    return out;
}

class FlowCluster {
public:
    explicit FlowCluster(const std::string& manifests) {
        char tmpl[] = "/tmp/kdp-flow-XXXXXX";
        dir_ = mkdtemp(tmpl);
        path_ = dir_ + "/cluster.yaml";
        std::ofstream(path_) << kNodes << clients() << manifests;
        control::Model m;
        const auto errors = control::load_manifests({path_}, m);
        EXPECT_TRUE(errors.empty()) << errors.front();
        ClusterOptions o;
        o.services.service_cidr = *Prefix4::parse("172.30.0.0/16");
        cluster_ = std::make_unique<Cluster>(m, o);
    }
    ~FlowCluster() {
        std::remove(path_.c_str());
        rmdir(dir_.c_str());
    }
    ProbeResult trace(const std::string& from,
                      const std::string& to,
                      uint16_t port,
                      uint8_t proto = 6,
                      const std::string& enters_at = "") {
        return cluster_->trace(Probe{from, to, port, proto, enters_at});
    }
    // What kube-proxy's `output` lists: the endpoints (ip:port) the flows of every client
    // reach; "REJECT" or "DROP" when none does. Pod clients are client0..15, outside ones
    // 203.0.113.10..25 entering at node1. `masq` says whether any backend saw another source
    // than the client's own.
    struct Outcome {
        std::set<std::string> endpoints;
        bool masq = false;
        std::string drop;  // the last hop's detail when dropped
    };
    Outcome flows(bool outside, const std::string& to, uint16_t port, uint8_t proto = 6) {
        Outcome o;
        for (int i = 0; i < kClients; ++i) {
            const std::string client =
                outside ? fmt::format("203.0.113.{}", 10 + i) : fmt::format("ns1/client{}", i);
            const std::string client_ip = outside ? client : fmt::format("10.180.0.{}", 100 + i);
            const ProbeResult r = trace(client, to, port, proto, outside ? "node1" : "");
            if (r.trace.verdict == "reject") {
                o.endpoints.insert("REJECT");
            } else if (r.trace.verdict != "allow") {
                o.endpoints.insert("DROP");
                o.drop = r.trace.hops.empty() ? "" : r.trace.hops.back().detail;
            } else {
                EXPECT_EQ(r.reply, "allow") << client << " -> " << to << ": the answer comes back";
                o.endpoints.insert(fmt::format("{}:{}", backend_ip(r), r.trace.backend_port));
                o.masq = o.masq || r.trace.seen_src != client_ip;
            }
        }
        return o;
    }

private:
    static std::string backend_ip(const ProbeResult& r) {
        // "ns1/ep-local" -> its address, from the pods this file defines.
        for (const auto& [name, ip] : kEndpointPods) {
            if (r.trace.backend == std::string("ns1/") + name) {
                return ip;
            }
        }
        return r.trace.backend;
    }
    static constexpr std::pair<const char*, const char*> kEndpointPods[] = {
        {"ep-local", "10.180.0.11"},
        {"ep-remote", "10.180.2.11"},
        {"ep-local2", "10.180.0.5"},
    };
    std::string dir_, path_;
    std::unique_ptr<Cluster> cluster_;
};

using Set = std::set<std::string>;

// One runPacketFlowTests case: from pods (client0..15) or from outside (entering at node1),
// to an address and port; `want` as upstream's `output` where it is checked.
struct FlowCase {
    const char* name;
    bool outside;
    const char* to;
    uint16_t port;
    Set want{};
};
const std::string kLocal = "10.180.0.11:80";
const std::string kRemote = "10.180.2.11:80";

std::string endpoint_pods() {
    return pod("ep-local", "10.180.0.11", "node1") + pod("ep-remote", "10.180.2.11", "node2");
}

// The Service of TestExternalTrafficPolicyLocal / TestExternalTrafficPolicyCluster: type
// LoadBalancer with an external IP, endpoints on both nodes.
std::string etp_service(const std::string& policy) {
    return fmt::format(R"(---
apiVersion: v1
kind: Service
metadata: {{name: svc1, namespace: ns1}}
spec:
  type: LoadBalancer
  clusterIP: 172.30.0.41
  externalIPs: [192.168.99.11]
  externalTrafficPolicy: {}
  ports: [{{name: p80, port: 80, protocol: TCP, targetPort: 80, nodePort: 30001}}]
status: {{loadBalancer: {{ingress: [{{ip: 1.2.3.4}}]}}}}
)",
                       policy) +
           slice("svc1", "p80", 80,
                 {ep("ep-remote", "10.180.2.11", "node2"), ep("ep-local", "10.180.0.11", "node1")});
}

// proxier_test.go TestExternalTrafficPolicyLocal: all 7 cases.
TEST(KubeProxyFlows, ExternalTrafficPolicyLocal) {
    FlowCluster c(endpoint_pods() + etp_service("Local"));
    const FlowCase cases[] = {
        {"pod to cluster IP hits both endpoints, unmasqueraded",
         false,
         "172.30.0.41",
         80,
         {kLocal, kRemote}},
        {"pod to external IP hits both endpoints, unmasqueraded",
         false,
         "192.168.99.11",
         80,
         {kLocal, kRemote}},
        {"external to external IP hits only local endpoint, unmasqueraded",
         true,
         "192.168.99.11",
         80,
         {kLocal}},
        {"pod to LB IP hits only both endpoints, unmasqueraded",
         false,
         "1.2.3.4",
         80,
         {kLocal, kRemote}},
        {"external to LB IP hits only local endpoint, unmasqueraded",
         true,
         "1.2.3.4",
         80,
         {kLocal}},
        {"pod to NodePort hits both endpoints, unmasqueraded",
         false,
         "192.168.0.2",
         30001,
         {kLocal, kRemote}},
        {"external to NodePort hits only local endpoint, unmasqueraded",
         true,
         "192.168.0.2",
         30001,
         {kLocal}},
    };
    for (const FlowCase& k : cases) {
        const auto o = c.flows(k.outside, k.to, k.port);
        EXPECT_EQ(o.endpoints, k.want) << k.name;
        EXPECT_FALSE(o.masq) << k.name;
    }
}

// proxier_test.go TestExternalTrafficPolicyCluster: all 7 cases. The endpoints match
// upstream's; masquerading differs on purpose (the file's header): kdp masquerades an outside
// client only toward an endpoint on another node, and never a pod.
TEST(KubeProxyFlows, ExternalTrafficPolicyCluster) {
    FlowCluster c(endpoint_pods() + etp_service("Cluster"));
    const FlowCase cases[] = {
        {"pod to cluster IP hits both endpoints, unmasqueraded", false, "172.30.0.41", 80},
        {"pod to external IP hits both endpoints, masqueraded", false, "192.168.99.11", 80},
        {"external to external IP hits both endpoints, masqueraded", true, "192.168.99.11", 80},
        {"pod to LB IP hits both endpoints, masqueraded", false, "1.2.3.4", 80},
        {"external to LB IP hits both endpoints, masqueraded", true, "1.2.3.4", 80},
        {"pod to NodePort hits both endpoints, masqueraded", false, "192.168.0.2", 30001},
        {"external to NodePort hits both endpoints, masqueraded", true, "192.168.0.2", 30001},
    };
    for (const FlowCase& k : cases) {
        const auto o = c.flows(k.outside, k.to, k.port);
        EXPECT_EQ(o.endpoints, (Set{kLocal, kRemote})) << k.name;
        // kdp: outside clients masqueraded toward node2's endpoint only; pods never.
        EXPECT_EQ(o.masq, k.outside) << k.name;
    }
    // The deliberate difference, one flow each way: the local endpoint sees the client.
    for (int i = 0; i < kClients; ++i) {
        const std::string client = fmt::format("203.0.113.{}", 10 + i);
        const ProbeResult r = c.trace(client, "192.168.0.2", 30001, 6, "node1");
        EXPECT_EQ(r.trace.seen_src, r.trace.backend == "ns1/ep-local" ? client : "10.180.0.1")
            << client << " -> " << r.trace.backend;
    }
}

// proxier_test.go TestNoEndpointsReject: all 6 cases. From outside the cluster too: the refusal
// leaves by the uplink (kdp dropped those silently before).
TEST(KubeProxyFlows, NoEndpointsReject) {
    FlowCluster c(R"(---
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: ns1}
spec:
  type: LoadBalancer
  clusterIP: 172.30.0.41
  externalIPs: [192.168.99.11]
  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 30001}]
status: {loadBalancer: {ingress: [{ip: 1.2.3.4}]}}
)" + slice("svc1", "p80", 80, {}));
    const FlowCase cases[] = {
        {"pod to cluster IP with no endpoints", false, "172.30.0.41", 80},
        {"external to external IP with no endpoints", true, "192.168.99.11", 80},
        {"pod to NodePort with no endpoints", false, "192.168.0.2", 30001},
        {"external to NodePort with no endpoints", true, "192.168.0.2", 30001},
        {"pod to LoadBalancer IP with no endpoints", false, "1.2.3.4", 80},
        {"external to LoadBalancer IP with no endpoints", true, "1.2.3.4", 80},
    };
    for (const FlowCase& k : cases) {
        EXPECT_EQ(c.flows(k.outside, k.to, k.port).endpoints, Set{"REJECT"}) << k.name;
    }
}

// proxier_test.go TestClusterIPGeneral: all 10 cases.
TEST(KubeProxyFlows, ClusterIPGeneral) {
    FlowCluster c(endpoint_pods() + R"(---
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: ns1}
spec:
  clusterIP: 172.30.0.41
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: svc2, namespace: ns1}
spec:
  clusterIP: 172.30.0.42
  ports:
    - {name: http, port: 80, protocol: TCP}
    - {name: https, port: 443, protocol: TCP, targetPort: 8443}
    - {name: dns-udp, port: 53, protocol: UDP}
    - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 5353}
    - {name: dns-sctp, port: 53, protocol: SCTP}
)" + slice("svc1", "http", 80, {ep("ep-local", "10.180.0.11", "node1")}) +
                  fmt::format(R"(---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc2-1
  namespace: ns1
  labels: {{kubernetes.io/service-name: svc2}}
addressType: IPv4
ports:
  - {{name: http, port: 80, protocol: TCP}}
  - {{name: https, port: 8443, protocol: TCP}}
  - {{name: dns-udp, port: 53, protocol: UDP}}
  - {{name: dns-tcp, port: 5353, protocol: TCP}}
  - {{name: dns-sctp, port: 53, protocol: SCTP}}
endpoints:
  - {}
  - {}
)",
                              ep("ep-local", "10.180.0.11", "node1"),
                              ep("ep-remote", "10.180.2.11", "node2")));
    struct Case {
        const char* name;
        uint8_t proto;
        const char* to;
        uint16_t port;
        Set want;
    } cases[] = {
        {"simple clusterIP", 6, "172.30.0.41", 80, {"10.180.0.11:80"}},
        {"clusterIP with multiple endpoints",
         6,
         "172.30.0.42",
         80,
         {"10.180.0.11:80", "10.180.2.11:80"}},
        {"clusterIP with TargetPort",
         6,
         "172.30.0.42",
         443,
         {"10.180.0.11:8443", "10.180.2.11:8443"}},
        {"clusterIP with TCP, UDP, and SCTP on same port (TCP)",
         6,
         "172.30.0.42",
         53,
         {"10.180.0.11:5353", "10.180.2.11:5353"}},
        {"clusterIP with TCP, UDP, and SCTP on same port (UDP)",
         17,
         "172.30.0.42",
         53,
         {"10.180.0.11:53", "10.180.2.11:53"}},
        {"clusterIP with TCP, UDP, and SCTP on same port (SCTP)",
         132,
         "172.30.0.42",
         53,
         {"10.180.0.11:53", "10.180.2.11:53"}},
        {"TCP-only port does not match UDP traffic", 17, "172.30.0.42", 80, {"REJECT"}},
        {"svc1 does not accept svc2's ports", 6, "172.30.0.41", 443, {"REJECT"}},
        {"packet to unallocated cluster ip", 6, "172.30.0.50", 80, {"DROP"}},
    };
    for (const Case& k : cases) {
        const auto o = c.flows(false, k.to, k.port, k.proto);
        EXPECT_EQ(o.endpoints, k.want) << k.name;
        EXPECT_FALSE(o.masq) << k.name;
        if (k.want == Set{"DROP"}) {
            EXPECT_NE(o.drop.find("service_cidr_unallocated"), std::string::npos) << o.drop;
        }
    }
    // "hairpin to cluster IP": the endpoint reaches itself, masqueraded.
    const ProbeResult r = c.trace("ns1/ep-local", "172.30.0.41", 80);
    EXPECT_EQ(r.trace.verdict, "allow");
    EXPECT_EQ(r.trace.backend, "ns1/ep-local");
    EXPECT_EQ(r.trace.seen_src, "10.180.0.1") << "masqueraded to node1's gateway address";
    EXPECT_EQ(r.reply, "allow");
}

// proxier_test.go TestLoadBalancer: 9 of its 13 cases. Not translated: "node to LB1/LB2"
// and "same node to LB1/LB2, SNATted": a node's own traffic to a LoadBalancer IP leaves by its
// host network, which the offline cluster models as traffic out of the uplink.
TEST(KubeProxyFlows, LoadBalancer) {
    FlowCluster c(pod("ep-local", "10.180.0.11", "node1") + R"(---
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: ns1}
spec:
  type: LoadBalancer
  clusterIP: 172.30.0.41
  loadBalancerSourceRanges: [192.168.0.0/24, 203.0.113.0/25]
  ports: [{name: p80, port: 80, protocol: TCP, nodePort: 30001}]
status: {loadBalancer: {ingress: [{ip: 1.2.3.4}, {ip: 5.6.7.8}]}}
)" + slice("svc1", "p80", 80, {ep("ep-local", "10.180.0.11", "node1")}));
    const Set served{"10.180.0.11:80"};
    // Allowed clients are 203.0.113.10..25 (in the /25); blocked ones 203.0.113.200.
    EXPECT_EQ(c.flows(false, "172.30.0.41", 80).endpoints, served) << "pod to cluster IP";
    EXPECT_EQ(c.flows(true, "192.168.0.2", 30001).endpoints, served) << "external to nodePort";
    EXPECT_EQ(c.flows(true, "1.2.3.4", 80).endpoints, served) << "accepted external to LB1";
    EXPECT_EQ(c.flows(true, "5.6.7.8", 80).endpoints, served) << "accepted external to LB2";
    const auto blocked = [&](const char* to, uint16_t port) {
        return c.trace("203.0.113.200", to, port, 6, "node1");
    };
    EXPECT_EQ(blocked("192.168.0.2", 30001).trace.verdict, "allow")
        << "nodePort bypasses LoadBalancerSourceRanges";
    EXPECT_EQ(blocked("1.2.3.4", 80).trace.verdict, "deny") << "blocked external to LB1";
    EXPECT_EQ(blocked("5.6.7.8", 80).trace.verdict, "deny") << "blocked external to LB2";
    EXPECT_EQ(c.flows(false, "1.2.3.4", 80).endpoints, Set{"DROP"})
        << "pod to LB1 (blocked by LoadBalancerSourceRanges)";
    EXPECT_EQ(c.flows(false, "5.6.7.8", 80).endpoints, Set{"DROP"})
        << "pod to LB2 (blocked by LoadBalancerSourceRanges)";
}

}  // namespace
}  // namespace kdp::test
