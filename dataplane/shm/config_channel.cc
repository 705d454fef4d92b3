// The config segment's publish / copy / acknowledge protocol.
//
// Memory ordering. The writer's slot update is a seqlock: seq becomes odd (relaxed store, then
// a release fence), the slot is written, seq becomes even (release store); only then is the
// published word stored (release). The reader loads the published word and seq (acquire),
// copies, then an acquire fence and seq again: equal and even means no write overlapped the
// copy. The copy itself races with a possible writer by design (that is what the seq check
// detects); it reads plain bytes with memcpy into private memory and nothing is trusted until
// the seq, the checksum and the digests have passed.
#include "dataplane/shm/config_channel.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>
#include <unordered_map>

#include "absl/strings/str_format.h"

namespace fulcrum::shm {
namespace {

constexpr int kCopyAttempts = 16;

// memcpy that allows an empty range with null pointers (an empty table's data()).
void CopyBytes(void* dst, const void* src, size_t n) {
  if (n != 0) std::memcpy(dst, src, n);
}

}  // namespace

// --- ConfigWriter ------------------------------------------------------------------------

absl::Status ConfigWriter::Publish(const Snapshot& s) {
  const SnapshotHeader& h = s.header;
  if (h.vip_count != s.vips.size() || h.backend_count != s.backends.size() ||
      s.tables.size() != s.vips.size() || SnapshotChecksum(h, s.vips, s.backends) != h.checksum) {
    return absl::InvalidArgumentError("snapshot is not sealed: call Snapshot::Seal() first");
  }
  if (h.vip_count > kMaxVips || h.backend_count > kMaxBackends ||
      h.table_entries > kMaxTableEntries) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "snapshot of %d VIPs, %d backends, %d table entries exceeds the segment "
        "(%d, %d, %d)",
        h.vip_count, h.backend_count, h.table_entries, kMaxVips, kMaxBackends, kMaxTableEntries));
  }
  for (size_t i = 0; i < s.vips.size(); ++i) {
    if (s.tables[i] == nullptr ||
        uint64_t{s.vips[i].table_begin} + s.tables[i]->size() > kMaxTableEntries) {
      return absl::InvalidArgumentError(
          absl::StrFormat("vips[%d]: its table does not fit the slot (begin %d, %d entries)", i,
                          s.vips[i].table_begin, s.tables[i] ? s.tables[i]->size() : 0));
    }
  }
  ConfigHeader& ch = ConfigHeaderOf(segment_);
  const uint64_t published = ch.published.load(std::memory_order_acquire);
  if (h.generation <= PublishedGeneration(published)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("generation %d is not above the published generation %d", h.generation,
                        PublishedGeneration(published)));
  }
  const uint32_t target = published == 0 ? 0 : 1 - PublishedSlot(published);
  SnapshotSlot& slot = SlotOf(segment_, target);
  if (const uint64_t rejected = ch.rejected_generation.load(std::memory_order_acquire);
      rejected != checked_rejection_) {
    checked_rejection_ = rejected;
    const auto reason = static_cast<SnapshotReject>(ch.reject_reason.load());
    if (reason == SnapshotReject::kChecksum || reason == SnapshotReject::kTorn) {
      for (auto& p : placed_) p.clear();
    }
  }
  std::unordered_map<uint32_t, Placed>& placed = placed_[target];
  const uint64_t seq = slot.seq.load(std::memory_order_relaxed);
  slot.seq.store(seq | 1, std::memory_order_relaxed);  // odd: being written
  std::atomic_thread_fence(std::memory_order_release);
  CopyBytes(&slot.header, &h, sizeof(h));
  CopyBytes(slot.vips, s.vips.data(), s.vips.size() * sizeof(VipRecord));
  CopyBytes(slot.backends, s.backends.data(), s.backends.size() * sizeof(BackendRecord));
  std::unordered_map<uint32_t, Placed> now_placed;
  for (size_t i = 0; i < s.vips.size(); ++i) {
    const Table& t = *s.tables[i];
    const VipRecord& v = s.vips[i];
    const auto it = placed.find(v.table_begin);
    if (it == placed.end() || it->second.size != t.size() || it->second.digest != v.table_digest) {
      CopyBytes(slot.table + v.table_begin, t.data(), t.size() * sizeof(TableEntry));
    }
    now_placed[v.table_begin] = {static_cast<uint32_t>(t.size()), v.table_digest};
  }
  placed = std::move(now_placed);
  slot.seq.store((seq | 1) + 1, std::memory_order_release);
  ch.published.store(PackPublished(h.generation, target), std::memory_order_release);
  return absl::OkStatus();
}

void ConfigWriter::Heartbeat() {
  ConfigHeader& ch = ConfigHeaderOf(segment_);
  ch.writer_pid.store(static_cast<uint32_t>(getpid()), std::memory_order_relaxed);
  ch.writer_heartbeat_ns.store(MonotonicNowNs(), std::memory_order_release);
}

