// Bgp: which VIPs this host announces, and telling the BGP speaker (BIRD 2) so.
//
// Fulcrum does not speak BGP. The control plane decides, per VIP, whether this host can serve
// it (DecideAnnouncements, pure), renders a BIRD include file with a static protocol holding
// the announced VIPs and the BGP sessions of this host (RenderBirdConfig, pure), writes it
// atomically and asks BIRD to re-read its configuration over its control socket
// (BirdConfigure). Announcer ties them together and remembers what BIRD was last told, so BIRD
// is reconfigured only when the announced set changes (or the last attempt failed).
// docs/controlplane.md "BGP" is the reference.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "controlplane/config.h"
#include "nlohmann/json.hpp"

namespace fulcrum::controlplane {

// The facts one decision is made from; the server gathers them every tick.
struct AnnounceInput {
  bool shutting_down = false;
  bool dataplane_alive = false;
  std::string dataplane_detail;  // why it is not alive ("fulcrumd pid 7 has exited")
  uint64_t generation = 0;       // the control plane's current generation
  uint64_t acked_generation = 0;
  // An unacknowledged generation younger than the ack timeout keeps each VIP as it was, so
  // that every health republish does not flap the routes for the milliseconds before the ack.
  bool ack_grace = false;
  struct Vip {
    std::string name;
    IpAddress address;
    bool healthy_backend = false;  // a backend that takes new flows and is not down
    bool was_announced = false;    // the previous decision
  };
  std::vector<Vip> vips;
};

struct Announcement {
  std::string name;
  IpAddress address;
  bool announce = false;
  std::string reason;  // "" when announced; else why not ("data plane not alive: ...")
};

// Pure. Withdraw reasons, first that holds: shutting down; data plane not alive; generation not
// acknowledged; no healthy backend.
std::vector<Announcement> DecideAnnouncements(const AnnounceInput& in);

// The BIRD include file for `host`, announcing `announced` (address/32 or /128, blackhole: the
// route exists only to be exported; BGP advertises the configured next hop). Deterministic: the
// same inputs render the same bytes.
std::string RenderBirdConfig(const BgpConfig& bgp, const std::string& host_name,
                             const BgpHostConfig& host, const std::vector<IpAddress>& announced);

// Asks the BIRD listening on `socket_path` to re-read its configuration (`configure`), over its
// control socket: connect, read the greeting, send the command, read the reply up to its last
// line. Unavailable when nothing listens, FailedPrecondition with BIRD's own message when it
// refuses the configuration, DeadlineExceeded after `timeout_ms`.
absl::Status BirdConfigure(const std::string& socket_path, int timeout_ms);
// Any one-line command; an empty one only checks that BIRD greets.
absl::Status BirdCommand(const std::string& socket_path, std::string_view command, int timeout_ms);

// The host's entry, or NotFound naming the hosts the config has.
absl::StatusOr<const BgpHostConfig*> FindBgpHost(const BgpConfig& bgp, const std::string& host);

// Keeps BIRD in line with the decisions. Thread-safe: Tick() from the server's BGP thread,
// StatusJson() from any reader.
class Announcer {
 public:
  explicit Announcer(std::string host) : host_(std::move(host)) {}

  // Decides, and when the announced set differs from what BIRD was last told (or telling it
  // failed and the retry interval has passed, or `force`), rewrites the include file and
  // reconfigures BIRD. Returns the decisions (for the next tick's was_announced).
  std::vector<Announcement> Tick(const std::optional<BgpConfig>& bgp, const AnnounceInput& in,
                                 bool force = false);
  nlohmann::json StatusJson() const;
  const std::string& host() const { return host_; }

 private:
  const std::string host_;
  mutable std::mutex mu_;
  std::vector<Announcement> decisions_;
  std::optional<std::string> told_;  // the include file BIRD last accepted
  std::string last_error_;           // "" when BIRD accepted the last file
  uint64_t last_attempt_ns_ = 0;
  int64_t last_configured_unix_ms_ = 0;
  uint64_t configures_ = 0;
  uint64_t failures_ = 0;
  bool configured_ = false;  // the config has a bgp section
  std::string socket_;
  std::string include_file_;
};

}  // namespace fulcrum::controlplane
