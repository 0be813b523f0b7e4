// The Kubernetes e2e NetworkPolicy model, judged by kdp: namespaces x, y, z; pods a, b, c in
// each (labels pod=<name>, namespaces ns=<name>), spread over two nodes; ports 80 and 81 over
// TCP, UDP and SCTP, plus 53 for DNS. For each case, manifests go through kdp-control's model
// and compiler, over the wire format (policy_to_proto / policy_from_proto) into two real
// nodes' TableManagers (NodeHarness: the production pipeline on net_ring ports), and every
// (from, to, port, protocol) probe is a real packet: sent from the source pod's port, through
// node1's or node2's pipeline, VXLAN-encapsulated and carried to the other node's uplink when
// the destination is there; reachable when it comes out of the destination pod's port. Each
// probe is also judged by the function the pipeline calls on a first packet (stage::judge)
// on the tables built from the same spec, and both must agree; the reply of every allowed
// probe must come back to the source pod. The whole reachability matrix
// is compared with one written by hand from the policy text, and printed as a truth table
// when they differ. The same matrix is probed again offline, as `kdpctl trace --manifests`
// does (control::offline::Cluster: the model's every node built in-process, the probe and its
// reply followed across nodes), directly and through each pod's own ClusterIP Service, and
// must be the same, probe for probe. Pods, containers, ports and Services carry the upstream
// e2e model's names (test/e2e/network/netpol/model.go: s-<ns>-<pod>, service-port-<proto>-
// <port>, cont-<port>-<proto>, serve-<port>-<proto>), which kdp once refused.
#include <array>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "api/policy_tables.h"
#include "compile/policy.h"
#include "manifest/manifest.h"
#include "model/model.h"
#include "node_harness.h"
#include "offline/cluster.h"
#include "spec/convert.h"
#include "stage/policy.h"

namespace kdp::test {
namespace {

using nlohmann::json;

constexpr std::array<const char*, 3> kNamespaces = {"x", "y", "z"};
constexpr std::array<const char*, 3> kPods = {"a", "b", "c"};
constexpr uint8_t kTcp = 6, kUdp = 17, kSctp = 132;

struct PodRef {
    std::string ns;
    std::string name;
    int node = 0;  // 1 or 2
    Ip4 ip;
    std::string str() const { return ns + "/" + name; }
};

// Nine pods: x/a on node1, x/b on node2, x/c on node1, y/a on node2, ... alternately.
std::vector<PodRef> cluster_pods() {
    std::vector<PodRef> out;
    int i = 0;
    for (const char* ns : kNamespaces) {
        for (const char* p : kPods) {
            const int node = i % 2 + 1;
            out.push_back({ns, p, node, *Ip4::parse(fmt::format("10.244.{}.{}", node, 10 + i))});
            ++i;
        }
    }
    return out;
}

// A probe: `to` is a pod or, with to_external, an address outside the cluster.
struct Probe {
    const PodRef* from;  // nullptr: from `external`
    const PodRef* to;    // nullptr: to `external`
    Ip4 external;
    uint16_t port;
    uint8_t proto;
};

const char* proto_name(uint8_t p) {
    return p == kTcp ? "TCP" : p == kUdp ? "UDP" : "SCTP";
}

// Two nodes of real pipelines, shared by every case of the suite (each case applies its own
// tables; every probe is a new connection with a source port of its own).
struct PacketCluster {
    std::map<int, std::unique_ptr<NodeHarness>> nodes;
    uint16_t next_sport = 1024;
    uint64_t generation = 0;

    explicit PacketCluster(const std::vector<PodRef>& pods) {
        for (int n = 1; n <= 2; ++n) {
            NodeParams p;
            p.name = fmt::format("node{}", n);
            p.node_ip = *Ip4::parse(fmt::format("198.51.100.{}", n));
            p.node_mac = mac(fmt::format("02:00:00:00:0{}:0{}", n, n).c_str());
            p.pod_cidr = *Prefix4::parse(fmt::format("10.244.{}.0/24", n));
            p.gateway = *Ip4::parse(fmt::format("10.244.{}.1", n));
            p.gateway_mac = Mac::from_ip(p.gateway);
            p.vtep_mac = Mac::from_ip(p.node_ip);
            p.conntrack = 1 << 16;
            p.pod_ports.clear();
            for (const PodRef& pod : pods) {
                if (pod.node == n) {
                    p.pod_ports.push_back(pod.str());
                }
            }
            nodes[n] = std::make_unique<NodeHarness>(p);
        }
    }

