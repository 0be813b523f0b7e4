// kdpctl, the operator's CLI: argument parsing, the commands and their output, as a library so
// that tests run them against an in-process server. main.cc only forwards argv.
//
// Single-threaded. Every failure is one line on `err` and a non-zero exit code: 1 for errors,
// 2 for bad arguments. Output formats: human tables (default), JSON, YAML.
#pragma once

#include <chrono>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kdp/v1/dataplane.pb.h"

namespace kdp::control::kdpctl {

enum class Format { kTable, kJson, kYaml };

/// JSON that keeps fields in the order they were added, so output reads name-first.
using Json = nlohmann::ordered_json;

/// Runs kdpctl with `args` (argv without the program name). Returns the exit code.
int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

/// One column of a table: its header and the key of the JSON field it shows.
struct Column {
    std::string header;
    std::string key;
};

/// Renders an array of JSON objects as a table with aligned columns (two spaces between),
/// strings unquoted, null and missing fields as "-".
std::string render_table(const Json& rows, const std::vector<Column>& columns);

/// Renders JSON as indented JSON or as YAML (strings that would read back as another type are
/// quoted).
std::string render_json(const Json& j);
std::string render_yaml(const Json& j);

/// Turns two GetStats samples taken `wall_seconds` apart into the stats report: per port and
/// per worker the counters of `b`, drops by reason (non-zero), Mpps over the interval, and
/// for workers busy % over the interval. The interval is taken from the snapshots'
/// taken_unix_ns when both are set, else `wall_seconds`.
Json stats_report(const v1::Stats& a, const v1::Stats& b, double wall_seconds);

}  // namespace kdp::control::kdpctl
