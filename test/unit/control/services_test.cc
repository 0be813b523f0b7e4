// Services and EndpointSlices: parsing with the API server's defaults and validation, and
// compiling them into one node's service ports.
#include "compile/services.h"

#include <algorithm>
#include <random>
#include <set>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "compile/node_tables.h"

namespace kdp::control {
namespace {

using nlohmann::json;
using table::FrontendKind;

json node(const std::string& name, const char* cidr, const char* ip) {
    return json{
        {"apiVersion", "v1"},
        {"kind", "Node"},
        {"metadata", {{"name", name}}},
        {"spec", {{"podCIDR", cidr}}},
        {"status", {{"addresses", json::array({{{"type", "InternalIP"}, {"address", ip}}})}}}};
}

json pod(const std::string& name,
         const char* node_name,
         const char* ip,
         json labels,
         json ports = json::array()) {
    return json{{"apiVersion", "v1"},
                {"kind", "Pod"},
                {"metadata", {{"name", name}, {"namespace", "prod"}, {"labels", labels}}},
                {"spec",
                 {{"nodeName", node_name},
                  {"containers", json::array({{{"name", "c"}, {"ports", ports}}})}}},
                {"status", {{"podIP", ip}}}};
}

json service(const std::string& name, json spec) {
    return json{{"apiVersion", "v1"},
                {"kind", "Service"},
                {"metadata", {{"name", name}, {"namespace", "prod"}}},
                {"spec", spec}};
}

json slice(const std::string& name, const std::string& svc, json ports, json endpoints) {
    return json{{"apiVersion", "discovery.k8s.io/v1"},
                {"kind", "EndpointSlice"},
                {"metadata",
                 {{"name", name},
                  {"namespace", "prod"},
                  {"labels", {{"kubernetes.io/service-name", svc}}}}},
                {"addressType", "IPv4"},
                {"ports", ports},
                {"endpoints", endpoints}};
}

Model base() {
    Model m;
    m.upsert(node("node-a", "10.244.1.0/24", "192.168.0.1"));
    m.upsert(node("node-b", "10.244.2.0/24", "192.168.0.2"));
    return m;
}

const table::ServiceSpec* find(const std::vector<table::ServiceSpec>& v, const std::string& n) {
    for (const auto& s : v) {
        if (s.name == n) {
            return &s;
        }
    }
    return nullptr;
}

std::string refused(const json& obj) {
    Model m;
    try {
        m.upsert(obj);
    } catch (const ModelError& e) {
        EXPECT_TRUE(m.services().empty() && m.endpoint_slices().empty());
        return e.what();
    }
    return "accepted";
}

TEST(Services, ClusterIpWithApiDefaults) {
    Model m = base();
    m.upsert(
        service("web", {{"clusterIP", "10.96.0.10"}, {"ports", json::array({{{"port", 80}}})}}));
    const auto out = compile_services(m, "node-a", {});
    ASSERT_EQ(out.size(), 1u);
    const auto& s = out[0];
    EXPECT_EQ(s.name, "prod/web");
    EXPECT_EQ(s.proto, 6);  // protocol TCP by default
    ASSERT_EQ(s.frontends.size(), 1u);
    EXPECT_EQ(s.frontends[0].kind, FrontendKind::kClusterIp);
    EXPECT_EQ(s.frontends[0].ip.str(), "10.96.0.10");
    EXPECT_EQ(s.frontends[0].port, 80);
    EXPECT_TRUE(s.backends.empty());  // no selector, no slices
    EXPECT_FALSE(s.external_local);
    EXPECT_FALSE(s.internal_local);
    EXPECT_EQ(s.affinity_timeout_s, 0u);
    EXPECT_EQ(s.health_check_node_port, 0);
}

TEST(Services, EndpointSlicesByPortNameAndProtocolWithConditions) {
    Model m = base();
    m.upsert(
        service("dns", {{"clusterIP", "10.96.0.53"},
                        {"ports", json::array({{{"name", "dns"}, {"port", 53}, {"protocol", "UDP"}},
                                               {{"name", "dns-tcp"}, {"port", 53}}})}}));
    const json ports = json::array({{{"name", "dns"}, {"port", 5353}, {"protocol", "UDP"}},
                                    {{"name", "dns-tcp"}, {"port", 5354}, {"protocol", "TCP"}}});
    m.upsert(slice("dns-1", "dns", ports,
                   json::array({{{"addresses", {"10.244.1.7"}},
                                 {"nodeName", "node-a"},
                                 {"zone", "z1"},
                                 {"targetRef", {{"kind", "Pod"}, {"name", "dns-x"}}}},
                                {{"addresses", {"10.244.2.7"}},
                                 {"conditions", {{"ready", false}, {"terminating", true}}},
                                 {"nodeName", "node-b"}}})));
    m.upsert(slice("dns-2", "dns", ports,
                   json::array({{{"addresses", {"10.244.2.8"}},
                                 {"conditions", {{"ready", false}, {"serving", false}}}}})));
    json v6 = slice("dns-v6", "dns", ports, json::array({{{"addresses", {"fd00::7"}}}}));
    v6["addressType"] = "IPv6";
    m.upsert(v6);
    const auto out = compile_services(m, "node-a", {});
    ASSERT_EQ(out.size(), 2u);
    const auto* udp = find(out, "prod/dns:dns");
    ASSERT_NE(udp, nullptr);
    EXPECT_EQ(udp->proto, 17);
    ASSERT_EQ(udp->backends.size(), 3u);
    EXPECT_EQ(udp->backends[0].ip.str(), "10.244.1.7");
    EXPECT_EQ(udp->backends[0].port, 5353);
    EXPECT_EQ(udp->backends[0].pod, "prod/dns-x");
    EXPECT_EQ(udp->backends[0].node, "node-a");
    EXPECT_TRUE(udp->backends[0].ready);    // nil ready means ready
    EXPECT_TRUE(udp->backends[0].serving);  // nil serving means as ready
    EXPECT_FALSE(udp->backends[1].ready);
    EXPECT_FALSE(udp->backends[1].serving);  // nil serving follows ready = false
    EXPECT_TRUE(udp->backends[1].terminating);
    EXPECT_FALSE(udp->backends[2].serving);
    const auto* tcp = find(out, "prod/dns:dns-tcp");
    ASSERT_NE(tcp, nullptr);
    EXPECT_EQ(tcp->proto, 6);
    ASSERT_EQ(tcp->backends.size(), 3u);
    EXPECT_EQ(tcp->backends[0].port, 5354);
    // Topology fields are kept in the model.
    EXPECT_EQ(m.endpoint_slices().at("prod/dns-1").endpoints[0].zone, "z1");
}

TEST(Services, EndpointsDerivedFromPodsResolveNamedPortsPerPod) {
    Model m = base();
    m.upsert(service("web", {{"clusterIP", "10.96.0.10"},
                             {"selector", {{"app", "web"}}},
                             {"ports", json::array({{{"port", 80}, {"targetPort", "http"}}})}}));
    m.upsert(pod("web-1", "node-a", "10.244.1.5", {{"app", "web"}},
                 json::array({{{"name", "http"}, {"containerPort", 8080}}})));
    m.upsert(pod("web-2", "node-b", "10.244.2.5", {{"app", "web"}, {"tier", "x"}},
                 json::array({{{"name", "http"}, {"containerPort", 9090}}})));
    m.upsert(pod("web-no-port", "node-b", "10.244.2.6", {{"app", "web"}}));
    m.upsert(pod("other", "node-a", "10.244.1.9", {{"app", "db"}},
                 json::array({{{"name", "http"}, {"containerPort", 8080}}})));
    json not_ready = pod("web-3", "node-a", "10.244.1.6", {{"app", "web"}},
                         json::array({{{"name", "http"}, {"containerPort", 8080}}}));
    not_ready["status"]["conditions"] = json::array({{{"type", "Ready"}, {"status", "False"}}});
    m.upsert(not_ready);
    json leaving = pod("web-4", "node-b", "10.244.2.9", {{"app", "web"}},
                       json::array({{{"name", "http"}, {"containerPort", 8080}}}));
    leaving["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z";
    m.upsert(leaving);
    const auto out = compile_services(m, "node-a", {});
    ASSERT_EQ(out.size(), 1u);
    const auto& b = out[0].backends;
    ASSERT_EQ(b.size(), 4u);
    EXPECT_EQ(b[0].pod, "prod/web-1");
    EXPECT_EQ(b[0].port, 8080);
    EXPECT_EQ(b[0].node, "node-a");
    EXPECT_TRUE(b[0].ready);
    EXPECT_EQ(b[1].pod, "prod/web-3");
    EXPECT_FALSE(b[1].ready);
    EXPECT_EQ(b[2].pod, "prod/web-2");
    EXPECT_EQ(b[2].port, 9090);  // the same name, another number on this pod
    EXPECT_EQ(b[3].pod, "prod/web-4");
    EXPECT_FALSE(b[3].ready);
    EXPECT_TRUE(b[3].terminating);

    // In Kubernetes mode the EndpointSlice controller is the only source.
    EXPECT_TRUE(compile_services(m, "node-a", ServiceOptions{.derive_endpoints = false})[0]
                    .backends.empty());
    // Once a slice exists for the Service, it wins over the pods.
    m.upsert(slice("web-abc", "web", json::array({{{"port", 7070}}}),
                   json::array({{{"addresses", {"10.244.1.5"}}}})));
    const auto with_slice = compile_services(m, "node-a", {});
    ASSERT_EQ(with_slice[0].backends.size(), 1u);
    EXPECT_EQ(with_slice[0].backends[0].port, 7070);
}

TEST(Services, NodePortLoadBalancerAndPolicies) {
    Model m = base();
    m.upsert([&] {
        json s = service(
            "lb", {{"type", "LoadBalancer"},
                   {"clusterIP", "10.96.0.20"},
                   {"externalIPs", {"198.51.100.7", "2001:db8::7"}},
                   {"externalTrafficPolicy", "Local"},
                   {"internalTrafficPolicy", "Local"},
                   {"sessionAffinity", "ClientIP"},
                   {"loadBalancerSourceRanges", {"203.0.113.9/24"}},
                   {"ports", json::array({{{"name", "http"}, {"port", 80}, {"nodePort", 30080}},
                                          {{"name", "https"}, {"port", 443}}})}});
        s["status"]["loadBalancer"]["ingress"] = json::array({{{"ip", "203.0.113.50"}}});
        return s;
    }());
    const auto out = compile_services(m, "node-b", {});
    ASSERT_EQ(out.size(), 2u);
    const auto* http = find(out, "prod/lb:http");
    ASSERT_NE(http, nullptr);
    ASSERT_EQ(http->frontends.size(), 4u);
    EXPECT_EQ(http->frontends[0].kind, FrontendKind::kClusterIp);
    EXPECT_EQ(http->frontends[1].kind, FrontendKind::kNodePort);
    EXPECT_EQ(http->frontends[1].ip.str(), "192.168.0.2");  // this node's address
    EXPECT_EQ(http->frontends[1].port, 30080);
    EXPECT_EQ(http->frontends[2].kind, FrontendKind::kExternalIp);
    EXPECT_EQ(http->frontends[2].ip.str(), "198.51.100.7");
    EXPECT_EQ(http->frontends[3].kind, FrontendKind::kLoadBalancer);
    EXPECT_EQ(http->frontends[3].ip.str(), "203.0.113.50");
    EXPECT_TRUE(http->external_local);
    EXPECT_TRUE(http->internal_local);
    EXPECT_EQ(http->affinity_timeout_s, 10800u);  // the API's default timeout
    ASSERT_EQ(http->source_ranges.size(), 1u);
    EXPECT_EQ(http->source_ranges[0].str(), "203.0.113.0/24");
    // One health check per Service, allocated in the node port range, on its first port.
    EXPECT_GE(http->health_check_node_port, 30000);
    EXPECT_LE(http->health_check_node_port, 32767);
    EXPECT_NE(http->health_check_node_port, 30080);
    const auto* https = find(out, "prod/lb:https");
    ASSERT_NE(https, nullptr);
    EXPECT_EQ(https->health_check_node_port, 0);
    ASSERT_GE(https->frontends.size(), 2u);
    const uint16_t allocated = https->frontends[1].port;
    EXPECT_GE(allocated, 30000);
    EXPECT_LE(allocated, 32767);
    EXPECT_NE(allocated, 30080);
    // Every node agrees on the allocated port.
    EXPECT_EQ(find(compile_services(m, "node-a", {}), "prod/lb:https")->frontends[1].port,
              allocated);
}

TEST(Services, AllocatedClusterIpsAreStableUniqueAndInTheServiceCidr) {
    std::vector<json> objs;
    for (int i = 0; i < 200; ++i) {
        objs.push_back(service(fmt::format("s{}", i), {{"ports", json::array({{{"port", 80}}})}}));
    }
    objs.push_back(
        service("fixed", {{"clusterIP", "10.96.0.77"}, {"ports", json::array({{{"port", 80}}})}}));
    Model a;
    for (const auto& o : objs) {
        a.upsert(o);
    }
    std::shuffle(objs.begin(), objs.end(), std::mt19937(7));
    Model b;
    for (const auto& o : objs) {
        b.upsert(o);
    }
    const ServiceOptions opts{.service_cidr = *Prefix4::parse("10.96.0.0/24")};
    const auto ips = cluster_ips(a, opts);
    EXPECT_EQ(ips, cluster_ips(b, opts));
    ASSERT_EQ(ips.size(), 201u);
    std::set<uint32_t> seen;
    for (const auto& [key, ip] : ips) {
        EXPECT_TRUE(opts.service_cidr.contains(ip)) << key << " " << ip.str();
        EXPECT_TRUE(seen.insert(ip.be).second) << key << " " << ip.str();
        EXPECT_NE(ip.str(), "10.96.0.0");
        EXPECT_NE(ip.str(), "10.96.0.1");
        EXPECT_NE(ip.str(), "10.96.0.255");
    }
    EXPECT_EQ(ips.at("prod/fixed").str(), "10.96.0.77");
}

TEST(Services, ClashingFrontendIsLeftOutWithAWarning) {
    Model m = base();
    m.upsert(service("a", {{"clusterIP", "10.96.0.1"},
                           {"externalIPs", {"198.51.100.7"}},
                           {"ports", json::array({{{"port", 80}}})}}));
    m.upsert(service("b", {{"clusterIP", "10.96.0.2"},
                           {"externalIPs", {"198.51.100.7"}},
                           {"ports", json::array({{{"port", 80}}})}}));
    std::vector<CompileWarning> warnings;
    const auto out = compile_services(m, "node-a", {}, &warnings);
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0].frontends.size(), 2u);
    EXPECT_EQ(out[1].frontends.size(), 1u);
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].message.find("service prod/b:"), std::string::npos)
        << warnings[0].message;
    EXPECT_NE(warnings[0].message.find("198.51.100.7:80/TCP"), std::string::npos)
        << warnings[0].message;
    EXPECT_EQ(warnings[0].kind, "Service");
    EXPECT_EQ(warnings[0].ns, "prod");
    EXPECT_EQ(warnings[0].name, "b");
}

