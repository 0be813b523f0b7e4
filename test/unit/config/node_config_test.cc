// Properties of the node config loader: every key reads back, defaults follow the header, and
// every kind of bad config is refused with a one-line message naming the exact key path.
#include "config/node_config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

// The bad-config table names only the sections a row replaces ({.vxlan = ...}); GCC 12 warns
// about the members left to their default initializers, which is exactly what is meant.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace kdp::config {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

Ip4 ip(const char* s) {
    return *Ip4::parse(s);
}
Prefix4 cidr(const char* s) {
    return *Prefix4::parse(s);
}
Mac mac(const char* s) {
    return *Mac::parse(s);
}

// A config by section; each defaults to the smallest valid text, and a test replaces the
// sections it is about. `extra` is appended verbatim (for keys that are not sections).
struct Sections {
    std::string node =
        "node:\n"
        "  name: node1\n"
        "  ip: 198.51.100.1\n"
        "  pod_cidr: 10.244.1.0/24\n";
    std::string vxlan;
    std::string dpdk;
    std::string workers =
        "workers:\n"
        "  lcores: [1]\n";
    std::string uplink =
        "uplink:\n"
        "  devargs: net_null0\n";
    std::string pods;
    std::string remote_nodes;
    std::string api;
    std::string limits;
    std::string extra;

    std::string yaml() const {
        return node + vxlan + dpdk + workers + uplink + pods + remote_nodes + api + limits + extra;
    }
};

