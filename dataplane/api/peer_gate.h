// Who may call the dataplane's API, decided by the kernel's peer credentials (SO_PEERCRED) of
// each connection, not only by the socket file's mode: a socket made world-writable by mistake,
// or reached through a bind mount into a container running as another user, still refuses
// everyone but root, the dataplane's own user and the members of the configured group.
//
/// Threads: PeerGate runs one accept thread of its own (never a worker lcore). The callbacks
/// run on it, one connection at a time. PeerPolicy is immutable after construction.
///
/// Usage (GrpcServer::start):
///     PeerGate gate(listen_fd, PeerPolicy(group_gid));
///     gate.start([&](int fd) { allowed channel }, [&](int fd, const PeerCredentials&,
///                                                     const std::string& why) { refused });
///     ...
///     gate.stop();  // joins the thread, closes the listening socket; also the destructor
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>

namespace kdp::api {

struct PeerCredentials {
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
};

/// The rule: uid 0, the dataplane's effective uid, or (when a group is configured) a process
/// whose primary gid is that group or whose user is a member of it (getgrouplist(3) on the
/// user database; a uid with no user entry is judged by its primary gid alone).
class PeerPolicy {
public:
    explicit PeerPolicy(std::optional<gid_t> group, uid_t self = ::geteuid());

    /// Empty if `peer` may call the API; otherwise why not, in one sentence naming the peer.
    std::string refuse_reason(const PeerCredentials& peer) const;

    /// The rule in words, for the refused client's error message.
    std::string describe() const;

    const std::optional<gid_t>& group() const { return group_; }

private:
    std::optional<gid_t> group_;
    uid_t self_;
};

/// The credentials of the process at the other end of a connected unix socket.
std::optional<PeerCredentials> peer_credentials(int fd);

/// The gid of a group name, or nullopt if there is no such group.
std::optional<gid_t> group_id(const std::string& name);

class PeerGate {
public:
    /// Takes ownership of `listen_fd`, a listening unix stream socket.
    PeerGate(int listen_fd, PeerPolicy policy);
    ~PeerGate();
    PeerGate(const PeerGate&) = delete;
    PeerGate& operator=(const PeerGate&) = delete;

    /// Each accepted connection (non-blocking, close-on-exec) is handed to `allowed` or, with
    /// the reason, to `refused`; both take ownership of the fd. Throws std::runtime_error if
    /// the thread's wake-up descriptor cannot be made.
    void start(std::function<void(int fd)> allowed,
               std::function<void(int fd, const PeerCredentials&, const std::string& why)> refused);

    /// Stops accepting and joins the thread. Idempotent.
    void stop();

    uint64_t accepted() const { return accepted_.load(std::memory_order_relaxed); }
    uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }

private:
    void run();

    int listen_fd_;
    int wake_fd_ = -1;
    PeerPolicy policy_;
    std::function<void(int)> allowed_;
    std::function<void(int, const PeerCredentials&, const std::string&)> refused_cb_;
    std::thread thread_;
    std::atomic<uint64_t> accepted_{0};
    std::atomic<uint64_t> refused_{0};
};

}  // namespace kdp::api
