// Segment: shm_open + mmap with ownership, size and header checks.
#include "dataplane/shm/segment.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_format.h"

namespace fulcrum::shm {
namespace {

constexpr mode_t kMode = 0660;
constexpr char kGroup[] = "fulcrum";

absl::Status Errno(int err, std::string_view what, std::string_view name) {
  const std::string msg = absl::StrFormat("%s %s: %s", what, name, std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    case ENOMEM:
    case ENOSPC:
      return absl::ResourceExhaustedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::StatusOr<std::string> SegmentName(std::string_view prefix, std::string_view suffix) {
  if (prefix.empty() || prefix.size() > 200) {
    return absl::InvalidArgumentError(
        absl::StrFormat("shm prefix must be 1..200 characters, got %d", prefix.size()));
  }
  for (char c : prefix) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "shm prefix '%s': '%c' is not allowed (use letters, digits, '_', '-', '.')", prefix, c));
    }
  }
  return absl::StrFormat("/%s.%s", prefix, suffix);
}

std::string Versions(uint32_t major, uint32_t minor) {
  return absl::StrFormat("ABI %d.%d (this build: %d.%d)", major, minor, kAbiMajor, kAbiMinor);
}

// One layout field: what the segment says against what this build needs.
absl::Status CheckField(std::string_view segment, std::string_view field, uint64_t got,
                        uint64_t want) {
  if (got == want) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrFormat(
      "%s segment: %s is %d, this build needs %d: the segment was made by another build of "
      "Fulcrum; restart its owner with this build",
      segment, field, got, want));
}

}  // namespace

absl::StatusOr<std::string> ConfigSegmentName(std::string_view prefix) {
  return SegmentName(prefix, "config");
}
absl::StatusOr<std::string> StatsSegmentName(std::string_view prefix) {
  return SegmentName(prefix, "stats");
}

uint64_t MonotonicNowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

MappedSegment::MappedSegment(MappedSegment&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      name_(std::move(other.name_)),
      dev_(other.dev_),
      ino_(other.ino_) {}

MappedSegment& MappedSegment::operator=(MappedSegment&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) munmap(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    name_ = std::move(other.name_);
    dev_ = other.dev_;
    ino_ = other.ino_;
  }
  return *this;
}

MappedSegment::~MappedSegment() {
  if (data_ != nullptr) munmap(data_, size_);
}

bool MappedSegment::SameObjectAs(const std::string& name) const {
  const int fd = shm_open(name.c_str(), O_RDONLY, 0);
  if (fd < 0) return false;
  struct stat st;
  const bool same = fstat(fd, &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_;
  close(fd);
  return same;
}

absl::StatusOr<MappedSegment> MapSegment(const std::string& name, size_t size, bool create,
                                         bool writable) {
  const int flags = (writable ? O_RDWR : O_RDONLY) | (create ? O_CREAT : 0);
  const int fd = shm_open(name.c_str(), flags | O_CLOEXEC, kMode);
  if (fd < 0) return Errno(errno, "shm_open", name);
  struct FdCloser {
    int fd;
    ~FdCloser() { close(fd); }
  } closer{fd};
  struct stat st;
  if (fstat(fd, &st) != 0) return Errno(errno, "fstat", name);
  if (create) {
    // The umask may have narrowed the mode; ownership decides who may map the segment.
    if (fchmod(fd, kMode) != 0) return Errno(errno, "fchmod", name);
    if (const group* g = getgrnam(kGroup); g != nullptr && st.st_gid != g->gr_gid) {
      if (fchown(fd, static_cast<uid_t>(-1), g->gr_gid) != 0) return Errno(errno, "fchown", name);
    }
    if (static_cast<size_t>(st.st_size) != size) {
      if (ftruncate(fd, static_cast<off_t>(size)) != 0) return Errno(errno, "ftruncate", name);
      if (fstat(fd, &st) != 0) return Errno(errno, "fstat", name);
    }
  }
  if (static_cast<size_t>(st.st_size) != size) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "shm segment %s is %d bytes, this build expects %d: it was made by another build of "
        "Fulcrum; restart its owner with this build",
        name, st.st_size, size));
  }
  void* data =
      mmap(nullptr, size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) return Errno(errno, "mmap", name);
  MappedSegment seg;
  seg.data_ = data;
  seg.size_ = size;
  seg.name_ = name;
  seg.dev_ = st.st_dev;
  seg.ino_ = st.st_ino;
  return seg;
}

