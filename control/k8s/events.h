// Kubernetes Events (core/v1) about the objects kdp reads: where an operator looks first
// (`kubectl describe`, `kubectl get events`) when kdp cannot honour part of an object.
//
// - One Warning event per (object, reason, message): the same again within `repeat_after` is
//   not posted (the API server's own event correlator would fold it into a count; kdp posts
//   less instead). Objects are named by uid when they have one, so a re-created object with the
//   same name gets its own event.
// - Posting never blocks the caller: each event is a detached coroutine on the Client's
//   executor, at most `max_in_flight` at once; beyond that, and on any API error, the event is
//   dropped and counted (the log line and the counter have already said it).
// - Threads: warn() on the Client's executor only; the counters from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <utility>  // Boost 1.74 awaitable.hpp uses std::exchange without it

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "control/k8s/client.h"

namespace kdp::control::k8s {

/// What an event is about: the object's involvedObject reference.
struct ObjectRef {
    std::string kind;
    std::string api_version;
    std::string ns;  // "" for cluster-scoped kinds (the event goes to "default")
    std::string name;
    std::string uid;
    std::string resource_version;
};

/// The reference of an object as the API server sends it (kind, apiVersion, metadata).
ObjectRef object_ref(const nlohmann::json& obj);

/// The core/v1 Event kdp posts: type Warning, source component `component` on `host`, the
/// event named after the object and the time in nanoseconds (the API server's convention).
nlohmann::json make_event(const ObjectRef& ref,
                          const std::string& reason,
                          const std::string& message,
                          const std::string& component,
                          const std::string& host,
                          std::chrono::system_clock::time_point now);

class EventRecorder {
public:
    struct Options {
        std::string component = "kdp-control";
        std::string host;  // this node's name
        std::chrono::seconds repeat_after{600};
        unsigned max_in_flight = 16;
    };

    EventRecorder(Client& client, Options opts);

    /// Posts a Warning event about `ref` unless the same one was posted recently.
    void warn(const ObjectRef& ref, const std::string& reason, const std::string& message);

    // Counters: readable from any thread.
    uint64_t posted() const { return posted_.load(std::memory_order_relaxed); }
    // Refused by the API server, unsent, or over max_in_flight.
    uint64_t failed() const { return failed_.load(std::memory_order_relaxed); }
    // Repeats within repeat_after.
    uint64_t suppressed() const { return suppressed_.load(std::memory_order_relaxed); }

private:
    // Parameters by value: they live in the coroutine frame.
    boost::asio::awaitable<void> post(std::string path, std::string body);

    Client& client_;
    Options opts_;
    std::map<std::string, std::chrono::steady_clock::time_point> recent_;
    unsigned in_flight_ = 0;
    std::atomic<uint64_t> posted_{0};
    std::atomic<uint64_t> failed_{0};
    std::atomic<uint64_t> suppressed_{0};
};

}  // namespace kdp::control::k8s
