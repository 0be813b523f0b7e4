// The dataplane's DPDK telemetry commands, read with `dpdk-telemetry.py -f FILE_PREFIX` or any
// client of the EAL's telemetry socket (<runtime dir>/dpdk_telemetry.v2):
//
//   /kdp/info              version, node, addresses, port and worker counts, table generation
//   /kdp/stats[,FROM]      per port (keyed by port id, the pod's name a value): packets,
//                          bytes, drops by reason; from port id FROM on, a page at a time
//   /kdp/workers           per worker: busy ratio, cycles by loop phase and per packet
//   /kdp/conntrack         entries, capacity, inserts, refusals, expiries, per worker + total
//
// Threads: DPDK's telemetry threads call the handlers (one per client connection). They read
// the Backend, which is thread-safe, under a shared lock that set_telemetry_backend takes
// exclusively, so that the backend is never destroyed under a running handler.
//
// What DPDK 22.11's telemetry allows, and how each limit is kept here:
// - Dictionary keys hold only letters, digits, '_' and '/'; a key with '-' or '.' (nearly
//   every pod name) is refused. Keys here are fixed words and numeric ids; names are values.
// - String values are cut at RTE_TEL_MAX_STRING_LEN - 1 bytes (a 317-byte "namespace/pod"
//   fits no dictionary): a longer name is reported cut, with its port id beside it.
// - A dictionary holds RTE_TEL_MAX_DICT_ENTRIES entries, and a reply is at most 16 KiB of
//   JSON: the library leaves out silently what does not fit. /kdp/stats stops before either
//   limit and names the port id to continue from ("next"); a node's 250 pods take 3-4 pages.
// - A container (about 66 KB each) is freed by the library once written into the reply; one
//   that cannot be added is freed here. Every return code is checked. A handler that fails
//   after adding to the reply still returns success, with an "error" entry: on an error the
//   library sends null and never frees what the reply holds.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace kdp::api {

class Backend;

/// The JSON bytes a page of /kdp/stats may use: the library's 16 KiB reply buffer less the
/// command's name, the "next" key and a margin for the estimate (telemetry.cc).
inline constexpr size_t kTelemetryReplyBudget = 16 * 1024 - 512;

/// Registers the /kdp/ commands with the EAL's telemetry (after rte_eal_init). Returns an
/// error message if DPDK refused one.
std::optional<std::string> register_telemetry();

/// The backend the commands answer from; nullptr (before start, during shutdown): they answer
/// an error. Waits for running handlers to finish.
void set_telemetry_backend(Backend* backend);

/// From the `nth` (1-based) container added to a reply on, each add is refused as DPDK refuses
/// one (-ENOSPC); 0: none. For the tests of the failure path.
void set_telemetry_refusal_for_test(int nth);

}  // namespace kdp::api
