#include "common/netlink.h"

#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace kdp {

namespace {

// A request under construction: nlmsghdr, the family header, then attributes.
class Request {
public:
    Request(uint16_t type, uint16_t flags) {
        hdr()->nlmsg_len = NLMSG_LENGTH(0);
        hdr()->nlmsg_type = type;
        hdr()->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
    }
    nlmsghdr* hdr() { return reinterpret_cast<nlmsghdr*>(buf_.data()); }
    template <class T>
    T* family() {
        T* f = reinterpret_cast<T*>(NLMSG_DATA(hdr()));
        hdr()->nlmsg_len = NLMSG_LENGTH(sizeof(T));
        return f;
    }
    void attr(uint16_t type, const void* data, size_t len) {
        const size_t at = NLMSG_ALIGN(hdr()->nlmsg_len);
        auto* a = reinterpret_cast<rtattr*>(buf_.data() + at);
        a->rta_type = type;
        a->rta_len = static_cast<uint16_t>(RTA_LENGTH(len));
        std::memcpy(RTA_DATA(a), data, len);
        hdr()->nlmsg_len = static_cast<uint32_t>(at + RTA_ALIGN(a->rta_len));
    }
    template <class T>
    void attr(uint16_t type, const T& v) {
        attr(type, &v, sizeof(v));
    }
    void* data() { return buf_.data(); }
    size_t size() { return hdr()->nlmsg_len; }

private:
    alignas(nlmsghdr) std::array<char, 1024> buf_{};
};

}  // namespace

Netlink::Netlink() {
    fd_ = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd_ < 0) {
        throw NetlinkError(fmt::format("netlink socket: {}", std::strerror(errno)), errno);
    }
}

Netlink::~Netlink() {
    ::close(fd_);
}

void Netlink::request(void* msg, size_t len, const char* what) {
    auto* h = static_cast<nlmsghdr*>(msg);
    h->nlmsg_seq = ++seq_;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(fd_, msg, len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) {
        throw NetlinkError(fmt::format("{}: send: {}", what, std::strerror(errno)), errno);
    }
    alignas(nlmsghdr) char buf[8192];
    for (;;) {
        ssize_t got = ::recv(fd_, buf, sizeof(buf), 0);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw NetlinkError(fmt::format("{}: receive: {}", what, std::strerror(errno)), errno);
        }
        auto left = static_cast<unsigned>(got);
        for (auto* r = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(r, left);
             r = NLMSG_NEXT(r, left)) {
            if (r->nlmsg_seq != seq_ || r->nlmsg_type != NLMSG_ERROR) {
                continue;
            }
            const int err = -static_cast<nlmsgerr*>(NLMSG_DATA(r))->error;
            if (err != 0) {
                throw NetlinkError(fmt::format("{}: {}", what, std::strerror(err)), err);
            }
            return;
        }
    }
}

std::optional<int> Netlink::index(const std::string& name) {
    const unsigned i = if_nametoindex(name.c_str());
    if (i == 0) {
        return std::nullopt;
    }
    return static_cast<int>(i);
}

void Netlink::move_to_netns(int ifindex, int netns_fd) {
    Request r(RTM_NEWLINK, 0);
    auto* ifi = r.family<ifinfomsg>();
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = ifindex;
    r.attr<uint32_t>(IFLA_NET_NS_FD, static_cast<uint32_t>(netns_fd));
    request(r.data(), r.size(), "move the interface into another network namespace");
}

void Netlink::configure(int ifindex, const std::string& new_name, uint32_t mtu) {
    Request r(RTM_NEWLINK, 0);
    auto* ifi = r.family<ifinfomsg>();
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = ifindex;
    ifi->ifi_flags = IFF_UP;
    ifi->ifi_change = IFF_UP;
    if (!new_name.empty()) {
        r.attr(IFLA_IFNAME, new_name.c_str(), new_name.size() + 1);
    }
    if (mtu != 0) {
        r.attr<uint32_t>(IFLA_MTU, mtu);
    }
    request(r.data(), r.size(), "rename, set the MTU and bring the interface up");
}