TEST(Services, HeadlessAndExternalNameHaveNoServicePorts) {
    Model m = base();
    m.upsert(service("headless", {{"clusterIP", "None"}, {"selector", {{"app", "x"}}}}));
    m.upsert(service("ext", {{"type", "ExternalName"}, {"externalName", "example.org"}}));
    m.upsert(service("v6", {{"clusterIP", "fd00::10"}, {"ports", json::array({{{"port", 80}}})}}));
    EXPECT_TRUE(compile_services(m, "node-a", {}).empty());
}

// kube-proxy lists Services and EndpointSlices with the label selector
// "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless"
// (cmd/kube-proxy/app/server.go): a Service another proxy serves is not compiled, and labelled
// slices are not endpoints (nor are the Service's pods taken instead).
TEST(Services, LabelledServicesAndSlicesAreLeftToAnotherProxy) {
    Model m = base();
    json other =
        service("other", {{"clusterIP", "10.96.0.20"}, {"ports", json::array({{{"port", 80}}})}});
    other["metadata"]["labels"] = {{"service.kubernetes.io/service-proxy-name", "foo-proxy"}};
    m.upsert(other);
    json headless_label =
        service("marked", {{"clusterIP", "10.96.0.21"}, {"ports", json::array({{{"port", 80}}})}});
    headless_label["metadata"]["labels"] = {{"service.kubernetes.io/headless", ""}};
    m.upsert(headless_label);
    m.upsert(service("web", {{"clusterIP", "10.96.0.10"},
                             {"selector", {{"app", "web"}}},
                             {"ports", json::array({{{"port", 80}}})}}));
    m.upsert(pod("web-1", "node-a", "10.244.1.9", {{"app", "web"}}));
    json s = slice("web-1", "web", json::array({{{"port", 80}}}),
                   json::array({{{"addresses", {"10.244.1.8"}}}}));
    s["metadata"]["labels"]["service.kubernetes.io/headless"] = "";
    m.upsert(s);
    const auto out = compile_services(m, "node-a", {});
    ASSERT_EQ(out.size(), 1u) << "only prod/web";
    EXPECT_EQ(out[0].name, "prod/web");
    EXPECT_TRUE(out[0].backends.empty())
        << "its only slice is left out, and its pods are not taken instead";
}