    // Both nodes' tables: routes to the other node, the local pods, the compiled policy.
    void apply(const std::vector<PodRef>& pods, const std::map<int, table::PolicySpec>& policy) {
        ++generation;
        for (int n = 1; n <= 2; ++n) {
            const NodeParams& peer = nodes[3 - n]->params();
            table::TableSpec s;
            s.generation = generation;
            s.routes.push_back({peer.name, peer.node_ip, peer.pod_cidr, peer.vtep_mac});
            for (const PodRef& pod : pods) {
                if (pod.node == n) {
                    s.pods.push_back({pod.str(), pod.ip, pod.str()});
                }
            }
            s.policy = policy.at(n);
            ASSERT_EQ(nodes[n]->manager().apply_tables(s), std::nullopt);
        }
        if (generation == 1) {
            // Each node learns the other's underlay MAC, as after the first ARP exchange.
            for (int n = 1; n <= 2; ++n) {
                const NodeParams& self = nodes[n]->params();
                const NodeParams& peer = nodes[3 - n]->params();
                nodes[n]->inject("uplink", ether(self.node_mac, peer.node_mac, 0x0806,
                                                 arp(2, peer.node_mac, peer.node_ip, self.node_mac,
                                                     self.node_ip)));
                nodes[n]->collect("uplink");
            }
        }
    }

    // Sends a first packet from -> to:port over proto; whether it came out of to's port.
    // Also runs kdpctl trace for the probe and checks it says the same.
    bool probe(const PodRef& from, const PodRef& to, uint16_t port, uint8_t proto) {
        const bool traced = trace(from, to, port, proto);
        const uint16_t sport = next_sport++;
        if (next_sport == 0) {
            next_sport = 1024;
        }
        if (next_sport == 47000) {
            ++next_sport;  // the trace's own client port: no real connection may hold it
        }
        const bool got = send(from, to, port, proto, sport);
        EXPECT_EQ(traced, got) << from.str() << " -> " << to.str() << ":" << port << "/"
                               << proto_name(proto)
                               << ": kdpctl trace and the real packet disagree";
        return got;
    }

    // kdpctl trace of the same probe: on the source node, and when it leaves there in VXLAN,
    // on the destination node as it arrives from the source's node.
    bool trace(const PodRef& from, const PodRef& to, uint16_t port, uint8_t proto) {
        api::TraceResult r;
        EXPECT_EQ(nodes[from.node]->manager().trace({from.str(), to.ip.str(), port, proto}, r),
                  std::nullopt);
        if (r.verdict != "allow" || from.node == to.node) {
            return r.verdict == "allow";
        }
        EXPECT_EQ(r.hops.back().stage, "vxlan_encap");
        api::TraceResult there;
        EXPECT_EQ(nodes[to.node]->manager().trace({from.ip.str(), to.str(), port, proto}, there),
                  std::nullopt);
        return there.verdict == "allow";
    }

    bool send(const PodRef& from, const PodRef& to, uint16_t port, uint8_t proto, uint16_t sport) {
        NodeHarness& src = *nodes[from.node];
        NodeHarness& dst = *nodes[to.node];
        src.inject(from.str(), ether(src.params().gateway_mac, Mac::from_ip(from.ip), 0x0800,
                                     ipv4(from.ip, to.ip, {proto, sport, port, 0x02}, 8)));
        if (from.node != to.node) {
            const std::vector<Bytes> wire = src.collect("uplink");
            if (wire.empty()) {
                return false;
            }
            EXPECT_EQ(wire.size(), 1u);
            dst.inject("uplink", wire);
        }
        const std::vector<Bytes> out = dst.collect(to.str());
        if (out.size() != 1) {
            EXPECT_EQ(out.size(), 0u) << from.str() << " -> " << to.str();
            return false;
        }
        // What arrives is the probe itself, addresses and ports untouched.
        const Bytes& f = out[0];
        EXPECT_EQ(get32(&f[14 + 12]), from.ip.host());
        EXPECT_EQ(get32(&f[14 + 16]), to.ip.host());
        EXPECT_EQ(get16(&f[14 + 20]), sport);
        EXPECT_EQ(get16(&f[14 + 22]), port);
        EXPECT_EQ(f[14 + 9], proto);
        // The reply of an allowed connection comes back, whatever isolates either side.
        dst.inject(to.str(), ether(dst.params().gateway_mac, Mac::from_ip(to.ip), 0x0800,
                                   ipv4(to.ip, from.ip, {proto, port, sport, 0x12}, 8)));
        if (from.node != to.node) {
            src.inject("uplink", dst.collect("uplink"));
        }
        EXPECT_EQ(src.collect(from.str()).size(), 1u)
            << "the reply " << to.str() << " -> " << from.str() << " of an allowed connection";
        return true;
    }
};

class PolicyMatrix : public ::testing::Test {
protected:
    static void SetUpTestSuite() { cluster_ = new PacketCluster(cluster_pods()); }
    static void TearDownTestSuite() {
        delete cluster_;
        cluster_ = nullptr;
    }
    static inline PacketCluster* cluster_ = nullptr;

