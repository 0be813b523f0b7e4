// The dataplane API's request decoding (spec/convert.cc): bytes parsed as a SyncTablesRequest
// and converted to a TableSpec. A request is refused with a message or converts; what
// converts survives a round trip (spec -> proto -> spec) unchanged.
#include <string>

#include "fuzz.h"
#include "spec/convert.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 65536) {
        return 0;
    }
    kdp::v1::SyncTablesRequest req;
    if (!req.ParseFromArray(data, static_cast<int>(size))) {
        return 0;
    }
    kdp::table::TableSpec spec;
    if (const auto err = kdp::api::spec_from_proto(req, spec)) {
        FUZZ_CHECK(!err->empty());
        return 0;
    }
    kdp::v1::SyncTablesRequest again;
    kdp::api::spec_to_proto(spec, &again);
    kdp::table::TableSpec spec2;
    FUZZ_CHECK(!kdp::api::spec_from_proto(again, spec2).has_value());
    FUZZ_CHECK(spec2 == spec);
    return 0;
}
