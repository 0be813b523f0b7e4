// A blocking client of the dataplane's kdp.v1 API, and the Pusher that keeps a dataplane's
// tables equal to a desired TableSpec using generations.
//
// Used by kdp-control and kdpctl from one thread each; a DataplaneClient may be shared between
// threads (gRPC stubs are thread-safe), a Pusher may not. Every call has a deadline. Errors are
// thrown as RpcError carrying the gRPC status code.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "kdp/v1/dataplane.grpc.pb.h"
#include "spec/table_spec.h"

namespace kdp::control {

class RpcError : public std::runtime_error {
public:
    RpcError(const char* rpc, const grpc::Status& s);
    grpc::StatusCode code() const { return code_; }

private:
    grpc::StatusCode code_;
};

/// A dataplane that speaks another revision of the kdp.v1 API than this build
/// (common/version.h). Not an RpcError: retrying cannot help, only matching versions can.
class ApiRevisionError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Throws ApiRevisionError, naming both versions and revisions, unless the dataplane that sent
/// `info` (at `socket_path`) speaks this build's API revision. `program` names the caller in
/// the message ("kdp-control", "kdp-cni").
void check_api_revision(const v1::NodeInfo& info,
                        const std::string& socket_path,
                        const std::string& program);

/// The default socket, as in the dataplane's config.
inline constexpr const char* kDefaultDataplaneSocket = "/run/kdp/dataplane.sock";

class DataplaneClient {
public:
    explicit DataplaneClient(const std::string& socket_path,
                             std::chrono::milliseconds deadline = std::chrono::seconds(5));

    v1::NodeInfo node_info();
    v1::SyncTablesResponse sync_tables(const table::TableSpec& spec);
    v1::UpdateTablesResponse update_tables(const v1::UpdateTablesRequest& req);
    v1::ListRoutesResponse list_routes();
    v1::ListPodsResponse list_pods();
    v1::ListServicesResponse list_services();
    v1::GetPolicyResponse get_policy();
    v1::AddPortResponse add_port(const v1::AddPortRequest& req);
    void remove_port(const std::string& name);
    v1::TraceResponse trace(const v1::TraceRequest& req);
    v1::ListPortsResponse list_ports();
    v1::Stats stats();
    /// Up to `limit` conntrack entries (0: the server's cap).
    v1::ListConntrackResponse list_conntrack(uint32_t limit);

    /// Streams WatchEvents, calling `on_event` for each event until it returns false, the
    /// server ends the stream (returns normally) or the call fails (throws RpcError). No
    /// deadline: a watch lasts as long as the caller wants.
    void watch_events(const std::function<bool(const v1::Event&)>& on_event);

    const std::string& socket_path() const { return socket_path_; }

private:
    std::unique_ptr<grpc::ClientContext> context() const;

    std::string socket_path_;
    std::chrono::milliseconds deadline_;
    std::unique_ptr<v1::Dataplane::Stub> stub_;
};

/// The upserts and deletes that turn `from` into `to` (generations not set). Deterministic:
/// entries in key order.
v1::UpdateTablesRequest diff_tables(const table::TableSpec& from, const table::TableSpec& to);

/// Keeps one dataplane's tables equal to the desired spec. Remembers what it last pushed and
/// the dataplane instance (started_unix_ns) and generation it pushed to; if the dataplane has
/// restarted or someone else wrote in between, it pushes the full state again.
class Pusher {
public:
    enum class Action { kNone, kSync, kUpdate };
    struct Result {
        Action action = Action::kNone;
        uint64_t generation = 0;  // generation in force afterwards
        size_t changes = 0;       // entries sent (sync: all; update: upserts + deletes)
        std::string reason;       // why a sync was needed, for the log
    };

    /// `program` names the caller when the dataplane's API revision is refused.
    explicit Pusher(DataplaneClient& client, std::string program = "kdp-control")
        : client_(client), program_(std::move(program)) {}

    /// Brings the dataplane to `desired` (its generation is ignored): SyncTables with the
    /// dataplane's generation + 1 the first time and whenever the dataplane is not where this
    /// pusher left it; otherwise UpdateTables with the difference, falling back to SyncTables
    /// when the dataplane answers ABORTED. Throws RpcError (e.g. UNAVAILABLE, INVALID_ARGUMENT),
    /// or ApiRevisionError for a dataplane of another API revision (nothing is written to it).
    Result push(const table::TableSpec& desired);

    /// Forgets the last push, so that the next one is a full sync.
    void reset() { last_.reset(); }

private:
    struct Last {
        uint64_t started_unix_ns = 0;
        uint64_t generation = 0;
        table::TableSpec spec;
    };

    Result sync(const table::TableSpec& desired, const v1::NodeInfo& info, std::string reason);

    DataplaneClient& client_;
    std::string program_;
    std::optional<Last> last_;
};

}  // namespace kdp::control
