#include "common/log.h"

#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <string>

namespace kdp::log {
namespace {

struct Config {
    std::string component = "kdp";
    Format format = Format::kText;
    int fd = 2;
};

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::mutex g_mu;  // guards g_config against configure() racing a write
Config g_config;

const char* name(Level l) {
    switch (l) {
        case Level::kError:
            return "error";
        case Level::kWarning:
            return "warning";
        case Level::kInfo:
            return "info";
        case Level::kDebug:
            return "debug";
    }
    return "info";
}

std::string now_rfc3339() {
    return rfc3339(std::chrono::system_clock::now());
}

// JSON string contents (RFC 8259 section 7); also what keeps a text line one line.
std::string escape(std::string_view s, bool json) {
    std::string out;
    out.reserve(s.size());
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += json ? "\\t" : "\t";
        } else if (json && (c == '"' || c == '\\')) {
            out += '\\';
            out += c;
        } else if (u < 0x20) {
            out += fmt::format("\\u{:04x}", u);
        } else {
            out += c;
        }
    }
    return out;
}

}  // namespace

std::string rfc3339(std::chrono::system_clock::time_point t) {
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
    const time_t secs = static_cast<time_t>(ms / 1000);
    struct tm tm {};
    gmtime_r(&secs, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    return fmt::format("{}.{:03}Z", buf, ms % 1000);
}

std::optional<Level> parse_level(std::string_view s) {
    if (s == "error") {
        return Level::kError;
    }
    if (s == "warning" || s == "warn") {
        return Level::kWarning;
    }
    if (s == "info") {
        return Level::kInfo;
    }
    if (s == "debug") {
        return Level::kDebug;
    }
    return std::nullopt;
}

std::optional<Format> parse_format(std::string_view s) {
    if (s == "text") {
        return Format::kText;
    }
    if (s == "json") {
        return Format::kJson;
    }
    return std::nullopt;
}

void configure(std::string component, Level level, Format format, int fd) {
    std::lock_guard lock(g_mu);
    g_config = Config{std::move(component), format, fd};
    g_level = static_cast<int>(level);
}

bool enabled(Level level) {
    return static_cast<int>(level) <= g_level.load(std::memory_order_relaxed);
}

std::string format_line(Level level, std::string_view message) {
    std::lock_guard lock(g_mu);
    if (g_config.format == Format::kJson) {
        return fmt::format(R"({{"ts":"{}","level":"{}","component":"{}","msg":"{}"}})"
                           "\n",
                           now_rfc3339(), name(level), escape(g_config.component, true),
                           escape(message, true));
    }
    return fmt::format("{} {} {}: {}\n", now_rfc3339(), name(level), g_config.component,
                       escape(message, false));
}

void write(Level level, std::string_view message) {
    if (!enabled(level)) {
        return;
    }
    const std::string line = format_line(level, message);
    int fd;
    {
        std::lock_guard lock(g_mu);
        fd = g_config.fd;
    }
    // One write(2) per line: lines of concurrent threads and processes do not interleave.
    [[maybe_unused]] const ssize_t n = ::write(fd, line.data(), line.size());
}

std::optional<std::string> take_flags(std::vector<std::string>& args, std::string component) {
    auto env = [](const char* n) {
        const char* v = std::getenv(n);
        return std::string(v != nullptr ? v : "");
    };
    std::string level = env("KDP_LOG_LEVEL"), format = env("KDP_LOG_FORMAT");
    std::vector<std::string> rest;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        std::string* target = nullptr;
        std::string flag;
        for (const char* f : {"--log-level", "--log-format"}) {
            if (a == f || a.rfind(std::string(f) + "=", 0) == 0) {
                target = std::string(f) == "--log-level" ? &level : &format;
                flag = f;
            }
        }
        if (target == nullptr) {
            rest.push_back(a);
            continue;
        }
        if (a.size() > flag.size()) {
            *target = a.substr(flag.size() + 1);
        } else if (i + 1 < args.size()) {
            *target = args[++i];
        } else {
            return flag + " needs a value";
        }
    }
    const auto l = parse_level(level.empty() ? "info" : level);
    if (!l) {
        return fmt::format("--log-level \"{}\" is not error, warning, info or debug", level);
    }
    const auto f = parse_format(format.empty() ? "text" : format);
    if (!f) {
        return fmt::format("--log-format \"{}\" is not text or json", format);
    }
    args = std::move(rest);
    configure(std::move(component), *l, *f);
    return std::nullopt;
}

}  // namespace kdp::log
