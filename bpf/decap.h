// fulcrum-decap's loader: the backend-side decapsulator (bpf/decap.bpf.c, bpf/decap_tc.bpf.c)
// as a C++ object, and what is attached to an interface, from any process.
//
// A DecapProgram is loaded with its configuration (the addresses to decapsulate for, the GUE
// port) and then attached; the attachment outlives the object and the process, as `ip link set
// xdp` does, so that a oneshot `fulcrum-decap attach` leaves the backend decapsulating.
// Re-attaching replaces Fulcrum's program atomically; a foreign program is never replaced.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bpf/counters.h"
#include "dataplane/core/ip_address.h"

namespace fulcrum::bpf {

enum class DecapMode : uint8_t {
  kXdp,  // XDP in driver (native) mode: before the kernel allocates an skb
  kTc,   // tc clsact ingress: for drivers without native XDP
};
std::string_view DecapModeName(DecapMode mode);  // "xdp", "tc"
std::optional<DecapMode> ParseDecapMode(std::string_view name);

struct DecapConfig {
  // The outer destinations to decapsulate for: this backend's own addresses (not the VIPs).
  std::vector<IpAddress> addresses;
  uint16_t gue_port = 0;  // UDP port of GUE (the data plane's encap.gue_port); 0: no GUE
};

// InvalidArgument for no address at all, too many (FULCRUM_DECAP_MAX_ADDRESSES), or an
// unspecified or multicast one.
absl::Status ValidateDecapConfig(const DecapConfig& config);

class DecapProgram {
 public:
  // Opens the program for `mode`, sets the GUE port, loads it (the verifier runs here) and
  // fills the address maps.
  static absl::StatusOr<DecapProgram> Load(DecapMode mode, const DecapConfig& config);

  DecapProgram(DecapProgram&&) noexcept;
  DecapProgram& operator=(DecapProgram&&) noexcept;
  ~DecapProgram();

  // Attaches to ifindex: replaces a Fulcrum decapsulator of the same mode already there;
  // FailedPrecondition, naming it, if another program holds the hook.
  absl::Status Attach(int ifindex);

  DecapMode mode() const;
  int prog_fd() const;
  absl::StatusOr<CounterValues> Counters() const;  // indexed by fulcrum_decap_counter

 private:
  struct Impl;
  explicit DecapProgram(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A decapsulator attached to an interface, read back from the kernel.
struct DecapAttachment {
  DecapMode mode = DecapMode::kXdp;
  uint32_t prog_id = 0;
  DecapConfig config;
  CounterValues counters;
};

// Fulcrum decapsulators on ifindex (at most one per mode). A foreign XDP program is reported
// as FailedPrecondition only by Attach, not here: it is simply not listed.
absl::StatusOr<std::vector<DecapAttachment>> QueryDecap(int ifindex);

// Detaches the decapsulator of `mode` from ifindex; NotFound if there is none. Only Fulcrum's
// own program is removed; for tc, the clsact qdisc stays.
absl::Status DetachDecap(int ifindex, DecapMode mode);

}  // namespace fulcrum::bpf
