// DecapProgram and the attached-decapsulator queries.
#include "bpf/decap.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/strings/str_format.h"
#include "bpf/abi.h"
#include "bpf/bpf_status.h"
#include "bpf/kernel.h"

// The generated skeletons: C with C++ wrappers; bpftool's code, so not held to our warnings.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wshadow"
#include "bpf/decap.skel.h"
#include "bpf/decap_tc.skel.h"
#pragma GCC diagnostic pop

namespace fulcrum::bpf {
namespace {

using XdpRodata = std::remove_pointer_t<decltype(decap_bpf::rodata)>;
using TcRodata = std::remove_pointer_t<decltype(decap_tc_bpf::rodata)>;
static_assert(sizeof(XdpRodata) == sizeof(TcRodata), "both variants take the same settings");

constexpr uint8_t kPresent = 1;  // the address maps' (unused) value

constexpr MapShape kCountersShape{"decap_counters", BPF_MAP_TYPE_PERCPU_ARRAY, 4,
                                  sizeof(fulcrum_counter)};
constexpr MapShape kV4Shape{"decap_v4", BPF_MAP_TYPE_HASH, 4, 1};
constexpr MapShape kV6Shape{"decap_v6", BPF_MAP_TYPE_HASH, sizeof(fulcrum_in6), 1};
constexpr MapShape kRodataShape{".rodata", BPF_MAP_TYPE_ARRAY, 4, sizeof(XdpRodata)};

const char* ProgName(DecapMode mode) {
  return mode == DecapMode::kXdp ? FULCRUM_PROG_DECAP_XDP : FULCRUM_PROG_DECAP_TC;
}

bool IsMulticast(const IpAddress& ip) {
  return ip.v6 ? ip.bytes[0] == 0xff : (ip.bytes[0] & 0xf0) == 0xe0;
}

bool IsUnspecified(const IpAddress& ip) {
  for (uint8_t b : ip.bytes) {
    if (b != 0) return false;
  }
  return true;
}

absl::Status FillAddresses(int v4_fd, int v6_fd, const std::vector<IpAddress>& addresses) {
  for (const IpAddress& ip : addresses) {
    const int fd = ip.v6 ? v6_fd : v4_fd;
    if (int err = bpf_map_update_elem(fd, ip.bytes.data(), &kPresent, BPF_ANY); err != 0) {
      return LibbpfError(err, absl::StrFormat("adding address %s to the decap map", ip.ToString()));
    }
  }
  return absl::OkStatus();
}

// The program id of Fulcrum's decapsulator of `mode` on ifindex, 0 if there is none, and
// FailedPrecondition if another program holds that hook.
absl::StatusOr<uint32_t> OwnProgramOn(int ifindex, DecapMode mode, bool* driver_mode) {
  uint32_t id = 0;
  if (mode == DecapMode::kXdp) {
    absl::StatusOr<XdpAttachment> xdp = QueryXdp(ifindex);
    if (!xdp.ok()) return xdp.status();
    id = xdp->prog_id;
    if (driver_mode != nullptr) *driver_mode = xdp->driver_mode;
  } else {
    absl::StatusOr<uint32_t> tc = QueryTc(ifindex, TcHook::kIngress, FULCRUM_TC_HANDLE_DECAP);
    if (!tc.ok()) return tc.status();
    id = *tc;
  }
  if (id == 0) return 0u;
  absl::StatusOr<ProgramInfo> info = GetProgramInfoById(id);
  if (!info.ok()) return info.status();
  if (info->name != ProgName(mode)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "interface %d already has %s program %u ('%s'), which is not fulcrum-decap's; remove it "
        "first (%s) or use the other mode",
        ifindex, DecapModeName(mode), id, info->name,
        mode == DecapMode::kXdp ? "ip link set dev IFACE xdp off"
                                : "tc filter del dev IFACE ingress"));
  }
  return id;
}

}  // namespace

