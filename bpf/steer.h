// AF_XDP steering (bpf/steer.bpf.c) for fulcrumd: the program object for the af_xdp PMD, and
// the VIP map of the program attached to an interface.
//
// How fulcrumd uses it with DPDK 22.11's net_af_xdp PMD:
//   1. Give each af_xdp vdev `xdp_prog=<path>`: the path of the object, either the build's
//      (meson variable `steer_bpf_obj`) or one written from this binary by WriteSteerObject().
//      The PMD loads it, attaches it to the interface and puts its sockets into `xsks_map`.
//   2. After the ports have started: SteerMaps::ForInterface(ifindex), then ReplaceVips() with
//      the VIPs of the snapshot in use, and again whenever the snapshot changes.
// Until step 2 the VIP map is empty and every packet goes to the kernel.
#pragma once

#include <compare>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bpf/abi.h"
#include "bpf/counters.h"
#include "bpf/scoped_fd.h"
#include "dataplane/core/ip_address.h"

struct steer_bpf;

namespace fulcrum::bpf {

struct SteerVip {
  IpAddress address;
  uint8_t proto = 0;  // 6 (TCP) or 17 (UDP)
  uint16_t port = 0;  // host order

  friend auto operator<=>(const SteerVip&, const SteerVip&) = default;
};

// The object file the af_xdp PMD's xdp_prog= option wants, as embedded in this binary.
std::span<const uint8_t> SteerObject();
// Writes SteerObject() to `path` (mode 0644, replacing it atomically through a temporary).
absl::Status WriteSteerObject(const std::string& path);

// The map keys a VIP set becomes: per VIP its (address, proto, port), its (address, proto, any
// port) for fragments, and (address, ICMP or ICMPv6, any port) for frag-needed/packet-too-big.
// InvalidArgument for a protocol other than TCP/UDP or port 0.
absl::StatusOr<std::vector<fulcrum_vip_key>> SteerKeys(std::span<const SteerVip> vips);

// The maps of a steering program, whoever loaded it.
class SteerMaps {
 public:
  // The steering program attached to ifindex (driver or generic XDP). NotFound if there is no
  // XDP program; FailedPrecondition if it is not Fulcrum's steering program.
  static absl::StatusOr<SteerMaps> ForInterface(int ifindex);
  static absl::StatusOr<SteerMaps> ForProgram(uint32_t prog_id);

  // Makes the VIP map hold exactly `vips`. Keys in both the old and the new set are never
  // touched, so a VIP that stays is steered throughout; removed keys go first, so the map never
  // holds more than the larger of the two sets. ResourceExhausted if `vips` needs more than
  // FULCRUM_STEER_MAX_VIP_KEYS keys. Not atomic across VIPs: during the call some VIPs have
  // their new state and some their old.
  absl::Status ReplaceVips(std::span<const SteerVip> vips);
  // The VIPs in the map (the full keys; the any-port keys derived from them are not listed).
  absl::StatusOr<std::vector<SteerVip>> Vips() const;
  absl::StatusOr<CounterValues> Counters() const;  // indexed by fulcrum_steer_counter
  uint32_t prog_id() const { return prog_id_; }

 private:
  friend class SteerProgram;
  SteerMaps(uint32_t prog_id, ScopedFd vips, ScopedFd counters)
      : prog_id_(prog_id), vips_(std::move(vips)), counters_(std::move(counters)) {}
  uint32_t prog_id_;
  ScopedFd vips_;
  ScopedFd counters_;
};

// The steering program loaded in this process: for tests, benchmarks, and a data plane that
// attaches it itself rather than through the PMD. Detached (if attached here) on destruction.
class SteerProgram {
 public:
  static absl::StatusOr<SteerProgram> Load();
  SteerProgram(SteerProgram&&) noexcept;
  SteerProgram& operator=(SteerProgram&&) noexcept;
  ~SteerProgram();

  // XDP driver mode (generic: the kernel's skb mode); FailedPrecondition if ifindex already
  // has an XDP program.
  absl::Status Attach(int ifindex, bool generic = false);
  absl::Status Detach();

  int prog_fd() const;
  int xsks_map_fd() const;  // key: queue index, value: AF_XDP socket fd
  absl::StatusOr<SteerMaps> Maps() const;

 private:
  explicit SteerProgram(steer_bpf* skel) : skel_(skel) {}
  steer_bpf* skel_ = nullptr;
  int attached_ifindex_ = 0;
  bool attached_generic_ = false;
};

}  // namespace fulcrum::bpf
