// Reading manifests into the model: formats, multi-document files, Lists, and every error
// path with the message it gives.
#include "manifest/manifest.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "control/temp_files.h"

namespace kdp::control {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr const char* kCluster = R"(
apiVersion: v1
kind: Node
metadata:
  name: node-a
  labels: {zone: a}
  annotations:
    flannel.alpha.coreos.com/backend-data: '{"VtepMAC":"aa:bb:cc:dd:ee:01"}'
spec:
  podCIDR: 10.244.1.0/24
status:
  addresses:
  - {type: Hostname, address: node-a}
  - {type: InternalIP, address: 192.168.0.1}
---
apiVersion: v1
kind: Namespace
metadata:
  name: prod
  labels:
    team: "1234"
    enabled: "true"
---
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: prod
  labels: {app: web}
spec:
  nodeName: node-a
  containers:
  - name: c
    ports:
    - {name: http, containerPort: 8080}
    - {containerPort: 53, protocol: UDP}
status:
  podIP: 10.244.1.5
)";

TEST(Manifest, ReadsMultiDocumentYaml) {
    testing::TempDir dir;
    Model m;
    const auto errors = load_manifests({dir.write("c.yaml", kCluster)}, m);
    ASSERT_TRUE(errors.empty()) << errors.front();
    ASSERT_EQ(m.nodes().size(), 1u);
    const Node& n = m.nodes().at("node-a");
    EXPECT_EQ(n.labels.at("zone"), "a");
    EXPECT_EQ(n.pod_cidr->str(), "10.244.1.0/24");
    EXPECT_EQ(n.internal_ip->str(), "192.168.0.1");
    EXPECT_EQ(n.flannel_vtep->str(), "aa:bb:cc:dd:ee:01");
    // Quoted scalars stay strings even when they look like numbers or booleans.
    EXPECT_EQ(m.namespaces().at("prod").labels.at("team"), "1234");
    EXPECT_EQ(m.namespaces().at("prod").labels.at("enabled"), "true");
    const Pod& p = m.pods().at("prod/web");
    EXPECT_EQ(p.node_name, "node-a");
    EXPECT_FALSE(p.host_network);
    EXPECT_EQ(p.pod_ip->str(), "10.244.1.5");
    ASSERT_EQ(p.ports.size(), 2u);
    EXPECT_EQ(p.ports[0].name, "http");
    EXPECT_EQ(p.ports[0].port, 8080);
    EXPECT_EQ(p.ports[0].protocol, "TCP");
    EXPECT_EQ(p.ports[1].protocol, "UDP");
}

TEST(Manifest, ReadsListsAndJsonAndKeepsLaterObjects) {
    testing::TempDir dir;
    const auto json_file = dir.write("list.json", R"({
      "apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
         "spec": {"nodeName": "n1", "hostNetwork": true}, "status": {"podIP": "10.0.0.1"}},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
         "spec": {"podCIDR": "10.0.0.0/24"}}
      ]})");
    const auto yaml_list = dir.write("list.yaml", R"(
apiVersion: v1
kind: PodList
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a, namespace: default}
  spec: {nodeName: n2}
  status: {podIP: 10.0.0.2}
)");
    Model m;
    const auto errors = load_manifests({json_file, yaml_list}, m);
    ASSERT_TRUE(errors.empty()) << errors.front();
    EXPECT_EQ(m.nodes().size(), 1u);
    ASSERT_EQ(m.pods().size(), 1u);
    // The second file replaced default/a.
    EXPECT_EQ(m.pods().at("default/a").node_name, "n2");
    EXPECT_FALSE(m.pods().at("default/a").host_network);
}