// pkg/proxy/topology_test.go TestCategorizeEndpoints, the cases with topology hints: the
// endpoints cluster traffic uses on node-a (zone from its topology.kubernetes.io/zone label) are
// the ready ones the compiler does not flag topology_excluded. Local policies ignore the flag
// (the dataplane's node-local set never reads it), so upstream's localEndpoints need no check
// here; "externalTrafficPolicy: Local, topology ignored for Local endpoints" is the case below
// whose endpoints are all checked for the flag alone.
struct HintCase {
    const char* name;
    const char* zone;  // node-a's zone label; nullptr: no label
    struct Ep {
        const char* ip;
        bool ready;
        std::vector<std::string> zones, nodes;
    };
    std::vector<Ep> endpoints;
    std::set<std::string> cluster;
};

TEST(Services, TopologyHintsAsKubeProxyUsesThem) {
    const std::vector<std::string> a{"zone-a"}, b{"zone-b"}, c{"zone-c"}, none{};
    const std::vector<HintCase> cases = {
        {"hints enabled, hints annotation == auto",
         "zone-a",
         {{"10.1.2.3", true, a, {}},
          {"10.1.2.4", true, b, {}},
          {"10.1.2.5", true, c, {}},
          {"10.1.2.6", true, a, {}}},
         {"10.1.2.3", "10.1.2.6"}},
        {"empty node labels", nullptr, {{"10.1.2.3", true, a, {}}}, {"10.1.2.3"}},
        {"empty zone label", "", {{"10.1.2.3", true, a, {}}}, {"10.1.2.3"}},
        {"node in different zone, no endpoint filtering",
         "zone-b",
         {{"10.1.2.3", true, a, {}}},
         {"10.1.2.3"}},
        {"unready endpoint",
         "zone-a",
         {{"10.1.2.3", true, a, {}},
          {"10.1.2.4", true, b, {}},
          {"10.1.2.5", true, c, {}},
          {"10.1.2.6", false, a, {}}},
         {"10.1.2.3"}},
        {"only unready endpoints in same zone (should not filter)",
         "zone-a",
         {{"10.1.2.3", false, a, {}},
          {"10.1.2.4", true, b, {}},
          {"10.1.2.5", true, c, {}},
          {"10.1.2.6", false, a, {}}},
         {"10.1.2.4", "10.1.2.5"}},
        {"missing hints, no filtering applied",
         "zone-a",
         {{"10.1.2.3", true, a, {}},
          {"10.1.2.4", true, b, {}},
          {"10.1.2.5", true, none, {}},
          {"10.1.2.6", true, a, {}}},
         {"10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.2.6"}},
        {"multiple hints per endpoint, filtering includes any endpoint with zone included",
         "zone-c",
         {{"10.1.2.3", true, {"zone-a", "zone-b", "zone-c"}, {}},
          {"10.1.2.4", true, {"zone-b", "zone-c"}, {}},
          {"10.1.2.5", true, {"zone-b", "zone-d"}, {}},
          {"10.1.2.6", true, c, {}}},
         {"10.1.2.3", "10.1.2.4", "10.1.2.6"}},
        // forNodes (topologyModeFromHints, PreferSameNode): node hints first, then zones.
        {"node hints for this node",
         "zone-a",
         {{"10.1.2.3", true, a, {"node-a"}}, {"10.1.2.4", true, a, {"node-b"}}},
         {"10.1.2.3"}},
        {"node hints, none for this node: zone hints",
         "zone-a",
         {{"10.1.2.3", true, a, {"node-c"}}, {"10.1.2.4", true, b, {"node-b"}}},
         {"10.1.2.3"}},
        {"node hints missing on one endpoint: zone hints",
         "zone-a",
         {{"10.1.2.3", true, a, {"node-b"}}, {"10.1.2.4", true, a, {}}},
         {"10.1.2.3", "10.1.2.4"}},
    };
    for (const HintCase& k : cases) {
        Model m;
        json n = node("node-a", "10.244.1.0/24", "192.168.0.1");
        if (k.zone != nullptr) {
            n["metadata"]["labels"] = {{"topology.kubernetes.io/zone", k.zone}};
        }
        m.upsert(n);
        m.upsert(service("web", {{"clusterIP", "10.96.0.10"},
                                 {"externalTrafficPolicy", "Local"},
                                 {"type", "NodePort"},
                                 {"ports", json::array({{{"port", 80}}})}}));
        json eps = json::array();
        for (const auto& e : k.endpoints) {
            json j = {{"addresses", {e.ip}}, {"conditions", {{"ready", e.ready}}}};
            for (const auto& z : e.zones) {
                j["hints"]["forZones"].push_back({{"name", z}});
            }
            for (const auto& h : e.nodes) {
                j["hints"]["forNodes"].push_back({{"name", h}});
            }
            eps.push_back(j);
        }
        m.upsert(slice("web-1", "web", json::array({{{"port", 80}}}), eps));
        const auto out = compile_services(m, "node-a", {});
        ASSERT_EQ(out.size(), 1u) << k.name;
        std::set<std::string> cluster;
        for (const auto& be : out[0].backends) {
            if (be.ready && !be.topology_excluded) {
                cluster.insert(be.ip.str());
            }
            EXPECT_TRUE(be.ready || !be.topology_excluded) << k.name << ": only ready ones";
        }
        EXPECT_EQ(cluster, k.cluster) << k.name;
    }
}

