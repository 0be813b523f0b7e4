// Conversions between the kdp.v1 protobuf messages and a node's desired state (table_spec.h).
//
/// Used by the gRPC server (dataplane/api) and by the clients in control/ so that both sides
/// read and write the wire format the same way. Pure functions; safe on any thread; never
/// throw. Parsing checks syntax only (dotted quads, strict CIDRs, MACs, non-empty names):
/// semantic checks (a pod inside the node's pod CIDR, no overlapping routes) are the Backend's.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "kdp/v1/dataplane.pb.h"
#include "spec/table_spec.h"

namespace kdp::api {

/// The largest kdp.v1 message the server and its clients accept. gRPC's default (4 MiB) is
/// less than one SyncTablesRequest of 10,000 Services with 10 endpoints each (~5.2 MB); 256 MiB
/// holds a state fifty times that.
inline constexpr int kMaxMessageBytes = 256 << 20;

/// Parses one route; on error returns a message naming the field and the bad value.
std::optional<std::string> route_from_proto(const v1::Route& in, table::RouteSpec& out);
/// Parses one pod; on error returns a message naming the field and the bad value.
std::optional<std::string> pod_from_proto(const v1::Pod& in, table::PodSpec& out);

/// Parses one service port; on error returns a message naming the field and the bad value.
std::optional<std::string> service_from_proto(const v1::Service& in, table::ServiceSpec& out);

/// Parses a whole NetworkPolicy (present is set); on error returns a message naming the entry.
std::optional<std::string> policy_from_proto(const v1::Policy& in, table::PolicySpec& out);
void policy_to_proto(const table::PolicySpec& in, v1::Policy* out);

void route_to_proto(const table::RouteSpec& in, v1::Route* out);
void pod_to_proto(const table::PodSpec& in, v1::Pod* out);
void service_to_proto(const table::ServiceSpec& in, v1::Service* out);

/// Wire names of the enums: "tcp"/"udp"/"sctp" and "cluster_ip"/"node_port"/...
const char* protocol_name(uint8_t proto);
std::optional<uint8_t> protocol_from_name(std::string_view name);
const char* frontend_kind_name(table::FrontendKind kind);
std::optional<table::FrontendKind> frontend_kind_from_name(std::string_view name);

/// A human name for an entry in error messages: `routes[2] (node "n3")`.
std::string route_label(const char* list, int index, const v1::Route& r);
std::string pod_label(const char* list, int index, const v1::Pod& p);
std::string service_label(const char* list, int index, const v1::Service& s);

/// Parses routes, pods and services of a full state into `out` (generation copied). Checks that
/// node, pod and service names are unique. On error returns a message naming the entry.
std::optional<std::string> spec_from_proto(const v1::SyncTablesRequest& in, table::TableSpec& out);
void spec_to_proto(const table::TableSpec& in, v1::SyncTablesRequest* out);

/// Parses an incremental update: its entries are parsed as in a full state; a key upserted
/// twice, or both upserted and deleted, is an error naming the entry. Deletes are deduplicated.
std::optional<std::string> update_from_proto(const v1::UpdateTablesRequest& in,
                                             table::TableUpdate& out);

/// Sorts routes by node name, pods and services by name, the order every listing uses.
void sort_spec(table::TableSpec& spec);

}  // namespace kdp::api
