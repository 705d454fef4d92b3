// Segment: maps the config and stats shm segments, creating or attaching, and checks headers.
//
// Creation (the segment's owner: the control plane for config, fulcrumd for stats) sets mode
// 0660 and, when a group named `fulcrum` exists, that group; nobody else may map it. Attaching
// checks magic, ABI version, struct sizes and the file size before the caller sees a pointer:
// shared memory is input, and a segment of another version is refused with both versions in
// the message. Everything here runs at start-up or in control code, never per packet.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "dataplane/shm/abi.h"

namespace fulcrum::shm {

// "/fulcrum.config" and "/fulcrum.stats" for prefix "fulcrum". The prefix names one Fulcrum
// instance on a host (tests use a unique one each); it must be 1..200 characters of
// [A-Za-z0-9_.-].
absl::StatusOr<std::string> ConfigSegmentName(std::string_view prefix);
absl::StatusOr<std::string> StatsSegmentName(std::string_view prefix);

// An mmap of one shm object; unmaps on destruction. Does not unlink.
class MappedSegment {
 public:
  MappedSegment() = default;
  MappedSegment(MappedSegment&& other) noexcept;
  MappedSegment& operator=(MappedSegment&& other) noexcept;
  MappedSegment(const MappedSegment&) = delete;
  MappedSegment& operator=(const MappedSegment&) = delete;
  ~MappedSegment();

  void* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& name() const { return name_; }
  // The (device, inode) of the object when mapped: a reader compares it with the name's current
  // object to notice that the owner replaced the segment (a restart after an ABI change).
  bool SameObjectAs(const std::string& name) const;

 private:
  friend absl::StatusOr<MappedSegment> MapSegment(const std::string& name, size_t size, bool create,
                                                  bool writable);
  void* data_ = nullptr;
  size_t size_ = 0;
  std::string name_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

// Opens (and with `create`, creates with mode 0660 and sizes) the shm object `name`.
// `create` keeps an existing object of the right size: a restarted owner finds its state.
absl::StatusOr<MappedSegment> MapSegment(const std::string& name, size_t size, bool create,
                                         bool writable);

// The control plane's side of the config segment: creates it, or reuses an existing one whose
// header matches this build exactly (so a restarted control plane sees what it published and
// what the data plane acknowledged). A segment of another layout is replaced: its readers keep
// their old mapping until they notice (MappedSegment::SameObjectAs) and re-attach.
absl::StatusOr<MappedSegment> CreateConfigSegment(std::string_view prefix);
// fulcrumd's side: attaches to an existing config segment read-write (it writes the ack
// fields). NotFound when there is none yet; FailedPrecondition naming both versions when the
// layout differs.
absl::StatusOr<MappedSegment> AttachConfigSegment(std::string_view prefix);

// fulcrumd creates the stats segment afresh at start (counters restart with the process).
absl::StatusOr<MappedSegment> CreateStatsSegment(std::string_view prefix);
// Any reader (the control plane, the CLI, tests): read-only.
absl::StatusOr<MappedSegment> AttachStatsSegment(std::string_view prefix);

// Header checks, exposed for tests of corrupt segments.
absl::Status CheckConfigHeader(const ConfigHeader& h, size_t mapped_size);
absl::Status CheckStatsHeader(const StatsHeader& h, size_t mapped_size);
void InitConfigHeader(ConfigHeader& h);
void InitStatsHeader(StatsHeader& h);

inline ConfigHeader& ConfigHeaderOf(const MappedSegment& s) {
  return *static_cast<ConfigHeader*>(s.data());
}
inline SnapshotSlot& SlotOf(const MappedSegment& s, uint32_t slot) {
  return reinterpret_cast<SnapshotSlot*>(static_cast<char*>(s.data()) + sizeof(ConfigHeader))[slot];
}
inline StatsSegment& StatsOf(const MappedSegment& s) {
  return *static_cast<StatsSegment*>(s.data());
}

uint64_t MonotonicNowNs();

}  // namespace fulcrum::shm