    PolicyMatrix() : pods_(cluster_pods()) {
        for (int n = 1; n <= 2; ++n) {
            model_.upsert(json::parse(fmt::format(
                R"({{"apiVersion":"v1","kind":"Node","metadata":{{"name":"node{0}"}},
                   "spec":{{"podCIDR":"10.244.{0}.0/24"}},
                   "status":{{"addresses":[{{"type":"InternalIP","address":"198.51.100.{0}"}}]}}}})",
                n)));
            nodes_[n].node_ip = *Ip4::parse(fmt::format("198.51.100.{}", n));
            nodes_[n].gateway_ip = *Ip4::parse(fmt::format("10.244.{}.1", n));
            nodes_[n].pod_cidr = *Prefix4::parse(fmt::format("10.244.{}.0/24", n));
        }
        for (const char* ns : kNamespaces) {
            model_.upsert(json{{"apiVersion", "v1"},
                               {"kind", "Namespace"},
                               {"metadata", {{"name", ns}, {"labels", {{"ns", ns}}}}}});
        }
        for (const PodRef& p : pods_) {
            // The upstream e2e model's names (test/e2e/network/netpol/model.go): one container
            // `cont-<port>-<proto>` per served port, its port named `serve-<port>-<proto>`, and
            // a per-pod Service `s-<ns>-<pod>` with ports `service-port-<proto>-<port>` (19
            // characters: a DNS label, not an IANA service name). Plus "web": 80 in namespaces
            // x and y but 81 in z, so that one rule means different numbers.
            json containers = json::array();
            json sports = json::array();
            for (const int port : {53, 80, 81}) {
                for (const char* proto : {"TCP", "UDP", "SCTP"}) {
                    std::string lower = proto;
                    for (char& ch : lower) {
                        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
                    }
                    json cports = json::array();
                    if (port != 53) {
                        cports.push_back({{"name", fmt::format("serve-{}-{}", port, lower)},
                                          {"containerPort", port},
                                          {"protocol", proto}});
                    }
                    if (port == 80 && lower == "tcp") {
                        cports.push_back(
                            {{"name", "web"}, {"containerPort", p.ns == "z" ? 81 : 80}});
                    }
                    if (!cports.empty()) {
                        containers.push_back(
                            {{"name", fmt::format("cont-{}-{}", port, lower)}, {"ports", cports}});
                    }
                    sports.push_back({{"name", fmt::format("service-port-{}-{}", lower, port)},
                                      {"port", port},
                                      {"protocol", proto}});
                }
            }
            json labels = {{"pod", p.name}, {"svc", p.name}};
            if (p.name == "a") {
                labels["tier"] = "front";
            }
            model_.upsert(json{
                {"apiVersion", "v1"},
                {"kind", "Pod"},
                {"metadata", {{"name", p.name}, {"namespace", p.ns}, {"labels", labels}}},
                {"spec", {{"nodeName", fmt::format("node{}", p.node)}, {"containers", containers}}},
                {"status", {{"podIP", p.ip.str()}}}});
            model_.upsert(json{{"apiVersion", "v1"},
                               {"kind", "Service"},
                               {"metadata", {{"name", service_name(p)}, {"namespace", p.ns}}},
                               {"spec",
                                {{"clusterIP", service_ip(p).str()},
                                 {"selector", {{"svc", p.name}}},
                                 {"ports", sports}}}});
        }
    }

    static std::string service_name(const PodRef& p) {
        return fmt::format("s-{}-{}", p.ns, p.name);
    }

    static Ip4 service_ip(const PodRef& p) {
        return Ip4::from_host(0x0a600100 + (p.ip.host() & 0xff));  // 10.96.1.<pod's last byte>
    }

    const PodRef& pod(const std::string& key) const {
        for (const PodRef& p : pods_) {
            if (p.str() == key) {
                return p;
            }
        }
        throw std::runtime_error("no pod " + key);
    }

    void apply(const std::string& manifests) {
        for (json doc : control::yaml_documents(manifests, "case")) {
            doc["apiVersion"] = "networking.k8s.io/v1";
            model_.upsert(doc);
        }
    }

    void remove_policy(const std::string& ns, const std::string& name) {
        ASSERT_TRUE(model_.remove("NetworkPolicy", ns, name));
    }

    // Compiles both nodes' policy and sends it over the wire format into worker tables, and
    // into the two nodes of real pipelines.
    void compile() {
        std::map<int, table::PolicySpec> specs;
        for (int n = 1; n <= 2; ++n) {
            const table::PolicySpec spec =
                control::compile_policy(model_, fmt::format("node{}", n));
            ASSERT_TRUE(spec.present);
            ASSERT_EQ(api::check_policy(spec, nodes_[n].pod_cidr), std::nullopt);
            v1::Policy wire;
            api::policy_to_proto(spec, &wire);
            table::PolicySpec back;
            ASSERT_EQ(api::policy_from_proto(wire, back), std::nullopt);
            ASSERT_TRUE(back == spec) << "the wire format loses nothing";
            tables_[n] = api::build_policy(back, ++epoch_);
            specs[n] = back;
        }
        cluster_->apply(pods_, specs);
    }

    // Whether a connection's first packet passes both nodes' checks.
    bool reachable(const Probe& p) const {
        const Ip4 src = p.from != nullptr ? p.from->ip : p.external;
        const Ip4 dst = p.to != nullptr ? p.to->ip : p.external;
        for (const PodRef* at : {p.from, p.to}) {
            if (at == nullptr) {
                continue;
            }
            const auto v = dataplane::stage::judge(nodes_.at(at->node), *tables_.at(at->node), src,
                                                   src, dst, to_be16(p.port), p.proto);
            if (!v.allowed) {
                EXPECT_EQ(v.reason, dataplane::DropReason::kPolicyDenied);
                return false;
            }
        }
        return true;
    }

    using Expect =
        std::function<bool(const PodRef& from, const PodRef& to, uint16_t port, uint8_t proto)>;

    // Probes every pod pair on 80 and 81 over TCP, UDP and SCTP (and `extra_ports`), and
    // compares with `expect`. On a difference prints the matrix of the first port/protocol
    // that differs, as the Kubernetes e2e suite does.
    void check_matrix(const Expect& expect, std::vector<uint16_t> extra_ports = {}) {
        compile();
        control::offline::Cluster offline(model_);
        // Offline: the probe connects when it is allowed and its answer comes back as one.
        const auto connects = [&](const control::offline::Probe& q,
                                  control::offline::ProbeResult* keep = nullptr) {
            control::offline::ProbeResult r = offline.trace(q);
            const bool ok = r.trace.verdict == "allow" && r.reply == "allow";
            if (keep != nullptr) {
                *keep = std::move(r);
            }
            return ok;
        };
        std::vector<uint16_t> ports = {80, 81};
        ports.insert(ports.end(), extra_ports.begin(), extra_ports.end());
        int probes = 0;
        for (const uint16_t port : ports) {
            for (const uint8_t proto : {kTcp, kUdp, kSctp}) {
                std::string table = fmt::format(
                    "{}/{}: expected/packet/offline/offline via the Service, . = same\n      ",
                    port, proto_name(proto));
                for (const PodRef& to : pods_) {
                    table += fmt::format("{:>9}", to.str());
                }
                bool differs = false;
                for (const PodRef& from : pods_) {
                    table += fmt::format("\n{:>5} ", from.str());
                    for (const PodRef& to : pods_) {
                        const bool want = expect(from, to, port, proto);
                        const bool got = cluster_->probe(from, to, port, proto);
                        const bool judged = reachable({&from, &to, {}, port, proto});
                        const std::string what = fmt::format("{} -> {}:{}/{}", from.str(), to.str(),
                                                             port, proto_name(proto));
                        EXPECT_EQ(got, judged) << what << ": the packet and judge() disagree";
                        const bool off = connects({from.str(), to.str(), port, proto, ""});
                        control::offline::ProbeResult vr;
                        const bool via = connects(
                            {from.str(), fmt::format("service:{}/{}", to.ns, service_name(to)),
                             port, proto, ""},
                            &vr);
                        if (via) {
                            EXPECT_EQ(vr.trace.backend, to.str()) << what;
                            EXPECT_EQ(vr.trace.backend_port, port) << what;
                            // A pod through its own Service comes back from its node's gateway
                            // (hairpin), which policy always lets in.
                            EXPECT_EQ(vr.trace.seen_src, &from == &to
                                                             ? nodes_[to.node].gateway_ip.str()
                                                             : from.ip.str())
                                << what;
                        }
                        ++probes;
                        // Through its own Service a pod comes back to itself hairpinned, as
                        // its node: not the direct probe's connection.
                        const bool same = want == got && off == got && (&from == &to || via == got);
                        differs |= !same;
                        // expected/packet/offline/offline through the Service
                        table += same ? "        ."
                                      : fmt::format("  {}/{}/{}/{}", want ? 1 : 0, got ? 1 : 0,
                                                    off ? 1 : 0, via ? 1 : 0);
                    }
                }
                if (differs) {
                    ADD_FAILURE() << table;
                    return;
                }
            }
        }
        EXPECT_EQ(probes, 81 * 3 * static_cast<int>(ports.size()));
    }

    control::Model model_;
    std::vector<PodRef> pods_;
    std::map<int, dataplane::NodeContext> nodes_;
    std::map<int, std::shared_ptr<const table::PolicyTables>> tables_;
    uint32_t epoch_ = 0;
};

