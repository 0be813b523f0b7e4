// Reads Kubernetes manifests from files into a Model (standalone mode and `kdpctl apply`).
//
// Files are YAML (one or more documents separated by `---`) or JSON (*.json); a document may
// be a single object or a `kind: List` (or `*List`) with `items`. YAML is converted to
// nlohmann::json first and the model is built from JSON, the shape the Kubernetes watch client
// delivers, so that both sources go through Model::upsert. Runs on the caller's thread.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/model.h"

namespace kdp::control {

/// A file that cannot be read or parsed at all.
class ManifestError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Converts a YAML text's documents to JSON values (YAML 1.2 core schema for plain scalars:
/// null, true/false, integers, floats; quoted scalars stay strings). Empty documents are
/// returned as null so that document numbers match the file. Throws ManifestError (with the
/// line) on a syntax error; `source` names the text in messages.
std::vector<nlohmann::json> yaml_documents(const std::string& text, const std::string& source);

/// How YAML 1.2's core schema reads an unquoted scalar: null, bool, integer, float or string.
/// Also used when printing YAML, to quote strings that would otherwise read back as another type.
nlohmann::json yaml_plain_scalar(const std::string& s);

/// Expands directories to the *.yaml, *.yml and *.json files directly inside them, sorted by
/// name; other paths are kept as given. Throws ManifestError for a path that does not exist.
std::vector<std::string> expand_manifest_paths(const std::vector<std::string>& paths);

/// Reads one file's documents (YAML, or JSON for *.json). Throws ManifestError.
std::vector<nlohmann::json> read_documents(const std::string& path);

/// Reads every file in order and upserts each object into a copy of `model`; later objects
/// replace earlier ones with the same kind/namespace/name. Returns every error found, each as
/// `FILE: document N: ...` (with `items[i]: ` inside a List); `model` is replaced only if there
/// were none, so a bad input never half-applies.
std::vector<std::string> load_manifests(const std::vector<std::string>& paths, Model& model);

/// The opposite: removes from a copy of `model` each object the files name (kind,
/// metadata.namespace — "default" if absent — and metadata.name; the rest of each object is
/// not read). A Namespace takes its pods, Services, EndpointSlices and NetworkPolicies with it.
/// An object that is not in the model is an error. `model` is replaced only if there were none.
std::vector<std::string> delete_manifests(const std::vector<std::string>& paths, Model& model);

}  // namespace kdp::control
