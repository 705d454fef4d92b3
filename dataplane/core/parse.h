// Parse: reads an Ethernet frame's headers into a ParsedPacket (tuple, offsets, flags) or a reason.
//
// Hot path: runs on every received frame of every worker lcore. It never allocates, throws,
// logs or reads past `len`; every multi-byte read is preceded by a bounds check against the
// frame length or, above L3, against the IP packet's own length (Ethernet padding is not part
// of the packet). It validates what the load balancer relies on (lengths, versions, the
// headers it reads) and nothing else: checksums, the TCP data offset and the UDP length are
// the backend kernel's business, and it sees the same bytes. docs/packet.md is the contract.
//
// Cost (bench/packet_bench.cc, bursts of 32 distinct frames, medians, README "Benchmarks"):
// IPv4 TCP 4.1 ns, IPv6 TCP 6.2 ns, 802.1Q IPv4 TCP 5.6 ns per frame, 3.3-4.9x a 64-byte
// memcpy (1.25 ns) in the same run.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "dataplane/core/ip_address.h"
#include "dataplane/core/reasons.h"

namespace fulcrum {

// Every outcome of ParsePacket: X(enumerator, value, metric name, help text).
//
// The values and names are a public interface: the names are drop-counter labels
// (fulcrum_parse_total{reason="..."}) and the values index per-lcore counters in shared
// memory. Never renumber, reuse or rename an entry; append new ones with the next value, and
// retire an old one by leaving it unused. tests/unit/parse_test.cc pins every pair.
#define FULCRUM_PARSE_RESULTS(X)                                                                   \
  X(kOk, 0, "ok", "IP packet parsed; tuple, offsets and flags are valid")                          \
  X(kNotIp, 1, "not_ip", "Ethernet frame that is not IPv4 or IPv6 (ARP, LLDP...): for the kernel") \
  X(kTruncatedEthernet, 2, "truncated_ethernet",                                                   \
    "frame shorter than its Ethernet header (14 bytes, 18 with an 802.1Q tag)")                    \
  X(kStackedVlan, 3, "stacked_vlan",                                                               \
    "802.1ad/QinQ outer tag or a second 802.1Q tag; only one 802.1Q tag is parsed")                \
  X(kBadIpVersion, 4, "bad_ip_version", "IP version field does not match the EtherType")           \
  X(kTruncatedIpv4Header, 5, "truncated_ipv4_header", "fewer than 20 bytes after the L2 header")   \
  X(kBadIpv4HeaderLength, 6, "bad_ipv4_header_length", "IPv4 IHL below 5 (20 bytes)")              \
  X(kBadIpv4TotalLength, 7, "bad_ipv4_total_length", "IPv4 total length below IHL * 4")            \
  X(kIpv4TotalLengthBeyondFrame, 8, "ipv4_total_length_beyond_frame",                              \
    "IPv4 total length runs past the end of the frame")                                            \
  X(kTruncatedIpv6Header, 9, "truncated_ipv6_header", "fewer than 40 bytes after the L2 header")   \
  X(kIpv6PayloadLengthBeyondFrame, 10, "ipv6_payload_length_beyond_frame",                         \
    "IPv6 payload length runs past the end of the frame")                                          \
  X(kTruncatedIpv6ExtHeader, 11, "truncated_ipv6_ext_header",                                      \
    "an IPv6 extension header runs past the end of the IPv6 packet")                               \
  X(kIpv6ExtChainTooLong, 12, "ipv6_ext_chain_too_long",                                           \
    "more IPv6 extension headers than kMaxIpv6ExtHeaders")                                         \
  X(kTruncatedTcp, 13, "truncated_tcp",                                                            \
    "TCP header shorter than 20 bytes in an unfragmented packet")                                  \
  X(kTruncatedUdp, 14, "truncated_udp",                                                            \
    "UDP header shorter than 8 bytes in an unfragmented packet")                                   \
  X(kTruncatedIcmp, 15, "truncated_icmp", "ICMP/ICMPv6 header shorter than 8 bytes")               \
  X(kIcmpInnerTruncated, 16, "icmp_inner_truncated",                                               \
    "ICMP error quotes too little of the original packet to find its ports")                       \
  X(kIcmpInnerMalformed, 17, "icmp_inner_malformed",                                               \
    "ICMP error quotes a packet with a wrong IP version or IHL below 5")                           \
  X(kIcmpInnerUnsupported, 18, "icmp_inner_unsupported",                                           \
    "ICMP error quotes a packet that is not TCP or UDP, or is a non-first fragment")

FULCRUM_DECLARE_REASONS(ParseResult, FULCRUM_PARSE_RESULTS)

// Bits of ParsedPacket::flags.
inline constexpr uint16_t kPacketVlan = 1u << 0;            // one 802.1Q tag; vlan_tci is set
inline constexpr uint16_t kPacketIpv4Options = 1u << 1;     // IHL > 5: the kernel's business
inline constexpr uint16_t kPacketFragment = 1u << 2;        // MF set or fragment offset != 0
inline constexpr uint16_t kPacketFirstFragment = 1u << 3;   // fragment with offset 0
inline constexpr uint16_t kPacketDontFragment = 1u << 4;    // IPv4 DF; always set for IPv6
inline constexpr uint16_t kPacketPorts = 1u << 5;           // tuple ports are valid
inline constexpr uint16_t kPacketIcmpError = 1u << 6;       // tuple is the quoted flow, swapped
inline constexpr uint16_t kPacketIpv6ExtHeaders = 1u << 7;  // walked at least one ext header

// TCP flag bits of ParsedPacket::tcp_flags (the raw byte 13 of the TCP header).
inline constexpr uint8_t kTcpFin = 0x01;
inline constexpr uint8_t kTcpSyn = 0x02;
inline constexpr uint8_t kTcpRst = 0x04;
inline constexpr uint8_t kTcpPsh = 0x08;
inline constexpr uint8_t kTcpAck = 0x10;

// The IPv6 extension-header walk stops here. RFC 8200 section 4.1's recommended order has at
// most five of the walked kinds (hop-by-hop, destination options, routing, fragment,
// destination options); one spare tolerates an odd but harmless sender. A longer chain is
// kIpv6ExtChainTooLong: it costs a loop iteration per header, and nothing legitimate needs it.
inline constexpr uint32_t kMaxIpv6ExtHeaders = 6;

// What ParsePacket found. On kOk every field is meaningful (ports only with kPacketPorts, ICMP
// fields only for ICMP); on kNotIp and kStackedVlan, l3_offset, vlan_tci and kPacketVlan are;
// on any other result nothing is. Offsets count from the first byte of the frame.
struct alignas(64) ParsedPacket {
  // For an ICMP error with kPacketIcmpError: the quoted packet's tuple with addresses and
  // ports swapped, i.e. the client -> VIP flow the error is about.
  FlowTuple tuple;
  uint16_t l3_offset = 0;  // the IP header: 14, or 18 with an 802.1Q tag
  uint16_t flags = 0;      // kPacket* bits
  uint32_t l4_offset = 0;  // after the IPv4 options or the IPv6 extension headers
  uint32_t l3_length = 0;  // IPv4 total length, or 40 + IPv6 payload length: no padding
  uint32_t icmp_mtu = 0;   // next-hop MTU of frag-needed / packet-too-big
  uint16_t vlan_tci = 0;   // PCP, DEI and VLAN id of the 802.1Q tag
  uint8_t tos = 0;         // IPv4 TOS or IPv6 traffic class: DSCP and ECN
  uint8_t ttl = 0;         // IPv4 TTL or IPv6 hop limit
  uint8_t tcp_flags = 0;   // kTcp* bits, for TCP with kPacketPorts and no kPacketIcmpError
  uint8_t icmp_type = 0;
  uint8_t icmp_code = 0;

