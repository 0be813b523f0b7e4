#include "control/k8s/kubeconfig.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <fmt/core.h>
#include <yaml-cpp/yaml.h>

namespace kdp::control::k8s {
namespace {

std::string read_file(const std::filesystem::path& path, std::string_view what) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw ConfigError(fmt::format("{}: cannot read {}", what, path.string()));
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::filesystem::path resolve(const std::filesystem::path& base, const std::string& p) {
    std::filesystem::path path(p);
    return path.is_absolute() ? path : base / path;
}

// Finds the entry named `name` in a kubeconfig list (clusters, users, contexts) and returns its
// `inner` map (cluster, user, context).
YAML::Node find_named(const YAML::Node& root,
                      const char* list,
                      const char* inner,
                      const std::string& name,
                      std::string_view src) {
    const YAML::Node entries = root[list];
    if (entries && !entries.IsSequence()) {
        throw ConfigError(fmt::format("{}: '{}' must be a list", src, list));
    }
    if (entries) {
        for (const auto& e : entries) {
            if (e["name"] && e["name"].as<std::string>() == name) {
                const YAML::Node body = e[inner];
                if (!body || !body.IsMap()) {
                    throw ConfigError(
                        fmt::format("{}: {}[name={}] has no '{}' map", src, list, name, inner));
                }
                return body;
            }
        }
    }
    throw ConfigError(fmt::format("{}: no entry named '{}' in '{}'", src, name, list));
}

std::string str_field(const YAML::Node& map, const char* key, std::string_view where) {
    const YAML::Node v = map[key];
    if (!v) {
        return {};
    }
    if (!v.IsScalar()) {
        throw ConfigError(fmt::format("{}.{} must be a string", where, key));
    }
    return v.as<std::string>();
}

int b64_value(char c) {
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

}  // namespace

std::string decode_base64(std::string_view in, std::string_view field) {
    std::string clean;
    clean.reserve(in.size());
    for (char c : in) {
        if (c != ' ' && c != '\n' && c != '\r' && c != '\t') {
            clean.push_back(c);
        }
    }
    auto bad = [&](std::string_view why) {
        return ConfigError(fmt::format("{}: invalid base64 ({})", field, why));
    };
    if (clean.size() % 4 != 0) {
        throw bad("length is not a multiple of 4");
    }
    std::string out;
    out.reserve(clean.size() / 4 * 3);
    for (size_t i = 0; i < clean.size(); i += 4) {
        std::array<int, 4> v{};
        int pad = 0;
        for (size_t j = 0; j < 4; ++j) {
            const char c = clean[i + j];
            if (c == '=') {
                // Padding only in the last quantum, only in its last two places, and contiguous.
                if (i + 4 != clean.size() || j < 2) {
                    throw bad("misplaced '='");
                }
                ++pad;
                v[j] = 0;
                continue;
            }
            if (pad > 0) {
                throw bad("data after '='");
            }
            v[j] = b64_value(c);
            if (v[j] < 0) {
                throw bad(fmt::format("character '{}' at {}", c, i + j));
            }
        }
        const uint32_t n = (uint32_t(v[0]) << 18) | (uint32_t(v[1]) << 12) | (uint32_t(v[2]) << 6) |
                           uint32_t(v[3]);
        out.push_back(char((n >> 16) & 0xff));
        if (pad < 2) {
            out.push_back(char((n >> 8) & 0xff));
        }
        if (pad < 1) {
            out.push_back(char(n & 0xff));
        }
    }
    return out;
}

void parse_server_url(std::string_view url, ClusterConfig& cfg) {
    constexpr std::string_view kScheme = "https://";
    if (url.substr(0, kScheme.size()) != kScheme) {
        throw ConfigError(fmt::format(
            "server '{}' must be an https:// URL (kdp does not talk to the API in cleartext)",
            url));
    }
    std::string_view rest = url.substr(kScheme.size());
    const size_t slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
    while (!path.empty() && path.back() == '/') {
        path.remove_suffix(1);
    }
    std::string_view host;
    std::string_view port;
    if (!authority.empty() && authority.front() == '[') {  // IPv6 literal, RFC 3986 3.2.2
        const size_t close = authority.find(']');
        if (close == std::string_view::npos) {
            throw ConfigError(fmt::format("server '{}': unterminated '[' in host", url));
        }
        host = authority.substr(1, close - 1);
        std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') {
                throw ConfigError(fmt::format("server '{}': junk after IPv6 host", url));
            }
            port = after.substr(1);
        }
    } else {
        const size_t colon = authority.rfind(':');
        host = authority.substr(0, colon);
        if (colon != std::string_view::npos) {
            port = authority.substr(colon + 1);
        }
    }
    if (host.empty()) {
        throw ConfigError(fmt::format("server '{}' has no host", url));
    }
    if (port.empty()) {
        port = "443";
    }
    for (char c : port) {
        if (c < '0' || c > '9') {
            throw ConfigError(fmt::format("server '{}': bad port '{}'", url, port));
        }
    }
    if (port.size() > 5 || std::stoul(std::string(port)) > 65535 ||
        std::stoul(std::string(port)) == 0) {
        throw ConfigError(fmt::format("server '{}': port {} out of range", url, port));
    }
    cfg.server = std::string(url);
    cfg.host = std::string(host);
    cfg.port = std::string(port);
    cfg.base_path = std::string(path);
}