uint64_t ConfigWriter::published_generation() const {
  return PublishedGeneration(ConfigHeaderOf(segment_).published.load(std::memory_order_acquire));
}

ReaderView ConfigWriter::reader() const {
  const ConfigHeader& ch = ConfigHeaderOf(segment_);
  ReaderView v;
  v.pid = ch.reader_pid.load(std::memory_order_relaxed);
  v.heartbeat_ns = ch.reader_heartbeat_ns.load(std::memory_order_relaxed);
  v.acked_generation = ch.acked_generation.load(std::memory_order_acquire);
  v.rejected_generation = ch.rejected_generation.load(std::memory_order_acquire);
  v.reason = static_cast<SnapshotReject>(ch.reject_reason.load(std::memory_order_relaxed));
  char detail[kDetailLen];
  std::memcpy(detail, ch.reject_detail, kDetailLen);
  detail[kDetailLen - 1] = '\0';
  v.detail = detail;
  return v;
}

absl::Status ConfigWriter::WaitForAck(uint64_t generation, absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    const ReaderView r = reader();
    if (r.acked_generation >= generation) return absl::OkStatus();
    if (r.rejected_generation == generation) {
      return absl::AbortedError(absl::StrFormat("the data plane rejected generation %d (%s): %s",
                                                generation, ReasonName(r.reason), r.detail));
    }
    if (absl::Now() >= deadline) {
      const uint64_t now = MonotonicNowNs();
      const bool alive = r.pid != 0 && now - r.heartbeat_ns < 2'000'000'000ull;
      return absl::DeadlineExceededError(
          alive ? absl::StrFormat("the data plane (pid %d) did not acknowledge generation %d "
                                  "within %s; it has acknowledged %d",
                                  r.pid, generation, absl::FormatDuration(timeout),
                                  r.acked_generation)
                : absl::StrFormat("no data plane is attached (no heartbeat for 2 s): generation "
                                  "%d is published and will be used when fulcrumd starts",
                                  generation));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

// --- ConfigReader ------------------------------------------------------------------------

ConfigReader::Result ConfigReader::Poll(const Snapshot* current) {
  Result r = PollOnce(current);
  // Whatever the caller makes of it, this generation is handled: never copied twice, even
  // while its forwarding state is still waiting for the grace period before the ack.
  if (r.kind != Result::kNothing) handled_ = std::max(handled_, r.generation);
  return r;
}

ConfigReader::Result ConfigReader::PollOnce(const Snapshot* current) {
  const ConfigHeader& ch = ConfigHeaderOf(segment_);
  for (int attempt = 0; attempt < kCopyAttempts; ++attempt) {
    const uint64_t word = ch.published.load(std::memory_order_acquire);
    const uint64_t generation = PublishedGeneration(word);
    if (generation == 0 || generation <= handled_) return {};
    const uint32_t slot = PublishedSlot(word);
    if (slot >= kSlotCount) {
      Result r;
      r.kind = Result::kRejected;
      r.generation = generation;
      r.verdict = {SnapshotReject::kBadSlot, absl::StrFormat("published slot %d", slot)};
      return r;
    }
    if (std::optional<Result> r = TryCopy(word, current); r.has_value()) {
      return *std::move(r);
    }
    // The writer was in that slot: it is publishing something newer. Give it a moment.
    std::this_thread::yield();
  }
  Result r;
  r.kind = Result::kRejected;
  r.generation = PublishedGeneration(ch.published.load(std::memory_order_acquire));
  r.verdict = {SnapshotReject::kTorn,
               absl::StrFormat("the slot changed during each of %d copies", kCopyAttempts)};
  return r;
}

std::optional<ConfigReader::Result> ConfigReader::TryCopy(uint64_t word, const Snapshot* current) {
  const uint64_t generation = PublishedGeneration(word);
  const uint32_t slot_index = PublishedSlot(word);
  const SnapshotSlot& slot = SlotOf(segment_, slot_index);
  const uint64_t seq = slot.seq.load(std::memory_order_acquire);
  if ((seq & 1) != 0) return std::nullopt;
  // Nothing was written to the slot during the copy, and nothing newer was published.
  auto unchanged = [&] {
    std::atomic_thread_fence(std::memory_order_acquire);
    return slot.seq.load(std::memory_order_relaxed) == seq &&
           ConfigHeaderOf(segment_).published.load(std::memory_order_relaxed) == word;
  };
  Result r;
  r.generation = generation;
  auto reject = [&](SnapshotReject reason, std::string detail) -> std::optional<Result> {
    // A bad copy made while the writer was writing is a torn read, not a corrupt snapshot.
    if (!unchanged()) return std::nullopt;
    r.kind = Result::kRejected;
    r.verdict = {reason, std::move(detail)};
    return r;
  };

  Snapshot& s = r.snapshot;
  CopyBytes(&s.header, &slot.header, sizeof(SnapshotHeader));
  const SnapshotHeader& h = s.header;
  if (h.generation != generation) {
    return reject(SnapshotReject::kGenerationMismatch,
                  absl::StrFormat("slot %d holds generation %d, %d was published", slot_index,
                                  h.generation, generation));
  }
  // Counts come from shared memory: bound them before they size any copy.
  if (h.vip_count > kMaxVips || h.backend_count > kMaxBackends ||
      h.table_entries > kMaxTableEntries) {
    return reject(SnapshotReject::kCounts,
                  absl::StrFormat("%d VIPs, %d backends, %d table entries (capacity %d, %d, %d)",
                                  h.vip_count, h.backend_count, h.table_entries, kMaxVips,
                                  kMaxBackends, kMaxTableEntries));
  }
  s.vips.resize(h.vip_count);
  s.backends.resize(h.backend_count);
  CopyBytes(s.vips.data(), slot.vips, h.vip_count * sizeof(VipRecord));
  CopyBytes(s.backends.data(), slot.backends, h.backend_count * sizeof(BackendRecord));
  if (SnapshotChecksum(h, s.vips, s.backends) != h.checksum) {
    return reject(SnapshotReject::kChecksum,
                  absl::StrFormat("generation %d: checksum %#x does not match its records",
                                  generation, h.checksum));
  }

  // Reusable tables: same digest and size, and byte-identical backend records.
  std::unordered_map<uint64_t, size_t> by_digest;
  if (current != nullptr) {
    for (size_t j = 0; j < current->vips.size(); ++j) by_digest[current->vips[j].table_digest] = j;
  }
  s.tables.resize(h.vip_count);
  r.reused.assign(h.vip_count, false);
  for (size_t i = 0; i < s.vips.size(); ++i) {
    const VipRecord& v = s.vips[i];
    if (uint64_t{v.backend_begin} + v.backend_count > h.backend_count) {
      return reject(SnapshotReject::kBackendRange,
                    absl::StrFormat("vips[%d]: backends [%d, +%d) of %d", i, v.backend_begin,
                                    v.backend_count, h.backend_count));
    }
    if (uint64_t{v.table_begin} + v.table_size > h.table_entries) {
      return reject(SnapshotReject::kTableRange,
                    absl::StrFormat("vips[%d]: table [%d, +%d) of %d entries", i, v.table_begin,
                                    v.table_size, h.table_entries));
    }
    const std::span<const BackendRecord> backends = s.BackendsOf(v);
    if (auto it = by_digest.find(v.table_digest); it != by_digest.end()) {
      const VipRecord& old = current->vips[it->second];
      const std::span<const BackendRecord> old_backends = current->BackendsOf(old);
      if (old.table_size == v.table_size && old_backends.size() == backends.size() &&
          (backends.empty() ||
           std::memcmp(old_backends.data(), backends.data(), backends.size_bytes()) == 0)) {
        s.tables[i] = current->tables[it->second];
        r.reused[i] = true;
        continue;
      }
    }
    auto table = std::make_shared<Table>(v.table_size);
    CopyBytes(table->data(), slot.table + v.table_begin, v.table_size * sizeof(TableEntry));
    if (TableDigest(backends, *table) != v.table_digest) {
      return reject(SnapshotReject::kChecksum,
                    absl::StrFormat("vips[%d]: table digest %#x does not match its table", i,
                                    v.table_digest));
    }
    s.tables[i] = std::move(table);
  }
  if (!unchanged()) return std::nullopt;

  r.verdict = ValidateSnapshot(s, &r.reused);
  r.kind = r.verdict.ok() ? Result::kSnapshot : Result::kRejected;
  return r;
}

void ConfigReader::Ack(uint64_t generation) {
  handled_ = std::max(handled_, generation);
  ConfigHeaderOf(segment_).acked_generation.store(generation, std::memory_order_release);
}

void ConfigReader::Reject(uint64_t generation, const Verdict& verdict) {
  handled_ = std::max(handled_, generation);
  ConfigHeader& ch = ConfigHeaderOf(segment_);
  char detail[kDetailLen] = {};
  std::strncpy(detail, verdict.detail.c_str(), kDetailLen - 1);
  std::memcpy(ch.reject_detail, detail, kDetailLen);
  ch.reject_reason.store(static_cast<uint32_t>(verdict.reason), std::memory_order_relaxed);
  ch.rejected_generation.store(generation, std::memory_order_release);
}

void ConfigReader::Heartbeat() {
  ConfigHeader& ch = ConfigHeaderOf(segment_);
  ch.reader_pid.store(static_cast<uint32_t>(getpid()), std::memory_order_relaxed);
  ch.reader_heartbeat_ns.store(MonotonicNowNs(), std::memory_order_release);
}

WriterView ConfigReader::writer() const {
  const ConfigHeader& ch = ConfigHeaderOf(segment_);
  return {ch.writer_pid.load(std::memory_order_relaxed),
          ch.writer_heartbeat_ns.load(std::memory_order_relaxed),
          PublishedGeneration(ch.published.load(std::memory_order_acquire))};
}

}  // namespace fulcrum::shm
