// kdp-control's Kubernetes source against fake_apiserver.py over real TLS: an object the API
// server holds but kdp cannot read is never dropped silently. It produces a Warning Event on
// the object (POSTed to the API, checked field by field) and a counter; a NetworkPolicy kdp
// cannot compile fails closed, isolating the pods it selects; the rest of the cluster compiles.
#include "standalone/kube_source.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test/k8s/fake_apiserver.h"

namespace kdp::control::standalone {
namespace {

using k8s::test::FakeApiServer;
using nlohmann::json;
using ::testing::HasSubstr;

constexpr const char* kPods = "/api/v1/pods";
constexpr const char* kPolicies = "/apis/networking.k8s.io/v1/networkpolicies";

json pod(const std::string& name, const std::string& app, const std::string& ip) {
    return {{"metadata", {{"name", name}, {"namespace", "default"}, {"labels", {{"app", app}}}}},
            {"spec", {{"nodeName", "n1"}, {"containers", json::array({{{"name", "c"}}})}}},
            {"status", {{"podIP", ip}}}};
}

// Polls `source` until it has compiled tables (every resource listed and something changed).
table::TableSpec wait_tables(KubeSource& source) {
    std::optional<table::TableSpec> last;
    const auto until = std::chrono::steady_clock::now() + k8s::test::kWait;
    while (std::chrono::steady_clock::now() < until) {
        if (auto r = source.poll(); r && *r) {
            last = std::move(**r);
        } else if (last) {
            return *last;  // nothing newer arrived since
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "no tables compiled within " << k8s::test::kWait.count() << " s";
    return {};
}

const table::PodPolicySpec* policy_of(const table::TableSpec& t, const std::string& pod) {
    const auto it = std::find_if(t.policy.pods.begin(), t.policy.pods.end(),
                                 [&](const table::PodPolicySpec& p) { return p.pod == pod; });
    return it == t.policy.pods.end() ? nullptr : &*it;
}

TEST(KubeSource, ObjectsKdpCannotHonourGetAnEventACounterAndPoliciesFailClosed) {
    FakeApiServer api;
    api.create(
        "/api/v1/nodes",
        {{"metadata", {{"name", "n1"}}},
         {"spec", {{"podCIDR", "10.244.1.0/24"}}},
         {"status",
          {{"addresses", json::array({{{"type", "InternalIP"}, {"address", "192.0.2.1"}}})}}}});
    api.create("/api/v1/namespaces", {{"metadata", {{"name", "default"}}}});
    api.create(kPods, pod("web", "web", "10.244.1.10"));
    api.create(kPods, pod("client", "client", "10.244.1.11"));
    api.create(kPods, pod("other", "other", "10.244.1.12"));
    // Rule 0 kdp reads; rule 1 has a peer kind from a newer API: it must allow nothing.
    api.create(
        kPolicies,
        {{"metadata", {{"name", "web-in"}, {"namespace", "default"}}},
         {"spec",
          {{"podSelector", {{"matchLabels", {{"app", "web"}}}}},
           {"ingress",
            json::array({{{"from", json::array({{{"podSelector",
                                                  {{"matchLabels", {{"app", "client"}}}}}}})}},
                         {{"from", json::array({{{"serviceAccount", {{"name", "x"}}}}})}}})}}}});
    // A selector operator kdp does not know: every pod of the namespace is isolated for egress.
    api.create(kPolicies,
               {{"metadata", {{"name", "egress-lock"}, {"namespace", "default"}}},
                {"spec",
                 {{"podSelector",
                   {{"matchExpressions", json::array({{{"key", "app"}, {"operator", "Near"}}})}}},
                  {"policyTypes", {"Egress"}}}}});
    // A Service kdp cannot read (a port name no API server would have accepted).
    api.create("/api/v1/services",
               {{"metadata", {{"name", "odd"}, {"namespace", "default"}}},
                {"spec",
                 {{"clusterIP", "10.96.0.20"},
                  {"ports", json::array({{{"name", "Bad_Name"}, {"port", 80}}})}}}});
    api.create("/api/v1/services",
               {{"metadata", {{"name", "fine"}, {"namespace", "default"}}},
                {"spec",
                 {{"clusterIP", "10.96.0.21"},
                  {"externalIPs", {"203.0.113.9"}},
                  {"ports", json::array({{{"name", "service-port-tcp-80"}, {"port", 80}}})}}}});
    // Claims fine's external frontend: served on its ClusterIP, the clash left out and said.
    api.create("/api/v1/services",
               {{"metadata", {{"name", "twin"}, {"namespace", "default"}}},
                {"spec",
                 {{"clusterIP", "10.96.0.22"},
                  {"externalIPs", {"203.0.113.9"}},
                  {"ports", json::array({{{"name", "http"}, {"port", 80}}})}}}});

    KubeSource source(api.config(), "n1");
    const table::TableSpec t = wait_tables(source);

    // The cluster's Service range is not assumed: unchecked unless kdp-control is told it.
    EXPECT_TRUE(t.service_cidrs.empty());

    // The Services kdp could read are served; the other is left out.
    ASSERT_EQ(t.services.size(), 2u);
    EXPECT_EQ(t.services[0].name, "default/fine:service-port-tcp-80");
    EXPECT_EQ(t.services[0].frontends.size(), 2u);
    EXPECT_EQ(t.services[1].name, "default/twin:http");
    EXPECT_EQ(t.services[1].frontends.size(), 1u) << "the external IP fine holds";

    // web-in failed closed: web isolated for ingress, only rule 0 (from client) allows.
    const table::PodPolicySpec* web = policy_of(t, "default/web");
    ASSERT_NE(web, nullptr);
    EXPECT_TRUE(web->ingress_isolated);
    std::vector<std::string> ingress_rules;
    for (const table::PolicyRuleSpec& r : web->rules) {
        if (r.dir == table::PolicyDir::kIngress) {
            ingress_rules.push_back(t.policy.rule_names.at(r.rule));
            EXPECT_NE(r.identity, table::kIdentityAny) << "an unreadable rule allowed everyone";
        }
    }
    EXPECT_THAT(ingress_rules, ::testing::Each(HasSubstr("default/web-in ingress[0]")));
    EXPECT_FALSE(ingress_rules.empty());
    // egress-lock: every pod of the namespace isolated for egress, with no egress rule.
    for (const char* name : {"default/web", "default/client", "default/other"}) {
        const table::PodPolicySpec* p = policy_of(t, name);
        ASSERT_NE(p, nullptr) << name;
        EXPECT_TRUE(p->egress_isolated) << name;
        EXPECT_TRUE(std::none_of(p->rules.begin(), p->rules.end(), [](const auto& r) {
            return r.dir == table::PolicyDir::kEgress;
        })) << name;
    }
    EXPECT_FALSE(policy_of(t, "default/client")->ingress_isolated);

    // The counter, and one Warning Event on each object, posted to its namespace.
    KubeSourceStats stats;
    const auto until = std::chrono::steady_clock::now() + k8s::test::kWait;
    while (std::chrono::steady_clock::now() < until) {
        stats = source.stats();
        if (stats.events_posted + stats.events_failed >= 4) {
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_EQ(stats.unhonoured["NetworkPolicy"], 2u);
    EXPECT_EQ(stats.unhonoured["Service"], 2u);
    EXPECT_EQ(stats.events_posted, 4u);
    EXPECT_EQ(stats.events_failed, 0u);
    const json events = api.cmd({{"op", "events"}})["events"];
    ASSERT_EQ(events.size(), 4u);
    std::vector<std::string> about;
    for (const json& e : events) {
        EXPECT_EQ(e["type"], "Warning");
        EXPECT_EQ(e["reason"], "KdpCannotHonour");
        EXPECT_EQ(e["source"]["component"], "kdp-control");
        EXPECT_EQ(e["source"]["host"], "n1");
        EXPECT_EQ(e["metadata"]["namespace"], "default");
        if (e["involvedObject"]["name"] != "twin") {  // the compiler's warnings carry no uid
            EXPECT_FALSE(e["involvedObject"]["uid"].get<std::string>().empty());
        }
        about.push_back(e["involvedObject"]["kind"].get<std::string>() + "/" +
                        e["involvedObject"]["name"].get<std::string>());
        if (e["involvedObject"]["name"] == "web-in") {
            EXPECT_THAT(e["message"].get<std::string>(), HasSubstr("serviceAccount"));
            EXPECT_THAT(e["message"].get<std::string>(), HasSubstr("fail closed"));
        }
        if (e["involvedObject"]["name"] == "twin") {
            EXPECT_THAT(e["message"].get<std::string>(), HasSubstr("203.0.113.9:80/TCP"));
        }
        if (e["involvedObject"]["name"] == "odd") {
            EXPECT_THAT(e["message"].get<std::string>(), HasSubstr("spec.ports[0].name"));
            EXPECT_THAT(e["message"].get<std::string>(), HasSubstr("left out"));
        }
    }
    EXPECT_THAT(about,
                ::testing::UnorderedElementsAre("NetworkPolicy/web-in", "NetworkPolicy/egress-lock",
                                                "Service/odd", "Service/twin"));

    // The same object again (a resync) is not posted twice; a fixed one is honoured.
    api.cmd({{"op", "update"},
             {"path", "/api/v1/services"},
             {"object",
              {{"metadata", {{"name", "odd"}, {"namespace", "default"}}},
               {"spec",
                {{"clusterIP", "10.96.0.20"},
                 {"ports", json::array({{{"name", "http"}, {"port", 80}}})}}}}}});
    const table::TableSpec t2 = wait_tables(source);
    EXPECT_EQ(t2.services.size(), 3u);
    EXPECT_EQ(api.cmd({{"op", "events"}})["events"].size(), 4u) << "the twin clash not again";

    // Told the range (--service-cidr), the dataplane gets it to guard.
    KubeSource told(api.config(), "n1", Prefix4::parse("10.96.0.0/16"));
    const table::TableSpec t3 = wait_tables(told);
    ASSERT_EQ(t3.service_cidrs.size(), 1u);
    EXPECT_EQ(t3.service_cidrs[0].str(), "10.96.0.0/16");
}

}  // namespace
}  // namespace kdp::control::standalone
