// ConfigWriter and ConfigReader: the publish / copy / acknowledge protocol over the config
// segment (docs/shm.md).
//
// Writer (the control plane; tests and benchmarks use it as their "test writer"): fills the
// slot that is not published, under the slot's seqlock, then publishes (generation, slot) with
// one release store. Reader (fulcrumd's main lcore): sees a newer generation, copies the
// records and the tables that changed, checks checksum, digests and the seqlock, validates,
// and later acknowledges or rejects with a reason. A torn copy is retried; a corrupt one is
// rejected. Neither side ever blocks the other: the reader keeps its last good snapshot.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dataplane/shm/segment.h"
#include "dataplane/shm/snapshot.h"

namespace fulcrum::shm {

// What the data plane has said, as the writer sees it.
struct ReaderView {
  uint32_t pid = 0;
  uint64_t heartbeat_ns = 0;  // CLOCK_MONOTONIC; compare with MonotonicNowNs()
  uint64_t acked_generation = 0;
  uint64_t rejected_generation = 0;
  SnapshotReject reason = SnapshotReject::kNone;  // of rejected_generation
  std::string detail;
};

class ConfigWriter {
 public:
  explicit ConfigWriter(MappedSegment segment) : segment_(std::move(segment)) {}

  // Publishes a sealed snapshot. InvalidArgument when it is not sealed (checksum mismatch) or
  // its generation is not above the published one. Never waits for the reader.
  absl::Status Publish(const Snapshot& s);
  // Stores this process's pid and the time: call about once a second.
  void Heartbeat();

  uint64_t published_generation() const;
  ReaderView reader() const;
  // Until the reader acks `generation` (OK), rejects it (Aborted, with reason and detail), or
  // `timeout` passes (DeadlineExceeded, saying whether a data plane is attached at all).
  absl::Status WaitForAck(uint64_t generation, absl::Duration timeout) const;

  const MappedSegment& segment() const { return segment_; }

 private:
  // What this writer last put in each slot's table area: begin -> (size, digest). A table that
  // is already in place, byte for byte, is not written again (a 256-VIP snapshot is 32 MiB of
  // tables, of which a change usually touches one). Forgotten when the reader reports a
  // checksum or torn-copy rejection: the slot may then not hold what this writer believes.
  struct Placed {
    uint32_t size;
    uint64_t digest;
  };
  std::unordered_map<uint32_t, Placed> placed_[kSlotCount];
  uint64_t checked_rejection_ = 0;

  MappedSegment segment_;
};

struct WriterView {
  uint32_t pid = 0;
  uint64_t heartbeat_ns = 0;
  uint64_t published_generation = 0;
};

class ConfigReader {
 public:
  explicit ConfigReader(MappedSegment segment) : segment_(std::move(segment)) {}

  struct Result {
    enum Kind { kNothing, kSnapshot, kRejected } kind = kNothing;
    uint64_t generation = 0;
    Snapshot snapshot;         // kSnapshot: validated
    std::vector<bool> reused;  // kSnapshot: tables shared with `current` rather than copied
    Verdict verdict;           // kRejected
  };

  // Looks at the published word; when it names a generation not yet returned, copies and
  // validates it (and never returns that generation again). `current` is the snapshot in use (or
  // null): tables of VIPs whose digest and backend records are unchanged are shared from it rather
  // than copied.
  Result Poll(const Snapshot* current);
  // Report the outcome of a generation Poll() returned (a kSnapshot may still be rejected by
  // the caller, e.g. when its forwarding state cannot be built).
  void Ack(uint64_t generation);
  void Reject(uint64_t generation, const Verdict& verdict);
  void Heartbeat();

  WriterView writer() const;
  const MappedSegment& segment() const { return segment_; }
  uint64_t handled_generation() const { return handled_; }

 private:
  // One attempt at copying the snapshot the published `word` names: nullopt when the slot or
  // the published word changed under it.
  std::optional<Result> TryCopy(uint64_t word, const Snapshot* current);
  Result PollOnce(const Snapshot* current);

  MappedSegment segment_;
  uint64_t handled_ = 0;  // the last generation Poll returned, acked or rejected
};

}  // namespace fulcrum::shm