TEST(Manifest, ParsesServicesAndSlicesKeepsPoliciesRaw) {
    testing::TempDir dir;
    Model m;
    const auto errors = load_manifests({dir.write("k.yaml", R"(
apiVersion: v1
kind: Service
metadata: {name: web, namespace: prod}
spec: {ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: prod, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [10.244.1.5]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny}
spec: {podSelector: {}}
)")},
                                       m);
    ASSERT_TRUE(errors.empty()) << errors.front();
    ASSERT_EQ(m.network_policies().size(), 1u);
    EXPECT_TRUE(m.network_policies().at("default/deny").ingress);
    EXPECT_FALSE(m.network_policies().at("default/deny").egress);
    ASSERT_EQ(m.services().size(), 1u);
    EXPECT_EQ(m.services().at("prod/web").ports.at(0).port, 80);
    EXPECT_EQ(m.endpoint_slices().at("prod/web-1").service, "web");
    EXPECT_TRUE(m.remove("Service", "prod", "web"));
    EXPECT_FALSE(m.remove("Service", "prod", "web"));
    EXPECT_TRUE(m.services().empty());
    EXPECT_TRUE(m.remove("EndpointSlice", "prod", "web-1"));
}

struct ErrorCase {
    const char* name;
    const char* text;
    const char* message;  // expected after "FILE: "
};

class ManifestErrors : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ManifestErrors, NamesFileDocumentObjectAndField) {
    testing::TempDir dir;
    const auto good = dir.write("good.yaml", kCluster);
    const auto bad = dir.write("bad.yaml", GetParam().text);
    Model m;
    const auto errors = load_manifests({good, bad}, m);
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0], bad + ": " + GetParam().message);
    // Nothing applied, not even the good file.
    EXPECT_TRUE(m.nodes().empty());
    EXPECT_TRUE(m.pods().empty());
}

