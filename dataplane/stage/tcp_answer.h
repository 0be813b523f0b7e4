// Segments the node answers with itself (it has no TCP stack behind its addresses): a RST
// refusing a connection, the health check server's segments. Built in place in the received
// mbuf and sent back out of the port it came in on. Worker-only.
#pragma once

#include <rte_mbuf.h>

#include "pkt/burst.h"
#include "pkt/checksum.h"
#include "pkt/eth.h"
#include "pkt/hdr.h"
#include "stage/l2.h"

namespace kdp::dataplane::stage {

using pkt::kTcpAck;
using pkt::kTcpFin;
using pkt::kTcpPsh;
using pkt::kTcpRst;
using pkt::kTcpSyn;

/// Turns the received TCP segment into one back to its sender, from the address and port it was
/// sent to: a 20-byte header with `seq`, `ack` (host order) and `flags`, then `len` bytes of
/// `payload`, IP and TCP checksums computed; Ethernet from `src_mac` to the frame's sender, out
/// of the port it came in on. Drops the packet (kNoHeadroom) if the mbuf cannot hold the answer.
inline void tcp_answer(rte_mbuf* m,
                       PacketMeta& p,
                       const Mac& src_mac,
                       uint32_t seq,
                       uint32_t ack,
                       uint8_t flags,
                       const char* payload = nullptr,
                       uint16_t len = 0) noexcept {
    const Mac peer = pkt::read_mac(rte_pktmbuf_mtod(m, const uint8_t*) + pkt::off::kEthSrc);
    const Tuple4 t = p.tuple;
    const uint32_t want = uint32_t{p.l3_off} + pkt::kIpv4HdrLen + pkt::kTcpHdrLen + len;
    if (m->data_len < want) {
        if (rte_pktmbuf_append(m, static_cast<uint16_t>(want - m->data_len)) == nullptr)
            [[unlikely]] {
            p.drop(DropReason::kNoHeadroom);
            return;
        }
    } else {
        rte_pktmbuf_trim(m, static_cast<uint16_t>(m->data_len - want));
    }
    uint8_t* ip = rte_pktmbuf_mtod(m, uint8_t*) + p.l3_off;
    uint8_t* th = ip + pkt::kIpv4HdrLen;
    std::memset(th, 0, pkt::kTcpHdrLen);
    std::memcpy(th + pkt::off::kL4SrcPort, &t.dport, 2);
    std::memcpy(th + pkt::off::kL4DstPort, &t.sport, 2);
    const uint32_t seq_be = to_be32(seq);
    const uint32_t ack_be = to_be32(ack);
    std::memcpy(th + pkt::off::kTcpSeq, &seq_be, 4);
    std::memcpy(th + pkt::off::kTcpAck, &ack_be, 4);
    th[pkt::off::kTcpDataOff] = (pkt::kTcpHdrLen / 4) << 4;  // no options
    th[pkt::off::kTcpFlags] = flags;
    if (!(flags & kTcpRst)) {
        std::memset(th + pkt::off::kTcpWindow, 0xff, 2);  // window 65535
    }
    if (len != 0) {
        std::memcpy(th + pkt::kTcpHdrLen, payload, len);
    }
    const auto tcp_len = static_cast<uint16_t>(pkt::kTcpHdrLen + len);
    pkt::write_ipv4(ip, static_cast<uint16_t>(pkt::kIpv4HdrLen + tcp_len), 0, true, 64,
                    pkt::kProtoTcp, t.dst, t.src);
    // Checksum over the pseudo-header, the header and the payload.
    uint32_t sum = pkt::csum_partial(ip + pkt::off::kIpSrc, 8);  // source and destination
    const uint16_t proto_len[2] = {to_be16(pkt::kProtoTcp), to_be16(tcp_len)};
    sum = pkt::csum_partial(proto_len, 4, sum);
    const uint16_t c = static_cast<uint16_t>(~pkt::csum_fold(pkt::csum_partial(th, tcp_len, sum)));
    std::memcpy(th + pkt::off::kTcpChecksum, &c, 2);
    rewrite_l2(m, p, peer, src_mac);
    p.tx(p.in_port);
}

/// The received segment's sequence number, acknowledgment number and payload length.
struct TcpSeg {
    uint32_t seq = 0;
    uint32_t ack = 0;
    uint32_t payload = 0;
    uint8_t flags = 0;
    const uint8_t* data = nullptr;
};

inline TcpSeg tcp_seg(const rte_mbuf* m, const PacketMeta& p) noexcept {
    const uint8_t* tcp = rte_pktmbuf_mtod(m, const uint8_t*) + p.l4_off;
    TcpSeg s;
    std::memcpy(&s.seq, tcp + pkt::off::kTcpSeq, 4);
    std::memcpy(&s.ack, tcp + pkt::off::kTcpAck, 4);
    s.seq = from_be32(s.seq);
    s.ack = from_be32(s.ack);
    s.flags = tcp[pkt::off::kTcpFlags];
    const uint32_t doff = (tcp[pkt::off::kTcpDataOff] >> 4) * 4u;
    s.payload = p.l3_len - (p.l4_off - p.l3_off) - doff;
    s.data = tcp + doff;
    return s;
}

/// Turns a TCP segment into the RST that refuses it (RFC 9293 §3.10.7.1).
inline void tcp_reset(rte_mbuf* m, PacketMeta& p, const Mac& src_mac) noexcept {
    const TcpSeg s = tcp_seg(m, p);
    if (s.flags & kTcpAck) {  // ACK set: RST with seq = their ack
        tcp_answer(m, p, src_mac, s.ack, 0, kTcpRst);
        return;
    }
    const uint32_t next =
        s.seq + s.payload + ((s.flags & kTcpSyn) ? 1 : 0) + ((s.flags & kTcpFin) ? 1 : 0);
    tcp_answer(m, p, src_mac, 0, next, kTcpRst | kTcpAck);
}

}  // namespace kdp::dataplane::stage
