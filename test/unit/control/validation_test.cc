// Never stricter than the API server, never laxer: for each validation rule kdp mirrors, a
// value the API server accepts that kdp accepts, and one it refuses that kdp refuses with the
// field named. The rule each case comes from is the upstream function named in `rule`
// (k8s.io/kubernetes pkg/apis/core/validation, pkg/apis/networking/validation,
// pkg/apis/discovery/validation, k8s.io/apimachinery/pkg/util/validation), read there and
// restated here as cases of our own.
#include "model/validation.h"

#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "model/model.h"

namespace kdp::control {
namespace {

using nlohmann::json;

json object(const char* api_version, const char* kind, const std::string& name, json body) {
    json o{{"apiVersion", api_version},
           {"kind", kind},
           {"metadata", {{"name", name}, {"namespace", "default"}}}};
    o.merge_patch(body);
    return o;
}

json service(json spec, const std::string& name = "web") {
    return object("v1", "Service", name, {{"spec", spec}});
}

json one_port(json port = json::object()) {
    json p{{"port", 80}};
    p.merge_patch(port);
    return json::array({p});
}

json pod(json body, const std::string& name = "web-0") {
    json base{{"spec", {{"containers", json::array({{{"name", "c"}}})}}}};
    if (!body.is_null()) {  // `{}` in a braced initialiser is null, not an empty object
        base.merge_patch(body);
    }
    return object("v1", "Pod", name, base);
}

json container_ports(json ports) {
    return {{"spec", {{"containers", json::array({{{"name", "c"}, {"ports", ports}}})}}}};
}

json node(json spec) {
    json n = object("v1", "Node", "n1", {{"spec", spec}});
    n["metadata"].erase("namespace");
    return n;
}

json policy(json spec) {
    return object("networking.k8s.io/v1", "NetworkPolicy", "p", {{"spec", spec}});
}

json slice(json ports) {
    return object("discovery.k8s.io/v1", "EndpointSlice", "web-abc",
                  {{"addressType", "IPv4"},
                   {"ports", ports},
                   {"endpoints", json::array({{{"addresses", {"10.244.1.5"}}}})}});
}

struct Case {
    const char* rule;  // the upstream rule
    json accepted;     // the API server accepts it: so does kdp
    json refused;      // the API server refuses it: so does kdp, naming `field`
    std::string field;
};

// Upserts `obj` into a fresh model: "" when accepted, else the error.
std::string upsert(const json& obj) {
    Model m;
    try {
        m.upsert(obj);
        return "";
    } catch (const ModelError& e) {
        return e.what();
    }
}

std::vector<Case> cases() {
    const json lb{{"type", "LoadBalancer"}, {"ports", one_port()}};
    const std::string sixty_three(63, 'a');
    return {
        {"validateServicePort: name is a DNS_LABEL (up to 63), as the e2e suites' names",
         service({{"ports", one_port({{"name", "service-port-tcp-80"}})}}),
         service({{"ports", one_port({{"name", "Port_80"}})}}), "spec.ports[0].name"},
        {"validateServicePort: a DNS_LABEL is at most 63 characters",
         service({{"ports", one_port({{"name", sixty_three}})}}),
         service({{"ports", one_port({{"name", sixty_three + "a"}})}}), "spec.ports[0].name"},
        {"validateContainerPorts: a container port name is an IANA_SVC_NAME (up to 15)",
         pod(container_ports(json::array({{{"name", "serve-80-tcp"}, {"containerPort", 80}}}))),
         pod(container_ports(
             json::array({{{"name", "service-port-tcp-80"}, {"containerPort", 80}}}))),
         "spec.containers[0].ports[0].name"},
        {"validateContainerPorts: names unique within one container",
         pod({{"spec",
               {{"containers",
                 json::array(
                     {{{"name", "a"},
                       {"ports", json::array({{{"name", "http"}, {"containerPort", 80}}})}},
                      {{"name", "b"},
                       {"ports", json::array({{{"name", "http"}, {"containerPort", 81}}})}}})}}}}),
         pod(container_ports(json::array({{{"name", "http"}, {"containerPort", 80}},
                                          {{"name", "http"}, {"containerPort", 81}}}))),
         "spec.containers[0].ports[1].name"},
        {"ValidatePortNumOrName: targetPort is a number or an IANA_SVC_NAME",
         service({{"ports", one_port({{"targetPort", "http"}})}}),
         service({{"ports", one_port({{"targetPort", "Http"}})}}), "spec.ports[0].targetPort"},
        {"SetDefaults_Service: targetPort 0 means the port; a quoted number is a bad name",
         service({{"ports", one_port({{"targetPort", 0}})}}),
         service({{"ports", one_port({{"targetPort", "8080"}})}}), "spec.ports[0].targetPort"},
        {"ValidateService: loadBalancerSourceRanges trimmed of spaces, LoadBalancer only",
         service({{"type", "LoadBalancer"},
                  {"ports", one_port()},
                  {"loadBalancerSourceRanges", {" 203.0.113.0/24 ", "2001:db8::/32"}}}),
         service({{"ports", one_port()}, {"loadBalancerSourceRanges", {"203.0.113.0/24"}}}),
         "spec.loadBalancerSourceRanges"},
        {"ValidateService: each loadBalancerSourceRanges entry a CIDR",
         service({{"type", "LoadBalancer"},
                  {"ports", one_port()},
                  {"loadBalancerSourceRanges", {"203.0.113.7/24"}}}),
         service({{"type", "LoadBalancer"},
                  {"ports", one_port()},
                  {"loadBalancerSourceRanges", {"203.0.113.0/33"}}}),
         "spec.loadBalancerSourceRanges[0]"},
        {"validateServiceExternalTrafficPolicy: externally accessible Services only",
         service({{"ports", one_port()},
                  {"externalIPs", {"203.0.113.7"}},
                  {"externalTrafficPolicy", "Local"}}),
         service({{"ports", one_port()}, {"externalTrafficPolicy", "Local"}}),
         "spec.externalTrafficPolicy"},
        {"validateServiceExternalTrafficPolicy: healthCheckNodePort with LoadBalancer + Local",
         service({{"type", "LoadBalancer"},
                  {"ports", one_port()},
                  {"externalTrafficPolicy", "Local"},
                  {"healthCheckNodePort", 32000}}),
         service({{"type", "NodePort"},
                  {"ports", one_port()},
                  {"externalTrafficPolicy", "Local"},
                  {"healthCheckNodePort", 32000}}),
         "spec.healthCheckNodePort"},
        {"ValidateService: allocateLoadBalancerNodePorts only on a LoadBalancer",
         service({{"type", "LoadBalancer"},
                  {"ports", one_port()},
                  {"allocateLoadBalancerNodePorts", false}}),
         service({{"type", "NodePort"},
                  {"ports", one_port()},
                  {"allocateLoadBalancerNodePorts", false}}),
         "spec.allocateLoadBalancerNodePorts"},
        {"ValidateService: clusterIP None is not for NodePort or LoadBalancer",
         service({{"clusterIP", "None"}}),
         service({{"type", "NodePort"}, {"clusterIP", "None"}, {"ports", one_port()}}),
         "spec.clusterIPs[0]"},
        {"ValidateService: ExternalName needs a DNS name (a trailing dot allowed)",
         service({{"type", "ExternalName"}, {"externalName", "db.example.com."}}),
         service({{"type", "ExternalName"}}), "spec.externalName"},
        {"ValidateService: ExternalName has no cluster IP",
         service({{"type", "ExternalName"}, {"externalName", "db.example.com"}}),
         service({{"type", "ExternalName"},
                  {"externalName", "db.example.com"},
                  {"clusterIP", "10.96.0.10"}}),
         "spec.clusterIPs"},
        {"ValidateNonSpecialIP: externalIPs not loopback, link-local or unspecified",
         service({{"ports", one_port()}, {"externalIPs", {"203.0.113.7", "2001:db8::7"}}}),
         service({{"ports", one_port()}, {"externalIPs", {"127.0.0.1"}}}), "spec.externalIPs"},
        {"ValidateService: nodePorts unique per protocol",
         service(
             {{"type", "NodePort"},
              {"ports",
               json::array(
                   {{{"name", "a"}, {"port", 53}, {"nodePort", 30053}},
                    {{"name", "b"}, {"port", 53}, {"protocol", "UDP"}, {"nodePort", 30053}}})}}),
         service({{"type", "NodePort"},
                  {"ports", json::array({{{"name", "a"}, {"port", 53}, {"nodePort", 30053}},
                                         {{"name", "b"}, {"port", 54}, {"nodePort", 30053}}})}}),
         "spec.ports[1].nodePort"},
        {"validateClientIPAffinityConfig: timeoutSeconds in 1..86400",
         service({{"ports", one_port()},
                  {"sessionAffinity", "ClientIP"},
                  {"sessionAffinityConfig", {{"clientIP", {{"timeoutSeconds", 86400}}}}}}),
         service({{"ports", one_port()},
                  {"sessionAffinity", "ClientIP"},
                  {"sessionAffinityConfig", {{"clientIP", {{"timeoutSeconds", 86401}}}}}}),
         "spec.sessionAffinityConfig.clientIP.timeoutSeconds"},
        {"ValidateService: sessionAffinityConfig must not be set with sessionAffinity None",
         service({{"ports", one_port()}, {"sessionAffinity", "None"}}),
         service({{"ports", one_port()},
                  {"sessionAffinityConfig", {{"clientIP", {{"timeoutSeconds", 60}}}}}}),
         "spec.sessionAffinityConfig"},
        {"validateServiceTrafficDistribution: PreferClose, PreferSameZone, PreferSameNode",
         service({{"ports", one_port()}, {"trafficDistribution", "PreferSameNode"}}),
         service({{"ports", one_port()}, {"trafficDistribution", "Nearby"}}),
         "spec.trafficDistribution"},
        {"ValidateService: ipFamilies IPv4 or IPv6, ipFamilyPolicy one of three",
         service({{"ports", one_port()},
                  {"ipFamilyPolicy", "RequireDualStack"},
                  {"ipFamilies", {"IPv6", "IPv4"}},
                  {"clusterIPs", {"fd00:10:96::a", "10.96.0.10"}}}),
         service({{"ports", one_port()}, {"ipFamilyPolicy", "DualStack"}}), "spec.ipFamilyPolicy"},
        {"ValidateServiceName: a Service name is a DNS-1035 label",
         service({{"ports", one_port()}}, "web-1"), service({{"ports", one_port()}}, "1web"),
         "metadata.name"},
        {"ValidatePodName: a Pod name is a DNS-1123 subdomain", pod({}, "web-7d9f.abc"),
         pod({}, "Web"), "metadata.name"},
        {"ValidateLabels: keys are qualified names, values label values",
         pod({{"metadata", {{"labels", {{"app.kubernetes.io/name", "web_1.x"}, {"x", ""}}}}}}),
         pod({{"metadata", {{"labels", {{"bad key", "x"}}}}}}), "metadata.labels"},
        {"ValidateLabels: a value is at most 63, alphanumeric at both ends",
         pod({{"metadata", {{"labels", {{"tier", sixty_three}}}}}}),
         pod({{"metadata", {{"labels", {{"tier", "-x"}}}}}}), "metadata.labels.tier"},
        {"ValidateService: the selector is a label set",
         service({{"ports", one_port()}, {"selector", {{"app", "web"}}}}),
         service({{"ports", one_port()}, {"selector", {{"app", "web app"}}}}), "spec.selector.app"},
        {"validatePodIPs: status.podIPs one per family, IPv6 single-stack pods included",
         pod({{"status",
               {{"podIP", "fd00:10:244::5"},
                {"podIPs", json::array({{{"ip", "fd00:10:244::5"}}})}}}}),
         pod({{"status", {{"podIPs", json::array({{{"ip", "fd00::zz"}}})}}}}), "status.podIPs"},
        {"ValidateNode: podCIDRs valid CIDRs of either family, parsed sloppily",
         node({{"podCIDR", "10.244.1.7/24"}, {"podCIDRs", {"10.244.1.7/24", "fd00:1::/64"}}}),
         node({{"podCIDR", "10.244.1.0/33"}}), "spec.podCIDR"},
        {"ValidateNetworkPolicySpec: policyTypes at most two, duplicates accepted",
         policy({{"podSelector", json::object()}, {"policyTypes", {"Ingress", "Ingress"}}}),
         policy(
             {{"podSelector", json::object()}, {"policyTypes", {"Ingress", "Egress", "Ingress"}}}),
         "spec.policyTypes"},
        {"ValidateNetworkPolicyPort: a named port is an IANA_SVC_NAME",
         policy(
             {{"ingress", json::array({{{"ports", json::array({{{"port", "serve-80-tcp"}}})}}})}}),
         policy({{"ingress",
                  json::array({{{"ports", json::array({{{"port", "service-port-tcp-80"}}})}}})}}),
         "spec.ingress[0].ports[0].port"},
        {"ValidateNetworkPolicyPort: endPort needs a numeric port",
         policy({{"egress",
                  json::array({{{"ports", json::array({{{"port", 80}, {"endPort", 90}}})}}})}}),
         policy({{"egress", json::array({{{"ports", json::array({{{"endPort", 90}}})}}})}}),
         "spec.egress[0].ports[0].endPort"},
        {"ValidateIPBlock: CIDRs of either family, except a strict subset",
         policy(
             {{"ingress",
               json::array({{{"from", json::array({{{"ipBlock",
                                                     {{"cidr", "2001:db8::/32"},
                                                      {"except", {"2001:db8:1::/48"}}}}}})}}})}}),
         policy({{"ingress",
                  json::array(
                      {{{"from", json::array({{{"ipBlock", {{"cidr", "2001:db8::/129"}}}}})}}})}}),
         "spec.ingress[0].from[0].ipBlock.cidr"},
        {"ValidateLabelSelector: matchExpressions keys are qualified names",
         policy({{"podSelector",
                  {{"matchExpressions",
                    json::array({{{"key", "app.kubernetes.io/name"}, {"operator", "Exists"}}})}}}}),
         policy({{"podSelector",
                  {{"matchExpressions",
                    json::array({{{"key", "bad key"}, {"operator", "Exists"}}})}}}}),
         "spec.podSelector.matchExpressions[0].key"},
        {"validateEndpointPorts: a name is a DNS_LABEL (the Service port's name)",
         slice(json::array({{{"name", "service-port-tcp-80"}, {"port", 80}}})),
         slice(json::array({{{"name", "Http"}, {"port", 80}}})), "ports[0].name"},
    };
}

TEST(Validation, AcceptsWhatTheApiServerAcceptsAndRefusesWhatItRefuses) {
    int n = 0;
    for (const Case& c : cases()) {
        SCOPED_TRACE(c.rule);
        EXPECT_EQ(upsert(c.accepted), "") << "accepted by the API server:\n" << c.accepted.dump(2);
        const std::string err = upsert(c.refused);
        EXPECT_NE(err.find(": " + c.field + ": "), std::string::npos)
            << "refused by the API server with the field " << c.field << ", kdp says: \"" << err
            << "\"\n"
            << c.refused.dump(2);
        ++n;
    }
    EXPECT_GE(n, 30);
}

TEST(Validation, DefaultsAndNormalisationAreTheApiServers) {
    Model m;
    m.upsert(service({{"ports", one_port({{"targetPort", 0}})}}));
    EXPECT_EQ(m.services().at("default/web").ports[0].target_port, 80);
    m.upsert(service({{"type", "LoadBalancer"},
                      {"ports", one_port({{"targetPort", ""}})},
                      {"loadBalancerSourceRanges", {"  203.0.113.9/24\t"}}}));
    const Service& lb = m.services().at("default/web");
    EXPECT_EQ(lb.ports[0].target_port, 80);
    ASSERT_EQ(lb.source_ranges.size(), 1u);
    EXPECT_EQ(lb.source_ranges[0].str(), "203.0.113.0/24");

    m.upsert(node({{"podCIDR", "10.244.1.7/24"}}));
    EXPECT_EQ(m.nodes().at("n1").pod_cidr->str(), "10.244.1.0/24");
    m.upsert(node({{"podCIDRs", {"fd00:1::/64", "10.244.2.0/24"}}}));
    EXPECT_EQ(m.nodes().at("n1").pod_cidr->str(), "10.244.2.0/24");

    // An IPv6-only pod has no IPv4 address; a dual-stack one keeps its IPv4 address.
    m.upsert(pod({{"status", {{"podIP", "fd00::5"}}}}));
    EXPECT_FALSE(m.pods().at("default/web-0").pod_ip.has_value());
    m.upsert(pod({{"status",
                   {{"podIP", "fd00::5"},
                    {"podIPs", json::array({{{"ip", "fd00::5"}}, {{"ip", "10.244.1.5"}}})}}}}));
    EXPECT_EQ(m.pods().at("default/web-0").pod_ip->str(), "10.244.1.5");

    // A sidecar's named ports count (FindPort); an ordinary init container's do not.
    m.upsert(
        pod({{"spec",
              {{"initContainers",
                json::array(
                    {{{"name", "proxy"},
                      {"restartPolicy", "Always"},
                      {"ports", json::array({{{"name", "proxy"}, {"containerPort", 15001}}})}},
                     {{"name", "setup"},
                      {"ports", json::array({{{"name", "setup"}, {"containerPort", 9}}})}}})}}}}));
    const auto& ports = m.pods().at("default/web-0").ports;
    ASSERT_EQ(ports.size(), 1u);
    EXPECT_EQ(ports[0].name, "proxy");
    EXPECT_EQ(ports[0].port, 15001);

    // A NetworkPolicy without spec selects every pod of its namespace and isolates it for
    // ingress; a duplicated policy type means the same as one.
    m.upsert(policy(nullptr));
    const NetworkPolicy& np = m.network_policies().at("default/p");
    EXPECT_TRUE(np.pod_selector.matches({{"any", "pod"}}));
    EXPECT_TRUE(np.ingress);
    EXPECT_FALSE(np.egress);
    m.upsert(policy({{"policyTypes", {"Egress", "Egress"}}}));
    EXPECT_FALSE(m.network_policies().at("default/p").ingress);
    EXPECT_TRUE(m.network_policies().at("default/p").egress);
}

TEST(Validation, NamePredicatesFollowTheUpstreamGrammar) {
    using namespace validation;
    EXPECT_TRUE(is_dns1123_label("a"));
    EXPECT_TRUE(is_dns1123_label("0-a"));
    EXPECT_FALSE(is_dns1123_label("-a"));
    EXPECT_FALSE(is_dns1123_label("a-"));
    EXPECT_FALSE(is_dns1123_label("a.b"));
    EXPECT_TRUE(is_dns1123_subdomain("a.b-c.d"));
    EXPECT_FALSE(is_dns1123_subdomain("a..b"));
    EXPECT_FALSE(is_dns1123_subdomain(std::string(254, 'a')));
    EXPECT_TRUE(is_dns1035_label("a1"));
    EXPECT_FALSE(is_dns1035_label("1a"));
    EXPECT_TRUE(is_iana_svc_name("h2c"));
    EXPECT_FALSE(is_iana_svc_name("80"));
    EXPECT_FALSE(is_iana_svc_name("a--b"));
    EXPECT_FALSE(is_iana_svc_name("sixteen-chars-ab"));
    EXPECT_TRUE(is_qualified_name("example.com/Name_1"));
    EXPECT_FALSE(is_qualified_name("/name"));
    EXPECT_FALSE(is_qualified_name("Example.com/name"));
    EXPECT_TRUE(is_label_value(""));
    EXPECT_FALSE(is_label_value("a b"));
    EXPECT_TRUE(is_cidr6("::/0"));
    EXPECT_FALSE(is_cidr6("2001:db8::/"));
}

}  // namespace
}  // namespace kdp::control
