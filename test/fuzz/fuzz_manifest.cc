// Manifests (YAML or JSON, several documents) through the model and the compiler, as kdp-control
// and `kdpctl apply` read them: bad input is refused with ManifestError or ModelError (an
// object at a time, the model unchanged by a refused one), compiling whatever was accepted for
// every node either succeeds or says CompileError, and nothing else escapes.
#include <string>

#include "compile/node_tables.h"
#include "fuzz.h"
#include "manifest/manifest.h"
#include "model/model.h"

using kdp::control::CompileError;
using kdp::control::ManifestError;
using kdp::control::Model;
using kdp::control::ModelError;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 65536) {
        return 0;
    }
    const std::string text(reinterpret_cast<const char*>(data), size);
    std::vector<nlohmann::json> docs;
    try {
        docs = kdp::control::yaml_documents(text, "fuzz.yaml");
    } catch (const ManifestError&) {
        return 0;
    }
    Model model;
    for (const auto& d : docs) {
        const size_t pods = model.pods().size();
        const size_t services = model.services().size();
        const size_t policies = model.network_policies().size();
        try {
            model.upsert(d);
        } catch (const ModelError&) {
            // Refused whole: nothing of it was kept.
            FUZZ_CHECK(model.pods().size() == pods);
            FUZZ_CHECK(model.services().size() == services);
            FUZZ_CHECK(model.network_policies().size() == policies);
        }
    }
    for (const auto& [name, node] : model.nodes()) {
        try {
            (void)kdp::control::compile_node_tables(model, name);
        } catch (const CompileError&) {
        }
    }
    return 0;
}