// The message of the ConfigError that parsing `text` throws, or "" if it parses.
std::string error_of(const std::string& text) {
    try {
        parse_node_config(text);
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}

TEST(NodeConfig, FullConfigReadsBackEveryField) {
    const NodeConfig c = parse_node_config(R"(
node:
  name: node1
  ip: 198.51.100.1
  mac: 02:00:00:00:00:01
  pod_cidr: 10.244.1.0/24
  gateway: 10.244.1.254
  gateway_mac: 02:00:00:00:00:fe
  cluster_cidr: 10.244.0.0/16
  mtu: 9000
vxlan:
  mode: standard
  port: 4790
  vni: 4242
  vtep_mac: 02:00:00:00:00:02
dpdk:
  file_prefix: kdp_test-1
  lcores: "(0,1)@0,2@1"
  eal_args: ["--no-pci", "--log-level=lib.eal:debug"]
  huge_unlink: true
workers:
  lcores: [1, 2]
  idle: {spin_polls: 10, sleep_us: 5, max_sleep_us: 500}
uplink:
  devargs: "net_af_packet0,iface=veth0"
  rx_queues: 4
  gateway: 198.51.100.126
  prefix_len: 25
pods:
  - name: default/pod-a
    ip: 10.244.1.10
    type: tap
    iface: kdpa
    mac: 02:00:00:00:01:0a
    netns: pod-a
  - name: nfv/vm-0
    ip: 10.244.1.11
    type: vhostuser
    socket: /run/kdp/vm-0.sock
    queues: 2
  - name: nfv/memif-0.x
    ip: 10.244.1.12
    type: devargs
    devargs: net_memif0,role=server
remote_nodes:
  - name: node2
    ip: 198.51.100.2
    pod_cidr: 10.244.2.0/24
    vtep_mac: 02:00:00:00:02:02
  - name: node3
    ip: 198.51.100.3
    pod_cidr: 10.244.4.0/22
api:
  socket: /run/kdp/api.sock
limits:
  mbufs: 32767
  max_pods: 8
  max_routes: 16
  arp_pending: 32
  arp_timeout_ms: 2000
  arp_reachable_s: 60
  conntrack: 100000
)");
    EXPECT_EQ(c.node_name, "node1");
    EXPECT_EQ(c.node_ip, ip("198.51.100.1"));
    EXPECT_EQ(c.node_mac, mac("02:00:00:00:00:01"));
    EXPECT_EQ(c.pod_cidr, cidr("10.244.1.0/24"));
    EXPECT_EQ(c.gateway_ip, ip("10.244.1.254"));
    EXPECT_EQ(c.gateway_mac, mac("02:00:00:00:00:fe"));
    EXPECT_EQ(c.cluster_cidr, cidr("10.244.0.0/16"));
    EXPECT_EQ(c.mtu, 9000);
    EXPECT_EQ(c.pod_mtu(), 8950);

    EXPECT_EQ(c.vxlan_mode, VxlanMode::kStandard);
    EXPECT_EQ(c.vxlan_port, 4790);
    EXPECT_EQ(c.vni, 4242u);
    EXPECT_EQ(c.vtep_mac, mac("02:00:00:00:00:02"));

    EXPECT_EQ(c.file_prefix, "kdp_test-1");
    EXPECT_EQ(c.lcores, "(0,1)@0,2@1");
    EXPECT_EQ(c.eal_args, (std::vector<std::string>{"--no-pci", "--log-level=lib.eal:debug"}));
    EXPECT_TRUE(c.huge_unlink);
    EXPECT_EQ(c.worker_lcores, (std::vector<unsigned>{1, 2}));
    EXPECT_EQ(c.idle.spin_polls, 10u);
    EXPECT_EQ(c.idle.sleep_us, 5u);
    EXPECT_EQ(c.idle.max_sleep_us, 500u);

    EXPECT_EQ(c.uplink.devargs, "net_af_packet0,iface=veth0");
    EXPECT_EQ(c.uplink.rx_queues, 4);
    EXPECT_EQ(c.uplink.gateway, ip("198.51.100.126"));
    EXPECT_EQ(c.uplink.prefix_len, 25);

    ASSERT_EQ(c.pods.size(), 3u);
    EXPECT_EQ(c.pods[0].name, "default/pod-a");
    EXPECT_EQ(c.pods[0].ip, ip("10.244.1.10"));
    EXPECT_EQ(c.pods[0].type, PortType::kTap);
    EXPECT_EQ(c.pods[0].iface, "kdpa");
    EXPECT_EQ(c.pods[0].mac, mac("02:00:00:00:01:0a"));
    EXPECT_EQ(c.pods[0].netns, "pod-a");
    EXPECT_EQ(c.pods[1].type, PortType::kVhostUser);
    EXPECT_EQ(c.pods[1].socket, "/run/kdp/vm-0.sock");
    EXPECT_EQ(c.pods[1].queues, 2u);
    EXPECT_EQ(c.pods[0].queues, 1u);
    EXPECT_EQ(c.pods[1].iface, "");
    EXPECT_FALSE(c.pods[1].mac);
    EXPECT_EQ(c.pods[2].name, "nfv/memif-0.x");
    EXPECT_EQ(c.pods[2].type, PortType::kDevargs);
    EXPECT_EQ(c.pods[2].devargs, "net_memif0,role=server");

    ASSERT_EQ(c.remote_nodes.size(), 2u);
    EXPECT_EQ(c.remote_nodes[0].name, "node2");
    EXPECT_EQ(c.remote_nodes[0].ip, ip("198.51.100.2"));
    EXPECT_EQ(c.remote_nodes[0].pod_cidr, cidr("10.244.2.0/24"));
    EXPECT_EQ(c.remote_nodes[0].vtep_mac, mac("02:00:00:00:02:02"));
    EXPECT_EQ(c.remote_nodes[1].pod_cidr, cidr("10.244.4.0/22"));
    EXPECT_EQ(c.remote_nodes[1].vtep_mac, Mac::from_ip(ip("198.51.100.3")));

    EXPECT_EQ(c.api_socket, "/run/kdp/api.sock");
    EXPECT_EQ(c.limits.mbufs, 32767u);
    EXPECT_EQ(c.limits.max_pods, 8u);
    EXPECT_EQ(c.limits.max_routes, 16u);
    EXPECT_EQ(c.limits.arp_pending, 32u);
    EXPECT_EQ(c.limits.arp_timeout_ms, 2000u);
    EXPECT_EQ(c.limits.arp_reachable_s, 60u);
    EXPECT_EQ(c.limits.conntrack, 100000u);
}

TEST(NodeConfig, MinimalConfigGetsTheHeaderDefaults) {
    Sections s;
    s.pods =
        "pods:\n"
        "  - {name: default/a, ip: 10.244.1.2}\n"
        "  - {name: default/b, ip: 10.244.1.3}\n";
    const NodeConfig c = parse_node_config(s.yaml());
    EXPECT_FALSE(c.node_mac);
    EXPECT_EQ(c.gateway_ip, ip("10.244.1.1"));  // first host of pod_cidr
    EXPECT_EQ(c.gateway_mac, Mac::from_ip(ip("10.244.1.1")));
    EXPECT_FALSE(c.cluster_cidr);
    EXPECT_EQ(c.mtu, 1500);
    EXPECT_EQ(c.pod_mtu(), 1450);
    EXPECT_EQ(c.vxlan_mode, VxlanMode::kStandard);
    EXPECT_EQ(c.vxlan_port, 4789);
    EXPECT_EQ(c.vni, 1u);
    EXPECT_EQ(c.vtep_mac, Mac::from_ip(ip("198.51.100.1")));
    EXPECT_EQ(c.file_prefix, "kdp-node1");
    EXPECT_TRUE(c.eal_args.empty());
    EXPECT_FALSE(c.huge_unlink) << "secondary processes (dpdk-dumpcap) can attach by default";
    EXPECT_EQ(c.lcores, "");
    EXPECT_EQ(c.idle.spin_polls, 256u);
    EXPECT_EQ(c.idle.sleep_us, 50u);
    EXPECT_EQ(c.idle.max_sleep_us, 1000u);
    EXPECT_EQ(c.uplink.rx_queues, 1);
    EXPECT_FALSE(c.uplink.gateway);
    EXPECT_EQ(c.uplink.prefix_len, 24);
    ASSERT_EQ(c.pods.size(), 2u);
    EXPECT_EQ(c.pods[0].type, PortType::kTap);
    EXPECT_EQ(c.pods[0].iface, "kdp0");  // "kdp" + index in the list
    EXPECT_EQ(c.pods[1].iface, "kdp1");
    EXPECT_TRUE(c.remote_nodes.empty());
    EXPECT_FALSE(c.host) << "no host interface unless asked for";
    EXPECT_EQ(c.api_socket, "/run/kdp/dataplane.sock");
    const LimitsConfig defaults;
    EXPECT_EQ(c.limits.mbufs, defaults.mbufs);
    EXPECT_EQ(c.limits.max_pods, defaults.max_pods);
    EXPECT_EQ(c.limits.max_routes, defaults.max_routes);
}

TEST(NodeConfig, HostInterfaceReadsBack) {
    Sections s;
    s.extra =
        "host: {iface: kdph, netns: node1, routes: [10.96.0.0/12, 192.0.2.10/32], node_address: "
        "true}\n";
    const NodeConfig c = parse_node_config(s.yaml());
    ASSERT_TRUE(c.host);
    EXPECT_EQ(c.host->iface, "kdph");
    EXPECT_EQ(c.host->netns, "node1");
    EXPECT_EQ(c.host->routes, (std::vector<Prefix4>{cidr("10.96.0.0/12"), cidr("192.0.2.10/32")}));
    EXPECT_TRUE(c.host->node_address);

    s.extra = "host: {iface: kdph}\n";
    const NodeConfig d = parse_node_config(s.yaml());
    ASSERT_TRUE(d.host);
    EXPECT_EQ(d.host->netns, "") << "the dataplane's own namespace";
    EXPECT_TRUE(d.host->routes.empty());
    EXPECT_FALSE(d.host->node_address) << "the pod network only, unless asked";
}

TEST(NodeConfig, ExplicitGatewayMovesTheDefaultGatewayMac) {
    Sections s;
    s.node += "  gateway: 10.244.1.254\n";
    const NodeConfig c = parse_node_config(s.yaml());
    EXPECT_EQ(c.gateway_mac, Mac::from_ip(ip("10.244.1.254")));
}

TEST(NodeConfig, FlannelModeDefaultsToPort8472AndVni1) {
    Sections s;
    s.vxlan = "vxlan: {mode: flannel}\n";
    s.remote_nodes =
        "remote_nodes:\n"
        "  - {name: node2, ip: 198.51.100.2, pod_cidr: 10.244.2.0/24, vtep_mac: "
        "6e:1c:8a:31:0f:02}\n";
    const NodeConfig c = parse_node_config(s.yaml());
    EXPECT_EQ(c.vxlan_mode, VxlanMode::kFlannel);
    EXPECT_EQ(c.vxlan_port, 8472);
    EXPECT_EQ(c.vni, 1u);
    EXPECT_EQ(c.vtep_mac, Mac::from_ip(ip("198.51.100.1")));
    EXPECT_EQ(c.remote_nodes[0].vtep_mac, mac("6e:1c:8a:31:0f:02"));
}

TEST(NodeConfig, FlannelModeKeepsAnExplicitPortAndAcceptsVni1) {
    Sections s;
    s.vxlan = "vxlan: {mode: flannel, port: 4789, vni: 1}\n";
    const NodeConfig c = parse_node_config(s.yaml());
    EXPECT_EQ(c.vxlan_port, 4789);
}

TEST(NodeConfig, FlannelModeRefusesAnotherVniAndARemoteWithoutVtepMac) {
    Sections s;
    s.vxlan = "vxlan: {mode: flannel, vni: 2}\n";
    EXPECT_EQ(error_of(s.yaml()),
              "vxlan.vni: flannel mode requires VNI 1 (Flannel's default), got 2");

    s.vxlan = "vxlan: {mode: flannel}\n";
    s.remote_nodes =
        "remote_nodes:\n"
        "  - {name: node2, ip: 198.51.100.2, pod_cidr: 10.244.2.0/24}\n";
    EXPECT_THAT(error_of(s.yaml()),
                StartsWith("remote_nodes[0].vtep_mac: missing (required in flannel mode"));
}

TEST(NodeConfig, StandardModeDefaultsRemoteVtepMacToTheOneDerivedFromItsIp) {
    Sections s;
    s.remote_nodes =
        "remote_nodes:\n"
        "  - {name: node2, ip: 198.51.100.2, pod_cidr: 10.244.2.0/24}\n";
    const NodeConfig c = parse_node_config(s.yaml());
    EXPECT_EQ(c.remote_nodes[0].vtep_mac, Mac::from_ip(ip("198.51.100.2")));
}

// One bad config per row, with the exact message it must produce.
struct BadCase {
    const char* what;
    Sections config;
    const char* message;
};

const std::string kOnePod =
    "pods:\n"
    "  - {name: default/a, ip: 10.244.1.10}\n";

std::vector<BadCase> bad_cases() {
    const std::string node = Sections{}.node;
    const std::string remote2 =
        "remote_nodes:\n"
        "  - {name: node2, ip: 198.51.100.2, pod_cidr: 10.244.2.0/24}\n";
    return {
        // Unknown keys, at every depth.
        {"unknown top-level key", {.extra = "nodee: {}\n"}, "nodee: unknown key"},
        {"unknown nested key", {.vxlan = "vxlan: {vnii: 2}\n"}, "vxlan.vnii: unknown key"},
        {"unknown key two levels down",
         {.workers = "workers: {lcores: [1], idle: {spin: 1}}\n"},
         "workers.idle.spin: unknown key"},
        {"unknown key in a list item",
         {.pods = kOnePod + "  - {name: default/b, ip: 10.244.1.11, ipp: 1}\n"},
         "pods[1].ipp: unknown key"},
        {"unknown key in a remote node",
         {.remote_nodes = "remote_nodes:\n  - {name: n2, ip: 198.51.100.2, pod_cidr: "
                          "10.244.2.0/24, mac: 02:00:00:00:00:01}\n"},
         "remote_nodes[0].mac: unknown key"},
        {"key that is not a plain word",
         {.vxlan = "vxlan: {\"po\\nrt\": 1}\n"},
         "vxlan.\"po\\x0art\": unknown key"},
        {"key that is not a string",
         {.extra = "? [a]\n: 1\n"},
         "(top level): map keys must be strings, got a list"},
        {"merge key", {.vxlan = "vxlan: {<<: {port: 1}}\n"}, "vxlan.<<: unknown key"},
        {"duplicate key", {.vxlan = "vxlan:\n  port: 1\n  port: 2\n"}, "vxlan.port: duplicate key"},

        // Wrong types.
        {"string where an integer goes",
         {.vxlan = "vxlan: {port: http}\n"},
         "vxlan.port: expected an integer, got \"http\""},
        {"quoted integer",
         {.vxlan = "vxlan: {port: \"4789\"}\n"},
         "vxlan.port: expected an integer, got the quoted string \"4789\""},
        {"fraction",
         {.node = node + "  mtu: 1500.5\n"},
         "node.mtu: expected an integer, got \"1500.5\""},
        {"hex integer",
         {.vxlan = "vxlan: {vni: 0x10}\n"},
         "vxlan.vni: expected an integer, got \"0x10\""},
        {"negative integer",
         {.node = node + "  mtu: -1500\n"},
         "node.mtu: -1500 is out of range 1280..9000"},
        {"list where a map goes",
         {.vxlan = "vxlan: [4789]\n"},
         "vxlan: expected a map, got a list"},
        {"scalar where a map goes",
         {.api = "api: /run/kdp.sock\n"},
         "api: expected a map, got the scalar \"/run/kdp.sock\""},
        {"map where a string goes",
         {.node = node + "  mac: {a: 1}\n"},
         "node.mac: expected a string, got a map"},
        {"scalar where a list goes",
         {.workers = "workers: {lcores: 1}\n"},
         "workers.lcores: expected a list, got the scalar \"1\""},
        {"map where a list goes", {.pods = "pods: {a: 1}\n"}, "pods: expected a list, got a map"},
        {"list item that is not a map",
         {.pods = "pods: [default/a]\n"},
         "pods[0]: expected a map, got the scalar \"default/a\""},
        {"null value",
         {.node = node + "  mac:\n"},
         "node.mac: expected a string, got nothing (null)"},
        {"list in a string list",
         {.dpdk = "dpdk: {eal_args: [--no-pci, [a]]}\n"},
         "dpdk.eal_args[1]: expected a string, got a list"},
        {"top level is a list",
         {.node = "- a\n", .workers = "", .uplink = ""},
         "(top level): expected a map, got a list"},

        // Missing required keys.
        {"empty document", {.node = "", .workers = "", .uplink = ""}, "node.name: missing"},
        {"missing node.name",
         {.node = "node: {ip: 198.51.100.1, pod_cidr: 10.244.1.0/24}\n"},
         "node.name: missing"},
        {"missing node.ip",
         {.node = "node: {name: n1, pod_cidr: 10.244.1.0/24}\n"},
         "node.ip: missing"},
        {"missing node.pod_cidr",
         {.node = "node: {name: n1, ip: 198.51.100.1}\n"},
         "node.pod_cidr: missing"},
        {"missing workers section", {.workers = ""}, "workers.lcores: missing"},
        {"missing uplink section", {.uplink = ""}, "uplink.devargs: missing"},
        {"empty uplink devargs",
         {.uplink = "uplink: {devargs: \"\"}\n"},
         "uplink.devargs: must not be empty"},
        {"pod without ip", {.pods = "pods:\n  - {name: default/a}\n"}, "pods[0].ip: missing"},
        {"remote without pod_cidr",
         {.remote_nodes = "remote_nodes:\n  - {name: node2, ip: 198.51.100.2}\n"},
         "remote_nodes[0].pod_cidr: missing"},

        // Addresses and CIDRs.
        {"bad CIDR",
         {.node = "node: {name: n1, ip: 198.51.100.1, pod_cidr: 10.244.1.0/33}\n"},
         "node.pod_cidr: \"10.244.1.0/33\" is not an IPv4 CIDR (a.b.c.d/len)"},
        {"CIDR without length",
         {.node = "node: {name: n1, ip: 198.51.100.1, pod_cidr: 10.244.1.0}\n"},
         "node.pod_cidr: \"10.244.1.0\" is not an IPv4 CIDR (a.b.c.d/len)"},
        {"CIDR with host bits",
         {.node = "node: {name: n1, ip: 198.51.100.1, pod_cidr: 10.244.1.1/24}\n"},
         "node.pod_cidr: 10.244.1.1/24 has host bits set (the network is 10.244.1.0/24)"},
        {"pod CIDR in multicast space",
         {.node = "node: {name: n1, ip: 198.51.100.1, pod_cidr: 224.0.1.0/24}\n"},
         "node.pod_cidr: 224.0.1.0/24 is not unicast host address space"},
        {"pod CIDR too small",
         {.node = "node: {name: n1, ip: 198.51.100.1, pod_cidr: 10.244.1.0/31}\n"},
         "node.pod_cidr: 10.244.1.0/31: prefix length 31 is out of range 8..30"},
        {"bad IP",
         {.node = "node: {name: n1, ip: 198.51.100.256, pod_cidr: 10.244.1.0/24}\n"},
         "node.ip: \"198.51.100.256\" is not an IPv4 address"},
        {"loopback node IP",
         {.node = "node: {name: n1, ip: 127.0.0.1, pod_cidr: 10.244.1.0/24}\n"},
         "node.ip: 127.0.0.1 is not a unicast host address"},
        {"node IP inside its pod CIDR",
         {.node = "node: {name: n1, ip: 10.244.1.200, pod_cidr: 10.244.1.0/24}\n"},
         "node.ip: 10.244.1.200 is inside node.pod_cidr 10.244.1.0/24"},
        {"bad MAC",
         {.node = node + "  mac: 02:00:00:00:00\n"},
         "node.mac: \"02:00:00:00:00\" is not a MAC address (aa:bb:cc:dd:ee:ff)"},
        {"multicast MAC",
         {.vxlan = "vxlan: {vtep_mac: 01:00:5e:00:00:01}\n"},
         "vxlan.vtep_mac: 01:00:5e:00:00:01 is not a unicast MAC address"},
        {"node name not a DNS label",
         {.node = "node: {name: Node_1, ip: 198.51.100.1, pod_cidr: 10.244.1.0/24}\n"},
         "node.name: \"Node_1\" is not a DNS-1123 label ([a-z0-9]([-a-z0-9]*[a-z0-9])?, at most "
         "63)"},
        {"gateway outside the pod CIDR",
         {.node = node + "  gateway: 10.244.2.1\n"},
         "node.gateway: 10.244.2.1 is outside node.pod_cidr 10.244.1.0/24"},
        {"gateway on the broadcast address",
         {.node = node + "  gateway: 10.244.1.255\n"},
         "node.gateway: 10.244.1.255 is the broadcast address of node.pod_cidr 10.244.1.0/24"},
        {"cluster CIDR not containing the pod CIDR",
         {.node = node + "  cluster_cidr: 10.245.0.0/16\n"},
         "node.cluster_cidr: 10.245.0.0/16 does not contain node.pod_cidr 10.244.1.0/24"},
        {"cluster CIDR not containing a remote pod CIDR",
         {.node = node + "  cluster_cidr: 10.244.0.0/16\n",
          .remote_nodes =
              "remote_nodes:\n  - {name: node2, ip: 198.51.100.2, pod_cidr: 10.9.0.0/24}\n"},
         "remote_nodes[0].pod_cidr: 10.9.0.0/24 is outside node.cluster_cidr 10.244.0.0/16"},

        // Pods.
        {"pod IP outside the pod CIDR",
         {.pods = kOnePod + "  - {name: default/b, ip: 10.9.9.9}\n"},
         "pods[1].ip: 10.9.9.9 is outside node.pod_cidr 10.244.1.0/24"},
        {"pod IP equal to the gateway",
         {.pods = "pods:\n  - {name: default/a, ip: 10.244.1.1}\n"},
         "pods[0].ip: 10.244.1.1 is the pod gateway (node.gateway)"},
        {"pod IP on the network address",
         {.pods = "pods:\n  - {name: default/a, ip: 10.244.1.0}\n"},
         "pods[0].ip: 10.244.1.0 is the network address of node.pod_cidr 10.244.1.0/24"},
        {"duplicate pod IP",
         {.pods = kOnePod + "  - {name: default/b, ip: 10.244.1.10}\n"},
         "pods[1].ip: 10.244.1.10 is already used by pods[0]"},
        {"duplicate pod name",
         {.pods = kOnePod + "  - {name: default/a, ip: 10.244.1.11}\n"},
         "pods[1].name: \"default/a\" is already used by pods[0]"},
        {"pod name without namespace",
         {.pods = "pods:\n  - {name: pod-a, ip: 10.244.1.10}\n"},
         "pods[0].name: \"pod-a\" is not \"namespace/name\" (a DNS-1123 label, '/', a DNS-1123 "
         "subdomain)"},
        {"unknown port type",
         {.pods = "pods:\n  - {name: default/a, ip: 10.244.1.10, type: veth}\n"},
         "pods[0].type: \"veth\" is not one of tap, vhostuser, devargs"},
        {"iface too long",
         {.pods = "pods:\n  - {name: default/a, ip: 10.244.1.10, iface: kdp-0123456789ab}\n"},
         "pods[0].iface: \"kdp-0123456789ab\" is 16 characters, longer than a Linux interface name "
         "may be (15)"},
        {"iface with a slash",
         {.pods = "pods:\n  - {name: default/a, ip: 10.244.1.10, iface: a/b}\n"},
         "pods[0].iface: \"a/b\" may only hold [A-Za-z0-9_.-]"},
        {"explicit iface colliding with a default one",
         {.pods = kOnePod + "  - {name: default/b, ip: 10.244.1.11, iface: kdp0}\n"},
         "pods[1].iface: \"kdp0\" is already used by pods[0]"},
        {"vhostuser without socket",
         {.pods = "pods:\n  - {name: default/a, ip: 10.244.1.10, type: vhostuser}\n"},
         "pods[0].socket: missing"},
        {"vhostuser with a relative socket",
         {.pods =
              "pods:\n  - {name: default/a, ip: 10.244.1.10, type: vhostuser, socket: a.sock}\n"},
         "pods[0].socket: \"a.sock\" is not an absolute path"},
        {"duplicate vhostuser socket",
         {.pods = "pods:\n  - {name: d/a, ip: 10.244.1.10, type: vhostuser, socket: /run/a}\n"
                  "  - {name: d/b, ip: 10.244.1.11, type: vhostuser, socket: /run/a}\n"},
         "pods[1].socket: \"/run/a\" is already used by pods[0]"},
        {"vhostuser socket on the API socket",
         {.pods = "pods:\n  - {name: d/a, ip: 10.244.1.10, type: vhostuser, socket: "
                  "/run/kdp/dataplane.sock}\n"},
         "pods[0].socket: \"/run/kdp/dataplane.sock\" is the gRPC socket (api.socket)"},
        {"socket on a tap port",
         {.pods = "pods:\n  - {name: default/a, ip: 10.244.1.10, socket: /run/a.sock}\n"},
         "pods[0].socket: only valid for type vhostuser (this port is tap)"},
        {"queues on a tap port",
         {.pods = "pods:\n  - {name: default/a, ip: 10.244.1.10, queues: 2}\n"},
         "pods[0].queues: only valid for type vhostuser (this port is tap)"},
        {"no vhostuser queues",
         {.pods = "pods:\n  - {name: d/a, ip: 10.244.1.10, type: vhostuser, socket: /run/a, "
                  "queues: 0}\n"},
         "pods[0].queues: 0 is out of range 1..64"},
        {"devargs port without devargs",
         {.pods = "pods:\n  - {name: default/a, ip: 10.244.1.10, type: devargs}\n"},
         "pods[0].devargs: missing"},
        {"devargs port reusing the uplink device",
         {.uplink = "uplink: {devargs: \"net_memif0,role=client\"}\n",
          .pods = "pods:\n  - {name: d/a, ip: 10.244.1.10, type: devargs, devargs: "
                  "\"net_memif0,role=server\"}\n"},
         "pods[0].devargs: device \"net_memif0\" is already used by uplink.devargs"},
        {"more pods than limits.max_pods",
         {.pods = kOnePod + "  - {name: default/b, ip: 10.244.1.11}\n",
          .limits = "limits: {max_pods: 1}\n"},
         "limits.max_pods: 1 is less than the 2 ports listed in pods"},

        // Remote nodes.
        {"remote pod CIDR overlapping the local one",
         {.remote_nodes =
              "remote_nodes:\n  - {name: node2, ip: 198.51.100.2, pod_cidr: 10.244.0.0/23}\n"},
         "remote_nodes[0].pod_cidr: 10.244.0.0/23 overlaps node.pod_cidr 10.244.1.0/24"},
        {"remote pod CIDRs overlapping each other",
         {.remote_nodes =
              remote2 + "  - {name: node3, ip: 198.51.100.3, pod_cidr: 10.244.2.128/25}\n"},
         "remote_nodes[1].pod_cidr: 10.244.2.128/25 overlaps remote_nodes[0].pod_cidr "
         "10.244.2.0/24"},
        {"duplicate remote name",
         {.remote_nodes =
              remote2 + "  - {name: node2, ip: 198.51.100.3, pod_cidr: 10.244.3.0/24}\n"},
         "remote_nodes[1].name: \"node2\" is already used by remote_nodes[0]"},
        {"remote named like this node",
         {.remote_nodes =
              "remote_nodes:\n  - {name: node1, ip: 198.51.100.2, pod_cidr: 10.244.2.0/24}\n"},
         "remote_nodes[0].name: \"node1\" is this node (node.name)"},
        {"duplicate remote IP",
         {.remote_nodes =
              remote2 + "  - {name: node3, ip: 198.51.100.2, pod_cidr: 10.244.3.0/24}\n"},
         "remote_nodes[1].ip: 198.51.100.2 is already used by remote_nodes[0]"},
        {"remote with this node's IP",
         {.remote_nodes =
              "remote_nodes:\n  - {name: node2, ip: 198.51.100.1, pod_cidr: 10.244.2.0/24}\n"},
         "remote_nodes[0].ip: 198.51.100.1 is this node's IP (node.ip)"},
        {"remote off-subnet without an underlay gateway",
         {.remote_nodes =
              "remote_nodes:\n  - {name: node2, ip: 203.0.113.2, pod_cidr: 10.244.2.0/24}\n"},
         "remote_nodes[0].ip: 203.0.113.2 is off the node's subnet 198.51.100.0/24 and "
         "uplink.gateway is not set, so it cannot be reached"},
        {"more remotes than limits.max_routes",
         {.remote_nodes =
              remote2 + "  - {name: node3, ip: 198.51.100.3, pod_cidr: 10.244.3.0/24}\n",
          .limits = "limits: {max_routes: 1}\n"},
         "limits.max_routes: 1 is less than the 2 entries in remote_nodes"},

        // Workers.
        {"empty worker lcores",
         {.workers = "workers: {lcores: []}\n"},
         "workers.lcores: must list at least one lcore"},
        {"duplicate worker lcore",
         {.workers = "workers: {lcores: [1, 2, 1]}\n"},
         "workers.lcores[2]: 1 is already listed at workers.lcores[0]"},
        {"worker on the main lcore",
         {.workers = "workers: {lcores: [0]}\n"},
         "workers.lcores[0]: 0 is the main lcore and cannot run a worker (use 1..127)"},
        {"worker lcore past RTE_MAX_LCORE",
         {.workers = "workers: {lcores: [128]}\n"},
         "workers.lcores[0]: 128 is out of range 1..127"},
        {"sleep longer than the max sleep",
         {.workers = "workers: {lcores: [1], idle: {sleep_us: 2000}}\n"},
         "workers.idle.sleep_us: sleep_us 2000 is greater than max_sleep_us 1000"},

        // Ranges.
        {"port 0", {.vxlan = "vxlan: {port: 0}\n"}, "vxlan.port: 0 is out of range 1..65535"},
        {"port 65536",
         {.vxlan = "vxlan: {port: 65536}\n"},
         "vxlan.port: 65536 is out of range 1..65535"},
        {"VNI past 24 bits",
         {.vxlan = "vxlan: {vni: 16777216}\n"},
         "vxlan.vni: 16777216 is out of range 0..16777215"},
        {"huge integer",
         {.vxlan = "vxlan: {vni: 99999999999999999999}\n"},
         "vxlan.vni: 99999999999999999999 is out of range 0..16777215"},
        {"MTU below 1280",
         {.node = node + "  mtu: 1279\n"},
         "node.mtu: 1279 is out of range 1280..9000"},
        {"MTU above 9000",
         {.node = node + "  mtu: 9001\n"},
         "node.mtu: 9001 is out of range 1280..9000"},
        {"no rx queues",
         {.uplink = "uplink: {devargs: net_null0, rx_queues: 0}\n"},
         "uplink.rx_queues: 0 is out of range 1..64"},
        {"too many rx queues",
         {.uplink = "uplink: {devargs: net_null0, rx_queues: 65}\n"},
         "uplink.rx_queues: 65 is out of range 1..64"},
        {"zero mbufs",
         {.limits = "limits: {mbufs: 0}\n"},
         "limits.mbufs: 0 is out of range 1..16777215"},
        {"tiny conntrack",
         {.limits = "limits: {conntrack: 10}\n"},
         "limits.conntrack: 10 is out of range 1024..67108864"},
        {"unknown VXLAN mode",
         {.vxlan = "vxlan: {mode: geneve}\n"},
         "vxlan.mode: \"geneve\" is not one of standard, flannel"},

        // Uplink and DPDK.
        {"underlay gateway off the node's subnet",
         {.uplink = "uplink: {devargs: net_null0, gateway: 198.51.101.1}\n"},
         "uplink.gateway: 198.51.101.1 is off the node's subnet 198.51.100.0/24 "
         "(node.ip/uplink.prefix_len)"},
        {"file prefix with a slash",
         {.dpdk = "dpdk: {file_prefix: a/b}\n"},
         "dpdk.file_prefix: \"a/b\" may only hold [A-Za-z0-9_-]"},
        {"default file prefix too long",
         {.node = "node: {name: " + std::string(63, 'n') +
                  ", ip: 198.51.100.1, pod_cidr: 10.244.1.0/24}\n"},
         "dpdk.file_prefix: the default "
         "\"kdp-nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn\" is 67 "
         "characters, more than 48 (DPDK's runtime socket paths would not fit); set a shorter one"},
        {"huge_unlink not a boolean",
         {.dpdk = "dpdk: {huge_unlink: yes}\n"},
         "dpdk.huge_unlink: \"yes\" is not true or false"},
        {"EAL argument that kdp sets itself",
         {.dpdk = "dpdk: {eal_args: [--no-pci, --file-prefix=x]}\n"},
         "dpdk.eal_args[1]: \"--file-prefix=x\" is set by kdp from dpdk.file_prefix, dpdk.lcores "
         "and workers.lcores; use those keys"},
        {"EAL short lcore list",
         {.dpdk = "dpdk: {eal_args: [-l1-3]}\n"},
         "dpdk.eal_args[0]: \"-l1-3\" is set by kdp from dpdk.file_prefix, dpdk.lcores and "
         "workers.lcores; use those keys"},
        {"relative API socket",
         {.api = "api: {socket: kdp.sock}\n"},
         "api.socket: \"kdp.sock\" is not an absolute path"},

        // Host interface.
        {"host without iface", {.extra = "host: {netns: h1}\n"}, "host.iface: missing"},
        {"host iface too long",
         {.extra = "host: {iface: abcdefghijklmnop}\n"},
         "host.iface: \"abcdefghijklmnop\" is 16 characters, longer than a Linux interface name "
         "may be (15)"},
        {"host iface taken by a pod",
         {.pods = "pods: [{name: default/a, ip: 10.244.1.2, iface: kdph}]\n",
          .extra = "host: {iface: kdph}\n"},
         "host.iface: \"kdph\" is already used by pods[0]"},
        {"host netns with a slash",
         {.extra = "host: {iface: kdph, netns: a/b}\n"},
         "host.netns: \"a/b\" is not a name under /run/netns"},
        {"host route with host bits",
         {.extra = "host: {iface: kdph, routes: [10.96.0.1/12]}\n"},
         "host.routes[0]: 10.96.0.1/12 has host bits set (the network is 10.96.0.0/12)"},
        {"host route twice",
         {.extra = "host: {iface: kdph, routes: [10.96.0.0/12, 10.96.0.0/12]}\n"},
         "host.routes[1]: 10.96.0.0/12 is listed twice"},
        {"host node_address not a boolean",
         {.extra = "host: {iface: kdph, node_address: yes}\n"},
         "host.node_address: \"yes\" is not true or false"},
        {"host unknown key",
         {.extra = "host: {iface: kdph, address: 10.244.1.1}\n"},
         "host.address: unknown key"},
    };
}

// Lets gtest name a row by what it tests instead of dumping its bytes.
void PrintTo(const BadCase& c, std::ostream* os) {
    *os << c.what;
}

class BadConfig : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadConfig, IsRefusedWithTheKeyPathAndProblem) {
    const BadCase& c = GetParam();
    const std::string text = c.config.yaml();
    EXPECT_EQ(error_of(text), c.message) << c.what << "\n--- config ---\n" << text;
}

