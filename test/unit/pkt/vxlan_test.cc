#include <gtest/gtest.h>

#include "common/pkt_builder.h"
#include "pkt/eth.h"
#include "pkt/parse.h"

namespace kdp::pkt {
namespace {

using dataplane::DropReason;
using dataplane::PacketMeta;
using namespace kdp::test;

// Encapsulate with the dataplane's writers, then read back with the parser and a byte-level
// check against RFC 7348's layout.
TEST(Vxlan, EncapsulationRoundTrip) {
    const Bytes inner = ether(mac("0a:58:c6:33:64:02"), mac("0a:58:c6:33:64:01"), 0x0800,
                              ipv4(ip("10.244.1.10"), ip("10.244.2.20"), {6, 40000, 80}, 100));
    Bytes frame(kVxlanOverhead + inner.size());
    std::copy(inner.begin(), inner.end(), frame.begin() + kVxlanOverhead);
    write_eth(frame.data(), mac("02:00:00:00:00:02"), mac("02:00:00:00:00:01"), kEtherTypeIpv4);
    const uint16_t sport = vxlan_source_port(0xdeadbeef);
    write_vxlan_headers(frame.data() + kEtherHdrLen, static_cast<uint16_t>(inner.size()),
                        ip("198.51.100.1"), ip("198.51.100.2"), sport, to_be16(4789), 0x123456);

    PacketMeta outer;
    ASSERT_EQ(parse_frame(frame.data(), static_cast<uint32_t>(frame.size()), outer),
              DropReason::kNone);
    EXPECT_EQ(outer.tuple.proto, kProtoUdp);
    EXPECT_EQ(outer.tuple.src, ip("198.51.100.1"));
    EXPECT_EQ(outer.tuple.dst, ip("198.51.100.2"));
    EXPECT_EQ(from_be16(outer.tuple.dport), 4789);
    EXPECT_EQ(from_be16(outer.tuple.sport), sport);
    EXPECT_GE(sport, 49152);
    EXPECT_EQ(outer.l3_len, frame.size() - kEtherHdrLen);
    EXPECT_TRUE(outer.flags & dataplane::pkt_flag::kDontFragment);
    const uint8_t* udp = frame.data() + outer.l4_off;
    EXPECT_EQ(get16(udp + 4), 8 + 8 + inner.size());  // UDP length
    EXPECT_EQ(get16(udp + 6), 0);                     // checksum zero (RFC 7348 §5)
    const uint8_t* vx = udp + 8;
    EXPECT_EQ(vx[0], 0x08);  // I flag, reserved bits zero
    EXPECT_EQ(vx[1] | vx[2] | vx[3] | vx[7], 0);
    EXPECT_EQ(get32(vx + 4) >> 8, 0x123456u);  // VNI
    EXPECT_TRUE(std::equal(inner.begin(), inner.end(), frame.begin() + kVxlanOverhead));

    PacketMeta in;
    ASSERT_EQ(parse_frame(frame.data() + kVxlanOverhead, static_cast<uint32_t>(inner.size()), in),
              DropReason::kNone);
    EXPECT_EQ(in.tuple.dst, ip("10.244.2.20"));
    EXPECT_EQ(from_be16(in.tuple.dport), 80);
}

TEST(Vxlan, SourcePortStaysInTheDynamicRange) {
    // The range's two ends, and hashes that wrap onto them (16384 ports: 49152-65535).
    const std::pair<uint32_t, uint16_t> want[] = {{0u, 49152},          {1u, 49153},
                                                  {16383u, 65535},      {16384u, 49152},
                                                  {0xffffffffu, 65535}, {0x80000000u, 49152}};
    for (const auto& [h, port] : want) {
        EXPECT_EQ(vxlan_source_port(h), port) << "hash " << h;
    }
}

}  // namespace
}  // namespace kdp::pkt
