// Pipeline: the per-burst work of a worker lcore (see pipeline.h for the contract).
#include "dataplane/pipeline.h"

#include <emmintrin.h>
#include <rte_branch_prediction.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_prefetch.h>

#include <cassert>
#include <cstring>
#include <type_traits>

#include "dataplane/core/flow_hash.h"
#include "dataplane/core/parse.h"

namespace fulcrum {
namespace {

// The flow table stores backend ids in 16 bits.
static_assert(shm::kMaxBackends - 1 <= FlowTable::kMaxBackend);

using shm::Bump;
using shm::DropReason;
using shm::LcoreCounter;

// The counts of one burst. Bumping a shared counter per packet chains every packet to the
// previous one through a store and a load of the same location, so what nearly every packet
// counts is kept here and added to the lcore's shared block once, at the end: the parsed and
// flow-hit counts, and per VIP a run of packets to the same VIP (a burst is mostly one VIP)
// that adds up before it is stored. A backend's packets and bytes go to its counters as they
// are sent: consecutive packets of many flows go to different backends, and a run per backend
// (or per VIP and backend pair) then ended, and flushed, on nearly every packet: 1 Mi flows in
// random order measured 3.3 ns a packet faster this way (new flows 1.9), one hot flow 0.6 ns
// slower: the many-flow case is the one an edge sees. What only some packets count (a drop, a
// parse error, an ICMP error, a re-pick) goes to the shared block as it happens: per-burst
// arrays for those cost a clear of every one of them on every burst.
//
// Sent and NewFlow run for nearly every packet and are forced inline: with forward() inlined
// for the repeats of a flow too, the compiler stopped inlining them: 4 instructions a packet
// more at 1 Mi flows, 9 for new flows (bench/instructions.sh).
class Tally {
 public:
  explicit Tally(shm::LcoreStats& st) : st_(st) {}
  ~Tally() { Flush(); }

  void Count(LcoreCounter c, uint64_t n = 1) { Bump(st_.counters[static_cast<size_t>(c)], n); }
  void Hit() { ++hits_; }
  void ParsedOk() { ++parsed_ok_; }
  void ParseFailed(ParseResult r) { Bump(st_.parse[static_cast<size_t>(r)]); }
  // Frees the packet and counts why; `vip` is the VIP's id, or -1 when none applies.
  void Drop(rte_mbuf* m, DropReason r, int vip = -1) {
    Bump(st_.drops[static_cast<size_t>(r)]);
    if (vip >= 0) Bump(st_.vips[vip].drops);
    rte_pktmbuf_free(m);
  }
  void DroppedFreed(DropReason r, uint16_t vip) {  // the caller reused or freed the mbuf
    Bump(st_.drops[static_cast<size_t>(r)]);
    Bump(st_.vips[vip].drops);
  }
  [[gnu::always_inline]] void Sent(const VipEntry& vip, const BackendEntry& be, uint32_t bytes) {
    Sent(vip, be, 1, bytes);
  }
  // The packets of a flow's repeats (ProcessBurst), counted once for all of them.
  [[gnu::always_inline]] void Sent(const VipEntry& vip, const BackendEntry& be, uint32_t packets,
                                   uint64_t bytes) {
    Run& r = Vip(vip);
    r.packets += packets;
    r.bytes += bytes;
    shm::BackendCounters& c = st_.backends[be.id];
    Bump(c.packets, packets);
    Bump(c.bytes, bytes);
  }
  [[gnu::always_inline]] void NewFlow(const VipEntry& vip, const BackendEntry& be) {
    ++new_flows_;
    Vip(vip).new_flows++;
    Bump(st_.backends[be.id].new_flows);
  }

