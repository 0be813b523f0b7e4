#include "port/tap_keeper.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace kdp::dataplane {

namespace {

std::string errno_str() {
    return std::strerror(errno);
}

bool fill_name(ifreq& ifr, const std::string& ifname, std::string& err) {
    if (ifname.empty() || ifname.size() >= IFNAMSIZ) {
        err = "interface name \"" + ifname + "\" is not 1-15 characters";
        return false;
    }
    std::memset(&ifr, 0, sizeof(ifr));
    std::memcpy(ifr.ifr_name, ifname.data(), ifname.size());
    return true;
}

}  // namespace

std::optional<uint32_t> tap_flags(const std::string& ifname, std::string& err) {
    const std::string path = "/sys/class/net/" + ifname + "/tun_flags";
    std::FILE* f = std::fopen(path.c_str(), "re");
    if (f == nullptr) {
        err = path + ": " + errno_str();
        return std::nullopt;
    }
    unsigned int flags = 0;
    const int n = std::fscanf(f, "%x", &flags);
    std::fclose(f);
    if (n != 1) {
        err = path + ": not a hexadecimal flag word";
        return std::nullopt;
    }
    return static_cast<uint32_t>(flags);
}

std::optional<Mac> iface_mac(const std::string& ifname, std::string& err) {
    ifreq ifr;
    if (!fill_name(ifr, ifname, err)) {
        return std::nullopt;
    }
    const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        err = "socket: " + errno_str();
        return std::nullopt;
    }
    const int rc = ::ioctl(s, SIOCGIFHWADDR, &ifr);
    const int saved = errno;
    ::close(s);
    if (rc != 0) {
        err = ifname + ": " + std::strerror(saved);
        return std::nullopt;
    }
    Mac m{};
    std::memcpy(m.b.data(), ifr.ifr_hwaddr.sa_data, m.b.size());
    return m;
}

std::optional<int> tap_hold(const std::string& ifname, uint32_t flags, std::string& err) {
    ifreq ifr;
    if (!fill_name(ifr, ifname, err)) {
        return std::nullopt;
    }
    if ((flags & IFF_TAP) == 0 || (flags & IFF_MULTI_QUEUE) == 0) {
        char hex[16];
        std::snprintf(hex, sizeof(hex), "%#x", flags);
        err = ifname + ": not a multi-queue TAP (tun flags " + hex + ")";
        return std::nullopt;
    }
    const int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        err = "/dev/net/tun: " + errno_str();
        return std::nullopt;
    }
    // Attach as one more queue of the existing device (same name, same flags), make the
    // device persistent, then detach the queue so that the kernel steers no packet to it.
    ifr.ifr_flags = static_cast<short>(flags & ~static_cast<uint32_t>(IFF_PERSIST));
    const char* step = "TUNSETIFF";
    if (::ioctl(fd, TUNSETIFF, &ifr) == 0) {
        step = "TUNSETPERSIST";
        if (::ioctl(fd, TUNSETPERSIST, 1) == 0) {
            ifreq q{};
            q.ifr_flags = IFF_DETACH_QUEUE;
            step = "TUNSETQUEUE";
            if (::ioctl(fd, TUNSETQUEUE, &q) == 0) {
                return fd;
            }
            const int saved = errno;
            (void)::ioctl(fd, TUNSETPERSIST, 0);
            errno = saved;
        }
    }
    err = ifname + ": " + step + ": " + errno_str();
    ::close(fd);
    return std::nullopt;
}

void tap_release(int fd) {
    if (fd < 0) {
        return;
    }
    ifreq q{};
    q.ifr_flags = IFF_ATTACH_QUEUE;
    (void)::ioctl(fd, TUNSETQUEUE, &q);  // a detached queue may not change the device
    if (::ioctl(fd, TUNSETPERSIST, 0) != 0) {
        std::fprintf(stderr, "kdp-dataplane: a TAP stays persistent: TUNSETPERSIST: %s\n",
                     std::strerror(errno));
    }
    ::close(fd);
}

NetnsScope::NetnsScope(const std::string& path, std::string& err) {
    const int target = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (target < 0) {
        err = path + ": " + errno_str();
        return;
    }
    home_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home_ < 0) {
        err = "/proc/thread-self/ns/net: " + errno_str();
        ::close(target);
        return;
    }
    if (::setns(target, CLONE_NEWNET) != 0) {
        err = path + ": setns: " + errno_str();
        ::close(target);
        return;
    }
    ::close(target);
    entered_ = true;
}

NetnsScope::~NetnsScope() {
    if (entered_ && ::setns(home_, CLONE_NEWNET) != 0) {
        std::fprintf(stderr, "kdp-dataplane: cannot return to the home network namespace: %s\n",
                     std::strerror(errno));
        std::abort();
    }
    if (home_ >= 0) {
        ::close(home_);
    }
}

}  // namespace kdp::dataplane
