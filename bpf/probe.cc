// ProbeEncap: the probe program's loader and its mark -> backend map.
#include "bpf/probe.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_format.h"
#include "bpf/bpf_status.h"
#include "bpf/kernel.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wshadow"
#include "bpf/probe.skel.h"
#pragma GCC diagnostic pop

namespace fulcrum::bpf {
namespace {

// The BPF side reads the template as encap.h lays it out.
static_assert(kMaxEncapHeaderLen == FULCRUM_ENCAP_MAX_HEADER);
static_assert(static_cast<int>(EncapKind::kIpip4) == FULCRUM_ENCAP_IPIP4 &&
              static_cast<int>(EncapKind::kIpip6) == FULCRUM_ENCAP_IPIP6 &&
              static_cast<int>(EncapKind::kGue4) == FULCRUM_ENCAP_GUE4 &&
              static_cast<int>(EncapKind::kGue6) == FULCRUM_ENCAP_GUE6);

fulcrum_encap_header ToHeader(const EncapTemplate& t) {
  fulcrum_encap_header h{};
  std::memcpy(h.bytes, t.bytes.data(), sizeof(h.bytes));
  h.kind = static_cast<uint8_t>(t.kind);
  h.len = t.header_len;
  return h;
}

}  // namespace

absl::StatusOr<fulcrum_probe_target> ProbeTargetFor(const EncapConfig& config,
                                                    const IpAddress& backend) {
  fulcrum_probe_target target{};
  absl::StatusOr<EncapTemplate> v4 = BuildEncapTemplate(config, backend, /*inner_v6=*/false);
  absl::StatusOr<EncapTemplate> v6 = BuildEncapTemplate(config, backend, /*inner_v6=*/true);
  if (!v4.ok() && !v6.ok()) return v4.status();
  if (v4.ok()) target.inner_v4 = ToHeader(*v4);
  if (v6.ok()) target.inner_v6 = ToHeader(*v6);
  return target;
}

absl::StatusOr<ProbeEncap> ProbeEncap::Load() {
  probe_bpf* skel = probe_bpf::open_and_load();
  if (skel == nullptr) {
    return LibbpfError(
        errno,
        "loading the probe program (libbpf printed why above, a verifier rejection with its log)");
  }
  return ProbeEncap(skel);
}

absl::StatusOr<ProbeEncap> ProbeEncap::Attach(int ifindex) {
  absl::StatusOr<ProbeEncap> probe = Load();
  if (!probe.ok()) return probe.status();
  absl::StatusOr<uint32_t> current = QueryTc(ifindex, TcHook::kEgress, FULCRUM_TC_HANDLE_PROBE);
  if (!current.ok()) return current.status();
  if (*current != 0) {
    absl::StatusOr<ProgramInfo> info = GetProgramInfoById(*current);
    if (!info.ok()) return info.status();
    if (info->name != FULCRUM_PROG_PROBE) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "interface %d has tc egress filter %#x with program %u ('%s'), not Fulcrum's probe "
          "program; remove it first",
          ifindex, FULCRUM_TC_HANDLE_PROBE, *current, info->name));
    }
  }
  if (absl::Status s =
          AttachTc(ifindex, TcHook::kEgress, FULCRUM_TC_HANDLE_PROBE, probe->prog_fd());
      !s.ok()) {
    return s;
  }
  probe->attached_ifindex_ = ifindex;
  return probe;
}

ProbeEncap::ProbeEncap(ProbeEncap&& other) noexcept
    : skel_(std::exchange(other.skel_, nullptr)),
      attached_ifindex_(std::exchange(other.attached_ifindex_, 0)) {}

ProbeEncap& ProbeEncap::operator=(ProbeEncap&& other) noexcept {
  // `other` leaves with what this held and releases it when it goes.
  std::swap(skel_, other.skel_);
  std::swap(attached_ifindex_, other.attached_ifindex_);
  return *this;
}

ProbeEncap::~ProbeEncap() {
  if (attached_ifindex_ != 0) (void)Detach();
  if (skel_ != nullptr) probe_bpf::destroy(skel_);
}

absl::Status ProbeEncap::SetTarget(uint32_t mark, const EncapConfig& config,
                                   const IpAddress& backend) {
  absl::StatusOr<fulcrum_probe_target> target = ProbeTargetFor(config, backend);
  if (!target.ok()) return target.status();
  return SetTarget(mark, *target);
}

absl::Status ProbeEncap::SetTarget(uint32_t mark, const fulcrum_probe_target& target) {
  if (mark == 0) {
    return absl::InvalidArgumentError(
        "probe mark 0: every unmarked packet has mark 0; use a non-zero SO_MARK value");
  }
  if (int err =
          bpf_map_update_elem(bpf_map__fd(skel_->maps.probe_targets), &mark, &target, BPF_ANY);
      err != 0) {
    return LibbpfError(err, absl::StrFormat("setting probe target for mark %#x", mark));
  }
  return absl::OkStatus();
}

absl::Status ProbeEncap::RemoveTarget(uint32_t mark) {
  if (int err = bpf_map_delete_elem(bpf_map__fd(skel_->maps.probe_targets), &mark); err != 0) {
    return LibbpfError(err, absl::StrFormat("removing probe target for mark %#x", mark));
  }
  return absl::OkStatus();
}

absl::Status ProbeEncap::Detach() {
  if (attached_ifindex_ == 0) return absl::OkStatus();
  const int ifindex = std::exchange(attached_ifindex_, 0);
  // Only if the filter is still this object's program: a newer ProbeEncap may have replaced it.
  absl::StatusOr<uint32_t> current = QueryTc(ifindex, TcHook::kEgress, FULCRUM_TC_HANDLE_PROBE);
  if (!current.ok()) return current.status();
  absl::StatusOr<ProgramInfo> self = GetProgramInfo(prog_fd());
  if (!self.ok()) return self.status();
  if (*current != self->id) return absl::OkStatus();
  return DetachTc(ifindex, TcHook::kEgress, FULCRUM_TC_HANDLE_PROBE);
}

int ProbeEncap::prog_fd() const { return bpf_program__fd(skel_->progs.fulcrum_probe); }

absl::StatusOr<CounterValues> ProbeEncap::Counters() const {
  return ReadCounters(bpf_map__fd(skel_->maps.probe_counters), FULCRUM_PROBE_COUNTER_COUNT);
}

}  // namespace fulcrum::bpf
