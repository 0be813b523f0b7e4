// The few rtnetlink operations kdp-cni needs to hand a pod its TAP: move a link into the pod's
// network namespace, rename it, set its MTU and bring it up, give it its address and default
// route. Plain rtnetlink requests with their acknowledgements; errors carry the kernel's errno.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>

#include "common/net.h"

namespace kdp::cni {

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
    /// The link's MAC address.
    Mac mac(int ifindex);

private:
    void request(void* msg, size_t len, const char* what);
    int fd_ = -1;
    uint32_t seq_ = 0;
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

}  // namespace kdp::cni
