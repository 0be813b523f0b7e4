// Which kdp this binary is, and which revision of the kdp.v1 API it speaks.
//
/// The version is meson's project version plus `git describe` of the tree it was built from,
/// when the tree is a git checkout (generated at build time by meson's vcs_tag, so a rebuild
/// after a commit reports the new commit). The API revision is a number bumped whenever a
/// change to proto/kdp/v1/dataplane.proto changes what a field means or what a client must
/// send: proto3 already lets old and new clients skip fields they do not know, so additions
/// alone do not bump it. The dataplane reports both in NodeInfo; kdp-control and kdp-cni refuse
/// a dataplane whose revision they do not speak (control/push/dataplane_client.h).
/// Thread-safe: constants only.
#pragma once

#include <cstdint>
#include <string>

namespace kdp {

/// The kdp.v1 API revision this build speaks. 0 is what a dataplane older than the field
/// reports.
inline constexpr uint32_t kApiRevision = 1;

/// "0.1.0" or "0.1.0 (git v0.1.0-3-gabcdef0-dirty)".
const char* version();

/// Whether a peer reporting `revision` speaks the same API as this build.
inline bool speaks_api_revision(uint32_t revision) {
    return revision == kApiRevision;
}

/// The line every binary prints for --version: "PROGRAM VERSION, kdp.v1 API revision N".
std::string version_line(const std::string& program);

}  // namespace kdp
