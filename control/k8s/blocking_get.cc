#include "control/k8s/blocking_get.h"

#include <exception>
#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

namespace kdp::control::k8s {

Client::Response blocking_get(const ClusterConfig& cfg,
                              const std::string& target,
                              std::chrono::milliseconds timeout,
                              size_t limit) {
    namespace asio = boost::asio;
    asio::io_context ioc;
    Client client(ioc.get_executor(), cfg);
    Client::Response resp;
    std::exception_ptr failure;
    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
            resp = co_await client.get(target, Client::Clock::now() + timeout, nullptr, limit);
        },
        [&](std::exception_ptr e) { failure = e; });
    ioc.run();
    if (failure) {
        std::rethrow_exception(failure);
    }
    return resp;
}

}  // namespace kdp::control::k8s
