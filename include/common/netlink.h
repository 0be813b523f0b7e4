// The few rtnetlink operations kdp needs to hand a TAP to a kernel: kdp-cni gives a pod its
// interface (moved into the pod's network namespace, renamed, MTU set, up, its address and
// default route), the dataplane configures the node's host interface (its address and the
// routes into the pod network). Plain rtnetlink requests with their acknowledgements; errors
// carry the kernel's errno. Main/API threads only: these are syscalls.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

#include "common/net.h"

namespace kdp {

class NetlinkError : public std::runtime_error {
public:
    NetlinkError(const std::string& what, int err) : std::runtime_error(what), errno_(err) {}
    int error() const noexcept { return errno_; }

private:
    int errno_;
};

/// An rtnetlink socket in the network namespace the calling thread is in when it is opened.
class Netlink {
public:
    Netlink();
    ~Netlink();
    Netlink(const Netlink&) = delete;
    Netlink& operator=(const Netlink&) = delete;

    /// The interface index of `name`, or nothing.
    std::optional<int> index(const std::string& name);
    /// Moves link `ifindex` into the namespace open at `netns_fd`.
    void move_to_netns(int ifindex, int netns_fd);
    /// Renames (if `new_name` is not empty), sets the MTU (if not 0) and brings the link up.
    void configure(int ifindex, const std::string& new_name, uint32_t mtu);
    void add_address(int ifindex, Prefix4 net, Ip4 addr);
    void add_default_route(int ifindex, Ip4 gateway);
    /// A route to `dst` on the link `ifindex` itself (scope link: its hosts are asked for by
    /// ARP on the link), with `src` as the address the kernel gives what it sends there.
    void add_link_route(int ifindex, Prefix4 dst, Ip4 src);
    /// The link's MAC address.
    Mac mac(int ifindex);

private:
    void request(void* msg, size_t len, const char* what);
    /// A route to `dst` out of `ifindex`, via `gateway` unless it is zero (then on the link),
    /// with `src` as the preferred source unless it is zero.
    void add_route(int ifindex, Prefix4 dst, Ip4 gateway, Ip4 src, const char* what);
    int fd_ = -1;
    uint32_t seq_ = 0;
};

/// A network namespace opened by its path (/run/netns/NAME, /proc/PID/ns/net), for
/// Netlink::move_to_netns; closed on destruction. Throws NetlinkError when it cannot be opened.
class NetnsFile {
public:
    explicit NetnsFile(const std::string& path);
    ~NetnsFile();
    NetnsFile(const NetnsFile&) = delete;
    NetnsFile& operator=(const NetnsFile&) = delete;
    int fd() const noexcept { return fd_; }

private:
    int fd_;
};

/// Puts the calling thread in the network namespace at `netns_path` for its lifetime; the
/// thread goes back where it was when it ends (also on an exception).
class NetnsGuard {
public:
    explicit NetnsGuard(const std::string& netns_path);
    ~NetnsGuard();
    NetnsGuard(const NetnsGuard&) = delete;
    NetnsGuard& operator=(const NetnsGuard&) = delete;

private:
    int home_ = -1;
};

}  // namespace kdp
