// kubeconfig and in-cluster config parsing: fields, precedence, relative paths, and errors that
// name the field at fault.
#include "control/k8s/kubeconfig.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kdp::control::k8s {
namespace {

using ::testing::HasSubstr;

class TempDir {
public:
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "kdp-kubeconfig-XXXXXX");
        path_ = ::mkdtemp(tmpl.data());
    }
    ~TempDir() { std::filesystem::remove_all(path_); }
    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path write(const std::string& name, const std::string& text) const {
        std::ofstream(path_ / name) << text;
        return path_ / name;
    }

private:
    std::filesystem::path path_;
};

// "-----BEGIN CERTIFICATE-----\nCA\n" and friends, base64-encoded.
constexpr const char* kCaData = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkNBCg==";

std::string two_contexts(const std::string& extra_user = "") {
    return std::string(R"(apiVersion: v1
kind: Config
current-context: prod
contexts:
- name: prod
  context: {cluster: c1, user: admin, namespace: kube-system}
- name: dev
  context: {cluster: c2, user: dev}
clusters:
- name: c1
  cluster:
    server: https://10.96.0.1:6443
    certificate-authority-data: )") +
           kCaData + R"(
- name: c2
  cluster:
    server: https://[fd00::1]/prefix/
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: abc.def
- name: dev
  user:
    tokenFile: tok
)" + extra_user;
}

TEST(Kubeconfig, CurrentContextSelectsClusterUserAndNamespace) {
    TempDir dir;
    const ClusterConfig c = parse_kubeconfig(two_contexts(), dir.path());
    EXPECT_EQ(c.server, "https://10.96.0.1:6443");
    EXPECT_EQ(c.host, "10.96.0.1");
    EXPECT_EQ(c.port, "6443");
    EXPECT_EQ(c.base_path, "");
    EXPECT_EQ(c.ca_pem, "-----BEGIN CERTIFICATE-----\nCA\n");
    EXPECT_FALSE(c.insecure_skip_tls_verify);
    EXPECT_EQ(c.token, "abc.def");
    EXPECT_TRUE(c.token_file.empty());
    EXPECT_EQ(c.default_namespace, "kube-system");
}

TEST(Kubeconfig, ExplicitContextWinsAndRelativeTokenFileResolvesToKubeconfigDir) {
    TempDir dir;
    dir.write("tok", "t0ken\n");
    const ClusterConfig c = parse_kubeconfig(two_contexts(), dir.path(), "dev");
    EXPECT_EQ(c.host, "fd00::1");
    EXPECT_EQ(c.port, "443");
    EXPECT_EQ(c.base_path, "/prefix");
    EXPECT_TRUE(c.insecure_skip_tls_verify);
    EXPECT_TRUE(c.ca_pem.empty());
    EXPECT_EQ(c.token_file, dir.path() / "tok");
}

TEST(Kubeconfig, ClientCertificateFromFilesAndData) {
    TempDir dir;
    dir.write("ca.crt", "CA-PEM");
    dir.write("client.crt", "CERT-PEM");
    const std::string yaml = R"(current-context: x
contexts: [{name: x, context: {cluster: c, user: u}}]
clusters: [{name: c, cluster: {server: "https://localhost:8443", certificate-authority: ca.crt}}]
users:
- name: u
  user:
    client-certificate: client.crt
    client-key-data: S0VZLVBFTQ==
)";
    const std::filesystem::path file = dir.write("config", yaml);
    const ClusterConfig c = load_kubeconfig(file);
    EXPECT_EQ(c.ca_pem, "CA-PEM");
    EXPECT_EQ(c.client_cert_pem, "CERT-PEM");
    EXPECT_EQ(c.client_key_pem, "KEY-PEM");
    EXPECT_EQ(c.host, "localhost");
}

void expect_error(const std::string& yaml, const std::string& needle, std::string_view ctx = {}) {
    TempDir dir;
    try {
        parse_kubeconfig(yaml, dir.path(), ctx, "cfg");
        ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const ConfigError& e) {
        EXPECT_THAT(e.what(), HasSubstr(needle));
    }
}

