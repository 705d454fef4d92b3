// SteerMaps, SteerProgram and the embedded steering object.
#include "bpf/steer.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/str_format.h"
#include "bpf/bpf_status.h"
#include "bpf/kernel.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wshadow"
#include "bpf/steer.skel.h"
#pragma GCC diagnostic pop

namespace fulcrum::bpf {
namespace {

constexpr uint8_t kProtoIcmp = 1;
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
constexpr uint8_t kProtoIcmpv6 = 58;
constexpr uint8_t kPresent = 1;

constexpr MapShape kVipsShape{"vips", BPF_MAP_TYPE_HASH, sizeof(fulcrum_vip_key), 1};
constexpr MapShape kCountersShape{"steer_counters", BPF_MAP_TYPE_PERCPU_ARRAY, 4,
                                  sizeof(fulcrum_counter)};

struct KeyLess {
  bool operator()(const fulcrum_vip_key& a, const fulcrum_vip_key& b) const {
    return std::memcmp(&a, &b, sizeof(a)) < 0;
  }
};
using KeySet = std::set<fulcrum_vip_key, KeyLess>;

fulcrum_vip_key MakeKey(const IpAddress& address, uint8_t proto, uint16_t port, bool any_port) {
  fulcrum_vip_key k{};
  std::memcpy(k.addr, address.bytes.data(), 16);
  k.port = static_cast<__be16>(__builtin_bswap16(port));
  k.proto = proto;
  k.flags = static_cast<uint8_t>((address.v6 ? FULCRUM_VIP_F_IPV6 : 0) |
                                 (any_port ? FULCRUM_VIP_F_ANY_PORT : 0));
  return k;
}

}  // namespace

std::span<const uint8_t> SteerObject() {
  size_t size = 0;
  const void* bytes = steer_bpf__elf_bytes(&size);
  return {static_cast<const uint8_t*>(bytes), size};
}

absl::Status WriteSteerObject(const std::string& path) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return LibbpfError(errno, absl::StrFormat("creating %s", tmp));
  ScopedFd file(fd);
  const std::span<const uint8_t> object = SteerObject();
  size_t done = 0;
  while (done < object.size()) {
    const ssize_t n = ::write(file.get(), object.data() + done, object.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return LibbpfError(errno, absl::StrFormat("writing %s", tmp));
    done += static_cast<size_t>(n);
  }
  file.Reset();
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return LibbpfError(errno, absl::StrFormat("renaming %s to %s", tmp, path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<fulcrum_vip_key>> SteerKeys(std::span<const SteerVip> vips) {
  KeySet keys;
  for (const SteerVip& vip : vips) {
    if (vip.proto != kProtoTcp && vip.proto != kProtoUdp) {
      return absl::InvalidArgumentError(
          absl::StrFormat("VIP %s port %u: protocol %u, the data plane serves TCP (6) and UDP (17)",
                          vip.address.ToString(), vip.port, vip.proto));
    }
    if (vip.port == 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("VIP %s: port 0 is not a service port", vip.address.ToString()));
    }
    keys.insert(MakeKey(vip.address, vip.proto, vip.port, false));
    keys.insert(MakeKey(vip.address, vip.proto, 0, true));
    keys.insert(MakeKey(vip.address, vip.address.v6 ? kProtoIcmpv6 : kProtoIcmp, 0, true));
  }
  return std::vector<fulcrum_vip_key>(keys.begin(), keys.end());
}

absl::StatusOr<SteerMaps> SteerMaps::ForProgram(uint32_t prog_id) {
  absl::StatusOr<ProgramInfo> info = GetProgramInfoById(prog_id);
  if (!info.ok()) return info.status();
  if (info->name != FULCRUM_PROG_STEER) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "BPF program %u is '%s', not Fulcrum's steering program '%s' (was the PMD given "
        "xdp_prog= with the steering object?)",
        prog_id, info->name, FULCRUM_PROG_STEER));
  }
  absl::StatusOr<ScopedFd> vips = FindProgramMap(*info, kVipsShape, false);
  if (!vips.ok()) return vips.status();
  absl::StatusOr<ScopedFd> counters = FindProgramMap(*info, kCountersShape, true);
  if (!counters.ok()) return counters.status();
  return SteerMaps(prog_id, *std::move(vips), *std::move(counters));
}

absl::StatusOr<SteerMaps> SteerMaps::ForInterface(int ifindex) {
  absl::StatusOr<XdpAttachment> xdp = QueryXdp(ifindex);
  if (!xdp.ok()) return xdp.status();
  if (xdp->prog_id == 0) {
    return absl::NotFoundError(absl::StrFormat(
        "interface %d has no XDP program: start the af_xdp port with xdp_prog= first", ifindex));
  }
  return ForProgram(xdp->prog_id);
}

