// The dataplane's gRPC server: serves kdp.v1.Dataplane on a unix socket over a Backend.
//
/// Threads: gRPC's own callback threads, never a DPDK worker lcore (construct and start it
/// from the main thread after the workers are launched, or before; it does not touch them).
/// Every handler validates its request, converts it to plain values, calls the Backend and
/// returns a grpc::Status; no exception crosses the RPC boundary. Table writes (SyncTables,
/// UpdateTables) are serialised by one mutex in the server, so that the generation check and
/// the apply are atomic with respect to other writers coming through this server.
/// Who may call is decided per connection by the caller's credentials (api/peer_gate.h): the
/// server accepts connections itself and hands the allowed ones to gRPC; a refused caller's
/// every call fails with PERMISSION_DENIED saying who may call.
///
/// Usage (dataplane main):
///     kdp::api::GrpcServer server(backend, "/run/kdp/dataplane.sock");
///     server.start();        // throws std::runtime_error if it cannot listen
///     ...                    // until SIGTERM
///     server.shutdown();     // ends streams, waits for handlers; also done by the destructor
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "api/backend.h"

namespace grpc {
class Server;
class CallbackGenericService;
}  // namespace grpc

namespace kdp::api {

class PeerGate;

class GrpcServer {
public:
    /// `backend` must outlive the server. `socket_path` is a filesystem path (no "unix:").
    /// `group`: members of this group may call too (the socket is then root:group 0660).
    GrpcServer(Backend& backend, std::string socket_path, std::optional<gid_t> group = {});
    ~GrpcServer();
    GrpcServer(const GrpcServer&) = delete;
    GrpcServer& operator=(const GrpcServer&) = delete;

    /// Creates the socket's parent directory, removes a stale socket file (refusing to remove
    /// anything that is not a socket), listens on unix:PATH and sets the socket mode to 0600
    /// (0660 and the group's ownership when a group is given).
    /// Throws std::runtime_error with the reason on failure.
    void start();

    /// Ends WatchEvents streams, stops accepting calls, waits for running handlers (at most
    /// about a second before cancelling them) and removes the socket file. Idempotent.
    void shutdown();

    const std::string& socket_path() const { return socket_path_; }

    /// Makes NodeInfo report API revision `revision` instead of this build's (before start()):
    /// kdp-dataplane's hidden --api-revision-for-test, so that tests can show kdp-control and
    /// kdp-cni refusing a dataplane of another revision with a real one.
    void set_api_revision_for_test(uint32_t revision) { api_revision_ = revision; }

    /// Connections accepted and refused by peer credentials since start().
    uint64_t connections_accepted() const;
    uint64_t connections_refused() const;

    class Service;  // the kdp.v1.Dataplane callback service (grpc_server.cc)

private:
    Backend& backend_;
    std::string socket_path_;
    uint32_t api_revision_;
    std::optional<gid_t> group_;
    std::unique_ptr<Service> service_;
    std::unique_ptr<grpc::Server> server_;
    std::unique_ptr<grpc::CallbackGenericService> refuse_service_;
    std::unique_ptr<grpc::Server> refuse_server_;  // serves refused connections: every call fails
    std::unique_ptr<PeerGate> gate_;
};

}  // namespace kdp::api
