#include "model/validation.h"

#include <arpa/inet.h>

#include <cstdlib>

#include <fmt/format.h>

namespace kdp::control::validation {
namespace {

bool lower_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool alnum(char c) {
    return lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

// [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?, at most 63: the name part of a qualified name and
// a label value (which may also be empty).
bool qualified_name_part(std::string_view s) {
    if (s.empty() || s.size() > 63 || !alnum(s.front()) || !alnum(s.back())) {
        return false;
    }
    for (const char c : s) {
        if (!alnum(c) && c != '-' && c != '_' && c != '.') {
            return false;
        }
    }
    return true;
}

}  // namespace

bool is_dns1123_label(std::string_view s) {
    if (s.empty() || s.size() > 63 || !lower_alnum(s.front()) || !lower_alnum(s.back())) {
        return false;
    }
    for (const char c : s) {
        if (!lower_alnum(c) && c != '-') {
            return false;
        }
    }
    return true;
}

bool is_dns1123_subdomain(std::string_view s) {
    if (s.empty() || s.size() > 253) {
        return false;
    }
    size_t start = 0;
    while (true) {
        const size_t dot = s.find('.', start);
        const std::string_view label =
            s.substr(start, dot == std::string_view::npos ? s.npos : dot - start);
        if (!is_dns1123_label(label)) {
            return false;
        }
        if (dot == std::string_view::npos) {
            return true;
        }
        start = dot + 1;
    }
}

bool is_dns1035_label(std::string_view s) {
    return is_dns1123_label(s) && s.front() >= 'a' && s.front() <= 'z';
}

bool is_iana_svc_name(std::string_view s) {
    if (s.empty() || s.size() > 15 || s.front() == '-' || s.back() == '-' ||
        s.find("--") != std::string_view::npos) {
        return false;
    }
    bool letter = false;
    for (const char c : s) {
        if (!lower_alnum(c) && c != '-') {
            return false;
        }
        letter = letter || (c >= 'a' && c <= 'z');
    }
    return letter;
}

bool is_qualified_name(std::string_view s) {
    const size_t slash = s.find('/');
    if (slash == std::string_view::npos) {
        return qualified_name_part(s);
    }
    const std::string_view prefix = s.substr(0, slash);
    return !prefix.empty() && is_dns1123_subdomain(prefix) &&
           qualified_name_part(s.substr(slash + 1));
}

bool is_label_value(std::string_view s) {
    return s.empty() || qualified_name_part(s);
}

std::optional<std::string> special_ip4(const Ip4& ip) {
    const uint32_t h = ip.host();
    if (h == 0) {
        return "may not be unspecified (0.0.0.0)";
    }
    if ((h >> 24) == 127) {
        return "may not be in the loopback range (127.0.0.0/8)";
    }
    if ((h >> 16) == 0xa9fe) {
        return "may not be in the link-local range (169.254.0.0/16)";
    }
    if ((h >> 8) == 0xe00000) {
        return "may not be in the link-local multicast range (224.0.0.0/24)";
    }
    return std::nullopt;
}

bool is_ip6(const std::string& s) {
    in6_addr a{};
    return ::inet_pton(AF_INET6, s.c_str(), &a) == 1;
}

bool is_cidr6(const std::string& s) {
    const size_t slash = s.find('/');
    if (slash == std::string::npos || slash + 1 >= s.size() || slash + 4 < s.size()) {
        return false;
    }
    for (size_t i = slash + 1; i < s.size(); ++i) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return is_ip6(s.substr(0, slash)) && std::atoi(s.c_str() + slash + 1) <= 128;
}

void check_labels(const Labels& labels, std::string_view field, const jsonu::Where& where) {
    for (const auto& [k, v] : labels) {
        if (!is_qualified_name(k)) {
            where.fail(fmt::format("{}", field),
                       fmt::format("\"{}\" is not a label key ([prefix/]name: the name up to 63 "
                                   "of A-Z, a-z, 0-9, '-', '_', '.', alphanumeric at both ends; "
                                   "the prefix a DNS subdomain)",
                                   k));
        }
        if (!is_label_value(v)) {
            where.fail(fmt::format("{}.{}", field, k),
                       fmt::format("\"{}\" is not a label value (up to 63 of A-Z, a-z, 0-9, '-', "
                                   "'_', '.', alphanumeric at both ends)",
                                   v));
        }
    }
}

void check_object_name(std::string_view kind, const std::string& name, const jsonu::Where& where) {
    if (kind == "Service") {
        if (!is_dns1035_label(name)) {
            where.fail("metadata.name",
                       "a Service name is a DNS-1035 label: up to 63 of a-z, 0-9 and '-', "
                       "starting with a letter and ending with a letter or digit");
        }
    } else if (kind == "Namespace") {
        if (!is_dns1123_label(name)) {
            where.fail("metadata.name",
                       "a Namespace name is a DNS-1123 label: up to 63 of a-z, 0-9 and '-', "
                       "alphanumeric at both ends");
        }
    } else if (!is_dns1123_subdomain(name)) {
        where.fail("metadata.name",
                   fmt::format("a {} name is a DNS-1123 subdomain: up to 253 of a-z, 0-9, '-' and "
                               "'.', alphanumeric at both ends of each dot-separated part",
                               kind));
    }
}

}  // namespace kdp::control::validation
