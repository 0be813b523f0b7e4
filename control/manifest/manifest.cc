#include "manifest/manifest.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace kdp::control {
namespace {

using nlohmann::json;

bool ends_with(const std::string& s, std::string_view suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix.data(), suffix.size()) == 0;
}

}  // namespace

json yaml_plain_scalar(const std::string& s) {
    static const std::regex kNull("~|null|Null|NULL|");
    static const std::regex kTrue("true|True|TRUE");
    static const std::regex kFalse("false|False|FALSE");
    static const std::regex kInt("[-+]?[0-9]+");
    static const std::regex kHex("0x[0-9a-fA-F]+");
    static const std::regex kOct("0o[0-7]+");
    static const std::regex kFloat("[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?");
    if (std::regex_match(s, kNull)) {
        return nullptr;
    }
    if (std::regex_match(s, kTrue)) {
        return true;
    }
    if (std::regex_match(s, kFalse)) {
        return false;
    }
    try {
        if (std::regex_match(s, kInt)) {
            return s[0] == '-' ? json(std::stoll(s)) : json(std::stoull(s));
        }
        if (std::regex_match(s, kHex)) {
            return std::stoull(s.substr(2), nullptr, 16);
        }
        if (std::regex_match(s, kOct)) {
            return std::stoull(s.substr(2), nullptr, 8);
        }
        if (std::regex_match(s, kFloat)) {
            return std::stod(s);
        }
    } catch (const std::out_of_range&) {
        return s;  // too large for a number: keep the text
    }
    return s;
}

namespace {

// YAML aliases make a document a graph: a few lines of anchors, each a list of aliases of the
// one before ("billion laughs"), expand to billions of JSON nodes, and an anchor may even
// contain itself. The API server's YAML decoder (go-yaml, vendored as sigs.k8s.io/yaml
// goyaml.v2/v3, decode.go: allowedAliasRatio; CVE-2019-11253) refuses a document with
// "excessive aliasing": more than 100 nodes decoded inside aliases and more than 1000 in all,
// with the aliased share above 99% up to 400,000 nodes, falling linearly to 10% at 4,000,000.
// The same rule here, so that kdp refuses what it refuses and accepts all it accepts.
class AliasBudget {
public:
    // Called for every node decoded (keys included, as go-yaml counts them).
    void count(const std::string& source) {
        ++decoded_;
        if (alias_depth_ > 0) {
            ++aliased_;
        }
        if (aliased_ > 100 && decoded_ > 1000 &&
            static_cast<double>(aliased_) / static_cast<double>(decoded_) > allowed_ratio()) {
            throw ManifestError(fmt::format(
                "{}: document contains excessive aliasing ({} nodes, {} of them from aliases)",
                source, decoded_, aliased_));
        }
    }
    uint64_t alias_depth_ = 0;  // > 0 while decoding a node met before (an alias of it)

private:
    double allowed_ratio() const {
        constexpr double kLow = 400000;
        constexpr double kHigh = 4000000;
        const auto d = static_cast<double>(decoded_);
        if (d <= kLow) {
            return 0.99;
        }
        if (d >= kHigh) {
            return 0.10;
        }
        return 0.99 - 0.89 * ((d - kLow) / (kHigh - kLow));
    }
    uint64_t decoded_ = 0;
    uint64_t aliased_ = 0;
};

// A node's identity: yaml-cpp resolves an alias to the anchored node itself, whose mark is
// where the anchor's value starts. A collection and its first key can share a position, so
// the type is part of it (keys are never decoded as nodes here).
using NodeId = std::pair<int, int>;
NodeId node_id(const YAML::Node& n) {
    return {n.Mark().pos, static_cast<int>(n.Type())};
}

struct Decoder {
    const std::string& source;
    AliasBudget budget;
    std::set<NodeId> seen;  // collections decoded once already
    std::set<NodeId> open;  // collections being decoded (the path from the root)

