#include "control/k8s/reflector.h"

#include <random>
#include <utility>

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/core.h>

#include "common/log.h"

namespace kdp::control::k8s {

namespace asio = boost::asio;

namespace {

// The watch or list said 410 Gone: our resourceVersion is older than the server keeps history
// for (etcd compaction, watch cache window). Only a relist recovers.
class Gone : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

constexpr unsigned kHttpGone = 410;

// A watch that ends without error sooner than this is treated as a failure (a proxy closing it,
// a zero timeout), so that it is retried with backoff rather than in a tight loop.
constexpr std::chrono::seconds kShortestWatch{1};

}  // namespace

std::string url_encode(std::string_view value) {
    std::string out;
    for (const unsigned char c : value) {
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            out.push_back(char(c));
        } else {
            out += fmt::format("%{:02X}", c);
        }
    }
    return out;
}

ResourceSpec pods_on_node(std::string_view node_name) {
    return {"pods", "/api/v1/pods", fmt::format("spec.nodeName={}", node_name), ""};
}

std::vector<ResourceSpec> kdp_resources() {
    return {
        {"nodes", "/api/v1/nodes", "", ""},
        {"namespaces", "/api/v1/namespaces", "", ""},
        {"pods", "/api/v1/pods", "", ""},
        {"services", "/api/v1/services", "", ""},
        {"endpointslices", "/apis/discovery.k8s.io/v1/endpointslices", "", ""},
        {"networkpolicies", "/apis/networking.k8s.io/v1/networkpolicies", "", ""},
    };
}

Reflector::Reflector(Client& client, ResourceSpec spec, EventSink& sink, ReflectorOptions opts)
    : client_(client),
      spec_(std::move(spec)),
      sink_(sink),
      opts_(std::move(opts)),
      backoff_(opts_.backoff, opts_.seed != 0 ? opts_.seed : std::random_device{}()),
      timer_(client.executor()) {}

void Reflector::stop() {
    stopped_ = true;
    timer_.cancel();
    cancel_.cancel();
}

std::string Reflector::query_selectors() const {
    std::string q;
    if (!spec_.field_selector.empty()) {
        q += "&fieldSelector=" + url_encode(spec_.field_selector);
    }
    if (!spec_.label_selector.empty()) {
        q += "&labelSelector=" + url_encode(spec_.label_selector);
    }
    return q;
}

void Reflector::deliver(EventType type, const nlohmann::json& obj) {
    try {
        sink_.on_event(spec_, type, obj);
    } catch (const std::exception& e) {
        // The consumer rejected one object; the stream and the other objects go on.
        kdp::log::error("k8s: {}: consumer failed on {} {}: {}", spec_.name, to_string(type),
                        object_key(obj), e.what());
    }
}

