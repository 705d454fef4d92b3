// Fuzz target: ParsePacket on arbitrary frames. Beyond "no crash, no read past the end"
// (AddressSanitizer), every kOk result must be self-consistent: offsets inside the frame, the
// IP length inside the frame, ports only with kPacketPorts.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "dataplane/core/parse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 65535) return 0;
  // An exact-size copy: a read one past the end is an ASan error, not a read of fuzzer slack.
  std::unique_ptr<uint8_t[]> frame(new uint8_t[size]);
  if (size > 0) std::memcpy(frame.get(), data, size);
  fulcrum::ParsedPacket p;
  const fulcrum::ParseResult r = fulcrum::ParsePacket(frame.get(), static_cast<uint32_t>(size), p);
  if (static_cast<size_t>(r) >= fulcrum::kParseResultCount) std::abort();
  if (r != fulcrum::ParseResult::kOk) return 0;
  if (p.l3_offset != 14 && p.l3_offset != 18) std::abort();
  if (p.l3_length > size - p.l3_offset) std::abort();
  if (p.l4_offset < p.l3_offset || p.l4_offset > p.l3_offset + p.l3_length) std::abort();
  if (!p.Has(fulcrum::kPacketPorts) && (p.tuple.src_port != 0 || p.tuple.dst_port != 0)) {
    std::abort();
  }
  if (!p.tuple.v6) {
    for (int i = 4; i < 16; ++i) {
      if (p.tuple.src[i] != 0 || p.tuple.dst[i] != 0) std::abort();
    }
  }
  return 0;
}