    json to_json(const YAML::Node& n) {
        budget.count(source);
        switch (n.Type()) {
            case YAML::NodeType::Undefined:
            case YAML::NodeType::Null:
                return nullptr;
            case YAML::NodeType::Scalar:
                // yaml-cpp tags quoted and explicitly !!str scalars with "!" or a full tag.
                if (n.Tag() == "?") {
                    return yaml_plain_scalar(n.Scalar());
                }
                return n.Scalar();
            case YAML::NodeType::Sequence:
            case YAML::NodeType::Map:
                break;
        }
        const NodeId id = node_id(n);
        if (!open.insert(id).second) {
            throw ManifestError(fmt::format("{}: line {}: an anchor's value contains itself",
                                            source, n.Mark().line + 1));
        }
        const bool alias = !seen.insert(id).second;
        budget.alias_depth_ += alias ? 1 : 0;
        json out;
        if (n.Type() == YAML::NodeType::Sequence) {
            out = json::array();
            for (const auto& item : n) {
                out.push_back(to_json(item));
            }
        } else {
            out = json::object();
            for (const auto& kv : n) {
                budget.count(source);
                out[kv.first.as<std::string>()] = to_json(kv.second);
            }
        }
        budget.alias_depth_ -= alias ? 1 : 0;
        open.erase(id);
        return out;
    }
};

}  // namespace

std::vector<std::string> expand_manifest_paths(const std::vector<std::string>& paths) {
    namespace fs = std::filesystem;
    std::vector<std::string> out;
    for (const auto& p : paths) {
        std::error_code ec;
        const auto st = fs::status(p, ec);
        if (ec || !fs::exists(st)) {
            throw ManifestError(fmt::format("{}: no such file or directory", p));
        }
        if (!fs::is_directory(st)) {
            out.push_back(p);
            continue;
        }
        std::vector<std::string> files;
        for (const auto& entry : fs::directory_iterator(p)) {
            const std::string name = entry.path().string();
            if (entry.is_regular_file() &&
                (ends_with(name, ".yaml") || ends_with(name, ".yml") || ends_with(name, ".json"))) {
                files.push_back(name);
            }
        }
        std::sort(files.begin(), files.end());
        out.insert(out.end(), files.begin(), files.end());
    }
    return out;
}

std::vector<json> yaml_documents(const std::string& text, const std::string& source) {
    std::vector<json> docs;
    try {
        for (const auto& doc : YAML::LoadAll(text)) {
            docs.push_back(Decoder{source, {}, {}, {}}.to_json(doc));
        }
    } catch (const YAML::Exception& e) {
        throw ManifestError(fmt::format("{}: line {}: {}", source, e.mark.line + 1, e.msg));
    }
    return docs;
}

std::vector<json> read_documents(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        throw ManifestError(fmt::format("{}: cannot open", path));
    }
    std::stringstream buf;
    buf << in.rdbuf();
    if (in.bad()) {
        throw ManifestError(fmt::format("{}: cannot read", path));
    }
    if (ends_with(path, ".json")) {
        try {
            return {json::parse(buf.str())};
        } catch (const json::parse_error& e) {
            throw ManifestError(fmt::format("{}: {}", path, e.what()));
        }
    }
    return yaml_documents(buf.str(), path);
}