ClusterConfig parse_kubeconfig(std::string_view yaml,
                               const std::filesystem::path& base_dir,
                               std::string_view context,
                               std::string_view source_name) {
    const std::string src(source_name);
    YAML::Node root;
    try {
        root = YAML::Load(std::string(yaml));
    } catch (const YAML::Exception& e) {
        throw ConfigError(fmt::format("{}: not valid YAML: {}", src, e.what()));
    }
    if (!root.IsMap()) {
        throw ConfigError(fmt::format("{}: not a kubeconfig (top level is not a map)", src));
    }
    std::string ctx_name(context);
    if (ctx_name.empty()) {
        ctx_name = str_field(root, "current-context", src);
        if (ctx_name.empty()) {
            throw ConfigError(
                fmt::format("{}: 'current-context' is not set and no context was "
                            "given",
                            src));
        }
    }
    const YAML::Node ctx = find_named(root, "contexts", "context", ctx_name, src);
    const std::string ctx_where = fmt::format("{}: contexts[name={}].context", src, ctx_name);
    const std::string cluster_name = str_field(ctx, "cluster", ctx_where);
    if (cluster_name.empty()) {
        throw ConfigError(fmt::format("{}.cluster is missing", ctx_where));
    }
    const std::string user_name = str_field(ctx, "user", ctx_where);

    ClusterConfig cfg;
    cfg.default_namespace = str_field(ctx, "namespace", ctx_where);

    const YAML::Node cluster = find_named(root, "clusters", "cluster", cluster_name, src);
    const std::string cl_where = fmt::format("{}: clusters[name={}].cluster", src, cluster_name);
    const std::string server = str_field(cluster, "server", cl_where);
    if (server.empty()) {
        throw ConfigError(fmt::format("{}.server is missing", cl_where));
    }
    try {
        parse_server_url(server, cfg);
    } catch (const ConfigError& e) {
        throw ConfigError(fmt::format("{}.server: {}", cl_where, e.what()));
    }
    const std::string insecure = str_field(cluster, "insecure-skip-tls-verify", cl_where);
    if (!insecure.empty() && insecure != "true" && insecure != "false") {
        throw ConfigError(fmt::format("{}.insecure-skip-tls-verify must be true or false, not '{}'",
                                      cl_where, insecure));
    }
    cfg.insecure_skip_tls_verify = insecure == "true";
    const std::string ca_data = str_field(cluster, "certificate-authority-data", cl_where);
    const std::string ca_file = str_field(cluster, "certificate-authority", cl_where);
    if (!ca_data.empty()) {
        cfg.ca_pem = decode_base64(ca_data, cl_where + ".certificate-authority-data");
    } else if (!ca_file.empty()) {
        cfg.ca_pem = read_file(resolve(base_dir, ca_file), cl_where + ".certificate-authority");
    }
    if (cfg.insecure_skip_tls_verify && !cfg.ca_pem.empty()) {
        // kubectl refuses this combination too; silently ignoring the CA would surprise.
        throw ConfigError(fmt::format(
            "{}: certificate-authority and insecure-skip-tls-verify are mutually exclusive",
            cl_where));
    }

    if (!user_name.empty()) {
        const YAML::Node user = find_named(root, "users", "user", user_name, src);
        const std::string u_where = fmt::format("{}: users[name={}].user", src, user_name);
        for (const char* unsupported : {"exec", "auth-provider", "username", "password"}) {
            if (user[unsupported]) {
                throw ConfigError(fmt::format(
                    "{}.{} is not supported by kdp-control; use a token, tokenFile or a client "
                    "certificate",
                    u_where, unsupported));
            }
        }
        auto pem = [&](const char* data_key, const char* file_key) {
            const std::string data = str_field(user, data_key, u_where);
            if (!data.empty()) {
                return decode_base64(data, u_where + "." + data_key);
            }
            const std::string file = str_field(user, file_key, u_where);
            if (!file.empty()) {
                return read_file(resolve(base_dir, file), u_where + "." + file_key);
            }
            return std::string();
        };
        cfg.client_cert_pem = pem("client-certificate-data", "client-certificate");
        cfg.client_key_pem = pem("client-key-data", "client-key");
        if (cfg.client_cert_pem.empty() != cfg.client_key_pem.empty()) {
            throw ConfigError(
                fmt::format("{}: {} is set but {} is missing", u_where,
                            cfg.client_cert_pem.empty() ? "client-key" : "client-certificate",
                            cfg.client_cert_pem.empty() ? "client-certificate" : "client-key"));
        }
        cfg.token = str_field(user, "token", u_where);
        const std::string token_file = str_field(user, "tokenFile", u_where);
        if (cfg.token.empty() && !token_file.empty()) {
            cfg.token_file = resolve(base_dir, token_file);
            read_file(cfg.token_file, u_where + ".tokenFile");  // fail now, not at first request
        }
    }
    return cfg;
}