bool all(const PodRef&, const PodRef&, uint16_t, uint8_t) {
    return true;
}

TEST_F(PolicyMatrix, NoPolicyEverythingReachable) {
    check_matrix(all);
}

TEST_F(PolicyMatrix, DenyAllIngressInANamespace) {
    apply(R"(
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}}
)");
    check_matrix([](const PodRef&, const PodRef& to, uint16_t, uint8_t) { return to.ns != "x"; });
}

TEST_F(PolicyMatrix, DenyAllEgressIsEgressOnly) {
    apply(R"(
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: y}
spec: {podSelector: {}, policyTypes: [Egress]}
)");
    check_matrix(
        [](const PodRef& from, const PodRef&, uint16_t, uint8_t) { return from.ns != "y"; });
}

TEST_F(PolicyMatrix, PodSelectorPeerIsThePolicysOwnNamespace) {
    apply(R"(
kind: NetworkPolicy
metadata: {name: a-from-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]
)");
    check_matrix([](const PodRef& from, const PodRef& to, uint16_t, uint8_t) {
        if (to.str() != "x/a") {
            return true;
        }
        return from.str() == "x/b";
    });
}

TEST_F(PolicyMatrix, NamespaceAndPodSelectorInOnePeerAreAnded) {
    apply(R"(
kind: NetworkPolicy
metadata: {name: and, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {ns: y}}
      podSelector: {matchLabels: {pod: c}}
)");
    check_matrix([](const PodRef& from, const PodRef& to, uint16_t, uint8_t) {
        return to.str() != "x/a" || from.str() == "y/c";
    });
}