INSTANTIATE_TEST_SUITE_P(
    AllPaths,
    ManifestErrors,
    ::testing::Values(
        ErrorCase{
            "PolicyBadOperator",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: "
            "ns}\nspec: {podSelector: {matchExpressions: [{key: app, operator: Has, values: "
            "[a]}]}}\n",
            "document 1: NetworkPolicy \"ns/p\": spec.podSelector.matchExpressions[0].operator: "
            "\"Has\" is not In, NotIn, Exists or DoesNotExist"},
        ErrorCase{
            "PolicyInWithoutValues",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: "
            "ns}\nspec: {podSelector: {matchExpressions: [{key: app, operator: In}]}}\n",
            "document 1: NetworkPolicy \"ns/p\": spec.podSelector.matchExpressions[0].values: must "
            "be non-empty for In"},
        ErrorCase{"PolicyExistsWithValues",
                  "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, "
                  "namespace: ns}\nspec: {podSelector: {matchExpressions: [{key: app, operator: "
                  "Exists, values: [a]}]}}\n",
                  "document 1: NetworkPolicy \"ns/p\": "
                  "spec.podSelector.matchExpressions[0].values: must be empty for Exists"},
        ErrorCase{"PolicyExceptOutsideCidr",
                  "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, "
                  "namespace: ns}\nspec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: "
                  "10.0.0.0/8, except: [192.0.2.0/24]}}]}]}\n",
                  "document 1: NetworkPolicy \"ns/p\": spec.ingress[0].from[0].ipBlock.except[0]: "
                  "\"192.0.2.0/24\" is not a strict subset of cidr \"10.0.0.0/8\""},
        ErrorCase{
            "PolicyBadCidr",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: "
            "ns}\nspec: {podSelector: {}, egress: [{to: [{ipBlock: {cidr: 10.0.0.300/8}}]}]}\n",
            "document 1: NetworkPolicy \"ns/p\": spec.egress[0].to[0].ipBlock.cidr: "
            "\"10.0.0.300/8\" is not a CIDR"},
        ErrorCase{"PolicyIpBlockAndSelector",
                  "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, "
                  "namespace: ns}\nspec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: "
                  "10.0.0.0/8}, podSelector: {}}]}]}\n",
                  "document 1: NetworkPolicy \"ns/p\": spec.ingress[0].from[0]: may not specify "
                  "both ipBlock and a selector"},
        ErrorCase{"PolicyEmptyPeer",
                  "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, "
                  "namespace: ns}\nspec: {podSelector: {}, ingress: [{from: [{}]}]}\n",
                  "document 1: NetworkPolicy \"ns/p\": spec.ingress[0].from[0]: must specify a "
                  "podSelector, a namespaceSelector or an ipBlock"},
        ErrorCase{
            "PolicyEndPortWithNamedPort",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: "
            "ns}\nspec: {podSelector: {}, ingress: [{ports: [{port: http, endPort: 90}]}]}\n",
            "document 1: NetworkPolicy \"ns/p\": spec.ingress[0].ports[0].endPort: may not be "
            "specified when port is non-numeric"},
        ErrorCase{
            "PolicyEndPortBelowPort",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: "
            "ns}\nspec: {podSelector: {}, ingress: [{ports: [{port: 90, endPort: 80}]}]}\n",
            "document 1: NetworkPolicy \"ns/p\": spec.ingress[0].ports[0].endPort: 80 is less than "
            "port 90"},
        ErrorCase{
            "PolicyBadProtocol",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: "
            "ns}\nspec: {podSelector: {}, ingress: [{ports: [{protocol: ICMP, port: 1}]}]}\n",
            "document 1: NetworkPolicy \"ns/p\": spec.ingress[0].ports[0].protocol: \"ICMP\" is "
            "not TCP, UDP or SCTP"},
        ErrorCase{"PolicyBadPolicyType",
                  "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, "
                  "namespace: ns}\nspec: {podSelector: {}, policyTypes: [Sideways]}\n",
                  "document 1: NetworkPolicy \"ns/p\": spec.policyTypes[0]: \"Sideways\" is not "
                  "Ingress or Egress"},
        ErrorCase{"PolicyUnknownField",
                  "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, "
                  "namespace: ns}\nspec: {podSelector: {}, ingres: [{}]}\n",
                  "document 1: NetworkPolicy \"ns/p\": spec.ingres: unknown field"},
        ErrorCase{"UnknownKind", "apiVersion: v1\nkind: Foo\nmetadata: {name: x}\n",
                  "document 1: unknown kind \"Foo\""},
        ErrorCase{"UnknownApiVersion",
                  "---\nkind: Pod\napiVersion: v2\nmetadata: {name: x, namespace: ns}\n",
                  "document 1: Pod \"ns/x\": apiVersion: \"v2\" is not supported for Pod "
                  "(expected \"v1\")"},
        ErrorCase{"MissingApiVersion", "kind: Node\nmetadata: {name: n}\n",
                  "document 1: Node \"n\": apiVersion: missing (expected \"v1\")"},
        ErrorCase{"MissingName", "apiVersion: v1\nkind: Namespace\nmetadata: {}\n",
                  "document 1: Namespace: metadata.name: missing"},
        ErrorCase{"MissingNamespacedName", "apiVersion: v1\nkind: Pod\nmetadata: {namespace: ns}\n",
                  "document 1: Pod in namespace \"ns\": metadata.name: missing"},
        ErrorCase{"GarbagePodCidr",
                  "apiVersion: v1\nkind: Node\nmetadata: {name: n}\nspec: {podCIDR: nope}\n",
                  "document 1: Node \"n\": spec.podCIDR: \"nope\" is not a CIDR"},
        ErrorCase{"BadPodIp",
                  "---\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: ns}\n"
                  "status: {podIP: 10.0.0.300}\n",
                  "document 2: Pod \"ns/p\": status.podIP: \"10.0.0.300\" is not an IPv4 "
                  "address"},
        ErrorCase{"BadInternalIp",
                  "apiVersion: v1\nkind: Node\nmetadata: {name: n}\nstatus: {addresses: "
                  "[{type: InternalIP, address: x.y}]}\n",
                  "document 1: Node \"n\": status.addresses[0].address: \"x.y\" is not an IP "
                  "address"},
        ErrorCase{"BadVtepAnnotation",
                  "apiVersion: v1\nkind: Node\nmetadata:\n  name: n\n  annotations:\n    "
                  "flannel.alpha.coreos.com/backend-data: '{\"VtepMAC\":\"zz\"}'\n",
                  "document 1: Node \"n\": "
                  "metadata.annotations[flannel.alpha.coreos.com/backend-data].VtepMAC: \"zz\" "
                  "is not a MAC address"},
        ErrorCase{"PortOutOfRange",
                  "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{ports: "
                  "[{containerPort: 70000}]}]}\n",
                  "document 1: Pod \"default/p\": spec.containers[0].ports[0].containerPort: "
                  "70000 is not a port number (1-65535)"},
        ErrorCase{"LabelNotString",
                  "apiVersion: v1\nkind: Namespace\nmetadata: {name: n, labels: {a: 1}}\n",
                  "document 1: Namespace \"n\": metadata.labels.a: must be a string, not number"},
        ErrorCase{"ItemInList",
                  "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  "
                  "metadata: {name: ok}\n- apiVersion: v1\n  kind: Bar\n  metadata: {name: x}\n",
                  "document 1: items[1]: unknown kind \"Bar\""},
        ErrorCase{"UnknownTopLevelField",
                  "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: ns}\nsepc: {}\n",
                  "document 1: Pod \"ns/p\": sepc: unknown field"},
        ErrorCase{"UnknownMetadataField",
                  "apiVersion: v1\nkind: Node\nmetadata: {name: n, lables: {a: b}}\n",
                  "document 1: Node \"n\": metadata.lables: unknown field"},
        ErrorCase{"NotAnObject", "- a\n- b\n", "document 1: must be an object, not array"},
        ErrorCase{"YamlSyntax", "kind: Pod\nmetadata: {name: [\n",
                  "line 3: end of sequence flow not found"}),
    [](const auto& p) { return std::string(p.param.name); });

