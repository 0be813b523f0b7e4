// kdp-cni's view of the pod it attaches, from the Kubernetes API: the kubelet passes a CNI
// plugin only the pod's namespace and name (CNI_ARGS K8S_POD_NAMESPACE, K8S_POD_NAME), so a
// per-pod choice such as the port type (annotation kdp.io/port-type) is read from the pod
// object, as userspace CNI plugins do, with a kubeconfig named in the network configuration.
#pragma once

#include <chrono>
#include <map>
#include <stdexcept>
#include <string>

namespace kdp::cni {

class PodLookupError : public std::runtime_error {
public:
    enum class Kind {
        kConfig,       // the kubeconfig cannot be used
        kUnreachable,  // no answer (connect, TLS, timeout): worth a retry
        kNotFound,     // the API server does not know the pod
        kRefused,      // another status (401, 403, 5xx)
    };
    PodLookupError(Kind k, const std::string& what) : std::runtime_error(what), kind_(k) {}
    Kind kind() const noexcept { return kind_; }

private:
    Kind kind_;
};

/// GET /api/v1/namespaces/<ns>/pods/<name> from the API server `kubeconfig` points at (its
/// current context); the pod's metadata.annotations. Throws PodLookupError.
std::map<std::string, std::string> pod_annotations(const std::string& kubeconfig,
                                                   const std::string& ns,
                                                   const std::string& name,
                                                   std::chrono::milliseconds timeout);

}  // namespace kdp::cni
