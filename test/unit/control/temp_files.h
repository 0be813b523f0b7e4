// A temporary directory for tests, removed with its contents at the end of the test.
#pragma once

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

namespace kdp::testing {

class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/kdp-control-test-XXXXXX";
        path_ = ::mkdtemp(tmpl);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }

    /// Writes `text` to `name` inside the directory and returns the full path. Atomic (written
    /// beside the directory, then renamed in): a watcher polling the directory never reads a
    /// half-written file.
    std::string write(const std::string& name, const std::string& text) const {
        const std::string p = path_ + "/" + name;
        std::string flat = name;
        std::replace(flat.begin(), flat.end(), '/', '_');
        const std::string tmp = path_ + ".writing." + flat;
        std::ofstream(tmp) << text;
        std::filesystem::rename(tmp, p);
        return p;
    }

private:
    std::string path_;
};

}  // namespace kdp::testing