// Standalone mode derives endpoints from pods, so kdp gives them the hints the EndpointSlice
// controller gives for spec.trafficDistribution, and kube-proxy's rules apply to those.
TEST(Services, TrafficDistributionHintsDerivedEndpoints) {
    const auto cluster_of = [](const char* distribution, bool zones) {
        Model m;
        json a = node("node-a", "10.244.1.0/24", "192.168.0.1");
        json b = node("node-b", "10.244.2.0/24", "192.168.0.2");
        json c = node("node-c", "10.244.3.0/24", "192.168.0.3");
        if (zones) {
            a["metadata"]["labels"] = {{"topology.kubernetes.io/zone", "zone-a"}};
            b["metadata"]["labels"] = {{"topology.kubernetes.io/zone", "zone-b"}};
            c["metadata"]["labels"] = {{"topology.kubernetes.io/zone", "zone-a"}};
        }
        m.upsert(a);
        m.upsert(b);
        m.upsert(c);
        m.upsert(service("web", {{"clusterIP", "10.96.0.10"},
                                 {"selector", {{"app", "web"}}},
                                 {"trafficDistribution", distribution},
                                 {"ports", json::array({{{"port", 80}}})}}));
        m.upsert(pod("web-a", "node-a", "10.244.1.9", {{"app", "web"}}));
        m.upsert(pod("web-b", "node-b", "10.244.2.9", {{"app", "web"}}));
        m.upsert(pod("web-c", "node-c", "10.244.3.9", {{"app", "web"}}));
        const auto out = compile_services(m, "node-a", {});
        EXPECT_EQ(out.size(), 1u);
        std::set<std::string> cluster;
        for (const auto& be : out.at(0).backends) {
            if (!be.topology_excluded) {
                cluster.insert(be.ip.str());
            }
        }
        return cluster;
    };
    using S = std::set<std::string>;
    EXPECT_EQ(cluster_of("PreferClose", true), (S{"10.244.1.9", "10.244.3.9"})) << "its zone";
    EXPECT_EQ(cluster_of("PreferSameZone", true), (S{"10.244.1.9", "10.244.3.9"}));
    EXPECT_EQ(cluster_of("PreferSameNode", true), S{"10.244.1.9"}) << "its node";
    EXPECT_EQ(cluster_of("PreferClose", false), (S{"10.244.1.9", "10.244.2.9", "10.244.3.9"}))
        << "nodes without zones: no hints, all endpoints";
    // A value the API server does not know is refused, as the API server refuses it
    // (validateServiceTrafficDistribution), naming the field.
    EXPECT_THROW(cluster_of("SomethingNew", true), ModelError);
}