TEST(Manifest, ReportsEveryErrorAndMissingFiles) {
    testing::TempDir dir;
    const auto bad = dir.write("bad.yaml",
                               "apiVersion: v1\nkind: Foo\nmetadata: {name: x}\n---\n"
                               "apiVersion: v1\nkind: Bar\nmetadata: {name: y}\n");
    Model m;
    const auto errors = load_manifests({bad, dir.path() + "/missing.yaml"}, m);
    EXPECT_THAT(errors, ElementsAre(bad + ": document 1: unknown kind \"Foo\"",
                                    bad + ": document 2: unknown kind \"Bar\"",
                                    dir.path() + "/missing.yaml: cannot open"));
    EXPECT_THROW(expand_manifest_paths({dir.path() + "/missing.yaml"}), ManifestError);
}

TEST(Manifest, BadJsonNamesTheFile) {
    testing::TempDir dir;
    const auto bad = dir.write("bad.json", "{\"kind\": ");
    Model m;
    const auto errors = load_manifests({bad}, m);
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_THAT(errors[0], HasSubstr(bad + ": "));
    EXPECT_THAT(errors[0], HasSubstr("parse error"));
}

TEST(Manifest, DirectoriesExpandToSortedManifestFiles) {
    testing::TempDir dir;
    dir.write("b.yaml", "");
    dir.write("a.json", "{}");
    dir.write("notes.txt", "");
    const auto files = expand_manifest_paths({dir.path()});
    EXPECT_THAT(files, ElementsAre(dir.path() + "/a.json", dir.path() + "/b.yaml"));
}