INSTANTIATE_TEST_SUITE_P(NodeConfig,
                         BadConfig,
                         ::testing::ValuesIn(bad_cases()),
                         [](const ::testing::TestParamInfo<BadCase>& param_info) {
                             std::string name;
                             for (const char* p = param_info.param.what; *p != '\0'; ++p) {
                                 name += std::isalnum(static_cast<unsigned char>(*p)) ? *p : '_';
                             }
                             return name;
                         });

TEST(NodeConfig, ConntrackTimeoutsAreReadAndBounded) {
    Sections s;
    EXPECT_EQ(parse_node_config(s.yaml()).conntrack_timeouts.icmp, 30u) << "the default";
    s.extra = "conntrack_timeouts:\n  icmp: 5\n  udp_stream: 300\n  tcp_established: 3600\n";
    const NodeConfig c = parse_node_config(s.yaml());
    EXPECT_EQ(c.conntrack_timeouts.icmp, 5u);
    EXPECT_EQ(c.conntrack_timeouts.udp_stream, 300u);
    EXPECT_EQ(c.conntrack_timeouts.tcp_established, 3600u);
    EXPECT_EQ(c.conntrack_timeouts.tcp_syn, 120u) << "unset keys keep their defaults";
    s.extra = "conntrack_timeouts:\n  icmp: 0\n";
    EXPECT_NE(error_of(s.yaml()).find("conntrack_timeouts.icmp"), std::string::npos)
        << error_of(s.yaml());
    s.extra = "conntrack_timeouts:\n  gre: 30\n";
    EXPECT_NE(error_of(s.yaml()).find("gre"), std::string::npos) << error_of(s.yaml());
}