void InitConfigHeader(ConfigHeader& h) {
  h.magic = kConfigMagic;
  h.abi_major = kAbiMajor;
  h.abi_minor = kAbiMinor;
  h.header_size = sizeof(ConfigHeader);
  h.slot_size = sizeof(SnapshotSlot);
  h.slot_count = kSlotCount;
  h.snapshot_header_size = sizeof(SnapshotHeader);
  h.vip_record_size = sizeof(VipRecord);
  h.backend_record_size = sizeof(BackendRecord);
  h.max_vips = kMaxVips;
  h.max_backends = kMaxBackends;
  h.max_table_entries = kMaxTableEntries;
  h.segment_size = kConfigSegmentSize;
}

void InitStatsHeader(StatsHeader& h) {
  h.magic = kStatsMagic;
  h.abi_major = kAbiMajor;
  h.abi_minor = kAbiMinor;
  h.header_size = sizeof(StatsHeader);
  h.lcore_stats_size = sizeof(LcoreStats);
  h.port_stats_size = sizeof(PortStats);
  h.max_lcores = kMaxLcores;
  h.max_ports = kMaxPorts;
  h.max_vips = kMaxVips;
  h.max_backends = kMaxBackends;
  h.segment_size = kStatsSegmentSize;
}

absl::Status CheckConfigHeader(const ConfigHeader& h, size_t mapped_size) {
  if (mapped_size < sizeof(ConfigHeader)) {
    return absl::FailedPreconditionError(
        absl::StrFormat("config segment is %d bytes, smaller than its header", mapped_size));
  }
  if (h.magic != kConfigMagic) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "config segment: bad magic %#x (want %#x): not a Fulcrum config segment, or not "
        "initialised yet",
        h.magic, kConfigMagic));
  }
  if (h.abi_major != kAbiMajor || h.abi_minor > kAbiMinor) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "config segment has %s: restart the control plane and fulcrumd with the same release",
        Versions(h.abi_major, h.abi_minor)));
  }
  for (const absl::Status& s : {
           CheckField("config", "header_size", h.header_size, sizeof(ConfigHeader)),
           CheckField("config", "slot_size", h.slot_size, sizeof(SnapshotSlot)),
           CheckField("config", "slot_count", h.slot_count, kSlotCount),
           CheckField("config", "snapshot_header_size", h.snapshot_header_size,
                      sizeof(SnapshotHeader)),
           CheckField("config", "vip_record_size", h.vip_record_size, sizeof(VipRecord)),
           CheckField("config", "backend_record_size", h.backend_record_size,
                      sizeof(BackendRecord)),
           CheckField("config", "max_vips", h.max_vips, kMaxVips),
           CheckField("config", "max_backends", h.max_backends, kMaxBackends),
           CheckField("config", "max_table_entries", h.max_table_entries, kMaxTableEntries),
           CheckField("config", "segment_size", h.segment_size, kConfigSegmentSize),
           CheckField("config", "mapped size", mapped_size, kConfigSegmentSize),
       }) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status CheckStatsHeader(const StatsHeader& h, size_t mapped_size) {
  if (mapped_size < sizeof(StatsHeader)) {
    return absl::FailedPreconditionError(
        absl::StrFormat("stats segment is %d bytes, smaller than its header", mapped_size));
  }
  if (h.magic != kStatsMagic) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "stats segment: bad magic %#x (want %#x): not a Fulcrum stats segment, or fulcrumd "
        "has not initialised it yet",
        h.magic, kStatsMagic));
  }
  // Newer minors only append counters in reserved space: readable.
  if (h.abi_major != kAbiMajor) {
    return absl::FailedPreconditionError(
        absl::StrFormat("stats segment has %s: use a fulcrumctl of the same release as fulcrumd",
                        Versions(h.abi_major, h.abi_minor)));
  }
  for (const absl::Status& s : {
           CheckField("stats", "header_size", h.header_size, sizeof(StatsHeader)),
           CheckField("stats", "lcore_stats_size", h.lcore_stats_size, sizeof(LcoreStats)),
           CheckField("stats", "port_stats_size", h.port_stats_size, sizeof(PortStats)),
           CheckField("stats", "max_lcores", h.max_lcores, kMaxLcores),
           CheckField("stats", "max_ports", h.max_ports, kMaxPorts),
           CheckField("stats", "max_vips", h.max_vips, kMaxVips),
           CheckField("stats", "max_backends", h.max_backends, kMaxBackends),
           CheckField("stats", "segment_size", h.segment_size, kStatsSegmentSize),
           CheckField("stats", "mapped size", mapped_size, kStatsSegmentSize),
       }) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<MappedSegment> CreateConfigSegment(std::string_view prefix) {
  absl::StatusOr<std::string> name = ConfigSegmentName(prefix);
  if (!name.ok()) return name.status();
  absl::StatusOr<MappedSegment> seg = MapSegment(*name, kConfigSegmentSize, true, true);
  if (!seg.ok() && absl::IsFailedPrecondition(seg.status())) {
    // Another build's segment (another size): replace it. Its reader keeps the old mapping,
    // forwarding on its last snapshot, until it notices and re-attaches.
    shm_unlink(name->c_str());
    seg = MapSegment(*name, kConfigSegmentSize, true, true);
  }
  if (!seg.ok()) return seg.status();
  ConfigHeader& h = ConfigHeaderOf(*seg);
  if (CheckConfigHeader(h, seg->size()).ok()) return seg;  // ours: keep what it holds
  if (h.magic == kConfigMagic) {
    // Same size, another layout: replace it rather than reinterpret its bytes.
    shm_unlink(name->c_str());
    seg = MapSegment(*name, kConfigSegmentSize, true, true);
    if (!seg.ok()) return seg.status();
  }
  ConfigHeader& fresh = ConfigHeaderOf(*seg);
  std::memset(static_cast<void*>(&fresh), 0, sizeof(fresh));
  InitConfigHeader(fresh);
  return seg;
}