TEST_F(PolicyMatrix, SeparatePeersAreOred) {
    apply(R"(
kind: NetworkPolicy
metadata: {name: or, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {ns: y}}
    - podSelector: {matchLabels: {pod: c}}
)");
    check_matrix([](const PodRef& from, const PodRef& to, uint16_t, uint8_t) {
        return to.str() != "x/a" || from.ns == "y" || from.str() == "x/c";
    });
}

TEST_F(PolicyMatrix, EmptyNamespaceSelectorIsEveryNamespace) {
    apply(R"(
kind: NetworkPolicy
metadata: {name: from-all-b, namespace: z}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}]}]
)");
    check_matrix([](const PodRef& from, const PodRef& to, uint16_t, uint8_t) {
        return to.ns != "z" || from.name == "b";
    });
}

TEST_F(PolicyMatrix, MatchExpressionsInNotInExistsDoesNotExist) {
    apply(R"(
kind: NetworkPolicy
metadata: {name: exprs, namespace: x}
spec:
  podSelector:
    matchExpressions: [{key: pod, operator: In, values: [a, b]}]
  ingress:
  - from:
    - namespaceSelector:
        matchExpressions: [{key: ns, operator: NotIn, values: [x]}]
      podSelector:
        matchExpressions: [{key: tier, operator: Exists}]
    - podSelector:
        matchExpressions: [{key: tier, operator: DoesNotExist}, {key: pod, operator: NotIn, values: [b]}]
)");
    check_matrix([](const PodRef& from, const PodRef& to, uint16_t, uint8_t) {
        if (to.ns != "x" || to.name == "c") {
            return true;  // x/c is not selected
        }
        // from y or z with tier (the a pods), or from x without tier and not b: x/c.
        return (from.ns != "x" && from.name == "a") || from.str() == "x/c";
    });
}