TEST(NodeConfig, ApiGroupIsResolvedToItsGid) {
    Sections s;
    EXPECT_FALSE(parse_node_config(s.yaml()).api_gid)
        << "the default: root and the dataplane's own user";
    s.api = "api: {socket: /run/kdp/dataplane.sock, group: root}\n";  // every host has group 0
    const NodeConfig c = parse_node_config(s.yaml());
    ASSERT_TRUE(c.api_gid);
    EXPECT_EQ(*c.api_gid, 0u);
    EXPECT_EQ(c.api_group, "root");
    s.api = "api: {group: kdp-no-such-group}\n";
    EXPECT_THAT(error_of(s.yaml()),
                HasSubstr("api.group: \"kdp-no-such-group\" is not a group on this host"));
}

TEST(NodeConfig, PodTrafficWaitsForPolicyUnlessTheConfigAllowsIt) {
    Sections s;
    EXPECT_FALSE(parse_node_config(s.yaml()).policy_allow_before_sync)
        << "the default: no window without enforcement";
    s.extra = "network_policy: {before_sync: allow}\n";
    EXPECT_TRUE(parse_node_config(s.yaml()).policy_allow_before_sync);
    s.extra = "network_policy: {before_sync: deny}\n";
    EXPECT_FALSE(parse_node_config(s.yaml()).policy_allow_before_sync);
    s.extra = "network_policy: {before_sync: open}\n";
    EXPECT_THAT(error_of(s.yaml()),
                HasSubstr("network_policy.before_sync: \"open\" is not one of deny, allow"));
    s.extra = "network_policy: {default: allow}\n";
    EXPECT_THAT(error_of(s.yaml()), HasSubstr("default"));
}

