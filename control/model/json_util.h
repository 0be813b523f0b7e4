// Reading Kubernetes objects from nlohmann::json with errors that name the object and field.
//
// Shared by the model's per-kind parsers. Every failure throws ModelError with the message
// `Kind "ns/name": field.path: what is wrong`.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "model/model.h"

namespace kdp::control::jsonu {

using nlohmann::json;

/// Names the object in error messages: `Pod "ns/name": field: what`.
class Where {
public:
    Where(std::string_view kind, const std::string& ns, const std::string& name)
        : prefix_(ns.empty() ? fmt::format("{} \"{}\"", kind, name)
                             : fmt::format("{} \"{}/{}\"", kind, ns, name)) {}

    [[noreturn]] void fail(std::string_view field, std::string_view what) const {
        throw ModelError(fmt::format("{}: {}: {}", prefix_, field, what));
    }

private:
    std::string prefix_;
};

/// A value as JSON text for an error message. Manifests come from YAML, whose strings need not
/// be UTF-8: bytes that are not are shown as U+FFFD rather than thrown on (dump()'s default).
inline std::string show(const json& v) {
    return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

/// obj[a][b]... or nullptr if any step is missing or null.
inline const json* find(const json& obj, std::initializer_list<const char*> path) {
    const json* cur = &obj;
    for (const char* k : path) {
        if (!cur->is_object()) {
            return nullptr;
        }
        auto it = cur->find(k);
        if (it == cur->end() || it->is_null()) {
            return nullptr;
        }
        cur = &*it;
    }
    return cur;
}

/// The string at `path`, "" when absent; anything but a string is an error.
inline std::string get_string(const json& obj,
                              std::initializer_list<const char*> path,
                              std::string_view field,
                              const Where& where) {
    const json* v = find(obj, path);
    if (v == nullptr) {
        return {};
    }
    if (!v->is_string()) {
        where.fail(field, fmt::format("must be a string, not {}", v->type_name()));
    }
    return v->get<std::string>();
}

/// The boolean at `path`, `dflt` when absent.
inline bool get_bool(const json& obj,
                     std::initializer_list<const char*> path,
                     std::string_view field,
                     const Where& where,
                     bool dflt) {
    const json* v = find(obj, path);
    if (v == nullptr) {
        return dflt;
    }
    if (!v->is_boolean()) {
        where.fail(field, "must be true or false");
    }
    return v->get<bool>();
}

/// The integer at `path` within [lo, hi], `dflt` when absent.
inline int64_t get_int(const json& obj,
                       std::initializer_list<const char*> path,
                       std::string_view field,
                       const Where& where,
                       int64_t lo,
                       int64_t hi,
                       int64_t dflt) {
    const json* v = find(obj, path);
    if (v == nullptr) {
        return dflt;
    }
    if (!v->is_number_integer() || v->get<int64_t>() < lo || v->get<int64_t>() > hi) {
        where.fail(field, fmt::format("{} is not an integer in {}..{}", show(*v), lo, hi));
    }
    return v->get<int64_t>();
}

/// The list at `path` (an empty one when absent); anything but a list is an error.
inline const json& get_list(const json& obj,
                            std::initializer_list<const char*> path,
                            std::string_view field,
                            const Where& where) {
    static const json kEmpty = json::array();
    const json* v = find(obj, path);
    if (v == nullptr) {
        return kEmpty;
    }
    if (!v->is_array()) {
        where.fail(field, fmt::format("must be a list, not {}", v->type_name()));
    }
    return *v;
}

/// A map of strings at `path` (labels, annotations, selectors).
inline Labels get_labels(const json& obj,
                         std::initializer_list<const char*> path,
                         std::string_view field,
                         const Where& where) {
    Labels out;
    const json* v = find(obj, path);
    if (v == nullptr) {
        return out;
    }
    if (!v->is_object()) {
        where.fail(field, "must be a map of strings");
    }
    for (const auto& [k, val] : v->items()) {
        if (!val.is_string()) {
            where.fail(fmt::format("{}.{}", field, k),
                       fmt::format("must be a string, not {}", val.type_name()));
        }
        out[k] = val.get<std::string>();
    }
    return out;
}

inline Ip4 parse_ip(const std::string& s, std::string_view field, const Where& where) {
    const auto ip = Ip4::parse(s);
    if (!ip) {
        where.fail(field, fmt::format("\"{}\" is not an IPv4 address", s));
    }
    return *ip;
}

/// "TCP" (the default when empty), "UDP" or "SCTP".
inline std::string parse_protocol(std::string p, std::string_view field, const Where& where) {
    if (p.empty()) {
        return "TCP";
    }
    if (p != "TCP" && p != "UDP" && p != "SCTP") {
        where.fail(field, fmt::format("\"{}\" is not TCP, UDP or SCTP", p));
    }
    return p;
}

}  // namespace kdp::control::jsonu