TEST_F(PolicyMatrix, NumberedPortAndProtocol) {
    apply(R"(
kind: NetworkPolicy
metadata: {name: udp-81, namespace: y}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{ports: [{protocol: UDP, port: 81}]}]
)");
    check_matrix([](const PodRef&, const PodRef& to, uint16_t port, uint8_t proto) {
        return to.str() != "y/b" || (port == 81 && proto == kUdp);
    });
}

TEST_F(PolicyMatrix, PortDefaultsToTcpAndSctpIsItsOwnProtocol) {
    apply(R"(
kind: NetworkPolicy
metadata: {name: tcp-and-sctp, namespace: y}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 80}, {protocol: SCTP, port: 81}]}]
)");
    check_matrix([](const PodRef&, const PodRef& to, uint16_t port, uint8_t proto) {
        return to.ns != "y" || (port == 80 && proto == kTcp) || (port == 81 && proto == kSctp);
    });
}

TEST_F(PolicyMatrix, EndPortRange) {
    apply(R"(
kind: NetworkPolicy
metadata: {name: range, namespace: z}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}}], ports: [{protocol: UDP, port: 80, endPort: 81}]}]
)");
    check_matrix([](const PodRef& from, const PodRef& to, uint16_t, uint8_t proto) {
        return to.ns != "z" || (from.ns == "x" && proto == kUdp);
    });
}

TEST_F(PolicyMatrix, NamedIngressPortResolvedPerDestinationPod) {
    // One rule per namespace, each resolving "web" against its own pods: 80 in x, 81 in z.
    apply(R"(
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{port: web}]}]
---
kind: NetworkPolicy
metadata: {name: web, namespace: z}
spec:
  podSelector: {}
  ingress: [{ports: [{port: web}, {port: serve-80-udp, protocol: UDP}]}]
)");
    check_matrix([](const PodRef&, const PodRef& to, uint16_t port, uint8_t proto) {
        if (to.ns == "y") {
            return true;
        }
        if (to.ns == "x") {
            return port == 80 && proto == kTcp;
        }
        return (port == 81 && proto == kTcp) || (port == 80 && proto == kUdp);
    });
}

TEST_F(PolicyMatrix, NamedEgressPortResolvedPerPeerPod) {
    // Egress from y/a to "web": 80 on pods of x and y, 81 on pods of z.
    apply(R"(
kind: NetworkPolicy
metadata: {name: egress-web, namespace: y}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{namespaceSelector: {}}], ports: [{port: web}]}]
)");
    check_matrix([](const PodRef& from, const PodRef& to, uint16_t port, uint8_t proto) {
        if (from.str() != "y/a") {
            return true;
        }
        return proto == kTcp && port == (to.ns == "z" ? 81 : 80);
    });
}

TEST_F(PolicyMatrix, EgressDenyAllowingDns) {
    // The usual lock-down: x may only resolve names (UDP and TCP 53, to any pod: y/a stands for
    // the cluster DNS) and reach z on 80/TCP.
    apply(R"(
kind: NetworkPolicy
metadata: {name: lockdown, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]
  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: z}}}]
    ports: [{port: 80}]
)");
    check_matrix(
        [](const PodRef& from, const PodRef& to, uint16_t port, uint8_t proto) {
            if (from.ns != "x") {
                return true;
            }
            if (port == 53) {
                return proto != kSctp;
            }
            return to.ns == "z" && port == 80 && proto == kTcp;
        },
        {53});
}

