#include "control/k8s/client.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <array>
#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>
#include <utility>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

namespace kdp::control::k8s {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;

ApiError::ApiError(unsigned status, std::string reason, const std::string& what)
    : std::runtime_error(what), status_(status), reason_(std::move(reason)) {}

namespace {

bool is_ip_literal(const std::string& host) {
    boost::system::error_code ec;
    asio::ip::make_address(host, ec);
    return !ec;
}

std::string read_token(const ClusterConfig& cfg) {
    if (cfg.token_file.empty()) {
        return cfg.token;
    }
    std::ifstream in(cfg.token_file, std::ios::binary);
    if (!in) {
        throw TransportError(fmt::format("cannot read token file {}", cfg.token_file.string()));
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    std::string t = ss.str();
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) {
        t.pop_back();
    }
    return t;
}

}  // namespace

struct Client::Impl {
    asio::any_io_executor ex;
    ClusterConfig cfg;
    ssl::context ctx{ssl::context::tls_client};
    std::string authority;  // host:port for messages and the Host header
};

void CancelToken::cancel() {
    cancelled_ = true;
    if (close_) {
        close_();
    }
}

struct Client::Stream::Impl {
    Impl(asio::any_io_executor ex, ssl::context& ctx, CancelToken* token)
        : stream(ex, ctx), cancel(token) {
        if (cancel != nullptr) {
            cancel->close_ = [this] {
                boost::system::error_code ignored;
                beast::get_lowest_layer(stream).socket().close(ignored);
            };
            cancel->detach_ = [this] { cancel = nullptr; };
        }
        // Watches are unbounded; callers bound what they keep. Not boost::none: Boost 1.74's
        // parser compares the Content-Length with the optional limit, and any value > none.
        parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    }
    beast::ssl_stream<beast::tcp_stream> stream;
    beast::flat_buffer buf;
    http::response_parser<http::buffer_body> parser;
    std::array<char, 16384> tmp{};
    std::string where;  // "GET https://host:port/target", for messages
    CancelToken* cancel;

    ~Impl() {
        if (cancel != nullptr) {
            cancel->close_ = nullptr;
            cancel->detach_ = nullptr;
        }
    }
    bool cancelled() const { return cancel != nullptr && cancel->cancelled(); }
};

Client::Client(asio::any_io_executor ex, ClusterConfig cfg) : impl_(std::make_unique<Impl>()) {
    impl_->ex = std::move(ex);
    impl_->cfg = std::move(cfg);
    const ClusterConfig& c = impl_->cfg;
    const bool v6 = c.host.find(':') != std::string::npos;
    impl_->authority = fmt::format("{}{}{}:{}", v6 ? "[" : "", c.host, v6 ? "]" : "", c.port);
    auto& ctx = impl_->ctx;
    // TLS 1.2 is the oldest the API server accepts by default (--tls-min-version).
    SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
    boost::system::error_code ec;
    if (c.insecure_skip_tls_verify) {
        ctx.set_verify_mode(ssl::verify_none);
    } else {
        ctx.set_verify_mode(ssl::verify_peer);
        if (!c.ca_pem.empty()) {
            ctx.add_certificate_authority(asio::buffer(c.ca_pem), ec);
            if (ec) {
                throw ConfigError(fmt::format(
                    "certificate-authority: not a usable PEM certificate: {}", ec.message()));
            }
        } else {
            ctx.set_default_verify_paths(ec);
            if (ec) {
                throw ConfigError(
                    fmt::format("no certificate-authority configured and the "
                                "system trust store cannot be loaded: {}",
                                ec.message()));
            }
        }
    }
    if (!c.client_cert_pem.empty()) {
        ctx.use_certificate_chain(asio::buffer(c.client_cert_pem), ec);
        if (ec) {
            throw ConfigError(
                fmt::format("client-certificate: not a usable PEM certificate: {}", ec.message()));
        }
        ctx.use_private_key(asio::buffer(c.client_key_pem), ssl::context::pem, ec);
        if (ec) {
            throw ConfigError(fmt::format("client-key: not a usable PEM key: {}", ec.message()));
        }
        if (SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
            throw ConfigError("client-key does not match client-certificate");
        }
    }
}

Client::~Client() = default;

const ClusterConfig& Client::config() const {
    return impl_->cfg;
}
asio::any_io_executor Client::executor() const {
    return impl_->ex;
}

Client::Stream::Stream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::Stream::~Stream() = default;

unsigned Client::Stream::status() const {
    return impl_->parser.get().result_int();
}

void Client::Stream::cancel() {
    boost::system::error_code ignored;
    beast::get_lowest_layer(impl_->stream).socket().close(ignored);
}

asio::awaitable<std::optional<std::string>> Client::Stream::read_some() {
    Impl& s = *impl_;
    while (!s.parser.is_done()) {
        auto& body = s.parser.get().body();
        body.data = s.tmp.data();
        body.size = s.tmp.size();
        boost::system::error_code ec;
        co_await http::async_read_some(s.stream, s.buf, s.parser,
                                       asio::redirect_error(asio::use_awaitable, ec));
        if (ec == http::error::need_buffer) {
            ec = {};
        }
        if (ec) {
            const char* what = s.cancelled()                 ? "cancelled"
                               : ec == beast::error::timeout ? "deadline exceeded"
                               : ec == http::error::end_of_stream ||
                                       ec == http::error::partial_message ||
                                       ec == asio::error::eof || ec == ssl::error::stream_truncated
                                   ? "connection closed before the response ended"
                                   : nullptr;
            throw TransportError(fmt::format("{}: reading body: {}", s.where,
                                             what != nullptr ? what : ec.message()));
        }
        const size_t got = s.tmp.size() - s.parser.get().body().size;
        if (got > 0) {
            co_return std::string(s.tmp.data(), got);
        }
    }
    co_return std::nullopt;
}

asio::awaitable<std::unique_ptr<Client::Stream>> Client::open(std::string target,
                                                              Clock::time_point deadline,
                                                              CancelToken* cancel) {
    co_return co_await request("GET", std::move(target), nullptr, deadline, cancel);
}

asio::awaitable<std::unique_ptr<Client::Stream>> Client::request(std::string_view verb,
                                                                 std::string target,
                                                                 const std::string* payload,
                                                                 Clock::time_point deadline,
                                                                 CancelToken* cancel) {
    const ClusterConfig& cfg = impl_->cfg;
    auto s = std::make_unique<Stream::Impl>(impl_->ex, impl_->ctx, cancel);
    const std::string path = cfg.base_path + target;
    s->where = fmt::format("{} https://{}{}", verb, impl_->authority, path);
    auto& tcp = beast::get_lowest_layer(s->stream);
    boost::system::error_code ec;
    auto fail = [&](std::string_view phase) {
        return TransportError(
            fmt::format("{}: {}: {}", s->where, phase,
                        ec == beast::error::timeout ? "deadline exceeded" : ec.message()));
    };

    tcp.expires_at(deadline);
    asio::ip::tcp::resolver resolver(impl_->ex);
    auto endpoints = co_await resolver.async_resolve(cfg.host, cfg.port,
                                                     asio::redirect_error(asio::use_awaitable, ec));
    if (ec || s->cancelled()) {
        throw fail("resolving host");
    }
    co_await tcp.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
        throw fail("connecting");
    }