asio::awaitable<void> Reflector::run() {
    while (!stopped_) {
        std::string error;
        bool gone = false;
        try {
            if (need_list_) {
                co_await list();
                need_list_ = false;
            }
            const auto started = Client::Clock::now();
            co_await watch();
            if (Client::Clock::now() - started >= kShortestWatch) {
                continue;  // the server ended the watch (timeoutSeconds): watch again at once
            }
            error = fmt::format("watch ended cleanly after less than {} s", kShortestWatch.count());
        } catch (const Gone& e) {
            gone = true;
            error = e.what();
        } catch (const ApiError& e) {
            gone = e.status() == kHttpGone;
            error = e.what();
        } catch (const std::exception& e) {
            error = e.what();
        }
        if (stopped_) {
            break;
        }
        if (gone) {
            ++stats_.gone;
            need_list_ = true;
            kdp::log::info("k8s: {}: resourceVersion {} expired ({}); relisting", spec_.name,
                           resource_version_, error);
            // Relist at once the first time; a server that keeps answering 410 gets backoff.
            if (++gone_streak_ == 1) {
                continue;
            }
        }
        ++stats_.failures;
        sink_.on_error(spec_, error);
        const auto delay = backoff_.next();
        kdp::log::warning("k8s: {}: {}; retrying in {} ms", spec_.name, error, delay.count());
        if (opts_.sleep) {
            co_await opts_.sleep(delay);
        } else {
            timer_.expires_after(delay);
            boost::system::error_code ec;
            co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
    }
}

asio::awaitable<void> Reflector::list() {
    try {
        co_await list_pages(opts_.page_size);
        co_return;
    } catch (const ApiError& e) {
        if (e.status() != kHttpGone) {
            throw;
        }
        // The continue token expired between pages (the list took longer than the compaction
        // window). As client-go does, fall back to one unpaged list.
        kdp::log::info("k8s: {}: continue token expired; listing without paging", spec_.name);
    }
    co_await list_pages(0);
}

asio::awaitable<void> Reflector::list_pages(unsigned limit) {
    std::vector<nlohmann::json> items;
    std::string cont;
    std::string rv;
    do {
        std::string query = query_selectors();
        if (limit > 0) {
            query += fmt::format("&limit={}", limit);
        }
        if (!cont.empty()) {
            query += "&continue=" + url_encode(cont);
        }
        std::string target = spec_.path;
        if (!query.empty()) {
            target += "?" + query.substr(1);  // each parameter starts with '&'
        }
        const auto resp =
            co_await client_.get(target, Client::Clock::now() + opts_.request_timeout, &cancel_);
        nlohmann::json page = nlohmann::json::parse(resp.body, nullptr, false);
        if (page.is_discarded() || !page.is_object() || !page.contains("items") ||
            !(page["items"].is_array() || page["items"].is_null())) {
            throw WatchProtocolError(
                fmt::format("{}: LIST response is not a list object", spec_.path));
        }
        const std::string list_kind = page.value("kind", std::string());
        constexpr std::string_view kListSuffix = "List";
        if (list_kind.size() <= kListSuffix.size() || !list_kind.ends_with(kListSuffix)) {
            throw WatchProtocolError(
                fmt::format("{}: LIST response has kind '{}', not a *List", spec_.path, list_kind));
        }
        kind_ = list_kind.substr(0, list_kind.size() - kListSuffix.size());
        api_version_ = page.value("apiVersion", std::string());
        const nlohmann::json& md = page["metadata"];
        rv = md.is_object() ? md.value("resourceVersion", std::string()) : std::string();
        cont = md.is_object() ? md.value("continue", std::string()) : std::string();
        if (page["items"].is_array()) {
            for (auto& item : page["items"]) {
                // Items of a list carry no kind/apiVersion; the consumer keys on kind.
                if (!item.contains("kind")) {
                    item["kind"] = kind_;
                }
                if (!item.contains("apiVersion")) {
                    item["apiVersion"] = api_version_;
                }
                if (object_key(item).empty()) {
                    throw WatchProtocolError(
                        fmt::format("{}: LIST item without metadata.name", spec_.path));
                }
                items.push_back(std::move(item));
            }
        }
    } while (!cont.empty());
    if (rv.empty()) {
        throw WatchProtocolError(
            fmt::format("{}: LIST without metadata.resourceVersion", spec_.path));
    }
    const size_t count = items.size();
    auto changes = store_.replace(std::move(items));
    for (const auto& change : changes) {
        deliver(change.type, change.object);
    }
    resource_version_ = rv;
    ++stats_.lists;
    kdp::log::info("k8s: {}: listed {} objects at resourceVersion {} ({} changes)", spec_.name,
                   count, rv, changes.size());
    try {
        sink_.on_synced(spec_);
    } catch (const std::exception& e) {
        kdp::log::error("k8s: {}: consumer failed on sync: {}", spec_.name, e.what());
    }
}

asio::awaitable<void> Reflector::watch() {
    const std::string target = fmt::format(
        "{}?watch=true&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={}{}", spec_.path,
        url_encode(resource_version_), opts_.watch_timeout.count(), query_selectors());
    const auto started = Client::Clock::now();
    auto stream = co_await client_.open(
        target, started + opts_.watch_timeout + opts_.request_timeout, &cancel_);
    ++stats_.watches;
    // The server accepted our resourceVersion and credentials: the next failure is a first one.
    // (A server that accepts and drops at once is retried at the initial delay, not hammered.)
    backoff_.reset();
    gone_streak_ = 0;

    LineFramer framer;
    while (auto bytes = co_await stream->read_some()) {
        framer.feed(*bytes);
        while (auto line = framer.next()) {
            WatchEvent ev = parse_watch_event(*line);
            switch (ev.kind) {
                case WatchEvent::Kind::kError:
                    if (ev.error_code == int(kHttpGone)) {
                        throw Gone(fmt::format("watch ERROR event {}", ev.error_message));
                    }
                    throw ApiError(unsigned(ev.error_code),
                                   ev.object.value("reason", std::string()),
                                   fmt::format("{}: watch ERROR event: code {} {}", spec_.path,
                                               ev.error_code, ev.error_message));
                case WatchEvent::Kind::kBookmark:
                    break;
                case WatchEvent::Kind::kAdded:
                case WatchEvent::Kind::kModified:
                case WatchEvent::Kind::kDeleted: {
                    const EventType type = ev.kind == WatchEvent::Kind::kAdded ? EventType::kAdded
                                           : ev.kind == WatchEvent::Kind::kModified
                                               ? EventType::kModified
                                               : EventType::kDeleted;
                    if (store_.apply(type, ev.object)) {
                        deliver(type, ev.object);
                    }
                    break;
                }
            }
            if (!ev.resource_version.empty()) {
                resource_version_ = ev.resource_version;
            }
        }
    }
    if (framer.pending() > 0) {
        throw TransportError(fmt::format("{}: watch ended inside an event", spec_.path));
    }
}

}  // namespace kdp::control::k8s