std::string_view DecapModeName(DecapMode mode) { return mode == DecapMode::kXdp ? "xdp" : "tc"; }

std::optional<DecapMode> ParseDecapMode(std::string_view name) {
  if (name == "xdp") return DecapMode::kXdp;
  if (name == "tc") return DecapMode::kTc;
  return std::nullopt;
}

absl::Status ValidateDecapConfig(const DecapConfig& config) {
  if (config.addresses.empty()) {
    return absl::InvalidArgumentError(
        "no address to decapsulate for: give this backend's own address(es), the outer "
        "destination the load balancer sends to (not the VIP)");
  }
  size_t v4 = 0, v6 = 0;
  for (const IpAddress& ip : config.addresses) {
    if (IsUnspecified(ip) || IsMulticast(ip)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("address %s: must be a unicast address of this host", ip.ToString()));
    }
    (ip.v6 ? v6 : v4)++;
  }
  if (v4 > FULCRUM_DECAP_MAX_ADDRESSES || v6 > FULCRUM_DECAP_MAX_ADDRESSES) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%u IPv4 and %u IPv6 addresses: at most %d of each", v4, v6, FULCRUM_DECAP_MAX_ADDRESSES));
  }
  return absl::OkStatus();
}

struct DecapProgram::Impl {
  DecapMode mode = DecapMode::kXdp;
  decap_bpf* xdp = nullptr;
  decap_tc_bpf* tc = nullptr;

  ~Impl() {
    if (xdp != nullptr) decap_bpf::destroy(xdp);
    if (tc != nullptr) decap_tc_bpf::destroy(tc);
  }
  int prog_fd() const {
    return xdp != nullptr ? bpf_program__fd(xdp->progs.fulcrum_decap)
                          : bpf_program__fd(tc->progs.fulcrum_tcdecap);
  }
  int counters_fd() const {
    return xdp != nullptr ? bpf_map__fd(xdp->maps.decap_counters)
                          : bpf_map__fd(tc->maps.decap_counters);
  }
};

namespace {

// Open, configure, load, fill: the same steps for both skeletons.
template <typename Skel>
absl::Status LoadSkeleton(Skel*& skel, const DecapConfig& config, std::string_view what) {
  skel = Skel::open();
  if (skel == nullptr) return LibbpfError(errno, absl::StrFormat("opening %s", what));
  skel->rodata->gue_port = config.gue_port;
  if (int err = Skel::load(skel); err != 0) {
    return LibbpfError(
        err, absl::StrFormat(
                 "loading %s (libbpf printed why above, a verifier rejection with its log)", what));
  }
  return FillAddresses(bpf_map__fd(skel->maps.decap_v4), bpf_map__fd(skel->maps.decap_v6),
                       config.addresses);
}

}  // namespace