TEST(NodeConfig, EveryErrorIsOneLine) {
    // A block scalar carries a newline into the value; the message must still be one line.
    Sections s;
    s.vxlan = "vxlan:\n  mode: |\n    standard\n    flannel\n";
    const std::string msg = error_of(s.yaml());
    EXPECT_EQ(msg, "vxlan.mode: \"standard\\x0aflannel\\x0a\" is not one of standard, flannel");
    for (const BadCase& c : bad_cases()) {
        EXPECT_EQ(std::string(c.message).find('\n'), std::string::npos) << c.what;
    }
}

// A scratch directory for file tests, removed afterwards.
class ConfigFile : public ::testing::Test {
protected:
    void SetUp() override {
        std::string tmpl = ::testing::TempDir() + "kdp-config-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    std::string write(const std::string& name, const std::string& text) {
        const std::string path = (dir_ / name).string();
        std::ofstream(path) << text;
        return path;
    }

    std::filesystem::path dir_;
};

TEST_F(ConfigFile, LoadsAValidFile) {
    const std::string path = write("node.yaml", Sections{}.yaml());
    EXPECT_EQ(load_node_config(path).node_name, "node1");
}

TEST_F(ConfigFile, MissingFileNamesThePathAndErrno) {
    const std::string path = (dir_ / "absent.yaml").string();
    try {
        load_node_config(path);
        FAIL() << "no error";
    } catch (const ConfigError& e) {
        EXPECT_EQ(std::string(e.what()), path + ": cannot read: No such file or directory");
    }
}

