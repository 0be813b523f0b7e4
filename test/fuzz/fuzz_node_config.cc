// The node config loader (config/node_config.cc) on arbitrary YAML: a config is refused with
// ConfigError naming the key, or accepted; nothing else escapes, before the EAL ever starts.
#include <string>

#include "config/node_config.h"
#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 65536) {
        return 0;
    }
    try {
        (void)kdp::config::parse_node_config(
            std::string(reinterpret_cast<const char*>(data), size));
    } catch (const kdp::config::ConfigError& e) {
        FUZZ_CHECK(e.what()[0] != '\0');
    }
    return 0;
}
