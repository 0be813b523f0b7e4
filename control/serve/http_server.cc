#include "serve/http_server.h"

#include <chrono>
#include <exception>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

namespace kdp::control::serve {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// Long enough for any client on a node; short enough that idle keep-alive connections of
// probes and scrapers do not pile up.
constexpr std::chrono::seconds kRequestDeadline{10};
constexpr unsigned kThreads = 2;  // see the header: a scrape must not delay a probe

tcp::endpoint parse_endpoint(const std::string& address) {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) {
        throw std::runtime_error(fmt::format("listen address \"{}\" is not HOST:PORT", address));
    }
    std::string host = address.substr(0, colon);
    const std::string port_text = address.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    if (host.empty()) {
        host = "0.0.0.0";
    }
    unsigned long port = 0;
    try {
        size_t used = 0;
        port = std::stoul(port_text, &used);
        if (used != port_text.size() || port > 65535) {
            throw std::out_of_range("port");
        }
    } catch (const std::exception&) {
        throw std::runtime_error(
            fmt::format("listen address \"{}\": \"{}\" is not a port", address, port_text));
    }
    boost::system::error_code ec;
    const auto ip = asio::ip::make_address(host, ec);
    if (ec) {
        throw std::runtime_error(
            fmt::format("listen address \"{}\": \"{}\" is not an IP address", address, host));
    }
    return {ip, static_cast<uint16_t>(port)};
}

std::string path_of(beast::string_view target) {
    std::string t(target.data(), target.size());
    const size_t q = t.find('?');
    return q == std::string::npos ? t : t.substr(0, q);
}

asio::awaitable<void> session(tcp::socket socket, const HttpHandler& handler) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    try {
        for (;;) {
            stream.expires_after(kRequestDeadline);
            http::request<http::string_body> req;
            co_await http::async_read(stream, buffer, req, asio::use_awaitable);
            HttpResponse r;
            if (req.method() != http::verb::get && req.method() != http::verb::head) {
                r = {405, "text/plain; charset=utf-8", "only GET and HEAD\n"};
            } else {
                try {
                    r = handler(path_of(req.target()));
                } catch (const std::exception& e) {
                    r = {500, "text/plain; charset=utf-8", fmt::format("{}\n", e.what())};
                }
            }
            http::response<http::string_body> res{static_cast<http::status>(r.status),
                                                  req.version()};
            res.set(http::field::server, "kdp-control");
            res.set(http::field::content_type, r.content_type);
            res.set("X-Content-Type-Options", "nosniff");
            res.keep_alive(req.keep_alive());
            res.body() = req.method() == http::verb::head ? std::string() : std::move(r.body);
            res.prepare_payload();
            co_await http::async_write(stream, res, asio::use_awaitable);
            if (!res.keep_alive()) {
                break;
            }
        }
    } catch (const std::exception&) {
        // The client went away, sent garbage or stalled past the deadline: nothing to report.
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

}  // namespace

class HttpServer::Impl {
public:
    struct Listener {
        tcp::acceptor acceptor;
        HttpHandler handler;
    };

    ~Impl() {
        ioc_.stop();
        for (auto& t : threads_) {
            t.join();
        }
    }

    uint16_t listen(const std::string& address, HttpHandler handler) {
        const tcp::endpoint ep = parse_endpoint(address);
        auto l = std::make_unique<Listener>(Listener{tcp::acceptor(ioc_), std::move(handler)});
        boost::system::error_code ec;
        l->acceptor.open(ep.protocol(), ec);
        if (!ec) {
            l->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
        }
        if (!ec) {
            l->acceptor.bind(ep, ec);
        }
        if (!ec) {
            l->acceptor.listen(asio::socket_base::max_listen_connections, ec);
        }
        if (ec) {
            throw std::runtime_error(fmt::format("cannot listen on {}: {}", address, ec.message()));
        }
        const uint16_t port = l->acceptor.local_endpoint().port();
        listeners_.push_back(std::move(l));
        return port;
    }

    void start() {
        for (auto& l : listeners_) {
            asio::co_spawn(ioc_, accept_loop(*l), asio::detached);
        }
        for (unsigned i = 0; i < kThreads; ++i) {
            threads_.emplace_back([this] { ioc_.run(); });
        }
    }

private:
    asio::awaitable<void> accept_loop(Listener& l) {
        for (;;) {
            boost::system::error_code ec;
            tcp::socket s =
                co_await l.acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
            if (ec == asio::error::operation_aborted) {
                co_return;
            }
            if (ec) {
                continue;  // e.g. EMFILE: the next accept may succeed
            }
            asio::co_spawn(ioc_, session(std::move(s), l.handler), asio::detached);
        }
    }

    asio::io_context ioc_{static_cast<int>(kThreads)};
    std::vector<std::unique_ptr<Listener>> listeners_;
    std::vector<std::thread> threads_;
};

HttpServer::HttpServer() : impl_(std::make_unique<Impl>()) {}

HttpServer::~HttpServer() = default;

uint16_t HttpServer::listen(const std::string& address, HttpHandler handler) {
    return impl_->listen(address, std::move(handler));
}

void HttpServer::start() {
    impl_->start();
}

}  // namespace kdp::control::serve
