// Bgp: the announcement decision, the BIRD include file, and BIRD's control socket.
#include "controlplane/bgp.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "controlplane/durable_file.h"
#include "controlplane/log.h"
#include "dataplane/shm/config_channel.h"

namespace fulcrum::controlplane {
namespace {

// A failed reconfiguration is retried this often (the BGP thread ticks faster).
constexpr uint64_t kRetryNs = 1'000'000'000ull;
constexpr int kBirdTimeoutMs = 2000;

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Prefix(const IpAddress& a) { return absl::StrCat(a.ToString(), a.v6 ? "/128" : "/32"); }

// A file descriptor closed on every path out.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

}  // namespace

std::vector<Announcement> DecideAnnouncements(const AnnounceInput& in) {
  std::vector<Announcement> out;
  out.reserve(in.vips.size());
  const bool unacked = in.acked_generation < in.generation;
  for (const AnnounceInput::Vip& v : in.vips) {
    Announcement a{v.name, v.address, false, ""};
    if (in.shutting_down) {
      a.reason = "shutting down";
    } else if (!in.dataplane_alive) {
      a.reason = in.dataplane_detail.empty()
                     ? std::string("data plane not alive")
                     : absl::StrCat("data plane not alive: ", in.dataplane_detail);
    } else if (in.generation == 0) {
      a.reason = "no generation published yet";
    } else if (unacked && !(in.ack_grace && v.was_announced)) {
      a.reason = absl::StrFormat("generation %d not acknowledged (the data plane runs %d)",
                                 in.generation, in.acked_generation);
    } else if (!v.healthy_backend) {
      a.reason = "no healthy backend";
    } else {
      a.announce = true;
    }
    out.push_back(std::move(a));
  }
  return out;
}

std::string RenderBirdConfig(const BgpConfig& bgp, const std::string& host_name,
                             const BgpHostConfig& host, const std::vector<IpAddress>& announced) {
  std::vector<IpAddress> sorted = announced;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  std::string out = absl::StrFormat(
      "# Written by fulcrumctl serve for host %s: the VIPs this host announces and its BGP\n"
      "# sessions (docs/controlplane.md \"BGP\"). Rewritten whenever they change; do not edit.\n"
      "router id %s;\n\n"
      "protocol device fulcrum_device {\n}\n",
      host_name, host.router_id.ToString());
  for (bool v6 : {false, true}) {
    out += absl::StrFormat("\nprotocol static fulcrum_vips%s {\n  %s;\n", v6 ? "6" : "4",
                           v6 ? "ipv6" : "ipv4");
    for (const IpAddress& a : sorted) {
      if (a.v6 == v6) out += absl::StrFormat("  route %s blackhole;\n", Prefix(a));
    }
    out += "}\n";
  }
  const uint32_t keepalive = bgp.keepalive_s != 0 ? bgp.keepalive_s : bgp.hold_time_s / 3;
  for (size_t i = 0; i < host.peers.size(); ++i) {
    const IpAddress& peer = host.peers[i];
    const std::optional<IpAddress>& hop = peer.v6 ? host.next_hop6 : host.next_hop;
    out += absl::StrFormat("\nprotocol bgp fulcrum_peer%d {\n", i + 1);
    if (host.local_address.has_value()) {
      out += absl::StrFormat("  local %s as %d;\n", host.local_address->ToString(), bgp.local_asn);
    } else {
      out += absl::StrFormat("  local as %d;\n", bgp.local_asn);
    }
    out += absl::StrFormat(
        "  neighbor %s as %d;\n  hold time %d;\n  keepalive time %d;\n  connect retry time %d;\n"
        "  error wait time %d, %d;\n"
        "  %s {\n    import none;\n    export where proto = \"fulcrum_vips%s\";\n",
        peer.ToString(), bgp.peer_asn, bgp.hold_time_s, std::max<uint32_t>(keepalive, 1),
        bgp.connect_retry_s, bgp.connect_retry_s, std::max<uint32_t>(bgp.connect_retry_s, 60),
        peer.v6 ? "ipv6" : "ipv4", peer.v6 ? "6" : "4");
    if (hop.has_value()) out += absl::StrFormat("    next hop address %s;\n", hop->ToString());
    out += "  };\n}\n";
  }
  return out;
}

absl::Status BirdCommand(const std::string& socket_path, std::string_view command, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("BIRD control socket path %s is too long", socket_path));
  }
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  Fd s{socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  if (s.fd < 0) return ErrnoStatus(errno, "socket", socket_path);
  if (connect(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    return absl::UnavailableError(absl::StrFormat("connect %s: %s (is bird running with -s %s?)",
                                                  socket_path, std::strerror(err), socket_path));
  }
  // BIRD's replies are lines "NNNN-text" (more follow), " text" (continuation) or "NNNN text"
  // (the last). 0xxx is success, 8xxx and 9xxx are errors (BIRD's doc/reply_codes).
  std::string buffer;
  auto read_reply = [&](std::string& last, std::string& all) -> absl::Status {
    while (true) {
      size_t eol;
      while ((eol = buffer.find('\n')) != std::string::npos) {
        std::string line = buffer.substr(0, eol);
        buffer.erase(0, eol + 1);
        if (!all.empty()) all += "; ";
        all += line.size() > 5 && line[0] != ' ' ? line.substr(5) : line;
        if (line.size() >= 4 && line[0] != ' ' && (line.size() == 4 || line[4] == ' ')) {
          last = line;
          return absl::OkStatus();
        }
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
      if (left <= 0) {
        return absl::DeadlineExceededError(
            absl::StrFormat("BIRD at %s did not answer within %d ms", socket_path, timeout_ms));
      }
      pollfd p{s.fd, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) < 0 && errno != EINTR) {
        return ErrnoStatus(errno, "poll", socket_path);
      }
      if ((p.revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      char chunk[4096];
      const ssize_t n = read(s.fd, chunk, sizeof(chunk));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        return absl::UnavailableError(
            absl::StrFormat("BIRD at %s closed the control connection", socket_path));
      }
      buffer.append(chunk, static_cast<size_t>(n));
      if (buffer.size() > (1 << 20)) {
        return absl::InternalError(
            absl::StrFormat("BIRD at %s sent an endless reply", socket_path));
      }
    }
  };
  std::string last;
  std::string all;
  if (absl::Status st = read_reply(last, all); !st.ok()) return st;
  if (last.rfind("0001", 0) != 0) {
    return absl::UnavailableError(
        absl::StrFormat("%s does not greet like BIRD: '%s'", socket_path, last));
  }
  if (command.empty()) return absl::OkStatus();
  const std::string line = std::string(command) + "\n";
  if (send(s.fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    return ErrnoStatus(errno, "send to BIRD", socket_path);
  }
  all.clear();
  if (absl::Status st = read_reply(last, all); !st.ok()) return st;
  if (last[0] == '8' || last[0] == '9') {
    return absl::FailedPreconditionError(
        absl::StrFormat("BIRD at %s refused '%s': %s", socket_path, command, all));
  }
  return absl::OkStatus();
}

absl::Status BirdConfigure(const std::string& socket_path, int timeout_ms) {
  return BirdCommand(socket_path, "configure", timeout_ms);
}

absl::StatusOr<const BgpHostConfig*> FindBgpHost(const BgpConfig& bgp, const std::string& host) {
  auto it = bgp.hosts.find(host);
  if (it != bgp.hosts.end()) return &it->second;
  std::vector<std::string> names;
  for (const auto& [name, h] : bgp.hosts) names.push_back(name);
  return absl::NotFoundError(absl::StrFormat(
      "bgp.hosts has no entry for this host '%s' (fulcrumctl serve --host, by default the "
      "hostname); hosts in the config: %s. Add it, or start serve with --host NAME",
      host, absl::StrJoin(names, ", ")));
}

std::vector<Announcement> Announcer::Tick(const std::optional<BgpConfig>& bgp,
                                          const AnnounceInput& in, bool force) {
  std::vector<Announcement> decisions = DecideAnnouncements(in);
  std::string socket;
  std::string include_file;
  std::string text;
  bool attempt = false;
  bool check = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    decisions_ = decisions;
    configured_ = bgp.has_value();
    if (!configured_) return decisions;
    absl::StatusOr<const BgpHostConfig*> host = FindBgpHost(*bgp, host_);
    if (!host.ok()) {
      // The server refuses such a config; this is only reached through a race with an apply.
      last_error_ = std::string(host.status().message());
      return decisions;
    }
    socket_ = !(*host)->bird_socket.empty() ? (*host)->bird_socket : bgp->bird_socket;
    include_file_ = !(*host)->include_file.empty() ? (*host)->include_file : bgp->include_file;
    std::vector<IpAddress> announced;
    for (const Announcement& a : decisions) {
      if (a.announce) announced.push_back(a.address);
    }
    text = RenderBirdConfig(*bgp, host_, **host, announced);
    const uint64_t now = shm::MonotonicNowNs();
    const bool changed = !told_.has_value() || *told_ != text;
    const bool retry = !last_error_.empty() && now - last_attempt_ns_ >= kRetryNs;
    attempt = force || (changed && (last_error_.empty() || retry));
    socket = socket_;
    include_file = include_file_;
    if (!attempt) {
      // Nothing to tell; but a BIRD that died must show in status before the set changes.
      if (now - last_attempt_ns_ < kRetryNs) return decisions;
      last_attempt_ns_ = now;
      check = true;
    } else {
      last_attempt_ns_ = now;
    }
  }
  if (check) {
    absl::Status st = BirdCommand(socket, "", kBirdTimeoutMs);
    if (!st.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      ++failures_;
      told_.reset();
      if (last_error_ != st.message()) Log("bgp: %s (retrying every second)", st.message());
      last_error_ = std::string(st.message());
    }
    return decisions;
  }
  // The file first, then BIRD: BIRD reads whatever the file holds when it (re)starts, so the file
  // is the truth even while BIRD is down.
  absl::Status st = WriteFileDurably(include_file, text);
  if (st.ok()) st = BirdConfigure(socket, kBirdTimeoutMs);
  std::lock_guard<std::mutex> lock(mu_);
  if (st.ok()) {
    told_ = text;
    ++configures_;
    last_configured_unix_ms_ = NowUnixMs();
    if (!last_error_.empty()) Log("bgp: the speaker at %s is reachable again", socket);
    last_error_.clear();
    std::vector<std::string> names;
    for (const Announcement& a : decisions) {
      names.push_back(absl::StrCat(a.name, a.announce ? " announced" : " withdrawn: " + a.reason));
    }
    Log("bgp: told BIRD at %s: %s", socket,
        names.empty() ? std::string("no VIPs") : absl::StrJoin(names, "; "));
  } else {
    ++failures_;
    told_.reset();  // unknown what BIRD runs: tell it again once it answers
    if (last_error_ != st.message()) Log("bgp: %s (retrying every second)", st.message());
    last_error_ = std::string(st.message());
  }
  return decisions;
}

nlohmann::json Announcer::StatusJson() const {
  std::lock_guard<std::mutex> lock(mu_);
  nlohmann::json vips = nlohmann::json::array();
  const bool in_sync = last_error_.empty() && told_.has_value();
  for (const Announcement& a : decisions_) {
    std::string state;
    std::string text;
    if (!in_sync) {
      state = "unknown";
      text = absl::StrCat(
          "bgp speaker unreachable: ", last_error_.empty() ? "not told yet" : last_error_,
          " (wanted: ", a.announce ? "announced" : "withdrawn: " + a.reason, ")");
    } else if (a.announce) {
      state = "announced";
      text = "announced";
    } else if (auto by = std::find_if(
                   decisions_.begin(), decisions_.end(),
                   [&](const Announcement& o) { return o.announce && o.address == a.address; });
               by != decisions_.end()) {
      // BGP announces addresses: another VIP on this address keeps it, and with it this VIP's
      // traffic. Say so rather than claim a withdrawal that did not happen.
      state = "announced";
      text = absl::StrCat("announced for ", by->name, " (", a.name, " itself: ", a.reason, ")");
    } else {
      state = "withdrawn";
      text = absl::StrCat("withdrawn: ", a.reason);
    }
    vips.push_back({{"name", a.name},
                    {"address", a.address.ToString()},
                    {"announce", a.announce},
                    {"state", state},
                    {"reason", a.reason},
                    {"text", text}});
  }
  if (!configured_) {
    return {{"configured", false}, {"host", host_}, {"vips", nlohmann::json::array()}};
  }
  return {{"configured", true},
          {"host", host_},
          {"speaker",
           {{"socket", socket_},
            {"include_file", include_file_},
            {"reachable", last_error_.empty() && told_.has_value()},
            {"error", last_error_},
            {"last_configured_unix_ms", last_configured_unix_ms_ != 0
                                            ? nlohmann::json(last_configured_unix_ms_)
                                            : nlohmann::json(nullptr)},
            {"configures", configures_},
            {"failures", failures_}}},
          {"vips", vips}};
}

}  // namespace fulcrum::controlplane
