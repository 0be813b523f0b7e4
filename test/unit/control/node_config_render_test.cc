// kdp-control node-config: the one node config merged with the Node object and the kernel's
// view of the uplink (control/bootstrap/node_config.h). Explicit values win, a conflict is an
// error naming both values, and nothing is made up when a source is silent.
#include <filesystem>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "control/bootstrap/node_config.h"
#include "control/k8s/kubeconfig.h"
#include "temp_files.h"

namespace kdp::control::bootstrap {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

constexpr const char* kShared = R"(node:
  cluster_cidr: 10.244.0.0/16
vxlan: {mode: standard}
workers: {lcores: [1]}
uplink: {interface: eth1}
)";

json node_json(const std::string& name = "node1") {
    return json::parse(R"({"apiVersion":"v1","kind":"Node",
        "metadata":{"name":")" +
                       name + R"(","labels":{"topology.kubernetes.io/zone":"zone-a"}},
        "spec":{"podCIDR":"10.244.1.0/24","podCIDRs":["10.244.1.0/24","fd00:10:244:1::/64"]},
        "status":{"addresses":[{"type":"Hostname","address":"node1"},
                               {"type":"InternalIP","address":"fd00::1"},
                               {"type":"InternalIP","address":"198.51.100.1"}]}})");
}

UplinkFacts eth1() {
    UplinkFacts f;
    f.iface = "eth1";
    f.mac = Mac::parse("02:00:00:00:01:01");
    f.mtu = 9000;
    f.addresses = {{*Ip4::parse("198.51.100.1"), 24}};
    return f;
}

UplinkReader reader(const UplinkFacts& f) {
    return [f](const std::string& name) {
        EXPECT_EQ(name, "eth1");
        return f;
    };
}

YAML::Node render(const std::string& tmpl,
                  const Explicit& given,
                  const std::optional<NodeFacts>& node,
                  const UplinkFacts& link = eth1()) {
    return YAML::Load(render_node_config(tmpl, given, node, reader(link)).yaml);
}

std::string conflict(const std::string& tmpl,
                     const Explicit& given,
                     const std::optional<NodeFacts>& node,
                     const UplinkFacts& link = eth1()) {
    try {
        render_node_config(tmpl, given, node, reader(link));
    } catch (const BootstrapError& e) {
        return e.what();
    }
    ADD_FAILURE() << "no error";
    return "";
}

TEST(NodeFacts, ReadsIpv4InternalIpPodCidrAndZoneOfADualStackNode) {
    const NodeFacts f = node_facts(node_json());
    EXPECT_EQ(f.name, "node1");
    ASSERT_EQ(f.internal_ips.size(), 1u);
    EXPECT_EQ(f.internal_ips[0].str(), "198.51.100.1");
    ASSERT_EQ(f.pod_cidrs.size(), 1u);
    EXPECT_EQ(f.pod_cidrs[0].str(), "10.244.1.0/24");
    EXPECT_EQ(f.zone, "zone-a");
}

TEST(NodeFacts, OldNodeWithOnlySpecPodCidrAndNoneYet) {
    auto j = json::parse(R"({"metadata":{"name":"n"},"spec":{"podCIDR":"10.244.7.0/24"}})");
    EXPECT_EQ(node_facts(j).pod_cidrs.at(0).str(), "10.244.7.0/24");
    EXPECT_TRUE(
        node_facts(json::parse(R"({"metadata":{"name":"n"},"spec":{}})")).pod_cidrs.empty());
    EXPECT_THROW(node_facts(json::parse(
                     R"({"metadata":{"name":"n"},"spec":{"podCIDRs":["10.244.7.1/24"]}})")),
                 BootstrapError);
}

