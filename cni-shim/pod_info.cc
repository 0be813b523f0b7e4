#include "pod_info.h"

#include <exception>
#include <optional>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "control/k8s/blocking_get.h"
#include "control/k8s/client.h"
#include "control/k8s/kubeconfig.h"

namespace kdp::cni {

namespace k8s = control::k8s;
using K = PodLookupError::Kind;

std::map<std::string, std::string> pod_annotations(const std::string& kubeconfig,
                                                   const std::string& ns,
                                                   const std::string& name,
                                                   std::chrono::milliseconds timeout) {
    k8s::ClusterConfig cfg;
    try {
        cfg = k8s::load_kubeconfig(kubeconfig);
    } catch (const std::exception& e) {
        throw PodLookupError(K::kConfig, fmt::format("kubeconfig {}: {}", kubeconfig, e.what()));
    }
    const std::string target = fmt::format("/api/v1/namespaces/{}/pods/{}", ns, name);
    const std::string where = fmt::format("pod {}/{} from {}", ns, name, cfg.server);
    k8s::Client::Response resp;
    try {
        resp = k8s::blocking_get(cfg, target, timeout);
    } catch (const k8s::ConfigError& e) {
        throw PodLookupError(K::kConfig, fmt::format("kubeconfig {}: {}", kubeconfig, e.what()));
    } catch (const k8s::ApiError& e) {
        throw PodLookupError(e.status() == 404 ? K::kNotFound : K::kRefused,
                             fmt::format("{}: {}", where, e.what()));
    } catch (const k8s::TransportError& e) {
        throw PodLookupError(K::kUnreachable, fmt::format("{}: {}", where, e.what()));
    } catch (const std::exception& e) {
        throw PodLookupError(K::kRefused, fmt::format("{}: {}", where, e.what()));
    }
    const auto pod = nlohmann::json::parse(resp.body, nullptr, false);
    if (!pod.is_object() || !pod.contains("metadata") || !pod["metadata"].is_object()) {
        throw PodLookupError(K::kRefused, fmt::format("{}: the answer is not a Pod", where));
    }
    std::map<std::string, std::string> out;
    if (const auto a = pod["metadata"].find("annotations");
        a != pod["metadata"].end() && a->is_object()) {
        for (const auto& [k, v] : a->items()) {
            if (v.is_string()) {
                out[k] = v.get<std::string>();
            }
        }
    }
    return out;
}

}  // namespace kdp::cni
