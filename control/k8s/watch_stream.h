// The pure parts of list+watch, kept free of I/O so they are unit-tested byte by byte:
//   LineFramer   splits a watch body (newline-delimited JSON, arriving in arbitrary chunks) into
//                lines;
//   parse_watch_event  turns one line into a WatchEvent;
//   ObjectStore  the last state the consumer was told about, keyed namespace/name, and the
//                difference a relist makes to it;
//   Backoff      exponential backoff with full jitter, clock-free and seeded.
// Single-threaded: each Reflector owns one of each.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace kdp::control::k8s {

enum class EventType { kAdded, kModified, kDeleted };

std::string_view to_string(EventType t);

// A watch stream that cannot be understood (bad JSON, unknown type, oversize line).
class WatchProtocolError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class LineFramer {
public:
    // 16 MiB: a single object larger than etcd's default 1.5 MiB request limit times ten means a
    // broken stream, not a big object.
    static constexpr size_t kMaxLine = 16u << 20;

    // Appends bytes; throws WatchProtocolError if a line grows past kMaxLine.
    void feed(std::string_view bytes);
    // The next complete line without its '\n' (and a trailing '\r'); empty lines are skipped.
    std::optional<std::string> next();
    // Bytes of a line not yet terminated.
    size_t pending() const { return unterminated_; }

private:
    std::string buf_;
    size_t pos_ = 0;           // start of the first line not yet returned
    size_t scan_ = 0;          // bytes before this (and after pos_) hold no '\n'
    size_t unterminated_ = 0;  // length of the trailing line without '\n'
};

struct WatchEvent {
    enum class Kind { kAdded, kModified, kDeleted, kBookmark, kError } kind;
    nlohmann::json object;
    std::string resource_version;  // object's metadata.resourceVersion, if any
    int error_code = 0;            // for kError: the Status object's code (410 = Gone)
    std::string error_message;     // for kError: "reason: message"
};

WatchEvent parse_watch_event(std::string_view line);

// "namespace/name", or "name" for cluster-scoped objects (client-go's MetaNamespaceKeyFunc).
std::string object_key(const nlohmann::json& obj);

class ObjectStore {
public:
    struct Change {
        EventType type;
        nlohmann::json object;
    };

    // Applies one watch event; returns false (and changes nothing) for a DELETED of an unknown
    // key, which the consumer must not see.
    bool apply(EventType type, const nlohmann::json& obj);
    // Replaces the whole state with a fresh list and returns what the consumer must be told, in
    // this order: deletions (with the last known object) and then additions/modifications, each
    // in key order. Objects whose resourceVersion did not change produce nothing.
    std::vector<Change> replace(std::vector<nlohmann::json> items);

    size_t size() const { return objects_.size(); }
    const nlohmann::json* find(const std::string& key) const;
    const std::map<std::string, nlohmann::json>& objects() const { return objects_; }

private:
    std::map<std::string, nlohmann::json> objects_;
};

// delay(n) for the n-th consecutive failure (n from 0) is uniform in
// [base*(1-jitter), base] with base = min(initial * factor^n, max): full growth, bounded below so
// a retry storm cannot hit zero, decorrelated across nodes (AWS Architecture Blog, "Exponential
// Backoff And Jitter", 2015).
class Backoff {
public:
    struct Params {
        std::chrono::milliseconds initial{250};
        std::chrono::milliseconds max{30000};
        double factor = 2.0;
        double jitter = 0.5;  // fraction of the delay that is random
    };
    explicit Backoff(Params p, uint64_t seed = std::random_device{}());

    // The delay before the next attempt; each call counts one more failure.
    std::chrono::milliseconds next();
    void reset() { failures_ = 0; }
    unsigned failures() const { return failures_; }

private:
    Params p_;
    std::mt19937_64 rng_;
    unsigned failures_ = 0;
};

}  // namespace kdp::control::k8s
