#include "pod_info.h"

#include <exception>
#include <optional>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "control/k8s/client.h"
#include "control/k8s/kubeconfig.h"

namespace kdp::cni {

namespace asio = boost::asio;
namespace k8s = control::k8s;
using K = PodLookupError::Kind;

std::map<std::string, std::string> pod_annotations(const std::string& kubeconfig,
                                                   const std::string& ns,
                                                   const std::string& name,
                                                   std::chrono::milliseconds timeout) {
    asio::io_context ioc;
    std::optional<k8s::Client> client;
    try {
        client.emplace(ioc.get_executor(), k8s::load_kubeconfig(kubeconfig));
    } catch (const std::exception& e) {
        throw PodLookupError(K::kConfig, fmt::format("kubeconfig {}: {}", kubeconfig, e.what()));
    }
    const std::string target = fmt::format("/api/v1/namespaces/{}/pods/{}", ns, name);
    k8s::Client::Response resp;
    std::exception_ptr failure;
    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
            resp = co_await client->get(target, k8s::Client::Clock::now() + timeout, nullptr,
                                        size_t{4} << 20);
        },
        [&](std::exception_ptr e) { failure = e; });
    ioc.run();
    const std::string where = fmt::format("pod {}/{} from {}", ns, name, client->config().server);
    if (failure) {
        try {
            std::rethrow_exception(failure);
        } catch (const k8s::ApiError& e) {
            throw PodLookupError(e.status() == 404 ? K::kNotFound : K::kRefused,
                                 fmt::format("{}: {}", where, e.what()));
        } catch (const k8s::TransportError& e) {
            throw PodLookupError(K::kUnreachable, fmt::format("{}: {}", where, e.what()));
        } catch (const std::exception& e) {
            throw PodLookupError(K::kRefused, fmt::format("{}: {}", where, e.what()));
        }
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
