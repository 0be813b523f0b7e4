// A small HTTP/1.1 server for kdp-control's health and metrics endpoints (Boost.Beast on Asio).
//
// GET and HEAD only; every request is answered by the handler of the listener it arrived on,
// given the path without its query string. Each connection is a coroutine with a 10 s deadline
// per request, so a client that stalls holds nothing for long. The server runs its own
// io_context on two threads so that a /metrics scrape waiting on the dataplane (its gRPC calls
// have a 1 s deadline) never delays a health probe: handlers must be thread-safe.
// listen() before start(); the destructor stops the threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace kdp::control::serve {

struct HttpResponse {
    unsigned status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
};

using HttpHandler = std::function<HttpResponse(const std::string& path)>;

class HttpServer {
public:
    HttpServer();
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    /// Binds "HOST:PORT" ("0.0.0.0:10256", "127.0.0.1:0", "[::1]:9090"; port 0 picks a free
    /// one) and returns the port bound. Throws std::runtime_error naming the address when it
    /// cannot be parsed or bound.
    uint16_t listen(const std::string& address, HttpHandler handler);

    /// Starts serving every listener.
    void start();

    class Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace kdp::control::serve
