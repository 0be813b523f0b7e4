// The control plane's typed view of the cluster: the Kubernetes objects kdp compiles.
//
// Fed by both sources of cluster state: manifest files (control/manifest) and the Kubernetes
// watch client (control/k8s), which both hand over objects as nlohmann::json in the API's own
// shape (apiVersion, kind, metadata, spec, status). Not thread-safe: one owner thread. Every
// method that changes the model either applies whole or throws ModelError and changes nothing.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/net.h"
#include "model/policy.h"
#include "model/service.h"

namespace kdp::control {

/// A malformed or unsupported object; the message names kind, namespace/name and the field,
/// e.g. `Pod "default/web": status.podIP: "10.0.0.300" is not an IPv4 address`.
class ModelError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

using Labels = std::map<std::string, std::string>;

/// The annotation Flannel uses to publish a node's VTEP, e.g. {"VtepMAC":"aa:bb:..."}.
inline constexpr std::string_view kFlannelBackendData = "flannel.alpha.coreos.com/backend-data";

struct Node {
    std::string name;
    Labels labels;
    Labels annotations;
    std::optional<Prefix4> pod_cidr;  // spec.podCIDR
    std::optional<Ip4> internal_ip;   // status.addresses[type=InternalIP]
    std::optional<Mac> flannel_vtep;  // from the kFlannelBackendData annotation, if present
};

struct Namespace {
    std::string name;
    Labels labels;
};

struct ContainerPort {
    std::string name;  // may be empty
    uint16_t port = 0;
    std::string protocol;  // "TCP" (default) | "UDP" | "SCTP"
};

struct Pod {
    std::string ns;
    std::string name;
    Labels labels;
    std::string node_name;  // spec.nodeName; empty while unscheduled
    bool host_network = false;
    std::optional<Ip4> pod_ip;         // status.podIP; absent until the pod has an address
    std::vector<ContainerPort> ports;  // every container's ports, in order
    /// status.conditions Ready; a pod with no Ready condition at all (hand-written manifests)
    /// counts as ready once it has an address.
    bool ready = true;
    bool terminating = false;  // metadata.deletionTimestamp is set

    std::string key() const { return ns + "/" + name; }
};

/// An object kept as received, for kinds the model accepts but does not type.
struct RawObject {
    std::string kind;
    std::string ns;
    std::string name;
    nlohmann::json obj;
};

class Model {
public:
    /// Adds or replaces the object, identified by kind/namespace/name. Throws ModelError on an
    /// unknown kind, an unknown apiVersion for a known kind, or a malformed object.
    void upsert(const nlohmann::json& obj);

    /// Kubernetes mode, for a NetworkPolicy that upsert() refused: keeps it as
    /// parse_network_policy_fail_closed reads it (the pods it selects isolated, only the rules
    /// kdp can read allowing anything). Throws ModelError only when the object has no name.
    void upsert_fail_closed_policy(const nlohmann::json& obj);

    /// Whether an object of `kind` with this namespace/name is held. Unknown kinds throw
    /// ModelError.
    bool contains(std::string_view kind, std::string_view ns, std::string_view name) const;

    /// Removes an object; returns whether it was there. Unknown kinds throw ModelError.
    bool remove(std::string_view kind, std::string_view ns, std::string_view name);

    /// Keyed by name (nodes, namespaces) and "namespace/name" (pods).
    const std::map<std::string, Node>& nodes() const { return nodes_; }
    const std::map<std::string, Namespace>& namespaces() const { return namespaces_; }
    const std::map<std::string, Pod>& pods() const { return pods_; }
    /// Keyed by "namespace/name".
    const std::map<std::string, Service>& services() const { return services_; }
    const std::map<std::string, EndpointSlice>& endpoint_slices() const { return slices_; }
    const std::map<std::string, NetworkPolicy>& network_policies() const { return policies_; }
    /// Keyed by "Kind/namespace/name".
    const std::map<std::string, RawObject>& raw() const { return raw_; }

    /// Whether `kind` is one the model accepts.
    static bool known_kind(std::string_view kind);

private:
    // Calls f(map, key) on the map that holds `kind` (raw_ for kinds kept untyped) with the
    // object's key in it ("default" for a namespaced object without namespace); throws
    // ModelError for an unknown kind. One dispatch for contains() and remove().
    template <class Self, class F>
    static bool typed(
        Self& self, std::string_view kind, std::string_view ns, std::string_view name, F&& f);

    std::map<std::string, Node> nodes_;
    std::map<std::string, Namespace> namespaces_;
    std::map<std::string, Pod> pods_;
    std::map<std::string, Service> services_;
    std::map<std::string, EndpointSlice> slices_;
    std::map<std::string, NetworkPolicy> policies_;
    std::map<std::string, RawObject> raw_;
};

}  // namespace kdp::control