void Netlink::add_address(int ifindex, Prefix4 net, Ip4 addr) {
    Request r(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
    auto* ifa = r.family<ifaddrmsg>();
    ifa->ifa_family = AF_INET;
    ifa->ifa_prefixlen = net.len;
    ifa->ifa_index = static_cast<uint32_t>(ifindex);
    r.attr<uint32_t>(IFA_LOCAL, addr.be);
    r.attr<uint32_t>(IFA_ADDRESS, addr.be);
    request(r.data(), r.size(), "add the interface's address");
}

void Netlink::add_route(int ifindex, Prefix4 dst, Ip4 gateway, Ip4 src, const char* what) {
    Request r(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
    auto* rt = r.family<rtmsg>();
    rt->rtm_family = AF_INET;
    rt->rtm_dst_len = dst.len;
    rt->rtm_table = RT_TABLE_MAIN;
    rt->rtm_protocol = RTPROT_BOOT;
    // Through a gateway: universe; to the link's own hosts: link.
    rt->rtm_scope = gateway.is_zero() ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
    rt->rtm_type = RTN_UNICAST;
    if (dst.len != 0) {
        r.attr<uint32_t>(RTA_DST, dst.addr.be);
    }
    if (!gateway.is_zero()) {
        r.attr<uint32_t>(RTA_GATEWAY, gateway.be);
    }
    if (!src.is_zero()) {
        r.attr<uint32_t>(RTA_PREFSRC, src.be);
    }
    r.attr<uint32_t>(RTA_OIF, static_cast<uint32_t>(ifindex));
    request(r.data(), r.size(), what);
}

void Netlink::add_default_route(int ifindex, Ip4 gateway) {
    add_route(ifindex, Prefix4{}, gateway, Ip4{}, "add the default route");
}

void Netlink::add_link_route(int ifindex, Prefix4 dst, Ip4 src) {
    add_route(ifindex, dst, Ip4{}, src, "add a route");
}

Mac Netlink::mac(int ifindex) {
    // An ioctl on a socket made now, in the calling thread's network namespace (sysfs would
    // show the namespace it was mounted in, not this one).
    struct ifreq ifr {};
    if (if_indextoname(static_cast<unsigned>(ifindex), ifr.ifr_name) == nullptr) {
        throw NetlinkError(fmt::format("interface {}: {}", ifindex, std::strerror(errno)), errno);
    }
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw NetlinkError(fmt::format("socket: {}", std::strerror(errno)), errno);
    }
    const int rc = ::ioctl(fd, SIOCGIFHWADDR, &ifr);
    const int err = errno;
    ::close(fd);
    if (rc != 0) {
        throw NetlinkError(fmt::format("{}: SIOCGIFHWADDR: {}", ifr.ifr_name, std::strerror(err)),
                           err);
    }
    Mac m{};
    std::memcpy(m.b.data(), ifr.ifr_hwaddr.sa_data, m.b.size());
    return m;
}

NetnsFile::NetnsFile(const std::string& path) : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd_ < 0) {
        throw NetlinkError(fmt::format("{}: {}", path, std::strerror(errno)), errno);
    }
}

NetnsFile::~NetnsFile() {
    ::close(fd_);
}

NetnsGuard::NetnsGuard(const std::string& netns_path) {
    home_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home_ < 0) {
        throw NetlinkError(fmt::format("own network namespace: {}", std::strerror(errno)), errno);
    }
    std::optional<NetnsFile> ns;
    try {
        ns.emplace(netns_path);
    } catch (...) {
        ::close(home_);
        throw;
    }
    const int rc = ::setns(ns->fd(), CLONE_NEWNET);
    const int e = errno;
    if (rc != 0) {
        ::close(home_);
        throw NetlinkError(fmt::format("enter {}: {}", netns_path, std::strerror(e)), e);
    }
}

NetnsGuard::~NetnsGuard() {
    (void)::setns(home_, CLONE_NEWNET);
    ::close(home_);
}

}  // namespace kdp