TEST(RenderNodeConfig, FillsEveryMissingValueFromTheNodeAndTheKernel) {
    Explicit given;
    given.node_name = "node1";
    const auto r = render_node_config(kShared, given, node_facts(node_json()), reader(eth1()));
    const YAML::Node y = YAML::Load(r.yaml);
    EXPECT_EQ(y["node"]["name"].as<std::string>(), "node1");
    EXPECT_EQ(y["node"]["ip"].as<std::string>(), "198.51.100.1");
    EXPECT_EQ(y["node"]["pod_cidr"].as<std::string>(), "10.244.1.0/24");
    EXPECT_EQ(y["node"]["mac"].as<std::string>(), "02:00:00:00:01:01");
    EXPECT_EQ(y["node"]["mtu"].as<int>(), 9000);
    EXPECT_EQ(y["node"]["cluster_cidr"].as<std::string>(), "10.244.0.0/16");
    EXPECT_FALSE(y["node"]["zone"]);
    EXPECT_EQ(y["uplink"]["devargs"].as<std::string>(), "net_af_packet0,iface=eth1");
    EXPECT_EQ(y["uplink"]["prefix_len"].as<int>(), 24);
    EXPECT_FALSE(y["uplink"]["interface"]);
    EXPECT_EQ(y["workers"]["lcores"][0].as<int>(), 1);
    const std::string sources = ::testing::PrintToString(r.sources);
    EXPECT_THAT(sources, HasSubstr("node.ip 198.51.100.1 (Node node1 InternalIP)"));
    EXPECT_THAT(sources, HasSubstr("node.pod_cidr 10.244.1.0/24 (Node node1 spec.podCIDRs)"));
    EXPECT_THAT(sources, HasSubstr("zone zone-a (Node node1 label topology.kubernetes.io/zone)"));
    EXPECT_THAT(sources, HasSubstr("node.mtu 9000 (uplink eth1 in the kernel)"));
}

TEST(RenderNodeConfig, ExplicitValuesThatAgreeWin) {
    const std::string tmpl = R"(node: {name: node1, ip: 198.51.100.1, pod_cidr: 10.244.1.0/24,
  mac: "02:00:00:00:01:01", mtu: 9000, zone: zone-a}
workers: {lcores: [1]}
uplink: {interface: eth1, devargs: "0000:03:00.0", prefix_len: 24}
)";
    const YAML::Node y = render(tmpl, {}, node_facts(node_json()));
    EXPECT_EQ(y["uplink"]["devargs"].as<std::string>(), "0000:03:00.0");
    EXPECT_EQ(y["node"]["ip"].as<std::string>(), "198.51.100.1");
    EXPECT_FALSE(y["node"]["zone"]);
}

TEST(RenderNodeConfig, EachConflictNamesBothValues) {
    const auto node = node_facts(node_json());
    Explicit n1;
    n1.node_name = "node1";
    EXPECT_THAT(
        conflict("node: {ip: 198.51.100.2}\nuplink: {interface: eth1}\n", n1, node),
        HasSubstr(
            "node.ip: the node config says 198.51.100.2, Node node1 has InternalIP 198.51.100.1"));
    EXPECT_THAT(
        conflict("node: {pod_cidr: 10.244.9.0/24}\n", n1, node),
        HasSubstr(
            "the node config says 10.244.9.0/24, Node node1 has spec.podCIDRs 10.244.1.0/24"));
    Explicit cidr = n1;
    cidr.pod_cidr = Prefix4::parse("10.244.2.0/24");
    EXPECT_THAT(
        conflict("node: {}\n", cidr, node),
        HasSubstr("--pod-cidr says 10.244.2.0/24, Node node1 has spec.podCIDRs 10.244.1.0/24"));
    EXPECT_THAT(conflict("node: {zone: zone-b}\n", n1, node),
                HasSubstr("\"zone-b\", Node node1 has topology.kubernetes.io/zone=zone-a"));
    EXPECT_THAT(
        conflict("node: {mtu: 1500}\nuplink: {interface: eth1}\n", n1, node),
        HasSubstr("node.mtu: the node config says 1500, uplink eth1 in the kernel has 9000"));
    EXPECT_THAT(
        conflict("node: {mac: \"02:00:00:00:09:09\"}\nuplink: {interface: eth1}\n", n1, node),
        HasSubstr("says 02:00:00:00:09:09, uplink eth1 in the kernel has 02:00:00:00:01:01"));
    EXPECT_THAT(conflict("uplink: {interface: eth1, prefix_len: 16}\n", n1, node),
                HasSubstr("says 16, uplink eth1 in the kernel has 198.51.100.1/24"));
    EXPECT_THAT(conflict("node: {name: node2}\n", n1, node),
                HasSubstr("the node config says \"node2\", --node (NODE_NAME) says \"node1\""));
    // The Node and the kernel disagree: the uplink does not hold the Node's address.
    UplinkFacts other = eth1();
    other.addresses = {{*Ip4::parse("203.0.113.5"), 24}};
    EXPECT_THAT(conflict("uplink: {interface: eth1}\n", n1, node, other),
                HasSubstr("Node node1 InternalIP says 198.51.100.1, uplink eth1 in the kernel has "
                          "203.0.113.5/24"));
}