TEST_F(ConfigFile, DirectoryIsNotReadable) {
    try {
        load_node_config(dir_.string());
        FAIL() << "no error";
    } catch (const ConfigError& e) {
        EXPECT_EQ(std::string(e.what()), dir_.string() + ": cannot read: Is a directory");
    }
}

TEST_F(ConfigFile, YamlSyntaxErrorNamesPathLineAndColumn) {
    const std::string path = write("bad.yaml",
                                   "node:\n"
                                   "  name: node1\n"
                                   "  ip: [198.51.100.1\n"
                                   "  pod_cidr: 10.244.1.0/24\n");
    try {
        load_node_config(path);
        FAIL() << "no error";
    } catch (const ConfigError& e) {
        const std::string msg = e.what();
        // yaml-cpp notices the unclosed '[' where the next key's value starts.
        EXPECT_EQ(msg, path + ":4:11: end of sequence flow not found");
    }
}

TEST_F(ConfigFile, ValidationErrorsCarryNoPathPrefix) {
    const std::string path = write("node.yaml", Sections{.vxlan = "vxlan: {vnii: 1}\n"}.yaml());
    try {
        load_node_config(path);
        FAIL() << "no error";
    } catch (const ConfigError& e) {
        EXPECT_EQ(std::string(e.what()), "vxlan.vnii: unknown key");
    }
}

TEST(NodeConfig, InlineSyntaxErrorNamesLineAndColumn) {
    EXPECT_EQ(error_of("node: {name: a\nvxlan: 1\n"), "<inline>:2:6: end of map flow not found");
}

TEST(NodeConfig, MoreThanOneDocumentIsRefused) {
    EXPECT_THAT(error_of(Sections{}.yaml() + "---\nnode: {}\n"),
                HasSubstr("expected one YAML document, found 2"));
}

TEST(NodeConfigExamples, EveryExampleValidates) {
    const std::filesystem::path dir = KDP_EXAMPLES_DIR;
    int loaded = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        if (entry.path().extension() != ".yaml") {
            continue;
        }
        SCOPED_TRACE(entry.path().string());
        EXPECT_NO_THROW({
            try {
                load_node_config(entry.path().string());
            } catch (const ConfigError& e) {
                ADD_FAILURE() << e.what();
                throw;
            }
        });
        ++loaded;
    }
    EXPECT_GE(loaded, 3) << "standard.yaml, flannel.yaml and vhostuser.yaml at least";
}

}  // namespace
}  // namespace kdp::config