TEST_F(PolicyMatrix, OmittedPolicyTypesWithEgressRulesIsolateBothWays) {
    // policyTypes defaults to [Ingress, Egress] when egress rules are present: with no ingress
    // rule, x/b takes nothing in.
    apply(R"(
kind: NetworkPolicy
metadata: {name: both, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  egress: [{to: [{podSelector: {matchLabels: {pod: c}}}]}]
)");
    check_matrix([](const PodRef& from, const PodRef& to, uint16_t, uint8_t) {
        if (to.str() == "x/b") {
            return false;
        }
        return from.str() != "x/b" || to.str() == "x/c";
    });
}

TEST_F(PolicyMatrix, UnionOfPoliciesAndAnEmptyRuleAllowingAll) {
    apply(R"(
kind: NetworkPolicy
metadata: {name: from-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]
---
kind: NetworkPolicy
metadata: {name: from-z-81, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: z}}}], ports: [{port: 81}]}]
---
kind: NetworkPolicy
metadata: {name: deny-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
---
kind: NetworkPolicy
metadata: {name: allow-all-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{}]
)");
    check_matrix([](const PodRef& from, const PodRef& to, uint16_t port, uint8_t proto) {
        if (to.str() != "x/a") {
            return true;  // x/b: a deny policy and an allow-all one; the union allows
        }
        return from.ns == "y" || (from.ns == "z" && port == 81 && proto == kTcp);
    });
}

TEST_F(PolicyMatrix, IpBlockWithExceptSelectsPodAddresses) {
    // Egress of x/a to 10.244.0.0/16 except node2's pods: only pods on node1 (and not by label).
    apply(R"(
kind: NetworkPolicy
metadata: {name: cidr, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.2.0/24, 10.244.1.16/30]}}]}]
)");
    check_matrix([](const PodRef& from, const PodRef& to, uint16_t, uint8_t) {
        if (from.str() != "x/a") {
            return true;
        }
        const uint8_t last = static_cast<uint8_t>(to.ip.host() & 0xff);
        return to.node == 1 && !(last >= 16 && last <= 19);
    });
}

TEST_F(PolicyMatrix, ExternalPeersByIpBlock) {
    apply(R"(
kind: NetworkPolicy
metadata: {name: ext, namespace: y}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.128/25]}}]}]
  egress: [{to: [{ipBlock: {cidr: 203.0.113.0/24}}], ports: [{port: 443}]}]
)");
    compile();
    const PodRef& ya = pod("y/a");
    const PodRef& xa = pod("x/a");
    const Ip4 in_block = *Ip4::parse("192.0.2.10"), excepted = *Ip4::parse("192.0.2.200");
    const Ip4 web = *Ip4::parse("203.0.113.7"), elsewhere = *Ip4::parse("198.18.0.1");
    EXPECT_TRUE(reachable({nullptr, &ya, in_block, 80, kTcp}));
    EXPECT_FALSE(reachable({nullptr, &ya, excepted, 80, kTcp}));
    EXPECT_TRUE(reachable({nullptr, &xa, excepted, 80, kTcp})) << "x is not isolated";
    EXPECT_TRUE(reachable({&ya, nullptr, web, 443, kTcp}));
    EXPECT_FALSE(reachable({&ya, nullptr, web, 80, kTcp}));
    EXPECT_FALSE(reachable({&ya, nullptr, elsewhere, 443, kTcp}));
    EXPECT_FALSE(reachable({&ya, &xa, {}, 80, kTcp})) << "a pod is not in 203.0.113.0/24";
    EXPECT_FALSE(reachable({&xa, &ya, {}, 80, kTcp})) << "nor in 192.0.2.0/24";

    // Offline, with the real paths: egress leaves masqueraded to the node's address; ingress
    // comes through a NodePort that keeps the client's address (externalTrafficPolicy Local)
    // on y/a's node.
    model_.upsert(json::parse(R"({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "ya-np", "namespace": "y"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.2.1", "selector": {"svc": "a"},
                 "externalTrafficPolicy": "Local",
                 "ports": [{"port": 80, "nodePort": 30080}]}})"));
    control::offline::Cluster offline(model_);
    const auto outcome = [&](control::offline::Probe q) {
        const control::offline::ProbeResult r = offline.trace(q);
        return r.trace.verdict + (r.reply.empty() ? "" : "/" + r.reply) + " " + r.trace.seen_src;
    };
    const std::string node = fmt::format("node{}", ya.node);
    EXPECT_EQ(outcome({"y/a", "203.0.113.7", 443, kTcp, ""}),
              fmt::format("allow/allow 198.51.100.{}", ya.node));
    EXPECT_EQ(outcome({"y/a", "203.0.113.7", 80, kTcp, ""}), "deny ");
    EXPECT_EQ(outcome({"y/a", "198.18.0.1", 443, kTcp, ""}), "deny ");
    EXPECT_EQ(outcome({"192.0.2.10", "node:" + node, 30080, kTcp, ""}), "allow/allow 192.0.2.10");
    EXPECT_EQ(outcome({"192.0.2.200", "node:" + node, 30080, kTcp, ""}), "deny ");
    EXPECT_EQ(outcome({"192.0.2.200", "10.96.2.1", 80, kTcp, node}), "deny ")
        << "a ClusterIP reached from outside: policy judges the client, which it denies";
}