absl::StatusOr<MappedSegment> AttachConfigSegment(std::string_view prefix) {
  absl::StatusOr<std::string> name = ConfigSegmentName(prefix);
  if (!name.ok()) return name.status();
  absl::StatusOr<MappedSegment> seg = MapSegment(*name, kConfigSegmentSize, false, true);
  if (!seg.ok()) return seg.status();
  if (absl::Status s = CheckConfigHeader(ConfigHeaderOf(*seg), seg->size()); !s.ok()) return s;
  return seg;
}

absl::StatusOr<MappedSegment> CreateStatsSegment(std::string_view prefix) {
  absl::StatusOr<std::string> name = StatsSegmentName(prefix);
  if (!name.ok()) return name.status();
  // Always a new object: a reader of the previous process's counters keeps its mapping, and
  // the new counters start from zero without ever being seen half-reset.
  shm_unlink(name->c_str());
  absl::StatusOr<MappedSegment> seg = MapSegment(*name, kStatsSegmentSize, true, true);
  if (!seg.ok()) return seg.status();
  InitStatsHeader(StatsOf(*seg).header);
  return seg;
}

absl::StatusOr<MappedSegment> AttachStatsSegment(std::string_view prefix) {
  absl::StatusOr<std::string> name = StatsSegmentName(prefix);
  if (!name.ok()) return name.status();
  absl::StatusOr<MappedSegment> seg = MapSegment(*name, kStatsSegmentSize, false, false);
  if (!seg.ok()) return seg.status();
  if (absl::Status s = CheckStatsHeader(StatsOf(*seg).header, seg->size()); !s.ok()) return s;
  return seg;
}

}  // namespace fulcrum::shm