namespace {

// Every object of the files in order (a List's items one by one), given to `each`, which
// throws ModelError for a bad one; the errors as load_manifests describes them.
template <class Each>
std::vector<std::string> for_each_object(const std::vector<std::string>& paths, Each&& each) {
    std::vector<std::string> errors;
    for (const auto& path : paths) {
        std::vector<json> docs;
        try {
            docs = read_documents(path);
        } catch (const ManifestError& e) {
            errors.push_back(e.what());
            continue;
        }
        for (size_t d = 0; d < docs.size(); ++d) {
            const json& doc = docs[d];
            const std::string where = fmt::format("{}: document {}", path, d + 1);
            if (doc.is_null()) {
                continue;  // empty document, e.g. a trailing `---`
            }
            if (!doc.is_object()) {
                errors.push_back(
                    fmt::format("{}: must be an object, not {}", where, doc.type_name()));
                continue;
            }
            const auto kind = doc.find("kind");
            if (kind != doc.end() && kind->is_string() && ends_with(*kind, "List")) {
                const auto items = doc.find("items");
                if (items == doc.end() || !items->is_array()) {
                    errors.push_back(fmt::format("{}: {}: items: missing or not a list", where,
                                                 kind->get<std::string>()));
                    continue;
                }
                for (size_t i = 0; i < items->size(); ++i) {
                    try {
                        each((*items)[i]);
                    } catch (const ModelError& e) {
                        errors.push_back(fmt::format("{}: items[{}]: {}", where, i, e.what()));
                    }
                }
                continue;
            }
            try {
                each(doc);
            } catch (const ModelError& e) {
                errors.push_back(fmt::format("{}: {}", where, e.what()));
            }
        }
    }
    return errors;
}

std::string string_at(const json& obj, const char* a, const char* b = nullptr) {
    const auto x = obj.find(a);
    if (x == obj.end()) {
        return "";
    }
    if (b == nullptr) {
        return x->is_string() ? x->get<std::string>() : "";
    }
    if (!x->is_object()) {
        return "";
    }
    const auto y = x->find(b);
    return y != x->end() && y->is_string() ? y->get<std::string>() : "";
}

// Removes the object `obj` names (kind, metadata.namespace, metadata.name; the rest is not
// read, so a manifest as applied can be given); a Namespace takes its objects with it, as the
// API server's namespace deletion does.
void remove_object(Model& next, const json& obj) {
    if (!obj.is_object()) {
        throw ModelError(fmt::format("object must be a map, not {}", obj.type_name()));
    }
    const std::string kind = string_at(obj, "kind");
    const std::string name = string_at(obj, "metadata", "name");
    const std::string ns = string_at(obj, "metadata", "namespace");
    if (kind.empty()) {
        throw ModelError("kind: missing");
    }
    if (name.empty()) {
        throw ModelError(fmt::format("{}: metadata.name: missing", kind));
    }
    if (kind == "Namespace") {
        const std::string prefix = name + "/";
        std::vector<std::pair<std::string, std::string>> inside;  // kind, name
        const auto collect = [&](const auto& map, const char* k) {
            for (const auto& [key, _] : map) {
                if (key.compare(0, prefix.size(), prefix) == 0) {
                    inside.emplace_back(k, key.substr(prefix.size()));
                }
            }
        };
        collect(next.pods(), "Pod");
        collect(next.services(), "Service");
        collect(next.endpoint_slices(), "EndpointSlice");
        collect(next.network_policies(), "NetworkPolicy");
        for (const auto& [k, n] : inside) {
            next.remove(k, name, n);
        }
    }
    if (!next.remove(kind, ns, name)) {
        throw ModelError(
            fmt::format("{} {}{}: not in the manifests, nothing to delete", kind,
                        ns.empty() || kind == "Node" || kind == "Namespace" ? "" : ns + "/", name));
    }
}

// `op(copy, object)` for every object of the files on a copy of `model`, which replaces it
// only if no object failed: a bad input never half-applies.
template <class Op>
std::vector<std::string> change_model(const std::vector<std::string>& paths,
                                      Model& model,
                                      Op&& op) {
    Model next = model;
    const std::vector<std::string> errors =
        for_each_object(paths, [&](const json& obj) { op(next, obj); });
    if (errors.empty()) {
        model = std::move(next);
    }
    return errors;
}

}  // namespace

std::vector<std::string> load_manifests(const std::vector<std::string>& paths, Model& model) {
    return change_model(paths, model, [](Model& m, const json& obj) { m.upsert(obj); });
}

std::vector<std::string> delete_manifests(const std::vector<std::string>& paths, Model& model) {
    return change_model(paths, model, remove_object);
}

}  // namespace kdp::control
