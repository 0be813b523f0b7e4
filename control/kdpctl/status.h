// kdpctl status: one screen that says whether this node's kdp is healthy, in the manner of
// `cilium status`. Asks every component of the node for itself:
//   - the dataplane over its gRPC API: NodeInfo (node, version, API revision, generation,
//     start), ListPorts (link up/down), GetPolicy (synced), two GetStats samples (packet and
//     drop rates, the drop reasons that grew);
//   - kdp-control over HTTP: /readyz (its checks: API lists, dataplane, first sync) and
//     /metrics (API lists complete, last sync time, generation pushed, its version);
//   - the CNI: the conflist the runtime would pick in the conf directory, kdp-cni's version
//     and its answer to a CNI 1.1 STATUS, run as a runtime runs it.
// Single-threaded, blocking (each question has a deadline of about 2 s).
#pragma once

#include <ostream>
#include <string>

#include "kdpctl/commands.h"
#include "push/dataplane_client.h"

namespace kdp::control::kdpctl {

struct StatusOptions {
    std::string control_address = "127.0.0.1:10249";  // kdp-control's metrics address
    std::string cni_conf_dir = "/etc/cni/net.d";
    std::string cni_bin_dir = "/opt/cni/bin";
    std::string node;  // expected node name; empty: any
    int interval_ms = 1000;
};

/// The report as JSON: {"healthy": bool, "problems": [...], "node", "dataplane", "ports",
/// "traffic", "policy", "control", "cni", "versions"}.
Json status_report(DataplaneClient& client, const StatusOptions& o);

/// Renders the report as the one-screen text.
std::string render_status(const Json& report);

/// Fetches http://ADDRESS/PATH (ADDRESS "host:port"); the status code and body, or code 0 and
/// the reason when nothing answered.
std::pair<int, std::string> http_get(const std::string& address, const std::string& path);

}  // namespace kdp::control::kdpctl
