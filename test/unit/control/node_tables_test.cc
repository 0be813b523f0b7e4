// Compiling the model into one node's tables: content and determinism.
#include "compile/node_tables.h"

#include <algorithm>
#include <random>

#include <gtest/gtest.h>

namespace kdp::control {
namespace {

using nlohmann::json;

json node(const std::string& name, const char* cidr, const char* ip, const char* vtep = nullptr) {
    json n{{"apiVersion", "v1"}, {"kind", "Node"}, {"metadata", {{"name", name}}}};
    if (cidr != nullptr) {
        n["spec"]["podCIDR"] = cidr;
    }
    if (ip != nullptr) {
        n["status"]["addresses"] = json::array({{{"type", "InternalIP"}, {"address", ip}}});
    }
    if (vtep != nullptr) {
        n["metadata"]["annotations"]["flannel.alpha.coreos.com/backend-data"] =
            json{{"VtepMAC", vtep}}.dump();
    }
    return n;
}

json pod(const std::string& ns,
         const std::string& name,
         const char* node_name,
         const char* ip,
         bool host_network = false) {
    json p{{"apiVersion", "v1"},
           {"kind", "Pod"},
           {"metadata", {{"name", name}, {"namespace", ns}}},
           {"spec", {{"hostNetwork", host_network}}}};
    if (node_name != nullptr) {
        p["spec"]["nodeName"] = node_name;
    }
    if (ip != nullptr) {
        p["status"]["podIP"] = ip;
    }
    return p;
}

std::vector<json> cluster() {
    return {
        node("node-a", "10.244.1.0/24", "192.168.0.1"),
        node("node-c", "10.244.3.0/24", "192.168.0.3", "aa:bb:cc:dd:ee:03"),
        node("node-b", "10.244.2.0/24", "192.168.0.2"),
        node("node-no-cidr", nullptr, "192.168.0.4"),
        node("node-no-ip", "10.244.5.0/24", nullptr),
        pod("prod", "web", "node-a", "10.244.1.5"),
        pod("dev", "api", "node-a", "10.244.1.6"),
        pod("prod", "pending", "node-a", nullptr),
        pod("kube-system", "proxy", "node-a", "192.168.0.1", /*host_network=*/true),
        pod("prod", "elsewhere", "node-b", "10.244.2.5"),
        pod("prod", "unscheduled", nullptr, nullptr),
        {{"apiVersion", "v1"},
         {"kind", "Service"},
         {"metadata", {{"name", "web"}, {"namespace", "prod"}}},
         {"spec", {{"ports", json::array({{{"port", 80}}})}}}},
    };
}

TEST(NodeTables, RoutesToOtherNodesWithCidrAndAddress) {
    Model m;
    for (const auto& o : cluster()) {
        m.upsert(o);
    }
    const auto spec = compile_node_tables(m, "node-a");
    EXPECT_EQ(spec.generation, 0u);
    ASSERT_EQ(spec.routes.size(), 2u);
    EXPECT_EQ(spec.routes[0].node_name, "node-b");
    EXPECT_EQ(spec.routes[0].node_ip.str(), "192.168.0.2");
    EXPECT_EQ(spec.routes[0].pod_cidr.str(), "10.244.2.0/24");
    EXPECT_EQ(spec.routes[0].vtep_mac, Mac::from_ip(*Ip4::parse("192.168.0.2")));
    EXPECT_EQ(spec.routes[1].node_name, "node-c");
    EXPECT_EQ(spec.routes[1].vtep_mac.str(), "aa:bb:cc:dd:ee:03");  // Flannel's annotation
}

TEST(NodeTables, PodsOnThisNodeWithAddressNotHostNetwork) {
    Model m;
    for (const auto& o : cluster()) {
        m.upsert(o);
    }
    const auto spec = compile_node_tables(m, "node-a");
    ASSERT_EQ(spec.pods.size(), 2u);
    EXPECT_EQ(spec.pods[0], (table::PodSpec{"dev/api", *Ip4::parse("10.244.1.6"), "dev/api"}));
    EXPECT_EQ(spec.pods[1], (table::PodSpec{"prod/web", *Ip4::parse("10.244.1.5"), "prod/web"}));

    const auto b = compile_node_tables(m, "node-b");
    ASSERT_EQ(b.pods.size(), 1u);
    EXPECT_EQ(b.pods[0].name, "prod/elsewhere");
    EXPECT_EQ(b.routes.size(), 2u);  // node-a and node-c
}

TEST(NodeTables, SameStateInAnyOrderGivesTheSameTables) {
    Model reference;
    for (const auto& o : cluster()) {
        reference.upsert(o);
    }
    const auto expected = compile_node_tables(reference, "node-a");
    std::mt19937 rng(42);  // fixed seed: the test is deterministic too
    for (int i = 0; i < 20; ++i) {
        auto objs = cluster();
        std::shuffle(objs.begin(), objs.end(), rng);
        Model m;
        for (const auto& o : objs) {
            m.upsert(o);
        }
        EXPECT_EQ(compile_node_tables(m, "node-a"), expected);
    }
}

TEST(NodeTables, UnknownNodeIsAnError) {
    Model m;
    m.upsert(node("node-a", "10.244.1.0/24", "192.168.0.1"));
    EXPECT_THROW(compile_node_tables(m, "node-x"), CompileError);
}

}  // namespace
}  // namespace kdp::control