TEST(Services, CompiledIntoTheNodeTables) {
    Model m = base();
    m.upsert(
        service("web", {{"clusterIP", "10.96.0.10"}, {"ports", json::array({{{"port", 80}}})}}));
    const auto spec = compile_node_tables(m, "node-a");
    ASSERT_EQ(spec.services.size(), 1u);
    EXPECT_EQ(spec.services[0].name, "prod/web");
    EXPECT_TRUE(m.remove("Service", "prod", "web"));
    EXPECT_TRUE(compile_node_tables(m, "node-a").services.empty());
}

TEST(Services, BadServicesAreRefusedNamingTheField) {
    const json one_port = json::array({{{"port", 80}}});
    EXPECT_EQ(refused(service("s", {{"type", "Nodeport"}, {"ports", one_port}})),
              "Service \"prod/s\": spec.type: \"Nodeport\" is not one of ClusterIP, NodePort, "
              "LoadBalancer, ExternalName");
    EXPECT_EQ(refused(service("s", {})),
              "Service \"prod/s\": spec.ports: a Service needs at least one port");
    EXPECT_EQ(refused(service("s", {{"ports", json::array({{{"port", 70000}}})}})),
              "Service \"prod/s\": spec.ports[0].port: 70000 is not an integer in 1..65535");
    EXPECT_EQ(
        refused(service("s", {{"ports", json::array({{{"port", 80}, {"targetPort", "8080"}}})}})),
        "Service \"prod/s\": spec.ports[0].targetPort: \"8080\" is a number in quotes; write "
        "it unquoted");
    EXPECT_EQ(refused(service("s", {{"ports", json::array({{{"port", 80}}, {{"port", 81}}})}})),
              "Service \"prod/s\": spec.ports[0].name: required when a Service has more than one "
              "port");
    EXPECT_EQ(
        refused(service("s", {{"ports", json::array({{{"port", 80}, {"nodePort", 30001}}})}})),
        "Service \"prod/s\": spec.ports[0].nodePort: may not be used when type is ClusterIP");
    EXPECT_EQ(
        refused(service("s", {{"ports", json::array({{{"port", 80}, {"protocol", "tcp"}}})}})),
        "Service \"prod/s\": spec.ports[0].protocol: \"tcp\" is not TCP, UDP or SCTP");
    EXPECT_EQ(refused(service("s", {{"externalIPs", {"198.51.100.300"}}, {"ports", one_port}})),
              "Service \"prod/s\": spec.externalIPs[0]: \"198.51.100.300\" is not an IPv4 address");
    EXPECT_EQ(
        refused(service("s", {{"sessionAffinity", "ClientIP"},
                              {"sessionAffinityConfig", {{"clientIP", {{"timeoutSeconds", 0}}}}},
                              {"ports", one_port}})),
        "Service \"prod/s\": spec.sessionAffinityConfig.clientIP.timeoutSeconds: 0 is not an "
        "integer in 1..86400");
    EXPECT_EQ(
        refused(service(
            "s", {{"clusterIP", "10.96.0.1"}, {"clusterIPs", {"10.96.0.2"}}, {"ports", one_port}})),
        "Service \"prod/s\": spec.clusterIPs[0]: must equal spec.clusterIP \"10.96.0.1\"");
    json bad_slice = slice("e", "s", json::array(), json::array({{{"addresses", json::array()}}}));
    EXPECT_EQ(refused(bad_slice),
              "EndpointSlice \"prod/e\": endpoints[0].addresses: needs at least one address");
    bad_slice = slice("e", "s", json::array(), json::array());
    bad_slice["addressType"] = "ipv4";
    EXPECT_EQ(refused(bad_slice),
              "EndpointSlice \"prod/e\": addressType: \"ipv4\" is not IPv4, IPv6 or FQDN");
    bad_slice =
        slice("e", "s", json::array(),
              json::array({{{"addresses", {"10.0.0.1"}}, {"conditions", {{"ready", "yes"}}}}}));
    EXPECT_EQ(refused(bad_slice),
              "EndpointSlice \"prod/e\": endpoints[0].conditions.ready: must be true or false");
}

}  // namespace
}  // namespace kdp::control
