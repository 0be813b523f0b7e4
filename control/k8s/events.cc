#include "control/k8s/events.h"

#include <ctime>
#include <exception>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <fmt/core.h>

#include "common/log.h"

namespace kdp::control::k8s {

namespace asio = boost::asio;
using nlohmann::json;

namespace {

std::string str_at(const json& obj, const char* a, const char* b = nullptr) {
    const json* v = &obj;
    for (const char* k : {a, b}) {
        if (k == nullptr) {
            break;
        }
        if (!v->is_object() || !v->contains(k)) {
            return {};
        }
        v = &(*v)[k];
    }
    return v->is_string() ? v->get<std::string>() : std::string();
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
    const std::time_t s = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    ::gmtime_r(&s, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

}  // namespace

ObjectRef object_ref(const json& obj) {
    ObjectRef r;
    r.kind = str_at(obj, "kind");
    r.api_version = str_at(obj, "apiVersion");
    r.ns = str_at(obj, "metadata", "namespace");
    r.name = str_at(obj, "metadata", "name");
    r.uid = str_at(obj, "metadata", "uid");
    r.resource_version = str_at(obj, "metadata", "resourceVersion");
    return r;
}

json make_event(const ObjectRef& ref,
                const std::string& reason,
                const std::string& message,
                const std::string& component,
                const std::string& host,
                std::chrono::system_clock::time_point now) {
    const auto ns_since_epoch =
        std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
    json involved{{"kind", ref.kind}, {"name", ref.name}, {"apiVersion", ref.api_version}};
    if (!ref.ns.empty()) {
        involved["namespace"] = ref.ns;
    }
    if (!ref.uid.empty()) {
        involved["uid"] = ref.uid;
    }
    if (!ref.resource_version.empty()) {
        involved["resourceVersion"] = ref.resource_version;
    }
    const std::string ts = rfc3339(now);
    // The API server limits a message to 1 KiB in events.k8s.io; keep core events as short.
    std::string msg = message.size() > 1024 ? message.substr(0, 1021) + "..." : message;
    return json{{"apiVersion", "v1"},
                {"kind", "Event"},
                {"metadata",
                 {{"name", fmt::format("{}.{:x}", ref.name, ns_since_epoch)},
                  {"namespace", ref.ns.empty() ? "default" : ref.ns}}},
                {"involvedObject", std::move(involved)},
                {"reason", reason},
                {"message", std::move(msg)},
                {"type", "Warning"},
                {"source", {{"component", component}, {"host", host}}},
                {"reportingComponent", component},
                {"reportingInstance", host},
                {"firstTimestamp", ts},
                {"lastTimestamp", ts},
                {"count", 1}};
}

EventRecorder::EventRecorder(Client& client, Options opts)
    : client_(client), opts_(std::move(opts)) {}

void EventRecorder::warn(const ObjectRef& ref,
                         const std::string& reason,
                         const std::string& message) {
    const auto now = std::chrono::steady_clock::now();
    const std::string key =
        fmt::format("{}/{}/{}/{}\n{}\n{}", ref.kind, ref.ns, ref.name, ref.uid, reason, message);
    if (const auto it = recent_.find(key);
        it != recent_.end() && now - it->second < opts_.repeat_after) {
        ++suppressed_;
        return;
    }
    if (recent_.size() >= 4096) {  // bounded: forget the oldest window wholesale
        recent_.clear();
    }
    recent_[key] = now;
    if (in_flight_ >= opts_.max_in_flight) {
        ++failed_;
        return;
    }
    json ev = make_event(ref, reason, message, opts_.component, opts_.host,
                         std::chrono::system_clock::now());
    const std::string path =
        fmt::format("/api/v1/namespaces/{}/events", ev["metadata"]["namespace"].get<std::string>());
    ++in_flight_;
    asio::co_spawn(client_.executor(), post(path, ev.dump()), asio::detached);
}

asio::awaitable<void> EventRecorder::post(std::string path, std::string body) {
    bool ok = false;
    try {
        co_await client_.post(std::move(path), std::move(body),
                              Client::Clock::now() + std::chrono::seconds(10));
        ok = true;
    } catch (const std::exception& e) {
        kdp::log::warning("posting an event failed: {}", e.what());
    }
    --in_flight_;
    ++(ok ? posted_ : failed_);
}

}  // namespace kdp::control::k8s
