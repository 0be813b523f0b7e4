#include "common/version.h"

#include <cstring>
#include <string>

#include <fmt/format.h>

#include "version_vcs.h"  // generated into the build directory

namespace kdp {
namespace {

std::string make_version() {
    const std::string project = KDP_PROJECT_VERSION;
    const std::string vcs = KDP_VCS_DESCRIBE;
    // Outside a git checkout vcs_tag falls back to the project version itself.
    if (vcs.empty() || vcs == project) {
        return project;
    }
    return fmt::format("{} (git {})", project, vcs);
}

}  // namespace

const char* version() {
    static const std::string v = make_version();
    return v.c_str();
}

std::string version_line(const std::string& program) {
    return fmt::format("{} {}, kdp.v1 API revision {}", program, version(), kApiRevision);
}

}  // namespace kdp