ClusterConfig load_kubeconfig(const std::filesystem::path& file, std::string_view context) {
    const std::string text = read_file(file, "kubeconfig");
    return parse_kubeconfig(text, file.parent_path(), context, file.string());
}

void set_api_server(ClusterConfig& cfg, std::string_view address) {
    if (address.empty()) {
        throw ConfigError("--api-server: empty address");
    }
    if (address.find("://") != std::string_view::npos) {
        parse_server_url(address, cfg);
        return;
    }
    // A bare IPv6 literal has several colons and no brackets: no port in it.
    const bool bare_v6 =
        address.front() != '[' && std::count(address.begin(), address.end(), ':') > 1;
    const std::string url =
        bare_v6 ? fmt::format("https://[{}]", address) : fmt::format("https://{}", address);
    parse_server_url(url, cfg);
}

ClusterConfig load_in_cluster(const InClusterPaths& paths,
                              const GetEnv& getenv,
                              std::string_view api_server) {
    auto env = [&](const std::string& name) -> std::string {
        std::optional<std::string> v;
        if (getenv) {
            v = getenv(name);
        } else if (const char* p = std::getenv(name.c_str())) {
            v = p;
        }
        if (!v || v->empty()) {
            throw ConfigError(
                fmt::format("in-cluster config: environment variable {} is not set "
                            "(not running in a pod?)",
                            name));
        }
        return *v;
    };
    ClusterConfig cfg;
    if (!api_server.empty()) {
        set_api_server(cfg, api_server);
    } else {
        const std::string host = env("KUBERNETES_SERVICE_HOST");
        const std::string port = env("KUBERNETES_SERVICE_PORT");
        const bool v6 = host.find(':') != std::string::npos;
        parse_server_url(fmt::format("https://{}{}{}:{}", v6 ? "[" : "", host, v6 ? "]" : "", port),
                         cfg);
    }
    cfg.ca_pem = read_file(paths.ca, "in-cluster config: service account CA");
    cfg.token_file = paths.token;
    read_file(paths.token, "in-cluster config: service account token");
    std::error_code ec;
    if (std::filesystem::exists(paths.namespace_file, ec)) {
        cfg.default_namespace = read_file(paths.namespace_file, "in-cluster config: namespace");
        while (!cfg.default_namespace.empty() &&
               (cfg.default_namespace.back() == '\n' || cfg.default_namespace.back() == ' ')) {
            cfg.default_namespace.pop_back();
        }
    }
    return cfg;
}

}  // namespace kdp::control::k8s
