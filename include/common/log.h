// Logs of kdp's control-side programs (kdp-control, kdpctl, kdp-cni): one line per event, with
// a UTC timestamp, a level and the program's name, as text or as JSON (--log-format=json):
//
//   2026-12-08T00:59:00.123Z info kdp-control: synced generation 2 (...)
//   {"ts":"2026-12-08T00:59:00.123Z","level":"info","component":"kdp-control","msg":"..."}
//
// Events below the configured level (--log-level: error, warning, info, debug) are skipped.
// A message's own newlines are escaped, so that one event stays one line for log collectors.
// Thread-safe: configure() once at start; write() from any thread (each line is one write(2)).
// Not for the dataplane's hot path, which never logs; the dataplane logs through rte_log.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace kdp::log {

enum class Level : int { kError = 0, kWarning = 1, kInfo = 2, kDebug = 3 };
enum class Format { kText, kJson };

/// "error", "warning" (or "warn"), "info", "debug"; nullopt otherwise.
std::optional<Level> parse_level(std::string_view s);
/// "text", "json"; nullopt otherwise.
std::optional<Format> parse_format(std::string_view s);

/// Sets the program's name, the lowest level written and the format (defaults: "kdp", info,
/// text), and the file descriptor written to (default 2, standard error).
void configure(std::string component, Level level, Format format, int fd = 2);

bool enabled(Level level);

/// RFC 3339 UTC with milliseconds, "2026-12-07T21:03:51.123Z": the logs' timestamps.
std::string rfc3339(std::chrono::system_clock::time_point t);

/// The line for one event, newline included (for tests).
std::string format_line(Level level, std::string_view message);

/// Writes one event if its level is enabled.
void write(Level level, std::string_view message);

template <typename... A>
void error(fmt::format_string<A...> f, A&&... a) {
    if (enabled(Level::kError)) {
        write(Level::kError, fmt::format(f, std::forward<A>(a)...));
    }
}
template <typename... A>
void warning(fmt::format_string<A...> f, A&&... a) {
    if (enabled(Level::kWarning)) {
        write(Level::kWarning, fmt::format(f, std::forward<A>(a)...));
    }
}
template <typename... A>
void info(fmt::format_string<A...> f, A&&... a) {
    if (enabled(Level::kInfo)) {
        write(Level::kInfo, fmt::format(f, std::forward<A>(a)...));
    }
}
template <typename... A>
void debug(fmt::format_string<A...> f, A&&... a) {
    if (enabled(Level::kDebug)) {
        write(Level::kDebug, fmt::format(f, std::forward<A>(a)...));
    }
}

}  // namespace kdp::log

namespace kdp::log {

/// Takes --log-level L and --log-format F (also --log-level=L) out of `args`, with the
/// environment's KDP_LOG_LEVEL and KDP_LOG_FORMAT as defaults, and configures the log for
/// `component`. Returns an error message for a bad value, else nullopt.
std::optional<std::string> take_flags(std::vector<std::string>& args, std::string component);

}  // namespace kdp::log