TEST(RenderNodeConfig, WithoutANodeTheKernelAndExplicitValuesSuffice) {
    Explicit given;
    given.node_name = "edge1";
    given.pod_cidr = Prefix4::parse("10.244.5.0/24");
    const YAML::Node y =
        render("uplink: {interface: eth1}\nworkers: {lcores: [1]}\n", given, std::nullopt);
    EXPECT_EQ(y["node"]["ip"].as<std::string>(), "198.51.100.1");
    EXPECT_EQ(y["node"]["pod_cidr"].as<std::string>(), "10.244.5.0/24");
}

TEST(RenderNodeConfig, ANodeWithoutPodCidrIsNotYetAndNothingIsGuessed) {
    auto j = node_json();
    j["spec"] = json::object();
    Explicit given;
    given.node_name = "node1";
    EXPECT_THROW(render_node_config(kShared, given, node_facts(j), reader(eth1())), NotYet);
    // No Node, no pod CIDR anywhere: an error, not a wait.
    try {
        render_node_config(kShared, given, std::nullopt, reader(eth1()));
        FAIL() << "no error";
    } catch (const NotYet&) {
        FAIL() << "NotYet without a Node to wait for";
    } catch (const BootstrapError& e) {
        EXPECT_THAT(e.what(), HasSubstr("node.pod_cidr"));
    }
    // A link without an address and a Node without one: node.ip is missing, said so.
    UplinkFacts bare = eth1();
    bare.addresses.clear();
    given.pod_cidr = Prefix4::parse("10.244.5.0/24");
    EXPECT_THAT(conflict(kShared, given, std::nullopt, bare),
                HasSubstr("node.ip: not in the node config"));
}

TEST(RenderNodeConfig, APciAddressGivesThePciDevargs) {
    UplinkFacts nic = eth1();
    nic.pci = "0000:03:00.0";
    Explicit given;
    given.node_name = "node1";
    const auto r =
        render_node_config("uplink: {interface: \"0000:03:00.0\"}\n", given,
                           node_facts(node_json()), [&](const std::string&) { return nic; });
    EXPECT_EQ(YAML::Load(r.yaml)["uplink"]["devargs"].as<std::string>(), "0000:03:00.0");
}

TEST(ReadUplink, ReadsMacMtuAndPciFunctionFromSysfs) {
    kdp::testing::TempDir sys;
    namespace fs = std::filesystem;
    const fs::path root = sys.path();
    fs::create_directories(root / "devices/pci0000:00/0000:03:00.0/net/kdpnic0");
    fs::create_directories(root / "bus/pci/devices");
    fs::create_directories(root / "bus/pci_bus");
    fs::create_directories(root / "class/net");
    fs::create_symlink(root / "devices/pci0000:00/0000:03:00.0",
                       root / "bus/pci/devices/0000:03:00.0");
    fs::create_symlink(root / "bus/pci", root / "devices/pci0000:00/0000:03:00.0/subsystem");
    const fs::path link = root / "devices/pci0000:00/0000:03:00.0/net/kdpnic0";
    fs::create_symlink(link, root / "class/net/kdpnic0");
    fs::create_symlink(root / "devices/pci0000:00/0000:03:00.0", link / "device");
    sys.write("devices/pci0000:00/0000:03:00.0/net/kdpnic0/mtu", "9000\n");
    sys.write("devices/pci0000:00/0000:03:00.0/net/kdpnic0/address", "02:00:00:00:03:00\n");

    for (const std::string name : {"kdpnic0", "0000:03:00.0", "03:00.0"}) {
        const UplinkFacts f = read_uplink(name, root);
        EXPECT_EQ(f.iface, "kdpnic0") << name;
        EXPECT_EQ(f.pci, "0000:03:00.0") << name;
        EXPECT_EQ(f.mtu, 9000) << name;
        ASSERT_TRUE(f.mac) << name;
        EXPECT_EQ(f.mac->str(), "02:00:00:00:03:00") << name;
    }
    EXPECT_THROW(read_uplink("kdpnone0", root), BootstrapError);
    EXPECT_THROW(read_uplink("0000:04:00.0", root), BootstrapError);
    // A function without a kernel interface (bound to vfio-pci): said so.
    fs::create_directories(root / "devices/pci0000:00/0000:05:00.0");
    fs::create_symlink(root / "devices/pci0000:00/0000:05:00.0",
                       root / "bus/pci/devices/0000:05:00.0");
    try {
        read_uplink("0000:05:00.0", root);
        FAIL() << "no error";
    } catch (const BootstrapError& e) {
        EXPECT_THAT(e.what(), HasSubstr("no interface on this PCI function"));
    }
}