  bool Has(uint16_t flag) const noexcept { return (flags & flag) != 0; }

  friend bool operator==(const ParsedPacket&, const ParsedPacket&) = default;
};
// Aligned so that it never straddles two lines: unaligned, it measured 30-60 % slower to parse
// into (bench/packet_bench.cc, depending on where the stack put the array).
static_assert(sizeof(ParsedPacket) == 64, "ParsedPacket is written per packet: one cache line");

namespace parse_internal {

inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
inline constexpr uint16_t kEtherTypeVlan = 0x8100;
inline constexpr uint16_t kEtherTypeQinQ = 0x88a8;
inline constexpr uint16_t kEtherTypeQinQLegacy = 0x9100;
inline constexpr uint32_t kEthernetHeaderLen = 14;
inline constexpr uint32_t kVlanTagLen = 4;
inline constexpr uint32_t kIpv4MinHeaderLen = 20;
inline constexpr uint32_t kIpv6HeaderLen = 40;
inline constexpr uint32_t kTcpMinHeaderLen = 20;
inline constexpr uint32_t kUdpHeaderLen = 8;
inline constexpr uint32_t kIcmpHeaderLen = 8;
inline constexpr uint32_t kIpv6FragmentHeaderLen = 8;
inline constexpr uint8_t kProtoHopByHop = 0;
inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;
inline constexpr uint8_t kProtoRouting = 43;
inline constexpr uint8_t kProtoFragment = 44;
inline constexpr uint8_t kProtoIcmpv6 = 58;
inline constexpr uint8_t kProtoDestOptions = 60;
inline constexpr uint16_t kIpv4FlagDf = 0x4000;
inline constexpr uint16_t kIpv4FlagMf = 0x2000;
inline constexpr uint16_t kIpv4OffsetMask = 0x1fff;
inline constexpr uint16_t kIpv6FragOffsetMask = 0xfff8;
inline constexpr uint16_t kIpv6FragMf = 0x0001;
inline constexpr uint8_t kIcmpDestUnreachable = 3;
inline constexpr uint8_t kIcmpFragNeeded = 4;
inline constexpr uint8_t kIcmpv6PacketTooBig = 2;

inline uint16_t Load16(const uint8_t* p) noexcept {
  uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return __builtin_bswap16(v);
}
inline uint32_t Load32(const uint8_t* p) noexcept {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return __builtin_bswap32(v);
}
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "Load16/Load32 swap to host order");

// The source and destination ports at `p` (an L4 header's first 4 bytes, network order) as
// FlowTuple holds them, src_port | dst_port << 16 in host order: one load, a byte swap, a rotate.
inline uint32_t LoadPorts(const uint8_t* p) noexcept {
  return std::rotl(Load32(p), 16);
}
// The same ports exchanged (dst_port | src_port << 16), for a quoted packet that went the other
// way: the byte swap alone.
inline uint32_t LoadPortsSwapped(const uint8_t* p) noexcept { return Load32(p); }

// Ports (LoadPorts), protocol and family with one 8-byte store over FlowTuple's bytes 32..39
// (`reserved` zero). FlowHash reads those bytes with one 8-byte load, which the store buffer
// forwards only from a store that covers them all; after field-by-field stores it waits ~15
// cycles for them to reach the cache, and did so once per packet (docs/dataplane.md "Cost").
inline void StorePortsAndProto(FlowTuple& t, uint32_t ports, uint8_t proto, bool v6) noexcept {
  static_assert(offsetof(FlowTuple, src_port) == 32 && offsetof(FlowTuple, dst_port) == 34 &&
                offsetof(FlowTuple, v6) == 37 && offsetof(FlowTuple, reserved) == 38 &&
                sizeof(FlowTuple) == 40);
  const uint64_t word = uint64_t{ports} | uint64_t{proto} << 32 | uint64_t{v6} << 40;
  std::memcpy(reinterpret_cast<uint8_t*>(&t) + offsetof(FlowTuple, src_port), &word, 8);
}

// Where an IPv6 extension-header walk ended.
struct Ipv6Chain {
  uint32_t l4_offset = 0;
  uint16_t flags = 0;  // kPacketIpv6ExtHeaders, kPacketFragment, kPacketFirstFragment
  uint8_t proto = 0;
  bool later_fragment = false;  // offset != 0: what follows is mid-datagram, not a header
};

// Walks hop-by-hop, routing, fragment and destination-options headers from `off` (the first
// byte after the fixed IPv6 header) to the upper-layer header without reading at or past
// `end`. Anything else (TCP, UDP, ICMPv6, but also AH, ESP, No Next Header) ends the walk and
// becomes the tuple's protocol.
inline ParseResult WalkIpv6Chain(const uint8_t* data, uint32_t off, uint32_t end, uint8_t next,
                                 Ipv6Chain& chain) noexcept {
  uint16_t flags = 0;
  bool later_fragment = false;
  for (uint32_t walked = 0; next == kProtoHopByHop || next == kProtoRouting ||
                            next == kProtoFragment || next == kProtoDestOptions;
       ++walked) {
    if (walked == kMaxIpv6ExtHeaders) return ParseResult::kIpv6ExtChainTooLong;
    // Every walked header is at least 8 bytes and starts with (next header, length).
    if (end - off < 8) return ParseResult::kTruncatedIpv6ExtHeader;
    const uint8_t* ext = data + off;
    flags |= kPacketIpv6ExtHeaders;
    if (next == kProtoFragment) {
      const uint16_t offset_mf = Load16(ext + 2);
      next = ext[0];
      off += kIpv6FragmentHeaderLen;
      // Offset 0 without M is an atomic fragment (RFC 6946): a whole packet, not a fragment.
      if ((offset_mf & (kIpv6FragOffsetMask | kIpv6FragMf)) != 0) {
        flags |= kPacketFragment;
        if ((offset_mf & kIpv6FragOffsetMask) != 0) {
          later_fragment = true;
          break;
        }
        flags |= kPacketFirstFragment;
      }
      continue;
    }
    const uint32_t ext_len = (ext[1] + 1u) * 8u;
    if (end - off < ext_len) return ParseResult::kTruncatedIpv6ExtHeader;
    next = ext[0];
    off += ext_len;
  }
  chain.l4_offset = off;
  chain.flags = flags;
  chain.proto = next;
  chain.later_fragment = later_fragment;
  return ParseResult::kOk;
}

// Reads the packet an ICMP error quotes, from `off` (after the 8-byte ICMP header) to `end`,
// and stores its tuple into `tuple` with addresses and ports swapped. Only the addresses and
// the first 4 bytes of L4 are needed: RFC 792 guarantees 8, RFC 1812 and RFC 4443 more.
template <bool kIpv6>
inline ParseResult ParseQuotedPacket(const uint8_t* data, uint32_t off, uint32_t end,
                                     FlowTuple& tuple) noexcept {
  const uint8_t* ip = data + off;
  uint8_t proto;
  uint32_t l4;
  if constexpr (kIpv6) {
    if (end - off < kIpv6HeaderLen) return ParseResult::kIcmpInnerTruncated;
    if ((ip[0] >> 4) != 6) return ParseResult::kIcmpInnerMalformed;
    Ipv6Chain chain;
    const ParseResult r = WalkIpv6Chain(data, off + kIpv6HeaderLen, end, ip[6], chain);
    if (r == ParseResult::kTruncatedIpv6ExtHeader) return ParseResult::kIcmpInnerTruncated;
    if (r != ParseResult::kOk) return r;
    if (chain.later_fragment) return ParseResult::kIcmpInnerUnsupported;
    proto = chain.proto;
    l4 = chain.l4_offset;
  } else {
    if (end - off < kIpv4MinHeaderLen) return ParseResult::kIcmpInnerTruncated;
    if ((ip[0] >> 4) != 4) return ParseResult::kIcmpInnerMalformed;
    const uint32_t header_len = (ip[0] & 0xfu) * 4u;
    if (header_len < kIpv4MinHeaderLen) return ParseResult::kIcmpInnerMalformed;
    if (end - off < header_len) return ParseResult::kIcmpInnerTruncated;
    if ((Load16(ip + 6) & kIpv4OffsetMask) != 0) return ParseResult::kIcmpInnerUnsupported;
    proto = ip[9];
    l4 = off + header_len;
  }
  if (proto != kProtoTcp && proto != kProtoUdp) return ParseResult::kIcmpInnerUnsupported;
  if (end - l4 < 4) return ParseResult::kIcmpInnerTruncated;
  // The quoted packet went VIP -> client (the backend answered with the VIP as its source and
  // a router refused it); swapped, it is the client -> VIP flow the data plane tracks.
  constexpr uint32_t kAddrLen = kIpv6 ? 16 : 4;
  constexpr uint32_t kSrc = kIpv6 ? 8 : 12;
  std::memcpy(tuple.src.data(), ip + kSrc + kAddrLen, kAddrLen);
  std::memcpy(tuple.dst.data(), ip + kSrc, kAddrLen);
  StorePortsAndProto(tuple, LoadPortsSwapped(data + l4), proto, kIpv6);
  return ParseResult::kOk;
}

// ICMP and ICMPv6. Only frag-needed (type 3 code 4) and packet-too-big (type 2) are read
// further: they are the errors a VIP flow's backend must see for path MTU discovery to work.
template <bool kIpv6>
inline ParseResult ParseIcmp(const uint8_t* data, uint32_t l4, uint32_t end,
                             ParsedPacket& out) noexcept {
  if (end - l4 < kIcmpHeaderLen) return ParseResult::kTruncatedIcmp;
  const uint8_t* icmp = data + l4;
  out.icmp_type = icmp[0];
  out.icmp_code = icmp[1];
  uint32_t mtu;
  if constexpr (kIpv6) {
    // RFC 4443 3.2: the code is always 0 and is ignored by the receiver.
    if (icmp[0] != kIcmpv6PacketTooBig) return ParseResult::kOk;
    mtu = Load32(icmp + 4);
  } else {
    if (icmp[0] != kIcmpDestUnreachable || icmp[1] != kIcmpFragNeeded) return ParseResult::kOk;
    mtu = Load16(icmp + 6);  // RFC 1191 section 4
  }
  const ParseResult r = ParseQuotedPacket<kIpv6>(data, l4 + kIcmpHeaderLen, end, out.tuple);
  if (r != ParseResult::kOk) return r;
  out.icmp_mtu = mtu;
  out.flags |= kPacketIcmpError | kPacketPorts;
  return ParseResult::kOk;
}

// The upper-layer header at `l4`, for a packet whose IP packet ends at `end`.
template <bool kIpv6>
inline ParseResult ParseL4(const uint8_t* data, uint32_t l4, uint32_t end,
                           ParsedPacket& out) noexcept {
  constexpr uint8_t kProtoIcmpOfFamily = kIpv6 ? kProtoIcmpv6 : kProtoIcmp;
  const uint32_t avail = end - l4;
  const uint8_t* p = data + l4;
  ParseResult r;
  switch (out.tuple.proto) {
    case kProtoTcp:
      if (avail < kTcpMinHeaderLen) {
        r = ParseResult::kTruncatedTcp;
        break;
      }
      StorePortsAndProto(out.tuple, LoadPorts(p), kProtoTcp, kIpv6);
      out.tcp_flags = p[13];
      out.flags |= kPacketPorts;
      return ParseResult::kOk;
    case kProtoUdp:
      if (avail < kUdpHeaderLen) {
        r = ParseResult::kTruncatedUdp;
        break;
      }
      StorePortsAndProto(out.tuple, LoadPorts(p), kProtoUdp, kIpv6);
      out.flags |= kPacketPorts;
      return ParseResult::kOk;
    case kProtoIcmpOfFamily:
      r = ParseIcmp<kIpv6>(data, l4, end, out);
      break;
    default:
      return ParseResult::kOk;  // another protocol: a tuple without ports
  }
  // A first fragment may end inside the L4 header (the rest follows in the next fragment):
  // that is the fragment policy's business, not a malformed packet. The L4 parsers set ports
  // and flags only on success, so the tuple keeps the fragment's addresses and protocol only.
  return (out.flags & kPacketFragment) != 0 ? ParseResult::kOk : r;
}

[[gnu::noinline]] inline ParseResult ParseIpv4(const uint8_t* data, uint32_t len, uint32_t l3,
                                               ParsedPacket& out) noexcept {
  if (len - l3 < kIpv4MinHeaderLen) return ParseResult::kTruncatedIpv4Header;
  const uint8_t* ip = data + l3;
  if ((ip[0] >> 4) != 4) return ParseResult::kBadIpVersion;
  const uint32_t header_len = (ip[0] & 0xfu) * 4u;
  if (header_len < kIpv4MinHeaderLen) return ParseResult::kBadIpv4HeaderLength;
  const uint32_t total_len = Load16(ip + 2);
  if (total_len < header_len) return ParseResult::kBadIpv4TotalLength;
  // Also covers an IHL that runs past the frame, since total_len >= header_len.
  if (total_len > len - l3) return ParseResult::kIpv4TotalLengthBeyondFrame;
  const uint16_t frag = Load16(ip + 6);
  out.tos = ip[1];
  out.ttl = ip[8];
  out.l3_length = total_len;
  out.l4_offset = l3 + header_len;
  out.tuple.proto = ip[9];
  std::memcpy(out.tuple.src.data(), ip + 12, 4);
  std::memcpy(out.tuple.dst.data(), ip + 16, 4);
  uint16_t flags = 0;
  if (header_len > kIpv4MinHeaderLen) flags |= kPacketIpv4Options;
  if ((frag & kIpv4FlagDf) != 0) flags |= kPacketDontFragment;
  if ((frag & (kIpv4FlagMf | kIpv4OffsetMask)) != 0) {
    flags |= kPacketFragment;
    if ((frag & kIpv4OffsetMask) == 0) flags |= kPacketFirstFragment;
  }
  out.flags |= flags;
  if ((frag & kIpv4OffsetMask) != 0) return ParseResult::kOk;  // no L4 header in here
  return ParseL4<false>(data, out.l4_offset, l3 + total_len, out);
}

// The common case in one pass: IPv4 without options, not a fragment, carrying a whole TCP or
// UDP header. Fills `out` exactly as ParseIpv4 would and returns true; false means "not this
// case" (nothing about the packet is decided), and ParseIpv4 takes it from the start. About a
// third fewer instructions than the general path for the packets a VIP mostly gets.
// `l2_flags` are the flags the Ethernet header gave (kPacketVlan or 0), passed rather than read
// back from `out`.
inline bool ParseIpv4Fast(const uint8_t* data, uint32_t len, uint32_t l3, uint16_t l2_flags,
                          ParsedPacket& out) noexcept {
  if (len - l3 < kIpv4MinHeaderLen + kUdpHeaderLen) return false;
  const uint8_t* ip = data + l3;
  const uint8_t proto = ip[9];
  const uint32_t total_len = Load16(ip + 2);
  const uint16_t frag = Load16(ip + 6);
  const uint32_t l4_min = proto == kProtoTcp ? kTcpMinHeaderLen : kUdpHeaderLen;
  if (ip[0] != 0x45 || (proto != kProtoTcp && proto != kProtoUdp) ||
      (frag & (kIpv4FlagMf | kIpv4OffsetMask)) != 0 || total_len < kIpv4MinHeaderLen + l4_min ||
      total_len > len - l3) {
    return false;
  }
  const uint8_t* l4 = ip + kIpv4MinHeaderLen;
  out.tos = ip[1];
  out.ttl = ip[8];
  out.l3_length = total_len;
  out.l4_offset = l3 + kIpv4MinHeaderLen;
  std::memcpy(out.tuple.src.data(), ip + 12, 4);
  std::memcpy(out.tuple.dst.data(), ip + 16, 4);
  StorePortsAndProto(out.tuple, LoadPorts(l4), proto, false);
  out.tcp_flags = proto == kProtoTcp ? l4[13] : 0;
  out.flags = static_cast<uint16_t>(l2_flags | kPacketPorts |
                                    ((frag & kIpv4FlagDf) != 0 ? kPacketDontFragment : 0));
  return true;
}

inline ParseResult ParseIpv6(const uint8_t* data, uint32_t len, uint32_t l3,
                             ParsedPacket& out) noexcept {
  if (len - l3 < kIpv6HeaderLen) return ParseResult::kTruncatedIpv6Header;
  const uint8_t* ip = data + l3;
  if ((ip[0] >> 4) != 6) return ParseResult::kBadIpVersion;
  // A payload length of 0 (a jumbogram, RFC 2675) leaves no room for any header after the
  // fixed one, so such a packet fails below unless its next header is No Next Header.
  const uint32_t l3_len = kIpv6HeaderLen + Load16(ip + 4);
  if (l3_len > len - l3) return ParseResult::kIpv6PayloadLengthBeyondFrame;
  out.tos = static_cast<uint8_t>(Load16(ip) >> 4);
  out.ttl = ip[7];
  out.l3_length = l3_len;
  out.tuple.v6 = true;
  std::memcpy(out.tuple.src.data(), ip + 8, 16);
  std::memcpy(out.tuple.dst.data(), ip + 24, 16);
  Ipv6Chain chain;
  const ParseResult r = WalkIpv6Chain(data, l3 + kIpv6HeaderLen, l3 + l3_len, ip[6], chain);
  if (r != ParseResult::kOk) return r;
  out.tuple.proto = chain.proto;
  out.l4_offset = chain.l4_offset;
  // Routers never fragment IPv6 (RFC 8200 section 5): every IPv6 packet behaves as if DF.
  out.flags |= static_cast<uint16_t>(chain.flags | kPacketDontFragment);
  if (chain.later_fragment) return ParseResult::kOk;
  return ParseL4<true>(data, chain.l4_offset, l3 + l3_len, out);
}

}  // namespace parse_internal