TEST_F(PolicyMatrix, OwnNodeAlwaysReachesItsPods) {
    apply(R"(
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
)");
    compile();
    for (const PodRef& p : pods_) {
        if (p.ns != "x") {
            continue;
        }
        const auto& n = nodes_[p.node];
        const auto& t = *tables_[p.node];
        for (const Ip4 own : {n.node_ip, n.gateway_ip}) {
            EXPECT_TRUE(dataplane::stage::judge(n, t, own, own, p.ip, to_be16(80), kTcp).allowed)
                << p.str() << " from its node " << own.str();
            EXPECT_TRUE(dataplane::stage::judge(n, t, p.ip, p.ip, own, to_be16(53), kUdp).allowed)
                << p.str() << " to its node " << own.str();
        }
        const Ip4 other_node = nodes_[3 - p.node].node_ip;
        EXPECT_FALSE(
            dataplane::stage::judge(n, t, other_node, other_node, p.ip, to_be16(80), kTcp).allowed)
            << "another node is not this pod's own";
    }
}

TEST_F(PolicyMatrix, PoliciesAddedAndRemovedAndLabelsChanged) {
    apply(R"(
kind: NetworkPolicy
metadata: {name: a-from-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]
)");
    check_matrix([](const PodRef& from, const PodRef& to, uint16_t, uint8_t) {
        return to.str() != "x/a" || from.str() == "x/b";
    });
    // x/c takes the label pod=b: it moves to b's identity and is allowed, nothing else moves.
    json c = {
        {"apiVersion", "v1"},
        {"kind", "Pod"},
        {"metadata", {{"name", "c"}, {"namespace", "x"}, {"labels", {{"pod", "b"}, {"svc", "c"}}}}},
        {"spec", {{"nodeName", "node1"}}},
        {"status", {{"podIP", pod("x/c").ip.str()}}}};
    model_.upsert(c);
    check_matrix([](const PodRef& from, const PodRef& to, uint16_t, uint8_t) {
        return to.str() != "x/a" || from.str() == "x/b" || from.str() == "x/c";
    });
    remove_policy("x", "a-from-b");
    check_matrix(all);
}

TEST_F(PolicyMatrix, CostDoesNotGrowWithPolicies) {
    // A hundred policies over the same pods compile to identities, not to per-policy lists:
    // the rule map's size grows with distinct (pod, peer identity, protocol) keys only.
    std::string many;
    for (int i = 0; i < 100; ++i) {
        many += fmt::format(R"(
---
kind: NetworkPolicy
metadata: {{name: p{}, namespace: x}}
spec:
  podSelector: {{}}
  ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{ns: y}}}}}}], ports: [{{port: {}}}]}}]
)",
                            i, 1000 + i);
    }
    apply(many);
    compile();
    const table::PolicyTables& t = *tables_[1];
    // Node1 holds x/a and x/c, each with one key for (ingress, y's identities, TCP): three
    // identities in y (a has tier=front, b and c differ by label) -> 2 x 3 keys.
    EXPECT_EQ(t.rules.size(), 6u);
    EXPECT_EQ(t.spec.rule_names.size(), 100u);
    check_matrix([](const PodRef&, const PodRef& to, uint16_t, uint8_t) {
        return to.ns != "x";  // 80 and 81 are not among ports 1000..1099
    });
}

}  // namespace
}  // namespace kdp::test
