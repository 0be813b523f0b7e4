// A temporary directory for tests, removed with its contents at the end of the test.
#pragma once

#include <stdlib.h>

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

    /// Writes `text` to `name` inside the directory and returns the full path.
    std::string write(const std::string& name, const std::string& text) const {
        const std::string p = path_ + "/" + name;
        std::ofstream(p) << text;
        return p;
    }

private:
    std::string path_;
};

}  // namespace kdp::testing
