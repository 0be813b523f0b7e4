// kdp-cni's network configuration (stdin) and environment parsing on arbitrary bytes: with no
// container ID the plugin stops before touching anything, so every input ends in a result or
// a CNI error object on stdout, which must be JSON with a code and a message.
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "fuzz.h"
#include "plugin.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 65536) {
        return 0;
    }
    const std::string config(reinterpret_cast<const char*>(data), size);
    for (const char* command : {"DEL", "CHECK", "ADD"}) {
        std::ostringstream out;
        const int rc = kdp::cni::run_plugin({{"CNI_COMMAND", command}}, config, out);
        FUZZ_CHECK(rc != 0);
        const auto j = nlohmann::json::parse(out.str(), nullptr, false);
        FUZZ_CHECK(j.is_object() && j.contains("code") && j.contains("msg"));
    }
    return 0;
}