DecapProgram::DecapProgram(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DecapProgram::DecapProgram(DecapProgram&&) noexcept = default;
DecapProgram& DecapProgram::operator=(DecapProgram&&) noexcept = default;
DecapProgram::~DecapProgram() = default;

absl::StatusOr<DecapProgram> DecapProgram::Load(DecapMode mode, const DecapConfig& config) {
  if (absl::Status s = ValidateDecapConfig(config); !s.ok()) return s;
  auto impl = std::make_unique<Impl>();
  impl->mode = mode;
  absl::Status s = mode == DecapMode::kXdp ? LoadSkeleton(impl->xdp, config, "the XDP decapsulator")
                                           : LoadSkeleton(impl->tc, config, "the tc decapsulator");
  if (!s.ok()) return s;
  return DecapProgram(std::move(impl));
}

absl::Status DecapProgram::Attach(int ifindex) {
  bool driver_mode = true;
  absl::StatusOr<uint32_t> current = OwnProgramOn(ifindex, impl_->mode, &driver_mode);
  if (!current.ok()) return current.status();
  if (impl_->mode == DecapMode::kTc) {
    return AttachTc(ifindex, TcHook::kIngress, FULCRUM_TC_HANDLE_DECAP, impl_->prog_fd());
  }
  if (*current != 0 && !driver_mode) {
    // Ours, but in the kernel's generic mode (attached by hand): driver mode cannot replace it.
    if (absl::Status s = DetachXdp(ifindex, *current, false); !s.ok()) return s;
    *current = 0;
  }
  return AttachXdp(ifindex, impl_->prog_fd(), *current, /*generic=*/false);
}

DecapMode DecapProgram::mode() const { return impl_->mode; }
int DecapProgram::prog_fd() const { return impl_->prog_fd(); }

absl::StatusOr<CounterValues> DecapProgram::Counters() const {
  return ReadCounters(impl_->counters_fd(), FULCRUM_DECAP_COUNTER_COUNT);
}

absl::StatusOr<std::vector<DecapAttachment>> QueryDecap(int ifindex) {
  std::vector<DecapAttachment> out;
  for (DecapMode mode : {DecapMode::kXdp, DecapMode::kTc}) {
    absl::StatusOr<uint32_t> id = OwnProgramOn(ifindex, mode, nullptr);
    if (absl::IsFailedPrecondition(id.status())) continue;  // someone else's program
    if (!id.ok()) return id.status();
    if (*id == 0) continue;
    absl::StatusOr<ProgramInfo> info = GetProgramInfoById(*id);
    if (!info.ok()) return info.status();
    DecapAttachment a;
    a.mode = mode;
    a.prog_id = *id;
    absl::StatusOr<ScopedFd> counters = FindProgramMap(*info, kCountersShape, true);
    absl::StatusOr<ScopedFd> v4 = FindProgramMap(*info, kV4Shape, true);
    absl::StatusOr<ScopedFd> v6 = FindProgramMap(*info, kV6Shape, true);
    absl::StatusOr<ScopedFd> rodata = FindProgramMap(*info, kRodataShape, true);
    for (const auto* m : {&counters, &v4, &v6, &rodata}) {
      if (!m->ok()) return m->status();
    }
    absl::StatusOr<CounterValues> values =
        ReadCounters(counters->get(), FULCRUM_DECAP_COUNTER_COUNT);
    if (!values.ok()) return values.status();
    a.counters = *std::move(values);
    for (bool v6_map : {false, true}) {
      absl::StatusOr<std::vector<std::vector<uint8_t>>> keys =
          MapKeys(v6_map ? v6->get() : v4->get(), v6_map ? 16 : 4);
      if (!keys.ok()) return keys.status();
      for (const std::vector<uint8_t>& k : *keys) {
        IpAddress ip;
        std::memcpy(ip.bytes.data(), k.data(), k.size());
        ip.v6 = v6_map;
        a.config.addresses.push_back(ip);
      }
    }
    XdpRodata settings{};
    const uint32_t zero = 0;
    if (int err = bpf_map_lookup_elem(rodata->get(), &zero, &settings); err != 0) {
      return LibbpfError(err, "reading the decapsulator's settings");
    }
    a.config.gue_port = settings.gue_port;
    out.push_back(std::move(a));
  }
  return out;
}

absl::Status DetachDecap(int ifindex, DecapMode mode) {
  bool driver_mode = true;
  absl::StatusOr<uint32_t> id = OwnProgramOn(ifindex, mode, &driver_mode);
  if (!id.ok()) return id.status();
  if (*id == 0) {
    return absl::NotFoundError(absl::StrFormat("no fulcrum-decap %s program on interface %d",
                                               DecapModeName(mode), ifindex));
  }
  if (mode == DecapMode::kTc) return DetachTc(ifindex, TcHook::kIngress, FULCRUM_TC_HANDLE_DECAP);
  return DetachXdp(ifindex, *id, driver_mode);
}

}  // namespace fulcrum::bpf
