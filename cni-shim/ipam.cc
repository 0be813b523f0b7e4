#include "ipam.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace kdp::cni {

namespace fs = std::filesystem;

namespace {

std::string errno_text() {
    return std::strerror(errno);
}

}  // namespace

// Holds flock(LOCK_EX) on dir/lock for its lifetime.
class IpamStore::Lock {
public:
    explicit Lock(const std::string& dir) {
        const std::string path = dir + "/lock";
        fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd_ < 0) {
            throw IpamError(IpamError::Kind::kIo, fmt::format("{}: {}", path, errno_text()));
        }
        while (::flock(fd_, LOCK_EX) != 0) {
            if (errno != EINTR) {
                const std::string e = errno_text();
                ::close(fd_);
                throw IpamError(IpamError::Kind::kIo, fmt::format("lock {}: {}", path, e));
            }
        }
    }
    ~Lock() { ::close(fd_); }  // closing releases the lock
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;

private:
    int fd_ = -1;
};

IpamStore::IpamStore(std::string dir, Prefix4 range, Ip4 gateway)
    : dir_(std::move(dir)), range_(range), gateway_(gateway) {
    if (range_.len > 30) {
        throw IpamError(IpamError::Kind::kExhausted,
                        fmt::format("range {} has no address to hand out", range_.str()));
    }
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec) {
        throw IpamError(IpamError::Kind::kIo, fmt::format("{}: {}", dir_, ec.message()));
    }
}

std::optional<Lease> IpamStore::read_lease(Ip4 ip) const {
    std::ifstream in(dir_ + "/" + ip.str());
    if (!in) {
        return std::nullopt;
    }
    Lease l;
    l.ip = ip;
    std::getline(in, l.container_id);
    std::getline(in, l.ifname);
    return l;
}

std::optional<Ip4> IpamStore::find_locked(const std::string& container_id,
                                          const std::string& ifname) const {
    for (const Lease& l : leases()) {
        if (l.container_id == container_id && l.ifname == ifname) {
            return l.ip;
        }
    }
    return std::nullopt;
}

std::vector<Lease> IpamStore::leases() const {
    std::vector<Lease> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir_, ec)) {
        const auto ip = Ip4::parse(e.path().filename().string());
        if (!ip || !range_.contains(*ip)) {
            continue;  // lock, last_reserved, or not ours
        }
        if (auto l = read_lease(*ip)) {
            out.push_back(std::move(*l));
        }
    }
    std::sort(out.begin(), out.end(),
              [](const Lease& a, const Lease& b) { return a.ip.host() < b.ip.host(); });
    return out;
}

std::optional<Ip4> IpamStore::find(const std::string& container_id,
                                   const std::string& ifname) const {
    Lock lock(dir_);
    return find_locked(container_id, ifname);
}

Ip4 IpamStore::allocate(const std::string& container_id, const std::string& ifname) {
    Lock lock(dir_);
    if (auto held = find_locked(container_id, ifname)) {
        return *held;
    }
    const uint32_t first = range_.addr.host() + 1;  // not the network
    const uint32_t last =
        range_.addr.host() + static_cast<uint32_t>(range_.size()) - 2;  // nor broadcast
    uint32_t start = first;
    {
        std::ifstream in(dir_ + "/last_reserved");
        std::string s;
        if (in >> s) {
            if (const auto ip = Ip4::parse(s); ip && ip->host() >= first && ip->host() < last) {
                start = ip->host() + 1;
            }
        }
    }
    const uint32_t count = last - first + 1;
    for (uint32_t i = 0; i < count; ++i) {
        const uint32_t h = first + (start - first + i) % count;
        const Ip4 ip = Ip4::from_host(h);
        if (ip == gateway_) {
            continue;
        }
        if (!record(ip, container_id, ifname)) {
            continue;
        }
        std::ofstream(dir_ + "/last_reserved", std::ios::trunc) << ip.str() << "\n";
        return ip;
    }
    throw IpamError(
        IpamError::Kind::kExhausted,
        fmt::format("no free address left in {} ({} in use)", range_.str(), leases().size()));
}

bool IpamStore::record(Ip4 ip, const std::string& container_id, const std::string& ifname) {
    const std::string path = dir_ + "/" + ip.str();
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST) {
            return false;
        }
        throw IpamError(IpamError::Kind::kIo, fmt::format("{}: {}", path, errno_text()));
    }
    const std::string body = container_id + "\n" + ifname + "\n";
    const bool ok = ::write(fd, body.data(), body.size()) == static_cast<ssize_t>(body.size()) &&
                    ::fsync(fd) == 0;
    const std::string e = errno_text();
    ::close(fd);
    if (!ok) {
        ::unlink(path.c_str());
        throw IpamError(IpamError::Kind::kIo, fmt::format("{}: {}", path, e));
    }
    return true;
}

Ip4 IpamStore::allocate(const std::string& container_id, const std::string& ifname, Ip4 want) {
    using K = IpamError::Kind;
    const uint32_t first = range_.addr.host() + 1;
    const uint32_t last = range_.addr.host() + static_cast<uint32_t>(range_.size()) - 2;
    if (!range_.contains(want) || want.host() < first || want.host() > last || want == gateway_) {
        throw IpamError(K::kUnavailable,
                        fmt::format("requested address {} is not one of {} to hand out (network, "
                                    "broadcast and gateway {} excluded)",
                                    want.str(), range_.str(), gateway_.str()));
    }
    Lock lock(dir_);
    if (auto held = find_locked(container_id, ifname)) {
        if (*held == want) {
            return want;
        }
        throw IpamError(K::kUnavailable,
                        fmt::format("{} {} already holds {}, not the requested {}", container_id,
                                    ifname, held->str(), want.str()));
    }
    if (!record(want, container_id, ifname)) {
        const auto other = read_lease(want);
        throw IpamError(K::kUnavailable,
                        fmt::format("requested address {} is held by container {}", want.str(),
                                    other ? other->container_id : std::string("?")));
    }
    return want;
}

std::vector<Lease> IpamStore::release_except(
    const std::vector<std::pair<std::string, std::string>>& keep) {
    Lock lock(dir_);
    std::vector<Lease> freed;
    for (Lease& l : leases()) {
        if (std::find(keep.begin(), keep.end(), std::pair{l.container_id, l.ifname}) !=
            keep.end()) {
            continue;
        }
        const std::string path = dir_ + "/" + l.ip.str();
        if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
            throw IpamError(IpamError::Kind::kIo, fmt::format("{}: {}", path, errno_text()));
        }
        freed.push_back(std::move(l));
    }
    return freed;
}

bool IpamStore::release(const std::string& container_id, const std::string& ifname) {
    Lock lock(dir_);
    const auto held = find_locked(container_id, ifname);
    if (!held) {
        return false;
    }
    const std::string path = dir_ + "/" + held->str();
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
        throw IpamError(IpamError::Kind::kIo, fmt::format("{}: {}", path, errno_text()));
    }
    return true;
}

}  // namespace kdp::cni