    SSL* ssl_handle = s->stream.native_handle();
    if (!is_ip_literal(cfg.host)) {
        SSL_set_tlsext_host_name(ssl_handle, cfg.host.c_str());  // SNI, RFC 6066 section 3
    }
    if (!cfg.insecure_skip_tls_verify) {
        // OpenSSL checks the name during chain verification (RFC 6125; an IP literal must match
        // an IP SAN), so a mismatch reports "hostname mismatch" / "IP address mismatch".
        X509_VERIFY_PARAM* param = SSL_get0_param(ssl_handle);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        const int ok = is_ip_literal(cfg.host)
                           ? X509_VERIFY_PARAM_set1_ip_asc(param, cfg.host.c_str())
                           : X509_VERIFY_PARAM_set1_host(param, cfg.host.c_str(), 0);
        if (ok != 1) {
            throw TransportError(fmt::format("{}: cannot set up hostname verification", s->where));
        }
    }
    co_await s->stream.async_handshake(ssl::stream_base::client,
                                       asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
        const long verify = SSL_get_verify_result(ssl_handle);
        if (verify != X509_V_OK) {
            throw TransportError(
                fmt::format("{}: TLS handshake failed: certificate verify failed: {} (check the "
                            "certificate-authority and that the server certificate names '{}')",
                            s->where, X509_verify_cert_error_string(verify), cfg.host));
        }
        throw fail("TLS handshake failed");
    }

    http::request<http::string_body> req{
        http::string_to_verb(beast::string_view(verb.data(), verb.size())), path, 11};
    req.set(http::field::host, impl_->authority);
    req.set(http::field::user_agent, "kdp-control/0.1");
    req.set(http::field::accept, "application/json");
    if (const std::string token = read_token(cfg); !token.empty()) {
        req.set(http::field::authorization, "Bearer " + token);
    }
    if (payload != nullptr) {
        req.set(http::field::content_type, "application/json");
        req.body() = *payload;
        req.prepare_payload();
    }
    co_await http::async_write(s->stream, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
        throw fail("sending request");
    }
    co_await http::async_read_header(s->stream, s->buf, s->parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
        throw fail("reading response header");
    }
    auto stream = std::make_unique<Stream>(std::move(s));
    const unsigned status = stream->status();
    if (status >= 200 && status < 300) {
        co_return stream;
    }
    // An error: the body is a Status object (kind: Status) with reason and message.
    std::string body;
    try {
        while (auto piece = co_await stream->read_some()) {
            if (body.size() < (size_t{1} << 20)) {
                body += *piece;
            }
        }
    } catch (const TransportError&) {
        // The status line alone is enough to report.
    }
    std::string reason = std::to_string(status);
    std::string message;
    const auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_object()) {
        reason = j.value("reason", reason);
        message = j.value("message", std::string());
    }
    throw ApiError(status, reason,
                   fmt::format("{}: HTTP {} {}{}{}", stream->impl_->where, status, reason,
                               message.empty() ? "" : ": ", message));
}

asio::awaitable<Client::Response> Client::get(std::string target,
                                              Clock::time_point deadline,
                                              CancelToken* cancel,
                                              size_t limit) {
    auto stream = co_await open(std::move(target), deadline, cancel);
    co_return co_await read_all(*stream, limit);
}

asio::awaitable<Client::Response> Client::post(std::string target,
                                               std::string body,
                                               Clock::time_point deadline) {
    auto stream = co_await request("POST", std::move(target), &body, deadline, nullptr);
    co_return co_await read_all(*stream, size_t{1} << 20);
}

asio::awaitable<Client::Response> Client::read_all(Stream& stream, size_t limit) {
    Response r;
    r.status = stream.status();
    while (auto piece = co_await stream.read_some()) {
        if (r.body.size() + piece->size() > limit) {
            throw TransportError(fmt::format("response body larger than {} bytes", limit));
        }
        r.body += *piece;
    }
    co_return r;
}

}  // namespace kdp::control::k8s