absl::Status SteerMaps::ReplaceVips(std::span<const SteerVip> vips) {
  absl::StatusOr<std::vector<fulcrum_vip_key>> wanted_list = SteerKeys(vips);
  if (!wanted_list.ok()) return wanted_list.status();
  if (wanted_list->size() > FULCRUM_STEER_MAX_VIP_KEYS) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%u VIPs need %u steering keys; the map holds %d", vips.size(),
                        wanted_list->size(), FULCRUM_STEER_MAX_VIP_KEYS));
  }
  const KeySet wanted(wanted_list->begin(), wanted_list->end());
  absl::StatusOr<std::vector<std::vector<uint8_t>>> current =
      MapKeys(vips_.get(), sizeof(fulcrum_vip_key));
  if (!current.ok()) return current.status();
  KeySet have;
  for (const std::vector<uint8_t>& raw : *current) {
    fulcrum_vip_key k;
    std::memcpy(&k, raw.data(), sizeof(k));
    have.insert(k);
  }
  for (const fulcrum_vip_key& k : have) {
    if (wanted.count(k) != 0) continue;
    if (int err = bpf_map_delete_elem(vips_.get(), &k); err != 0 && err != -ENOENT) {
      return LibbpfError(err, "removing a VIP from the steering map");
    }
  }
  for (const fulcrum_vip_key& k : wanted) {
    if (have.count(k) != 0) continue;
    if (int err = bpf_map_update_elem(vips_.get(), &k, &kPresent, BPF_ANY); err != 0) {
      return LibbpfError(err, "adding a VIP to the steering map");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SteerVip>> SteerMaps::Vips() const {
  absl::StatusOr<std::vector<std::vector<uint8_t>>> keys =
      MapKeys(vips_.get(), sizeof(fulcrum_vip_key));
  if (!keys.ok()) return keys.status();
  std::vector<SteerVip> out;
  for (const std::vector<uint8_t>& raw : *keys) {
    fulcrum_vip_key k;
    std::memcpy(&k, raw.data(), sizeof(k));
    if ((k.flags & FULCRUM_VIP_F_ANY_PORT) != 0) continue;
    SteerVip vip;
    std::memcpy(vip.address.bytes.data(), k.addr, 16);
    vip.address.v6 = (k.flags & FULCRUM_VIP_F_IPV6) != 0;
    vip.proto = k.proto;
    vip.port = __builtin_bswap16(k.port);
    out.push_back(vip);
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<CounterValues> SteerMaps::Counters() const {
  return ReadCounters(counters_.get(), FULCRUM_STEER_COUNTER_COUNT);
}

absl::StatusOr<SteerProgram> SteerProgram::Load() {
  steer_bpf* skel = steer_bpf::open_and_load();
  if (skel == nullptr) {
    return LibbpfError(errno,
                       "loading the steering program (libbpf printed why above, a verifier "
                       "rejection with its log)");
  }
  return SteerProgram(skel);
}

SteerProgram::SteerProgram(SteerProgram&& other) noexcept
    : skel_(std::exchange(other.skel_, nullptr)),
      attached_ifindex_(std::exchange(other.attached_ifindex_, 0)),
      attached_generic_(other.attached_generic_) {}

SteerProgram& SteerProgram::operator=(SteerProgram&& other) noexcept {
  // `other` leaves with what this held and releases it when it goes.
  std::swap(skel_, other.skel_);
  std::swap(attached_ifindex_, other.attached_ifindex_);
  std::swap(attached_generic_, other.attached_generic_);
  return *this;
}

SteerProgram::~SteerProgram() {
  if (attached_ifindex_ != 0) (void)Detach();
  if (skel_ != nullptr) steer_bpf::destroy(skel_);
}

absl::Status SteerProgram::Attach(int ifindex, bool generic) {
  if (absl::Status s = AttachXdp(ifindex, prog_fd(), 0, generic); !s.ok()) return s;
  attached_ifindex_ = ifindex;
  attached_generic_ = generic;
  return absl::OkStatus();
}

absl::Status SteerProgram::Detach() {
  if (attached_ifindex_ == 0) return absl::OkStatus();
  absl::StatusOr<ProgramInfo> info = GetProgramInfo(prog_fd());
  if (!info.ok()) return info.status();
  const int ifindex = std::exchange(attached_ifindex_, 0);
  return DetachXdp(ifindex, info->id, !attached_generic_);
}

int SteerProgram::prog_fd() const { return bpf_program__fd(skel_->progs.fulcrum_steer); }
int SteerProgram::xsks_map_fd() const { return bpf_map__fd(skel_->maps.xsks_map); }

absl::StatusOr<SteerMaps> SteerProgram::Maps() const {
  absl::StatusOr<ProgramInfo> info = GetProgramInfo(prog_fd());
  if (!info.ok()) return info.status();
  const int vips = fcntl(bpf_map__fd(skel_->maps.vips), F_DUPFD_CLOEXEC, 0);
  if (vips < 0) return LibbpfError(errno, "duplicating the VIP map's fd");
  ScopedFd owned_vips(vips);
  const int counters = fcntl(bpf_map__fd(skel_->maps.steer_counters), F_DUPFD_CLOEXEC, 0);
  if (counters < 0) return LibbpfError(errno, "duplicating the counter map's fd");
  return SteerMaps(info->id, std::move(owned_vips), ScopedFd(counters));
}

}  // namespace fulcrum::bpf