TEST(Kubeconfig, ErrorsNameTheFieldAtFault) {
    expect_error("kind: Config\n", "'current-context' is not set");
    expect_error("current-context: nope\ncontexts: []\n", "no entry named 'nope' in 'contexts'");
    expect_error(two_contexts(), "no entry named 'other'", "other");
    expect_error(R"(current-context: x
contexts: [{name: x, context: {cluster: c}}]
clusters: [{name: c, cluster: {certificate-authority-data: QQ==}}]
)",
                 "clusters[name=c].cluster.server is missing");
    expect_error(R"(current-context: x
contexts: [{name: x, context: {cluster: c}}]
clusters: [{name: c, cluster: {server: "http://1.2.3.4"}}]
)",
                 "must be an https:// URL");
    expect_error(R"(current-context: x
contexts: [{name: x, context: {cluster: c}}]
clusters: [{name: c, cluster: {server: "https://h:99999"}}]
)",
                 "out of range");
    expect_error(R"(current-context: x
contexts: [{name: x, context: {cluster: c}}]
clusters: [{name: c, cluster: {server: "https://h", certificate-authority-data: "not*base64"}}]
)",
                 "clusters[name=c].cluster.certificate-authority-data: invalid base64");
    expect_error(R"(current-context: x
contexts: [{name: x, context: {cluster: c}}]
clusters: [{name: c, cluster: {server: "https://h", certificate-authority: /nonexistent/ca}}]
)",
                 "certificate-authority: cannot read /nonexistent/ca");
    expect_error(R"(current-context: x
contexts: [{name: x, context: {cluster: c}}]
clusters: [{name: c, cluster: {server: "https://h", insecure-skip-tls-verify: true,
                               certificate-authority-data: QQ==}}]
)",
                 "mutually exclusive");
    expect_error(R"(current-context: x
contexts: [{name: x, context: {cluster: c, user: u}}]
clusters: [{name: c, cluster: {server: "https://h"}}]
users: [{name: u, user: {client-certificate-data: QQ==}}]
)",
                 "client-certificate is set but client-key is missing");
    expect_error(R"(current-context: x
contexts: [{name: x, context: {cluster: c, user: u}}]
clusters: [{name: c, cluster: {server: "https://h"}}]
users: [{name: u, user: {exec: {command: aws}}}]
)",
                 "users[name=u].user.exec is not supported");
    expect_error("{{{", "not valid YAML");
}

TEST(Base64, DecodesPaddingAndRejectsJunk) {
    EXPECT_EQ(decode_base64("", "f"), "");
    EXPECT_EQ(decode_base64("Zg==", "f"), "f");
    EXPECT_EQ(decode_base64("Zm8=", "f"), "fo");
    EXPECT_EQ(decode_base64("Zm9v\nYmFy", "f"), "foobar");
    EXPECT_THROW(decode_base64("Zg=", "f"), ConfigError);
    EXPECT_THROW(decode_base64("Z===", "f"), ConfigError);
    EXPECT_THROW(decode_base64("Zg==Zg==", "f"), ConfigError);
    EXPECT_THROW(decode_base64("Zm9!", "f"), ConfigError);
}

TEST(InCluster, ReadsEnvironmentAndServiceAccountFiles) {
    TempDir dir;
    InClusterPaths paths{dir.write("token", "sa-token\n"), dir.write("ca.crt", "SA-CA"),
                         dir.write("namespace", "kdp-system\n")};
    std::map<std::string, std::string> env{{"KUBERNETES_SERVICE_HOST", "10.96.0.1"},
                                           {"KUBERNETES_SERVICE_PORT", "443"}};
    auto getenv = [&](const std::string& k) -> std::optional<std::string> {
        auto it = env.find(k);
        return it == env.end() ? std::nullopt : std::optional(it->second);
    };
    ClusterConfig c = load_in_cluster(paths, getenv);
    EXPECT_EQ(c.server, "https://10.96.0.1:443");
    EXPECT_EQ(c.ca_pem, "SA-CA");
    EXPECT_EQ(c.token_file, paths.token);
    EXPECT_EQ(c.default_namespace, "kdp-system");

    env["KUBERNETES_SERVICE_HOST"] = "fd00::1";
    c = load_in_cluster(paths, getenv);
    EXPECT_EQ(c.server, "https://[fd00::1]:443");
    EXPECT_EQ(c.host, "fd00::1");

    env.erase("KUBERNETES_SERVICE_PORT");
    try {
        load_in_cluster(paths, getenv);
        ADD_FAILURE() << "no error without KUBERNETES_SERVICE_PORT";
    } catch (const ConfigError& e) {
        EXPECT_THAT(e.what(), HasSubstr("KUBERNETES_SERVICE_PORT is not set"));
    }
    env["KUBERNETES_SERVICE_PORT"] = "443";
    paths.token = dir.path() / "missing";
    EXPECT_THROW(load_in_cluster(paths, getenv), ConfigError);
}

}  // namespace
}  // namespace kdp::control::k8s
