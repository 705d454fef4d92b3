// Fuzz target: snapshot validation, the data plane's defence against whatever the config
// segment holds. The input is cut into a header, VIP and backend records and table entries,
// exactly as a slot could hold them. Whatever ValidateSnapshot accepts must build into a
// forwarding state, and every new-flow pick from it must name a backend of its own VIP.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "dataplane/forwarding.h"
#include "dataplane/shm/snapshot.h"

namespace {

// Takes n bytes from the input, zero-filling past its end.
struct Reader {
  const uint8_t* data;
  size_t size;
  void Take(void* out, size_t n) {
    if (n == 0) return;
    const size_t k = n < size ? n : size;
    std::memset(out, 0, n);
    if (k > 0) std::memcpy(out, data, k);
    data += k;
    size -= k;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fulcrum;
  Reader in{data, size};
  shm::Snapshot s;
  in.Take(&s.header, sizeof(s.header));
  // Small counts keep each run fast; the counts in the header are the fuzzer's, unbounded.
  uint8_t counts[2];
  in.Take(counts, 2);
  s.vips.resize(counts[0] % 9);
  s.backends.resize(counts[1] % 33);
  for (auto& v : s.vips) in.Take(&v, sizeof(v));
  for (auto& b : s.backends) in.Take(&b, sizeof(b));
  uint32_t entries = 0;
  for (const auto& v : s.vips) {
    auto t = std::make_shared<shm::Table>(v.table_size < 70000 ? v.table_size : 0);
    in.Take(t->data(), t->size() * sizeof(shm::TableEntry));
    entries += static_cast<uint32_t>(t->size());
    s.tables.push_back(t);
  }
  // Half the inputs get counts that agree with the records, so that validation is reached
  // beyond its first check; the other half keep the fuzzer's counts.
  if ((counts[0] & 0x80) == 0) {
    s.header.vip_count = static_cast<uint32_t>(s.vips.size());
    s.header.backend_count = static_cast<uint32_t>(s.backends.size());
    s.header.table_entries = entries;
  }
  const shm::Verdict verdict = shm::ValidateSnapshot(s);
  if (!verdict.ok()) {
    if (verdict.detail.empty()) std::abort();
    return 0;
  }
  absl::StatusOr<std::unique_ptr<ForwardingState>> state = ForwardingState::Build(s);
  if (!state.ok()) return 0;  // kEncap: a template that cannot be built is a clean rejection
  const ForwardingState& fs = **state;
  for (size_t i = 0; i < fs.vip_count(); ++i) {
    const VipEntry& vip = fs.vip(static_cast<uint32_t>(i));
    if (vip.table_size == 0) continue;
    for (uint64_t h : {0ull, ~0ull, 0x9e3779b97f4a7c15ull, 12345ull}) {
      const uint32_t b = fs.Pick(vip, h);
      if (b < vip.backend_begin || b >= vip.backend_begin + vip.backend_count) std::abort();
      const BackendSlot& slot = fs.backend_by_id(fs.backend(b).id);
      if (slot.vip != i || slot.index != b) std::abort();
    }
  }
  return 0;
}