 private:
  // What consecutive packets of one VIP add to its counters.
  struct Run {
    static constexpr uint32_t kNone = 0xffffffff;
    uint32_t vip = kNone;
    uint64_t packets = 0, bytes = 0, new_flows = 0;
  };
  Run& Vip(const VipEntry& vip) {
    if (run_.vip != vip.id) {
      FlushRun();
      run_ = Run{vip.id};
    }
    return run_;
  }
  void FlushRun() {
    if (run_.vip == Run::kNone) return;
    shm::VipCounters& v = st_.vips[run_.vip];
    if (run_.packets != 0) {
      Bump(v.packets, run_.packets);
      Bump(v.bytes, run_.bytes);
    }
    if (run_.new_flows != 0) Bump(v.new_flows, run_.new_flows);
  }
  void Flush() {
    FlushRun();
    if (hits_ != 0) Bump(st_.counters[static_cast<size_t>(LcoreCounter::kFlowHits)], hits_);
    if (new_flows_ != 0) {
      Bump(st_.counters[static_cast<size_t>(LcoreCounter::kNewFlows)], new_flows_);
    }
    if (parsed_ok_ != 0) Bump(st_.parse[static_cast<size_t>(ParseResult::kOk)], parsed_ok_);
  }

  shm::LcoreStats& st_;
  uint32_t hits_ = 0;
  uint32_t new_flows_ = 0;
  uint32_t parsed_ok_ = 0;
  Run run_;
};

// The prefilter's answer for the previous frame's destination: a burst is mostly one VIP
// (often one flow), and while the destination repeats the probe of the VIP map is skipped.
class AddressMemo {
 public:
  explicit AddressMemo(const VipMap& vips) : vips_(vips) {}

  const VipMap::Address* Find(const uint8_t* dst, bool v6) {
    const VipMap::Words w = VipMap::Load(dst, v6);
    if (w.lo != last_.lo || w.hi != last_.hi || w.family != last_.family) {
      last_ = w;
      address_ = vips_.FindAddress(w);
    }
    return address_;
  }