// Parses the Ethernet frame data[0, len). Never reads data[len] or beyond; data may be null
// when len is 0. `out` is overwritten whatever the result (see ParsedPacket for which fields
// a result leaves meaningful).
// Cost: see the file comment.
inline ParseResult ParsePacket(const uint8_t* data, uint32_t len, ParsedPacket& out) noexcept {
  using namespace parse_internal;
  out = ParsedPacket{};
  if (len < kEthernetHeaderLen) return ParseResult::kTruncatedEthernet;
  uint32_t l3 = kEthernetHeaderLen;
  uint16_t ether_type = Load16(data + 12);
  if (ether_type == kEtherTypeIpv4) {
    // Untagged IPv4, the common frame, apart: with the offset a constant the fast path needs no
    // register for it (as a variable shared with the tagged case the compiler kept it and the
    // sums derived from it on the stack: 14 instructions a packet in the pipeline).
    out.l3_offset = kEthernetHeaderLen;
    if (ParseIpv4Fast(data, len, kEthernetHeaderLen, 0, out)) return ParseResult::kOk;
    return ParseIpv4(data, len, kEthernetHeaderLen, out);
  }
  if (ether_type == kEtherTypeVlan) {
    if (len < kEthernetHeaderLen + kVlanTagLen) return ParseResult::kTruncatedEthernet;
    out.flags = kPacketVlan;
    out.vlan_tci = Load16(data + 14);
    ether_type = Load16(data + 16);
    l3 += kVlanTagLen;
  }
  out.l3_offset = static_cast<uint16_t>(l3);
  if (ether_type == kEtherTypeIpv4) {
    if (ParseIpv4Fast(data, len, l3, out.flags, out)) return ParseResult::kOk;
    return ParseIpv4(data, len, l3, out);
  }
  if (ether_type == kEtherTypeIpv6) return ParseIpv6(data, len, l3, out);
  // Stacked tags are a distinct reason rather than kNotIp so they can be counted: on an edge
  // port they mean a misconfigured switch. The data plane sends them to the kernel like ARP.
  if (ether_type == kEtherTypeVlan || ether_type == kEtherTypeQinQ ||
      ether_type == kEtherTypeQinQLegacy) {
    return ParseResult::kStackedVlan;
  }
  return ParseResult::kNotIp;
}

inline ParseResult ParsePacket(std::span<const uint8_t> frame, ParsedPacket& out) noexcept {
  // Frames never approach 4 GiB; a larger span is clamped, which can only shorten what is read.
  const uint32_t len = frame.size() > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(frame.size());
  return ParsePacket(frame.data(), len, out);
}

// RFC 791 header checksum check, for ports whose NIC does not verify it on receive
// (ParsePacket does not: DPDK reports the NIC's verdict in the mbuf's ol_flags for free).
// `header` is the IPv4 header, l4_offset - l3_offset bytes of a kOk IPv4 parse.
inline bool Ipv4HeaderChecksumOk(const uint8_t* header, uint32_t header_len) noexcept {
  uint32_t sum = 0;
  for (uint32_t i = 0; i + 1 < header_len; i += 2) sum += parse_internal::Load16(header + i);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return sum == 0xffff;
}

}  // namespace fulcrum
