// Where the Kubernetes API is and how to authenticate to it: a kubeconfig file (as kubectl reads
// it) or the in-cluster service account. Pure parsing plus file reads; no network. Any thread.
//
// Errors are ConfigError, whose message names the file and the field that is missing or bad, so
// an operator can fix the kubeconfig without reading this code.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace kdp::control::k8s {

class ConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Everything Client needs. PEM material is held as text, already read from files or decoded from
// the *-data fields, so a Client never reads the kubeconfig's files itself (except token_file).
struct ClusterConfig {
    std::string server;     // as written, e.g. "https://10.96.0.1:443"
    std::string host;       // "10.96.0.1", "localhost", "::1" (no brackets)
    std::string port;       // "443" when the URL has none
    std::string base_path;  // path prefix of the server URL without trailing '/', usually ""
    std::string ca_pem;     // empty: verify against the system trust store
    bool insecure_skip_tls_verify = false;
    std::string client_cert_pem;
    std::string client_key_pem;
    std::string token;                 // bearer token, read once
    std::filesystem::path token_file;  // if set, re-read before every request (tokens rotate)
    std::string default_namespace;     // the context's or service account's namespace, or ""
};

// Parses `yaml` (a kubeconfig). Relative file paths resolve against `base_dir`, as kubectl does
// (relative to the kubeconfig's own directory). `context` empty means current-context.
ClusterConfig parse_kubeconfig(std::string_view yaml,
                               const std::filesystem::path& base_dir,
                               std::string_view context = {},
                               std::string_view source_name = "kubeconfig");

// Reads and parses a kubeconfig file.
ClusterConfig load_kubeconfig(const std::filesystem::path& file, std::string_view context = {});

// The files a pod's service account mounts; overridable so tests need no real pod.
struct InClusterPaths {
    std::filesystem::path token = "/var/run/secrets/kubernetes.io/serviceaccount/token";
    std::filesystem::path ca = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
    std::filesystem::path namespace_file =
        "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
};

using GetEnv = std::function<std::optional<std::string>(const std::string&)>;

// In-cluster config from KUBERNETES_SERVICE_HOST/PORT and the service account files. `getenv`
// defaults to the process environment. With `api_server` (set_api_server()'s form) the
// environment is not read: that address is used instead.
ClusterConfig load_in_cluster(const InClusterPaths& paths = {},
                              const GetEnv& getenv = {},
                              std::string_view api_server = {});

// Points `cfg` at the API server `address` instead of the one it names: "HOST:PORT",
// "[V6]:PORT", "HOST" (port 443) or an https:// URL. For kube-proxy's replacement, which must
// reach the API server by its real address, never through the `kubernetes` Service it serves
// itself. Credentials and CA stay; the server's certificate must name that address.
void set_api_server(ClusterConfig& cfg, std::string_view address);

// Splits an https URL into host, port and path prefix; throws ConfigError for anything but https.
void parse_server_url(std::string_view url, ClusterConfig& cfg);

// Strict RFC 4648 base64 (whitespace ignored); throws ConfigError naming `field` when invalid.
std::string decode_base64(std::string_view in, std::string_view field);

}  // namespace kdp::control::k8s