 private:
  const VipMap& vips_;
  VipMap::Words last_{0, 0, 0};  // family 0 until a destination was looked up
  const VipMap::Address* address_ = nullptr;
};

// The parser's 16-bit load (a builtin byte swap, a rotate): rte_be_to_cpu_16 is inline
// assembly (an xchg of the two byte registers) that kept the value from the optimiser, one move
// more in the destination peek of every packet.
using parse_internal::Load16;
// And the encapsulation's stores, for the ICMP errors this file builds.
using encap_internal::Store16;
using encap_internal::Store32;

// The destination address of an IP frame, read without parsing it: enough to send traffic that
// is not for any VIP address to the kernel for one probe. nullptr when the frame is not IP or
// too short to hold the address (the kernel judges those).
inline const uint8_t* PeekDestination(const uint8_t* data, uint32_t len, bool& v6) {
  if (len < 14) return nullptr;
  uint32_t l3 = 14;
  uint16_t type = Load16(data + 12);
  if (type == RTE_ETHER_TYPE_IPV4) {  // untagged IPv4 apart, with constant offsets (as in parse.h)
    v6 = false;
    return len >= 14 + 20 ? data + 14 + 16 : nullptr;
  }
  if (type == RTE_ETHER_TYPE_VLAN) {
    if (len < 18) return nullptr;
    type = Load16(data + 16);
    l3 = 18;
  }
  if (type == RTE_ETHER_TYPE_IPV4) {
    v6 = false;
    return len >= l3 + 20 ? data + l3 + 16 : nullptr;
  }
  if (type == RTE_ETHER_TYPE_IPV6) {
    v6 = true;
    return len >= l3 + 40 ? data + l3 + 24 : nullptr;
  }
  return nullptr;
}

// Whether packet `p` repeats the flow of `prev`, the packet queued for the flow table just before
// it in the same burst. A burst often holds several packets of one flow in a row (a client's
// upload, a train of ACKs); those take the queued packet's VIP, hash, flow-table lookup and
// selection (docs/dataplane.md "Runs of a flow"). A packet repeats a flow when it has the same
// tuple, neither packet is an ICMP error (which never creates or refreshes a flow), and it
// neither opens nor closes a connection: a SYN re-picks and a FIN or RST marks the flow closing,
// so those go through the table themselves.
inline bool RepeatsFlow(const ParsedPacket& p, const ParsedPacket& prev) {
  static_assert(offsetof(FlowTuple, src) == 0 && offsetof(FlowTuple, dst) == 16 &&
                offsetof(FlowTuple, src_port) == 32 && sizeof(FlowTuple) == 40);
  uint64_t word_p, word_prev;
  std::memcpy(&word_p, reinterpret_cast<const uint8_t*>(&p.tuple) + 32, 8);
  std::memcpy(&word_prev, reinterpret_cast<const uint8_t*>(&prev.tuple) + 32, 8);
  // Ports, protocol and family first: they differ between most flows of a VIP, and this one
  // compare is what a packet of another flow costs.
  if (word_p != word_prev) return false;
  const auto* a = reinterpret_cast<const __m128i*>(&p.tuple);  // ParsedPacket: 64-byte aligned
  const auto* b = reinterpret_cast<const __m128i*>(&prev.tuple);
  const __m128i same = _mm_and_si128(_mm_cmpeq_epi8(_mm_load_si128(a), _mm_load_si128(b)),
                                     _mm_cmpeq_epi8(_mm_load_si128(a + 1), _mm_load_si128(b + 1)));
  if (_mm_movemask_epi8(same) != 0xffff) return false;
  if (((p.flags | prev.flags) & kPacketIcmpError) != 0) return false;
  return p.tuple.proto != IPPROTO_TCP || (p.tcp_flags & (kTcpSyn | kTcpFin | kTcpRst)) == 0;
}

// Makes `p` the packet before the first of a burst: a reserved byte of its tuple set, so that no
// parsed packet repeats it (RepeatsFlow compares that word first). The one store it takes.
inline void MarkNoFlow(ParsedPacket& p) {
  const uint64_t word = uint64_t{1} << 48;  // FlowTuple::reserved[0]
  std::memcpy(reinterpret_cast<uint8_t*>(&p.tuple) + 32, &word, sizeof(word));
}

// Moves the frame start so that `header_len` bytes of outer headers end where the inner IP
// packet begins, and drops any Ethernet padding after the IP packet. False when the mbuf lacks
// the headroom. ol_flags stay as received, as testpmd's io forwarding leaves them: the RX bits
// mean nothing to a TX queue, no TX offload is asked for (the outer checksum is computed
// here), and the bits that describe the buffer itself (EXTERNAL, INDIRECT) must survive for
// the free to release it the right way.
inline bool Reframe(rte_mbuf* m, const ParsedPacket& p, uint32_t header_len) {
  const uint32_t available = rte_pktmbuf_headroom(m) + p.l3_offset;
  if (available < header_len) return false;
  const auto new_off = static_cast<uint16_t>(m->data_off + p.l3_offset - header_len);
  const uint32_t frame_len = header_len + p.l3_length;
  if (m->nb_segs == 1) {
    m->data_len = static_cast<uint16_t>(frame_len);
    m->pkt_len = frame_len;
  } else {
    // Chained mbufs are never padded (padding is for frames under 60 bytes): prepend only.
    const int32_t delta = static_cast<int32_t>(header_len) - static_cast<int32_t>(p.l3_offset);
    m->data_len = static_cast<uint16_t>(m->data_len + delta);
    m->pkt_len = static_cast<uint32_t>(static_cast<int64_t>(m->pkt_len) + delta);
  }
  m->data_off = new_off;
  return true;
}

inline bool TakeIcmpToken(const ForwardingState& state, uint64_t now_tsc, LcoreContext& ctx) {
  const uint64_t rate = state.icmp_rate_pps();
  if (rate == 0) return false;
  uint64_t elapsed = now_tsc - ctx.icmp_last_tsc;
  ctx.icmp_last_tsc = now_tsc;
  if (elapsed > ctx.tsc_hz) elapsed = ctx.tsc_hz;  // at most one second of tokens
  const uint64_t cap = rate * 1000;
  ctx.icmp_tokens_milli +=
      static_cast<uint64_t>(static_cast<flow_hash_internal::Uint128>(elapsed) * cap / ctx.tsc_hz);
  if (ctx.icmp_tokens_milli > cap) ctx.icmp_tokens_milli = cap;
  if (ctx.icmp_tokens_milli < 1000) return false;
  ctx.icmp_tokens_milli -= 1000;
  return true;
}

// Turns a packet too big for the tunnel into the ICMP frag-needed (IPv4) or packet-too-big
// (IPv6) that tells its sender the size that fits, in the same mbuf: the error quotes the start
// of the packet, which is already where it needs to be. Sent from this host's outer source
// address of that family (the VIP when there is none), to the client, via the gateway.
// `tuple` is the packet's flow (a repeat's ParsedPacket holds only the fields of its own frame).
bool MakeTooBig(rte_mbuf* m, const ParsedPacket& p, const FlowTuple& tuple,
                const ForwardingState& state, uint32_t fitting_mtu, const MacAddress& port_mac) {
  if (m->nb_segs != 1) return false;  // the quote must be in one segment
  const bool v6 = tuple.v6;
  const uint32_t ip_len = v6 ? 40 : 20;
  const uint32_t header_len = 14 + ip_len + 8;
  // RFC 1812 4.3.2.3 / RFC 4443 2.4(c): as much of the packet as fits in the minimum MTU.
  const uint32_t max_quote = (v6 ? 1280u : 576u) - ip_len - 8;
  const uint32_t in_segment = m->data_len - p.l3_offset;
  uint32_t quote = p.l3_length < max_quote ? p.l3_length : max_quote;
  if (quote > in_segment) quote = in_segment;
  uint8_t client[16];
  uint8_t vip[16];
  std::memcpy(client, tuple.src.data(), 16);
  std::memcpy(vip, tuple.dst.data(), 16);
  ParsedPacket q = p;
  q.l3_length = quote;
  if (!Reframe(m, q, header_len)) return false;
  uint8_t* const frame = rte_pktmbuf_mtod(m, uint8_t*);
  std::memcpy(frame, state.gateway_mac().data(), 6);
  std::memcpy(frame + 6, port_mac.data(), 6);
  Store16(frame + 12, v6 ? RTE_ETHER_TYPE_IPV6 : RTE_ETHER_TYPE_IPV4);
  uint8_t* const ip = frame + 14;
  uint8_t* const icmp = ip + ip_len;
  const std::optional<IpAddress>& source = state.source(v6);
  const uint8_t* src = source.has_value() ? source->bytes.data() : vip;
  std::memset(ip, 0, ip_len + 8);
  if (!v6) {
    ip[0] = 0x45;
    Store16(ip + 2, static_cast<uint16_t>(20 + 8 + quote));
    ip[8] = 64;
    ip[9] = IPPROTO_ICMP;
    std::memcpy(ip + 12, src, 4);
    std::memcpy(ip + 16, client, 4);
    // DPDK's checksum helpers return the value in wire order already: stored as is.
    const uint16_t ip_sum = rte_ipv4_cksum(reinterpret_cast<const rte_ipv4_hdr*>(ip));
    std::memcpy(ip + 10, &ip_sum, 2);
    icmp[0] = 3;  // destination unreachable
    icmp[1] = 4;  // fragmentation needed and DF set
    Store16(icmp + 6, static_cast<uint16_t>(fitting_mtu));
    const auto icmp_sum = static_cast<uint16_t>(~rte_raw_cksum(icmp, 8 + quote));
    std::memcpy(icmp + 2, &icmp_sum, 2);
  } else {
    ip[0] = 0x60;
    Store16(ip + 4, static_cast<uint16_t>(8 + quote));
    ip[6] = IPPROTO_ICMPV6;
    ip[7] = 64;
    std::memcpy(ip + 8, src, 16);
    std::memcpy(ip + 24, client, 16);
    icmp[0] = 2;  // packet too big
    Store32(icmp + 4, fitting_mtu < 1280 ? 1280 : fitting_mtu);
    const uint16_t icmp_sum =
        rte_ipv6_udptcp_cksum(reinterpret_cast<const rte_ipv6_hdr*>(ip), icmp);
    std::memcpy(icmp + 2, &icmp_sum, 2);
  }
  return true;
}

// Per-burst scratch arrays, left uninitialised: their types have default member initialisers,
// and zeroing 64 ParsedPackets, tuples and refs per burst measured 200 instructions per packet
// (callgrind), more than parsing itself. Every element is written before it is read.
template <typename T, size_t N>
struct Scratch {
  static_assert(std::is_trivially_destructible_v<T>);
  union {
    T items[N];
  };
  Scratch() {}
  T& operator[](size_t i) { return items[i]; }
  T* data() { return items; }
};

}  // namespace

void ProcessBurst(const ForwardingState* state, rte_mbuf* const* pkts, uint16_t n,
                  const MacAddress& port_mac, uint32_t now_s, uint64_t now_tsc, LcoreContext& ctx,
                  BurstOutput& out) noexcept {
  Tally tally(*ctx.stats);
  for (uint16_t i = 0; i < n; ++i) rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));
  if (unlikely(state == nullptr)) {
    for (uint16_t i = 0; i < n; ++i) {
      bool v6;
      if (PeekDestination(rte_pktmbuf_mtod(pkts[i], const uint8_t*), pkts[i]->data_len, v6)) {
        tally.Count(LcoreCounter::kNoSnapshotPackets);
      }
      out.kernel[out.n_kernel++] = pkts[i];
    }
    return;
  }
  const ForwardingState& fs = *state;
  // The output counts, in registers for the burst (through `out`, every byte written into a
  // packet would make the compiler store and reload them), stored back on the way out.
  struct OutputCounts {
    BurstOutput& out;
    uint32_t tx;
    uint32_t kernel;
    ~OutputCounts() {
      out.n_tx = static_cast<uint16_t>(tx);
      out.n_kernel = static_cast<uint16_t>(kernel);
    }
  } queued{out, out.n_tx, out.n_kernel};
  const ForwardingView v = fs.view();
  AddressMemo addresses(fs.vip_map());
  FlowTable& flows = *ctx.flows;
  const EncapSourceMac src_mac = EncapSourceMac::Of(port_mac);

  // The packets that go on to the flow table, compacted: parsed[j] is packet mbuf_of[j], and the
  // flow table reads its keys where the parser wrote them (parsed[j].tuple). parsed[-1] is no
  // packet (MarkNoFlow), for the first packet's RepeatsFlow.
  Scratch<ParsedPacket, kMaxBurst + 1> parsed_slots;
  MarkNoFlow(parsed_slots[0]);
  ParsedPacket* const parsed = &parsed_slots[1];
  uint64_t hashes[kMaxBurst];
  rte_mbuf* mbuf_of[kMaxBurst];
  uint32_t vip_of[kMaxBurst];
  uint32_t k = 0;
  bool any_v6 = false;  // an IPv6 packet goes on to the flow table
  // The packets that repeat the flow of a queued packet (RepeatsFlow), in burst order: repeats[r]
  // (packet repeat_mbuf[r], only its frame's fields) follows parsed[repeat_head[r]] and takes its
  // flow and selection. repeat_head[n_repeats] is no packet's (kMaxBurst), for stage 3.
  Scratch<ParsedPacket, kMaxBurst> repeats;
  rte_mbuf* repeat_mbuf[kMaxBurst];
  uint8_t repeat_head[kMaxBurst + 1];
  uint32_t n_repeats = 0;

  // What the repeats of one flow sent, counted once for them all.
  struct RunCounts {
    uint32_t packets = 0;
    uint64_t bytes = 0;
  };
  // Forwards packet m (its frame's fields in p, its flow `tuple`) to backend index b: MTU check,
  // encapsulation, counters (into `run` when given). Inlined into every call site: called, it
  // saved and restored a dozen registers per packet.
  auto forward = [&](rte_mbuf * m, const ParsedPacket& p, const FlowTuple& tuple,
                     const VipEntry& vip, uint32_t b, uint64_t hash, RunCounts* run)
      __attribute__((always_inline)) {
    const BackendEntry& be = v.backends[b];
    const bool inner_v6 = tuple.v6;
    const EncapTemplate& t = be.encap[inner_v6];
    const uint32_t overhead = t.header_len - kEncapEthernetLen;
    if (unlikely(p.l3_length + overhead > v.mtu)) {
      tally.DroppedFreed(DropReason::kMtuExceeded, vip.id);
      const bool answer = p.Has(kPacketDontFragment) && !p.Has(kPacketIcmpError);
      if (answer && TakeIcmpToken(fs, now_tsc, ctx) &&
          MakeTooBig(m, p, tuple, fs, v.mtu - overhead, port_mac)) {
        tally.Count(LcoreCounter::kIcmpSent);
        out.tx[queued.tx++] = m;
        return;
      }
      if (answer) tally.Count(LcoreCounter::kIcmpRateLimited);
      rte_pktmbuf_free(m);
      return;
    }
    if (unlikely(!Reframe(m, p, t.header_len))) {
      tally.Drop(m, DropReason::kNoHeadroom, vip.id);
      return;
    }
    uint8_t* const frame = rte_pktmbuf_mtod(m, uint8_t*);
    WriteEncap(t, frame + t.header_len, p.l3_length, p.tos, hash, src_mac);
    if (run != nullptr) {
      run->packets++;
      run->bytes += p.l3_length;
    } else {
      tally.Sent(vip, be, p.l3_length);
    }
    out.tx[queued.tx++] = m;
  };

  // Stage 1: prefilter, parse, classify. Packets for the kernel or dropped are done here.
  for (uint32_t i = 0; i < n; ++i) {
    rte_mbuf* const m = pkts[i];
    const uint8_t* const data = rte_pktmbuf_mtod(m, const uint8_t*);
    bool v6 = false;
    const uint8_t* dst = PeekDestination(data, m->data_len, v6);
    const VipMap::Address* address = dst == nullptr ? nullptr : addresses.Find(dst, v6);
    if (address == nullptr) {
      out.kernel[queued.kernel++] = m;
      continue;
    }
    ParsedPacket& p = parsed[k];  // kept only if the packet goes on to the flow table
    const ParseResult r = ParsePacket(data, m->data_len, p);
    if (unlikely(r != ParseResult::kOk)) {
      tally.ParseFailed(r);
      tally.Drop(m, DropReason::kMalformed);
      continue;
    }
    tally.ParsedOk();
    const uint8_t* const vip_addr = p.tuple.dst.data();
    if (unlikely(p.Has(kPacketFragment))) {
      const uint32_t vi = VipMap::FirstOfProtocol(*address, p.tuple.proto);
      if (vi == VipMap::kNotFound) {
        out.kernel[queued.kernel++] = m;
        continue;
      }
      const VipEntry& vip = v.vips[vi];
      if (vip.fragments == shm::FragmentPolicy::kDrop || vip.table_size == 0) {
        tally.Drop(m, vip.table_size == 0 ? DropReason::kVipNoBackend : DropReason::kFragment,
                   vip.id);
        continue;
      }
      // Every fragment of a datagram hashes the same way: addresses and protocol only.
      FlowTuple t = p.tuple;
      t.src_port = t.dst_port = 0;
      const uint64_t hash = FlowHash(t, v.hash_key);
      tally.Count(LcoreCounter::kFragmentsHashed);
      forward(m, p, p.tuple, vip, v.Pick(vip, hash), hash, nullptr);
      continue;
    }
    if (RepeatsFlow(p, parsed_slots[k])) {  // parsed[k - 1], or the mark
      // What forward() reads of the packet's own frame, each field with the width the parser
      // stored it with: a whole-line copy read it with wider loads than those stores, which the
      // store buffer cannot forward (~1 ns a repeat).
      ParsedPacket& q = repeats[n_repeats];
      q.l3_offset = p.l3_offset;
      q.flags = p.flags;
      q.l3_length = p.l3_length;
      q.tos = p.tos;
      repeat_mbuf[n_repeats] = m;
      repeat_head[n_repeats++] = static_cast<uint8_t>(k - 1);
      continue;
    }
    // An ICMP error names the VIP of the flow it quotes, which need not be the address it was
    // sent to: only then is there a second lookup.
    const uint32_t vi =
        p.Has(kPacketIcmpError) && std::memcmp(vip_addr, dst, v6 ? 16 : 4) != 0
            ? fs.vip_map().Find(vip_addr, p.tuple.v6, p.tuple.proto, p.tuple.dst_port)
            : fs.vip_map().FindService(*address, vip_addr, p.tuple.v6, p.tuple.proto,
                                       p.tuple.dst_port);
    if (vi == VipMap::kNotFound) {
      // A VIP address, but no service on this protocol and port (ping, another port): the
      // kernel's business, as for any address.
      out.kernel[queued.kernel++] = m;
      continue;
    }
    hashes[k] = FlowHash(p.tuple, v.hash_key);
    flows.PrefetchBucket(hashes[k]);
    any_v6 |= p.tuple.v6;
    mbuf_of[k] = m;
    vip_of[k] = vi;
    ++k;
  }
  if (k == 0) return;

  // Stage 2: stage 1 prefetched every packet's bucket line (PrefetchBucket), which holds an
  // IPv4 flow's whole key. Each packet is looked up in stage 3, just before its selection, so
  // that the wait for the later packets' lines overlaps the forwarding of the earlier ones
  // (rather than the whole burst waiting for its last line in a batched lookup first: 1 Mi
  // flows ~4 ns and new flows ~8 ns a packet faster, docs/dataplane.md "One line per IPv4
  // hit"). An IPv6 key's addresses are in a second line: fetch those for the whole burst now.
  if (unlikely(any_v6)) {
    for (uint32_t j = 0; j < k; ++j) {
      if (parsed[j].tuple.v6) flows.PrefetchV6Key(hashes[j]);
    }
  }

  // Stage 3: select a backend, then forward; then the packets that repeat the flow. Each repeat
  // counts what it would have, had it come through the table after the packet it follows: a hit
  // on the flow that packet left there; with the table full, a miss and a full table again; with
  // no backend, a drop again. Built twice, for bursts with and without repeats: the bookkeeping
  // of repeats, in a burst that has none (the many-flow case), measured ~15 instructions a packet.
  auto forward_all = [&]<bool kRepeats>() __attribute__((always_inline)) {
    uint32_t r = 0;  // the next repeat
    if constexpr (kRepeats) repeat_head[n_repeats] = kMaxBurst;
    auto drop_repeats = [&](uint32_t j, const VipEntry& vip) {
      for (; repeat_head[r] == j; ++r) {
        tally.Drop(repeat_mbuf[r], DropReason::kVipNoBackend, vip.id);
      }
    };
    for (uint32_t j = 0; j < k; ++j) {
      rte_mbuf* const m = mbuf_of[j];
      const ParsedPacket& p = parsed[j];
      const VipEntry& vip = v.vips[vip_of[j]];
      // An ICMP error is looked up as the flow it is about, but never creates or refreshes it.
      const bool tracked = !p.Has(kPacketIcmpError);
      const bool tcp = p.tuple.proto == IPPROTO_TCP;
      const bool syn = tracked && tcp && (p.tcp_flags & (kTcpSyn | kTcpAck)) == kTcpSyn;
      const FlowRef ref = flows.Lookup(p.tuple, hashes[j], now_s);
      const bool hit = ref.hit();
      bool table_full = false;
      uint32_t b;
      if (hit && !syn) {
        FlowTable::Entry flow = flows.At(ref);
        const BackendSlot& slot = v.by_id[flow.backend()];
        if (likely(slot.vip == vip_of[j] && slot.keeps_flows)) {
          b = slot.index;
          tally.Hit();
        } else if (vip.table_size != 0) {
          // Its backend was removed or is down: the flow starts over on the table's choice.
          b = v.Pick(vip, hashes[j]);
          flow.SetBackend(v.backends[b].id);
          tally.Count(LcoreCounter::kRepicked);
        } else {
          tally.Drop(m, DropReason::kVipNoBackend, vip.id);
          if constexpr (kRepeats) drop_repeats(j, vip);
          continue;
        }
        if (tracked) {
          flow.Refresh(now_s);
          if (tcp && (p.tcp_flags & (kTcpFin | kTcpRst)) != 0) flow.MarkClosing();
        } else {
          tally.Count(LcoreCounter::kIcmpToBackend);  // the error follows its flow
        }
      } else {
        if (unlikely(vip.table_size == 0)) {
          tally.Drop(m, DropReason::kVipNoBackend, vip.id);
          if constexpr (kRepeats) drop_repeats(j, vip);
          continue;
        }
        b = v.Pick(vip, hashes[j]);
        if (!tracked) {
          // An ICMP error about a flow this lcore does not track: the flow's new-flow choice is
          // where its packets went (or go, from another lcore or host). Never inserted.
          tally.Count(LcoreCounter::kIcmpToBackend);
        } else if (hit) {
          // A SYN on a tracked tuple: a new connection.
          FlowTable::Entry flow = flows.At(ref);
          flow.SetBackend(v.backends[b].id);
          flow.Refresh(now_s);
          tally.NewFlow(vip, v.backends[b]);
        } else {
          // The lookup just before missed, and nothing was inserted since: never kPresent.
          // (An earlier packet of this burst that inserted the flow made that lookup a hit.)
          const FlowInsertResult ins = flows.Insert(p.tuple, hashes[j], v.backends[b].id, now_s);
          assert(ins.status != FlowInsert::kPresent);
          if (ins.status == FlowInsert::kFull) {
            tally.Count(LcoreCounter::kFlowTableFull);
            table_full = true;
          }
          tally.NewFlow(vip, v.backends[b]);
        }
      }
      forward(m, p, p.tuple, vip, b, hashes[j], nullptr);
      if constexpr (kRepeats) {
        RunCounts run;
        for (; repeat_head[r] == j; ++r) {
          if (unlikely(table_full)) {
            tally.Count(LcoreCounter::kFlowTableFull);
            tally.NewFlow(vip, v.backends[b]);
          } else {
            tally.Hit();
          }
          forward(repeat_mbuf[r], repeats[r], p.tuple, vip, b, hashes[j], &run);
        }
        if (run.packets != 0) tally.Sent(vip, v.backends[b], run.packets, run.bytes);
      }
    }
  };
  if (n_repeats == 0) {
    forward_all.template operator()<false>();
  } else {
    forward_all.template operator()<true>();
    tally.Count(LcoreCounter::kFlowRepeats, n_repeats);
  }
}

}  // namespace fulcrum
