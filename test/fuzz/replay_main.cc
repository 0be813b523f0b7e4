// Replays a fuzz target's corpus: every file named on the command line, or in a directory named
// there, goes through LLVMFuzzerTestOneInput once. Exits non-zero if there was nothing to run;
// a broken property aborts, as it would under the fuzzer.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz.h"

int main(int argc, char** argv) {
    std::vector<std::filesystem::path> files;
    for (int i = 1; i < argc; ++i) {
        const std::filesystem::path p(argv[i]);
        if (std::filesystem::is_directory(p)) {
            for (const auto& e : std::filesystem::directory_iterator(p)) {
                if (e.is_regular_file()) {
                    files.push_back(e.path());
                }
            }
        } else {
            files.push_back(p);
        }
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
        std::string bytes(std::filesystem::file_size(f), '\0');
        FILE* in = std::fopen(f.c_str(), "rb");
        if (in == nullptr || std::fread(bytes.data(), 1, bytes.size(), in) != bytes.size()) {
            std::fprintf(stderr, "cannot read %s\n", f.c_str());
            return 1;
        }
        std::fclose(in);
        LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    }
    std::printf("%zu passed, 0 failed\n", files.size());
    return files.empty() ? 1 : 0;
}