TEST(ReadUplink, TheRealLoopbackFromTheKernel) {
    const UplinkFacts lo = read_uplink("lo");
    EXPECT_EQ(lo.iface, "lo");
    EXPECT_TRUE(lo.pci.empty());
    EXPECT_FALSE(lo.mac);  // 00:00:00:00:00:00 is no MAC
    EXPECT_GT(lo.mtu, 0);
}

TEST(IsPciAddress, SysfsFormOnly) {
    EXPECT_TRUE(is_pci_address("0000:03:00.0"));
    EXPECT_TRUE(is_pci_address("03:00.1"));
    EXPECT_FALSE(is_pci_address("eth1"));
    EXPECT_FALSE(is_pci_address("0000:03:00.8"));
    EXPECT_FALSE(is_pci_address("enp3s0f0"));
}

TEST(SetApiServer, HostPortReplacesTheServerAndKeepsCredentials) {
    k8s::ClusterConfig cfg;
    k8s::parse_server_url("https://10.96.0.1:443", cfg);
    cfg.token = "t";
    k8s::set_api_server(cfg, "192.0.2.10:6443");
    EXPECT_EQ(cfg.host, "192.0.2.10");
    EXPECT_EQ(cfg.port, "6443");
    EXPECT_EQ(cfg.server, "https://192.0.2.10:6443");
    EXPECT_EQ(cfg.token, "t");
    k8s::set_api_server(cfg, "[2001:db8::1]:6443");
    EXPECT_EQ(cfg.host, "2001:db8::1");
    EXPECT_EQ(cfg.port, "6443");
    k8s::set_api_server(cfg, "2001:db8::2");
    EXPECT_EQ(cfg.host, "2001:db8::2");
    EXPECT_EQ(cfg.port, "443");
    k8s::set_api_server(cfg, "api.example.com");
    EXPECT_EQ(cfg.port, "443");
    EXPECT_THROW(k8s::set_api_server(cfg, ""), k8s::ConfigError);
    EXPECT_THROW(k8s::set_api_server(cfg, "http://192.0.2.10:6443"), k8s::ConfigError);
}

TEST(SetApiServer, InClusterWithAnAddressNeedsNoServiceEnvironment) {
    kdp::testing::TempDir d;
    k8s::InClusterPaths paths;
    paths.token = d.write("token", "tok");
    paths.ca = d.write("ca.crt", "PEM");
    paths.namespace_file = d.path() + "/none";
    const auto no_env = [](const std::string&) { return std::optional<std::string>{}; };
    EXPECT_THROW(k8s::load_in_cluster(paths, no_env), k8s::ConfigError);
    const auto cfg = k8s::load_in_cluster(paths, no_env, "192.0.2.10:6443");
    EXPECT_EQ(cfg.server, "https://192.0.2.10:6443");
    EXPECT_EQ(cfg.token_file, paths.token);
}

}  // namespace
}  // namespace kdp::control::bootstrap