// "Billion laughs": nine levels of nine aliases each of the level before, 9^9 (387 million)
// strings once expanded, from under 400 bytes. Expanding them all took the manifest fuzzer
// past 2 GB. Refused at once, with go-yaml's message, and the model is left unchanged.
std::string billion_laughs() {
    std::string y = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\n";
    y += "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
    for (int i = 1; i <= 9; ++i) {
        y += fmt::format("l{}: &l{} [", i, i);
        for (int j = 0; j < 9; ++j) {
            y += fmt::format("{}*l{}", j == 0 ? "" : ", ", i - 1);
        }
        y += "]\n";
    }
    return y;
}

TEST(Manifest, ExcessiveAliasingIsRefused) {
    try {
        yaml_documents(billion_laughs(), "lol.yaml");
        FAIL() << "expanded";
    } catch (const ManifestError& e) {
        EXPECT_THAT(e.what(), HasSubstr("lol.yaml: document contains excessive aliasing"));
    }
    testing::TempDir dir;
    const auto path = dir.write("lol.yaml", billion_laughs());
    Model m;
    const auto errors = load_manifests({path}, m);
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_THAT(errors[0], HasSubstr("excessive aliasing"));
    EXPECT_TRUE(m.raw().empty() && m.pods().empty() && m.services().empty());
}

// An anchor whose value contains its own alias is a cycle: refused, not recursed into.
TEST(Manifest, AnAnchorContainingItselfIsRefused) {
    EXPECT_THROW(yaml_documents("a: &x [1, *x]\n", "t"), ManifestError);
    EXPECT_THROW(yaml_documents("a: &x {b: *x}\n", "t"), ManifestError);
}

// What go-yaml accepts is accepted: aliases that expand moderately (a shared label set used
// many times, 100 aliases of a 5-node map, under the 99% share) decode in full.
TEST(Manifest, ModerateAliasingIsAccepted) {
    std::string y = "base: &b {app: web, tier: front, team: a, env: prod, zone: z1}\nuses:\n";
    for (int i = 0; i < 500; ++i) {
        y += "  - *b\n";
    }
    const auto docs = yaml_documents(y, "t");
    ASSERT_EQ(docs.size(), 1u);
    ASSERT_EQ(docs[0]["uses"].size(), 500u);
    EXPECT_EQ(docs[0]["uses"][499]["zone"], "z1");
}

TEST(Manifest, YamlScalarsFollowTheCoreSchema) {
    const auto docs = yaml_documents(
        "a: 1\nb: -2\nc: 1.5\nd: true\ne: null\nf: ~\ng: '1'\nh: yes\ni: 0x1f\nj: \"\"\n", "t");
    ASSERT_EQ(docs.size(), 1u);
    const auto& d = docs[0];
    EXPECT_EQ(d["a"], 1);
    EXPECT_EQ(d["b"], -2);
    EXPECT_EQ(d["c"], 1.5);
    EXPECT_EQ(d["d"], true);
    EXPECT_TRUE(d["e"].is_null());
    EXPECT_TRUE(d["f"].is_null());
    EXPECT_EQ(d["g"], "1");
    EXPECT_EQ(d["h"], "yes");  // YAML 1.2: only true/false are booleans
    EXPECT_EQ(d["i"], 31);
    EXPECT_EQ(d["j"], "");
}

TEST(Model, UpsertFromJsonAndRemove) {
    Model m;
    m.upsert(nlohmann::json::parse(
        R"({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"ns"}})"));
    EXPECT_EQ(m.pods().size(), 1u);
    EXPECT_THROW(m.upsert(nlohmann::json::parse(R"({"apiVersion":"v1","kind":"Pod",
        "metadata":{"name":"p","namespace":"ns"},"status":{"podIP":"bad"}})")),
                 ModelError);
    EXPECT_FALSE(m.pods().at("ns/p").pod_ip.has_value());  // the bad update changed nothing
    EXPECT_TRUE(m.remove("Pod", "ns", "p"));
    EXPECT_TRUE(m.pods().empty());
    EXPECT_THROW(m.remove("Foo", "", "x"), ModelError);
}

}  // namespace
}  // namespace kdp::control
