#include "api/peer_gate.h"

#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

namespace kdp::api {

namespace {

// The primary gid and supplementary groups of `uid`'s user, or nullopt if the user database
// has no entry for it.
std::optional<std::vector<gid_t>> groups_of(uid_t uid) {
    std::vector<char> buf(16384);
    passwd pw{};
    passwd* found = nullptr;
    if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
        return std::nullopt;
    }
    int n = 64;
    std::vector<gid_t> groups(static_cast<size_t>(n));
    if (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) {
        groups.resize(static_cast<size_t>(n));  // n is now the number needed
        if (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) {
            return std::nullopt;
        }
    }
    groups.resize(static_cast<size_t>(n));
    return groups;
}

}  // namespace

PeerPolicy::PeerPolicy(std::optional<gid_t> group, uid_t self) : group_(group), self_(self) {}

std::string PeerPolicy::refuse_reason(const PeerCredentials& peer) const {
    if (peer.uid == 0 || peer.uid == self_) {
        return {};
    }
    if (group_) {
        if (peer.gid == *group_) {
            return {};
        }
        if (const auto groups = groups_of(peer.uid)) {
            for (const gid_t g : *groups) {
                if (g == *group_) {
                    return {};
                }
            }
        }
    }
    return fmt::format("pid {} (uid {}, gid {}) is not {}", peer.pid, peer.uid, peer.gid,
                       describe());
}

std::string PeerPolicy::describe() const {
    std::string who = self_ == 0 ? "root" : fmt::format("root or uid {}", self_);
    if (group_) {
        who += fmt::format(" or a member of gid {} (api.group)", *group_);
    }
    return who;
}

std::optional<PeerCredentials> peer_credentials(int fd) {
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred)) {
        return std::nullopt;
    }
    return PeerCredentials{cred.pid, cred.uid, cred.gid};
}

std::optional<gid_t> group_id(const std::string& name) {
    std::vector<char> buf(16384);
    group gr{};
    group* found = nullptr;
    if (::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
        return std::nullopt;
    }
    return gr.gr_gid;
}

PeerGate::PeerGate(int listen_fd, PeerPolicy policy)
    : listen_fd_(listen_fd), policy_(std::move(policy)) {}

PeerGate::~PeerGate() {
    stop();
    if (listen_fd_ >= 0) {
        ::close(listen_fd_);
    }
}

void PeerGate::start(std::function<void(int)> allowed,
                     std::function<void(int, const PeerCredentials&, const std::string&)> refused) {
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) {
        throw std::runtime_error(fmt::format("eventfd: {}", std::strerror(errno)));
    }
    allowed_ = std::move(allowed);
    refused_cb_ = std::move(refused);
    thread_ = std::thread([this] { run(); });
}

void PeerGate::stop() {
    if (!thread_.joinable()) {
        return;
    }
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof(one));
    thread_.join();
    ::close(wake_fd_);
    wake_fd_ = -1;
    ::close(listen_fd_);
    listen_fd_ = -1;
}

void PeerGate::run() {
    for (;;) {
        pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;
        }
        if (fds[1].revents != 0) {
            return;
        }
        if ((fds[0].revents & POLLIN) == 0) {
            continue;
        }
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            continue;  // the peer went away between poll and accept, or EMFILE: try again
        }
        const auto peer = peer_credentials(fd);
        std::string why = peer ? policy_.refuse_reason(*peer)
                               : std::string("its credentials cannot be read (SO_PEERCRED)");
        if (why.empty()) {
            accepted_.fetch_add(1, std::memory_order_relaxed);
            allowed_(fd);
        } else {
            refused_.fetch_add(1, std::memory_order_relaxed);
            refused_cb_(fd, peer.value_or(PeerCredentials{}), why);
        }
    }
}

}  // namespace kdp::api
