// An HTTPS client for the Kubernetes API on Boost.Asio/Beast and OpenSSL, with C++20 coroutines.
//
// - TLS verification is on unless the kubeconfig says insecure-skip-tls-verify: the peer chain
//   must lead to the configured CA (or the system store) and the certificate must name the
//   server's host (RFC 6125 via OpenSSL; an IP literal must be an IP SAN).
// - Every request has a deadline; it covers connect, handshake, request and the whole response,
//   watches included (the caller picks the watch's deadline just past its timeoutSeconds).
// - Auth: bearer token (token_file re-read before each request, as projected service account
//   tokens rotate) and/or a client certificate.
// - One connection per request. A list of a few pages costs a few handshakes, which is nothing
//   next to a watch that lives for minutes. TODO(k8s): keep-alive pool if lists get hot.
//
// Threads: a Client and its Streams belong to the executor they were made with; call them only
// from coroutines on it. Beast and SSL are confined to client.cc (heavy to compile).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>  // Boost 1.74 awaitable.hpp uses std::exchange without it

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "control/k8s/kubeconfig.h"

namespace kdp::control::k8s {

// The server answered with a non-2xx status; reason/message come from its Status object.
class ApiError : public std::runtime_error {
public:
    ApiError(unsigned status, std::string reason, const std::string& what);
    unsigned status() const { return status_; }
    const std::string& reason() const { return reason_; }

private:
    unsigned status_;
    std::string reason_;
};

// Resolve, connect, TLS handshake (e.g. certificate verify failed), timeout or a connection
// closed before the response ended. The message says which and with whom.
class TransportError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Lets another coroutine on the same executor abort a request in flight (Boost 1.74's Asio has
// no per-operation cancellation): cancel() closes the request's socket, so whatever it awaits
// fails at once, and any later request given this token fails before connecting.
class CancelToken {
public:
    CancelToken() = default;
    CancelToken(const CancelToken&) = delete;
    CancelToken& operator=(const CancelToken&) = delete;
    // A request still holding the token (a suspended coroutine destroyed later, with its
    // io_context) forgets it rather than touching freed memory.
    ~CancelToken() {
        if (detach_) {
            detach_();
        }
    }
    void cancel();
    bool cancelled() const { return cancelled_; }
    void reset() { cancelled_ = false; }

private:
    friend class Client;
    std::function<void()> close_;   // set while a request holds the token
    std::function<void()> detach_;  // likewise: makes the request forget the token
    bool cancelled_ = false;
};

class Client {
public:
    using Clock = std::chrono::steady_clock;

    // A response whose status is 2xx and whose body is read piece by piece (a watch).
    class Stream {
    public:
        struct Impl;
        explicit Stream(std::unique_ptr<Impl> impl);
        ~Stream();
        Stream(const Stream&) = delete;
        Stream& operator=(const Stream&) = delete;

        unsigned status() const;
        // The next bytes of the body (chunk boundaries are not preserved); nullopt once the body
        // ended cleanly. Throws TransportError on timeout, reset or a truncated body.
        boost::asio::awaitable<std::optional<std::string>> read_some();
        // Closes the connection; a pending read_some fails. Call on the Client's executor.
        void cancel();

    private:
        friend class Client;
        std::unique_ptr<Impl> impl_;
    };

    struct Response {
        unsigned status = 0;
        std::string body;
    };

    // Throws ConfigError if the CA, certificate or key in `cfg` is not usable PEM.
    Client(boost::asio::any_io_executor ex, ClusterConfig cfg);
    ~Client();
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    // GET `target` (path and query, without the server's base path). Throws ApiError for a
    // non-2xx status, TransportError otherwise.
    // `cancel`, if given, must outlive the returned Stream.
    boost::asio::awaitable<std::unique_ptr<Stream>> open(std::string target,
                                                         Clock::time_point deadline,
                                                         CancelToken* cancel = nullptr);
    // GET and read the whole body, at most `limit` bytes.
    boost::asio::awaitable<Response> get(std::string target,
                                         Clock::time_point deadline,
                                         CancelToken* cancel = nullptr,
                                         size_t limit = size_t{256} << 20);

    // POST a JSON body (e.g. an Event) and read the answer. Throws as get() does.
    boost::asio::awaitable<Response> post(std::string target,
                                          std::string body,
                                          Clock::time_point deadline);

    const ClusterConfig& config() const;
    boost::asio::any_io_executor executor() const;

private:
    // One request of any verb, with an optional JSON body; the response's header read.
    boost::asio::awaitable<std::unique_ptr<Stream>> request(std::string_view verb,
                                                            std::string target,
                                                            const std::string* body,
                                                            Clock::time_point deadline,
                                                            CancelToken* cancel);
    static boost::asio::awaitable<Response> read_all(Stream& stream, size_t limit);

    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace kdp::control::k8s
