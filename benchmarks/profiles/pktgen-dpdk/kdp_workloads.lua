-- pktgen-dpdk profile: the kdp-pktgen workloads on real NICs.
--
--   pktgen -l 0-2 -n 4 -- -P -m "[1].0,[2].1" -f benchmarks/profiles/pktgen-dpdk/kdp_workloads.lua
--   (workload and size from the environment: KDP_WORKLOAD=service KDP_SIZE=64 KDP_FLOWS=50000)
--
-- Port 0 faces the device under test's port A, port 1 its port B; pktgen's port 1 RX counters
-- are what came back. Addresses as in benchmarks/run.sh's node (benchmarks/README.md).
--
-- pktgen-dpdk's range mode steps every field on its own, each packet, so it can only vary one
-- field over the flows: the workloads whose flows differ in the source port alone (l2, local,
-- encap, and service up to 64,000 flows) are range mode below. The VXLAN workloads (decap,
-- full, syn) and more Service flows than source ports need nested fields and an outer header:
-- for those, replay the frames kdp-pktgen writes, which are the harness's own:
--   build/benchmarks/kdp-pktgen -- --workload full --size 64 --flows 100000 \
--       --dump-pcap full.pcap --dump-count 100000
--   pktgen ... -- -P -m "[1].0,[2].1" -s 0:full.pcap
--
-- The table is read by test/bench/profiles_test.py, which builds packet i of each workload by
-- pktgen's range semantics (start, then + inc, wrapping from max to min) and compares every
-- field with kdp-pktgen's.
local workloads = {
    l2 = {
        src_mac = "02:00:00:00:00:0a", dst_mac = "02:00:00:00:00:0b",
        src_ip = "10.244.1.10", dst_ip = "10.244.1.11", proto = "udp", dport = 5001,
    },
    ["local"] = {
        src_mac = "02:00:00:00:00:0a", dst_mac = "0a:58:0a:f4:01:01",
        src_ip = "10.244.1.10", dst_ip = "10.244.1.11", proto = "udp", dport = 5001,
    },
    encap = {
        src_mac = "02:00:00:00:00:0a", dst_mac = "0a:58:0a:f4:01:01",
        src_ip = "10.244.1.10", dst_ip = "10.244.2.10", proto = "udp", dport = 5001,
    },
    service = {
        src_mac = "02:00:00:00:00:0a", dst_mac = "0a:58:0a:f4:01:01",
        src_ip = "10.244.1.10", dst_ip = "10.96.0.20", proto = "udp", dport = 80,
    },
}
local sport_min = 1024

local name = os.getenv("KDP_WORKLOAD") or "local"
local size = tonumber(os.getenv("KDP_SIZE") or "64")
local flows = tonumber(os.getenv("KDP_FLOWS") or "1024")
local w = workloads[name]
if w == nil then
    error("kdp_workloads.lua: '" .. name .. "' is not a range-mode workload; replay " ..
          "kdp-pktgen --dump-pcap for decap, full and syn")
end
if flows > 64000 then
    error("kdp_workloads.lua: more than 64,000 flows need the pcap replay")
end

local p = "0"
pktgen.set_range(p, "on")
pktgen.range.dst_mac(p, "start", w.dst_mac)
pktgen.range.src_mac(p, "start", w.src_mac)
pktgen.range.dst_ip(p, "start", w.dst_ip)
pktgen.range.dst_ip(p, "inc", "0.0.0.0")
pktgen.range.src_ip(p, "start", w.src_ip)
pktgen.range.src_ip(p, "inc", "0.0.0.0")
pktgen.range.ip_proto(p, w.proto)
pktgen.range.dst_port(p, "start", w.dport)
pktgen.range.dst_port(p, "inc", 0)
pktgen.range.src_port(p, "start", sport_min)
pktgen.range.src_port(p, "inc", 1)
pktgen.range.src_port(p, "min", sport_min)
pktgen.range.src_port(p, "max", sport_min + flows - 1)
pktgen.range.ttl(p, 64)
-- pktgen counts the frame without the FCS; the harness's sizes include it.
pktgen.range.pkt_size(p, "start", size - 4)
pktgen.range.pkt_size(p, "inc", 0)
pktgen.start(p)
