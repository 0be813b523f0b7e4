#include "control/k8s/watch_stream.h"

#include <algorithm>
#include <cmath>

#include <fmt/core.h>

namespace kdp::control::k8s {

std::string_view to_string(EventType t) {
    switch (t) {
        case EventType::kAdded:
            return "ADDED";
        case EventType::kModified:
            return "MODIFIED";
        case EventType::kDeleted:
            return "DELETED";
    }
    return "?";
}

void LineFramer::feed(std::string_view bytes) {
    // Only the new bytes are scanned, so a large object arriving in small chunks costs O(size).
    const size_t nl = bytes.rfind('\n');
    unterminated_ =
        nl == std::string_view::npos ? unterminated_ + bytes.size() : bytes.size() - nl - 1;
    if (unterminated_ > kMaxLine) {
        throw WatchProtocolError(
            fmt::format("watch stream: line longer than {} bytes without a newline", kMaxLine));
    }
    buf_.append(bytes);
}

std::optional<std::string> LineFramer::next() {
    for (;;) {
        const size_t nl = buf_.find('\n', std::max(pos_, scan_));
        if (nl == std::string::npos) {
            // Compact so the buffer does not grow with the life of the watch, and remember how
            // far we looked.
            buf_.erase(0, pos_);
            pos_ = 0;
            scan_ = buf_.size();
            return std::nullopt;
        }
        size_t end = nl;
        if (end > pos_ && buf_[end - 1] == '\r') {
            --end;
        }
        std::string line = buf_.substr(pos_, end - pos_);
        pos_ = nl + 1;
        scan_ = pos_;
        if (!line.empty()) {
            return line;
        }
    }
}

WatchEvent parse_watch_event(std::string_view line) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        throw WatchProtocolError(fmt::format("watch stream: not a JSON object: {:.200}", line));
    }
    const auto type_it = j.find("type");
    const auto obj_it = j.find("object");
    if (type_it == j.end() || !type_it->is_string() || obj_it == j.end() || !obj_it->is_object()) {
        throw WatchProtocolError(fmt::format(
            "watch stream: event without string 'type' and object 'object': {:.200}", line));
    }
    const std::string type = type_it->get<std::string>();
    WatchEvent ev{WatchEvent::Kind::kError, std::move(*obj_it), {}, 0, {}};
    if (type == "ADDED") {
        ev.kind = WatchEvent::Kind::kAdded;
    } else if (type == "MODIFIED") {
        ev.kind = WatchEvent::Kind::kModified;
    } else if (type == "DELETED") {
        ev.kind = WatchEvent::Kind::kDeleted;
    } else if (type == "BOOKMARK") {
        ev.kind = WatchEvent::Kind::kBookmark;
    } else if (type == "ERROR") {
        ev.kind = WatchEvent::Kind::kError;
        ev.error_code = ev.object.value("code", 0);
        ev.error_message = fmt::format("{}: {}", ev.object.value("reason", std::string("?")),
                                       ev.object.value("message", std::string()));
        return ev;
    } else {
        throw WatchProtocolError(fmt::format("watch stream: unknown event type '{}'", type));
    }
    const auto md = ev.object.find("metadata");
    if (md != ev.object.end() && md->is_object()) {
        const auto rv = md->find("resourceVersion");
        if (rv != md->end() && rv->is_string()) {
            ev.resource_version = rv->get<std::string>();
        }
    }
    if (ev.kind != WatchEvent::Kind::kBookmark && object_key(ev.object).empty()) {
        throw WatchProtocolError(
            fmt::format("watch stream: {} event for an object without metadata.name", type));
    }
    return ev;
}

std::string object_key(const nlohmann::json& obj) {
    const auto md = obj.find("metadata");
    if (md == obj.end() || !md->is_object()) {
        return {};
    }
    const std::string name = md->value("name", std::string());
    if (name.empty()) {
        return {};
    }
    const std::string ns = md->value("namespace", std::string());
    return ns.empty() ? name : ns + "/" + name;
}

namespace {

std::string resource_version_of(const nlohmann::json& obj) {
    const auto md = obj.find("metadata");
    if (md == obj.end() || !md->is_object()) {
        return {};
    }
    return md->value("resourceVersion", std::string());
}

}  // namespace

bool ObjectStore::apply(EventType type, const nlohmann::json& obj) {
    std::string key = object_key(obj);
    if (type == EventType::kDeleted) {
        return objects_.erase(key) > 0;
    }
    objects_.insert_or_assign(std::move(key), obj);
    return true;
}

const nlohmann::json* ObjectStore::find(const std::string& key) const {
    const auto it = objects_.find(key);
    return it == objects_.end() ? nullptr : &it->second;
}

std::vector<ObjectStore::Change> ObjectStore::replace(std::vector<nlohmann::json> items) {
    std::map<std::string, nlohmann::json> fresh;
    for (auto& item : items) {
        std::string key = object_key(item);
        fresh.insert_or_assign(std::move(key), std::move(item));
    }
    std::vector<Change> changes;
    for (auto& [key, old] : objects_) {
        if (!fresh.contains(key)) {
            changes.push_back({EventType::kDeleted, std::move(old)});
        }
    }
    for (const auto& [key, obj] : fresh) {
        const auto it = objects_.find(key);
        if (it == objects_.end()) {
            changes.push_back({EventType::kAdded, obj});
        } else if (resource_version_of(it->second) != resource_version_of(obj) ||
                   resource_version_of(obj).empty()) {
            changes.push_back({EventType::kModified, obj});
        }
    }
    objects_ = std::move(fresh);
    return changes;
}

Backoff::Backoff(Params p, uint64_t seed) : p_(p), rng_(seed) {}

std::chrono::milliseconds Backoff::next() {
    const double base_ms =
        std::min(double(p_.max.count()), double(p_.initial.count()) *
                                             std::pow(p_.factor, double(std::min(failures_, 64u))));
    ++failures_;
    std::uniform_real_distribution<double> u(1.0 - p_.jitter, 1.0);
    return std::chrono::milliseconds(int64_t(std::llround(base_ms * u(rng_))));
}

}  // namespace kdp::control::k8s
