// List+watch of one Kubernetes resource, delivered to an EventSink (client-go's Reflector).
//
//   LIST  path?limit=N[&continue=T]     paged; items get kind/apiVersion from the list's kind
//   WATCH path?watch=true&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=S
//
// What the sink sees, and in which order (one resource; resources are independent):
// - Events of one resource arrive in the order the API server produced them, each at most once
//   per watch; the object is the full object, with kind and apiVersion always set.
// - After the initial list: ADDED for every object (key order), then on_synced().
// - After every relist (a 410 Gone from the watch, or a failed watch that must list again): the
//   difference to what the sink was told before, as synthetic events: DELETED (with the last
//   object the sink saw) for objects that vanished, then ADDED/MODIFIED, then on_synced(). Objects
//   whose resourceVersion did not change produce nothing.
// - DELETED is only sent for objects the sink was told about.
// - While disconnected nothing is sent: the consumer keeps its last good state.
// - on_error() reports every failed attempt (HTTP 401/403, TLS, timeouts); the reflector keeps
//   retrying with exponential backoff and jitter until stop().
//
// Threads: run() is a coroutine on the Client's executor; all sink calls happen there, one at a
// time. stop(), resource_version() and store() must be called on that executor too.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>  // Boost 1.74 awaitable.hpp uses std::exchange without it
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "control/k8s/client.h"
#include "control/k8s/watch_stream.h"

namespace kdp::control::k8s {

struct ResourceSpec {
    std::string name;  // for logs and the sink, e.g. "pods"
    std::string path;  // collection path, e.g. "/api/v1/pods"
    std::string field_selector;
    std::string label_selector;
};

// What kdp-control watches: nodes, namespaces, pods, services, endpointslices, networkpolicies.
// All pods, not only this node's: a NetworkPolicy peer (podSelector + namespaceSelector) on the
// ingress side matches pods on any node by their labels and IPs, and named target ports resolve
// against each backend pod's container ports.
std::vector<ResourceSpec> kdp_resources();

// This node's pods only (fieldSelector spec.nodeName=NODE): what a node agent needs for its own
// ports when it does not compile policy peers.
ResourceSpec pods_on_node(std::string_view node_name);

class EventSink {
public:
    virtual ~EventSink() = default;
    // `obj` is only valid during the call.
    virtual void on_event(const ResourceSpec& resource,
                          EventType type,
                          const nlohmann::json& obj) = 0;
    // The sink now holds the complete state of `resource` as of a list.
    virtual void on_synced(const ResourceSpec& resource) = 0;
    // An attempt failed; the reflector retries by itself.
    virtual void on_error(const ResourceSpec& /*resource*/, const std::string& /*message*/) {}
};

struct ReflectorOptions {
    unsigned page_size = 500;                  // LIST limit
    std::chrono::seconds watch_timeout{300};   // timeoutSeconds; the server ends the watch
    std::chrono::seconds request_timeout{30};  // each LIST page; also slack past watch_timeout
    Backoff::Params backoff{};
    uint64_t seed = 0;  // backoff jitter; 0 picks a random seed
    // How to wait between attempts (test hook); default: a steady_timer.
    std::function<boost::asio::awaitable<void>(std::chrono::milliseconds)> sleep;
};

class Reflector {
public:
    // `client` and `sink` must outlive the reflector.
    Reflector(Client& client, ResourceSpec spec, EventSink& sink, ReflectorOptions opts = {});

    // Lists and watches until stop(). Never throws for API or network errors.
    boost::asio::awaitable<void> run();
    void stop();

    const ResourceSpec& spec() const { return spec_; }
    const std::string& resource_version() const { return resource_version_; }
    const ObjectStore& store() const { return store_; }

    struct Stats {
        unsigned lists = 0;     // completed (re)lists
        unsigned watches = 0;   // watch requests that got a 2xx
        unsigned failures = 0;  // failed attempts
        unsigned gone = 0;      // 410s seen
    };
    const Stats& stats() const { return stats_; }

private:
    boost::asio::awaitable<void> list();
    boost::asio::awaitable<void> list_pages(unsigned limit);
    boost::asio::awaitable<void> watch();
    std::string query_selectors() const;
    void deliver(EventType type, const nlohmann::json& obj);

    Client& client_;
    ResourceSpec spec_;
    EventSink& sink_;
    ReflectorOptions opts_;
    Backoff backoff_;
    boost::asio::steady_timer timer_;
    ObjectStore store_;
    std::string resource_version_;
    std::string kind_;         // "Pod", from the list's kind
    std::string api_version_;  // "v1", from the list's apiVersion
    CancelToken cancel_;
    unsigned gone_streak_ = 0;  // 410s since the last watch that opened
    bool need_list_ = true;
    bool stopped_ = false;
    Stats stats_;
};

// Percent-encodes a query parameter value (RFC 3986 unreserved characters kept).
std::string url_encode(std::string_view value);

}  // namespace kdp::control::k8s
