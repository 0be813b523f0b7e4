// The API server's syntax rules for names, labels and ports, as kdp applies them to manifests.
//
// Each predicate mirrors one rule of k8s.io/apimachinery/pkg/util/validation (the API server's
// own), so that kdp refuses exactly what the API server refuses and nothing more: a rule here
// that is stricter than upstream would refuse objects a real cluster holds. The upstream
// function each mirrors is named on it. Messages say what the rule is, for errors that name
// the field (ModelError, model.h).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "model/json_util.h"

namespace kdp::control::validation {

/// IsDNS1123Label: at most 63 of [a-z0-9-], starting and ending with a letter or digit. Service
/// port names, namespace names, EndpointSlice port names.
bool is_dns1123_label(std::string_view s);

/// IsDNS1123Subdomain: at most 253 characters, dot-separated DNS-1123 labels (each [a-z0-9-],
/// starting and ending alphanumeric). Pod, Node, EndpointSlice, NetworkPolicy names.
bool is_dns1123_subdomain(std::string_view s);

/// IsDNS1035Label: a DNS-1123 label that starts with a letter. Service names.
bool is_dns1035_label(std::string_view s);

/// IsValidPortName (IANA_SVC_NAME, RFC 6335 §5.1): 1-15 of [a-z0-9-], at least one letter, no
/// leading, trailing or double '-'. Container port names, named targetPorts and policy ports.
bool is_iana_svc_name(std::string_view s);

/// IsQualifiedName: `[prefix/]name`, the prefix a DNS-1123 subdomain, the name at most 63 of
/// [A-Za-z0-9-_.] starting and ending alphanumeric. Label keys.
bool is_qualified_name(std::string_view s);

/// IsValidLabelValue: empty, or at most 63 of [A-Za-z0-9-_.] starting and ending alphanumeric.
bool is_label_value(std::string_view s);

/// IsValidIP and ValidateNonSpecialIP for externalIPs: nullopt if fine, else what is wrong
/// (unspecified, loopback, link-local or link-local multicast). IPv4 only; IPv6 is the
/// caller's.
std::optional<std::string> special_ip4(const Ip4& ip);

/// An IPv6 address / CIDR in text (inet_pton's syntax): kdp keeps IPv6 values out of its IPv4
/// tables but still refuses malformed ones, as the API server does.
bool is_ip6(const std::string& s);
bool is_cidr6(const std::string& s);

/// Labels (metadata.labels, a Service's selector): every key a qualified name, every value a
/// label value (ValidateLabels).
void check_labels(const Labels& labels, std::string_view field, const jsonu::Where& where);

/// A metadata.name by the rule of its kind (ValidateObjectMeta with the kind's name function).
void check_object_name(std::string_view kind, const std::string& name, const jsonu::Where& where);

}  // namespace kdp::control::validation
