// Server: start-up and resume, changes (apply, rollback, backend ops, health), the watch, the
// loop, and the request handlers.
#include "controlplane/server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "controlplane/config_parser.h"
#include "controlplane/durable_file.h"
#include "controlplane/log.h"
#include "controlplane/metrics.h"
#include "controlplane/protocol.h"
#include "dataplane/core/flow_hash.h"
#include "dataplane/shm/segment.h"

namespace fulcrum::controlplane {
namespace {

using nlohmann::json;

// Released ids wait this long before another thing may take them (id_registry.h).
constexpr int64_t kIdQuarantineMs = 3600 * 1000;
constexpr uint64_t kStatsKeepNs = 300'000'000'000ull;
constexpr int64_t kEventKeepMs = 3600 * 1000;
constexpr size_t kDefaultHistoryRows = 50;

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Test seam for the persistence tests: FULCRUM_TEST_CRASH_AT=<point> makes the server kill
// itself with SIGKILL at that point of a change, exactly as `kill -9` would.
void CrashPoint(std::string_view where) {
  static const char* at = std::getenv("FULCRUM_TEST_CRASH_AT");
  if (at != nullptr && where == at) {
    Log("crash point %s: SIGKILL (FULCRUM_TEST_CRASH_AT)", where);
    kill(getpid(), SIGKILL);
  }
}

Who ServerWho(std::string what) {
  Who w;
  w.uid = geteuid();
  w.gid = getegid();
  w.pid = getpid();
  w.user = UserName(w.uid);
  w.reported_user = std::move(what);
  return w;
}

Who WhoOf(const Peer& peer, const json& request) {
  Who w;
  w.uid = peer.uid;
  w.gid = peer.gid;
  w.pid = peer.pid;
  w.user = UserName(peer.uid);
  if (request.contains("user") && request["user"].is_string()) {
    w.reported_user = request["user"].get<std::string>().substr(0, 64);
  }
  return w;
}

json PlanSummary(const Plan& plan) {
  json vips = json::array();
  for (const VipPlan& v : plan.vips) {
    if (v.change == Change::kUnchanged) continue;
    double max_share = 0;
    int changed = 0;
    for (const BackendPlan& b : v.backends) {
      max_share = std::max(max_share, b.table_share);
      if (b.change != Change::kUnchanged) ++changed;
    }
    vips.push_back({{"name", v.name},
                    {"change", ChangeName(v.change)},
                    {"changes", v.changes},
                    {"moved_fraction", v.moved_fraction},
                    {"max_table_share", max_share},
                    {"backends_changed", changed}});
  }
  return {{"ok", plan.ok()},
          {"violations", plan.Violations()},
          {"settings_changes", plan.settings_changes},
          {"vips", vips}};
}

std::vector<std::string> DownTargets(const EffectiveState& s) {
  std::set<std::string> out;
  for (const EffectiveVip& v : s.vips) {
    for (const EffectiveBackend& b : v.backends) {
      if (b.health == Health::kDown) out.insert(BackendName(b.config.address, b.check_port));
    }
  }
  return {out.begin(), out.end()};
}

// The health an effective state was built with, as the checker's starting point.
HealthMap HealthOf(const EffectiveState& s) {
  HealthMap out;
  for (const EffectiveVip& v : s.vips) {
    for (const EffectiveBackend& b : v.backends) {
      if (b.health != Health::kUnchecked) out[{b.config.address, b.check_port}] = b.health;
    }
  }
  return out;
}

bool SamePublished(const EffectiveState& a, const EffectiveState& b) {
  if (a.vips.size() != b.vips.size()) return false;
  for (size_t i = 0; i < a.vips.size(); ++i) {
    if (a.vips[i].backends.size() != b.vips[i].backends.size()) return false;
    for (size_t j = 0; j < a.vips[i].backends.size(); ++j) {
      if (a.vips[i].backends[j].published != b.vips[i].backends[j].published) return false;
    }
  }
  return true;
}

bool SameRecords(const shm::Snapshot& a, const shm::Snapshot& b) {
  return a.vips.size() == b.vips.size() && a.backends.size() == b.backends.size() &&
         std::memcmp(&a.header.settings, &b.header.settings, sizeof(a.header.settings)) == 0 &&
         std::memcmp(a.vips.data(), b.vips.data(), a.vips.size() * sizeof(shm::VipRecord)) == 0 &&
         std::memcmp(a.backends.data(), b.backends.data(),
                     a.backends.size() * sizeof(shm::BackendRecord)) == 0;
}

// "10.10.2.11", "10.10.2.11:8080", "[fd00::1]:8080" -> address and port (nullopt: any port).
absl::StatusOr<std::pair<IpAddress, std::optional<uint16_t>>> ParseBackendArg(
    const std::string& arg) {
  if (absl::StatusOr<IpAddress> ip = IpAddress::Parse(arg); ip.ok()) {
    return std::pair{*ip, std::optional<uint16_t>()};
  }
  std::string host = arg;
  std::string port_text;
  if (!arg.empty() && arg[0] == '[') {
    const size_t close = arg.find(']');
    if (close != std::string::npos && close + 1 < arg.size() && arg[close + 1] == ':') {
      host = arg.substr(1, close - 1);
      port_text = arg.substr(close + 2);
    }
  } else if (const size_t colon = arg.rfind(':'); colon != std::string::npos) {
    host = arg.substr(0, colon);
    port_text = arg.substr(colon + 1);
  }
  absl::StatusOr<IpAddress> ip = IpAddress::Parse(host);
  uint32_t port = 0;
  if (!ip.ok() || port_text.empty() || !absl::SimpleAtoi(port_text, &port) || port > 65535) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "'%s' is not a backend: give its address, or address:port ([v6]:port)", arg));
  }
  return std::pair{*ip, std::optional<uint16_t>(static_cast<uint16_t>(port))};
}

std::string ResultText(AckResult r) {
  switch (r) {
    case AckResult::kAcked:
      return "acknowledged by the data plane";
    case AckResult::kNoDataplane:
      return "published; no data plane is attached: fulcrumd uses it when it starts";
    case AckResult::kTimeout:
      return "published; the data plane did not acknowledge it in time (it may still)";
    case AckResult::kRejected:
      return "rejected by the data plane";
    case AckResult::kPending:
      return "published";
  }
  return "unknown";
}

}  // namespace

// --- Internal types ------------------------------------------------------------------------

struct Server::Running {
  GenerationRecord record;  // with its config_yaml
  Config config;
  Ids ids;
  EffectiveState state;
  shm::Snapshot snapshot;
};

struct Server::Candidate {
  std::string yaml;
  Config config;
  Overrides overrides;
  IdRegistry vip_ids{shm::kMaxVips, kIdQuarantineMs};
  IdRegistry backend_ids{shm::kMaxBackends, kIdQuarantineMs};
  Ids ids;
  EffectiveState state;
  shm::Snapshot snapshot;
};

struct Server::WatchSession {
  uint64_t generation = 0;   // the apply being watched
  uint64_t rollback_to = 0;  // the generation that ran before it
  uint64_t start_ns = 0;     // the ack
  uint64_t deadline_ns = 0;
  uint64_t window_ns = 0;
  WatchEvaluator evaluator;
  std::vector<json> progress;
  bool judged = false;
  bool rollback_requested = false;
  // The outcome is decided (finished), then written into the apply's record (done). The client
  // is answered only when done, so that what it reads in `history` agrees with what it was told.
  bool finished = false;
  bool done = false;
  std::vector<WatchFinding> findings;
  Reply reply;
  json outcome = json::object();

  explicit WatchSession(WatchEvaluator e) : evaluator(std::move(e)) {}
};

// --- Start-up ------------------------------------------------------------------------------

Server::Server(ServerOptions options)
    : opt_(std::move(options)),
      vip_ids_(shm::kMaxVips, kIdQuarantineMs),
      backend_ids_(shm::kMaxBackends, kIdQuarantineMs),
      stats_reader_(opt_.shm_prefix),
      stats_(kStatsKeepNs) {}

Server::~Server() { Stop(); }

absl::Status Server::LockPrefix() {
  // Two control planes publishing into one segment would undo each other's generations.
  absl::StatusOr<std::string> config_name = shm::ConfigSegmentName(opt_.shm_prefix);
  if (!config_name.ok()) return config_name.status();
  prefix_lock_name_ = *config_name + "-lock";
  const int fd = shm_open(prefix_lock_name_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(errno, "shm_open", prefix_lock_name_);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    close(fd);
    return absl::FailedPreconditionError(absl::StrFormat(
        "another fulcrumctl serve owns shm prefix '%s': stop it, or use another --shm-prefix",
        opt_.shm_prefix));
  }
  prefix_lock_fd_ = fd;
  return absl::OkStatus();
}

absl::Status Server::Start() {
  if (opt_.stats_interval_ms < 50 || opt_.stats_interval_ms > 1000) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--stats-interval must be 50ms to 1s (it also paces the config heartbeat), got %d ms",
        opt_.stats_interval_ms));
  }
  if (absl::Status s = LockPrefix(); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<StateStore>> store = StateStore::Open(opt_.state_dir);
  if (!store.ok()) return store.status();
  store_ = *std::move(store);
  absl::StatusOr<shm::MappedSegment> seg = shm::CreateConfigSegment(opt_.shm_prefix);
  if (!seg.ok()) return seg.status();
  writer_.emplace(*std::move(seg));
  writer_->Heartbeat();
  if (absl::Status s = LoadState(); !s.ok()) return s;

  health_ = std::make_unique<HealthChecker>([this] {
    std::lock_guard<std::mutex> lock(mu_);
    health_dirty_ = true;
    bgp_now_ = true;
    cv_.notify_all();
  });
  if (!opt_.probe_interface.empty()) {
    if (absl::Status s = health_->AttachTunnel(opt_.probe_interface); !s.ok()) return s;
  }
  announcer_ = std::make_unique<Announcer>(opt_.host);
  if (absl::Status s = health_->Start(); !s.ok()) return s;
  {
    std::lock_guard<std::mutex> change(change_mu_);
    if (absl::Status s = Resume(); !s.ok()) return s;
    if (running_ == nullptr) {
      if (absl::Status s = ApplyInitialConfig(); !s.ok()) return s;
    }
  }
  socket_ = std::make_unique<SocketServer>(opt_.socket_path, opt_.socket_group,
                                           [this](const Peer& peer, const json& request,
                                                  Responder& out) { Handle(peer, request, out); });
  if (absl::Status s = socket_->Start(); !s.ok()) return s;
  if (opt_.metrics_listen != "off" && !opt_.metrics_listen.empty()) {
    metrics_ = std::make_unique<MetricsServer>([this] { return MetricsText(); });
    if (absl::Status s = metrics_->Start(opt_.metrics_listen); !s.ok()) return s;
  }
  loop_ = std::thread([this] { Loop(); });
  bgp_thread_ = std::thread([this] { BgpLoop(); });
  Log("serving on %s; shm prefix %s; state %s; metrics %s; generation %d", opt_.socket_path,
      opt_.shm_prefix, opt_.state_dir,
      metrics_ != nullptr
          ? absl::StrFormat("http://%s:%d/metrics", metrics_->host(), metrics_->port())
          : std::string("off"),
      running_ != nullptr ? running_->record.generation : 0);
  return absl::OkStatus();
}

void Server::Stop() {
  // Withdraw first, while everything else still runs: routers move the flows to other hosts
  // before this one stops checking health (docs/controlplane.md "BGP").
  {
    std::lock_guard<std::mutex> lock(mu_);
    bgp_stop_ = true;
    cv_.notify_all();
  }
  if (bgp_thread_.joinable()) bgp_thread_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (socket_ != nullptr) socket_->Stop();
  if (loop_.joinable()) loop_.join();
  if (metrics_ != nullptr) metrics_->Stop();
  if (health_ != nullptr) health_->Stop();
  if (prefix_lock_fd_ >= 0) {
    shm_unlink(prefix_lock_name_.c_str());
    close(prefix_lock_fd_);
    prefix_lock_fd_ = -1;
  }
}

absl::Status Server::LoadState() {
  absl::StatusOr<std::optional<json>> ids = store_->LoadIds();
  if (!ids.ok()) return ids.status();
  if (ids->has_value()) {
    const json& j = **ids;
    if (!j.contains("vips") || !j.contains("backends")) {
      return absl::DataLossError(
          absl::StrFormat("%s/ids.json lacks vips or backends", opt_.state_dir));
    }
    absl::StatusOr<IdRegistry> v = IdRegistry::FromJson(j["vips"], shm::kMaxVips, kIdQuarantineMs);
    absl::StatusOr<IdRegistry> b =
        IdRegistry::FromJson(j["backends"], shm::kMaxBackends, kIdQuarantineMs);
    if (!v.ok()) return absl::DataLossError(std::string(v.status().message()));
    if (!b.ok()) return absl::DataLossError(std::string(b.status().message()));
    vip_ids_ = *std::move(v);
    backend_ids_ = *std::move(b);
  }
  history_ = store_->LoadHistory(history_warnings_);
  for (const std::string& w : history_warnings_) Log("state: %s", w);
  // Records of generations published before a crash: the data plane's answer is in the
  // segment.
  const shm::ReaderView reader = writer_->reader();
  const uint64_t published = writer_->published_generation();
  for (GenerationRecord& r : history_) {
    if (r.result != AckResult::kPending || r.generation > published) continue;
    std::optional<AckResult> now;
    if (reader.rejected_generation == r.generation) {
      now = AckResult::kRejected;
    } else if (reader.acked_generation >= r.generation) {
      now = AckResult::kAcked;
    }
    if (!now.has_value()) continue;
    absl::StatusOr<GenerationRecord> full = LoadRecord(r.generation);
    if (!full.ok()) continue;
    full->result = *now;
    if (*now == AckResult::kRejected) {
      full->result_detail = absl::StrFormat("%s: %s", ReasonName(reader.reason), reader.detail);
    }
    if (absl::Status s = store_->Write(*full); !s.ok()) return s;
    r.result = *now;
    r.result_detail = full->result_detail;
  }
  for (GenerationRecord& r : history_) r.config_yaml.clear();
  next_generation_ = std::max(published, history_.empty() ? 0 : history_.back().generation) + 1;
  return absl::OkStatus();
}

absl::StatusOr<GenerationRecord> Server::LoadRecord(uint64_t generation) const {
  absl::StatusOr<std::string> text = ReadWholeFile(store_->RecordPath(generation));
  if (!text.ok()) {
    if (absl::IsNotFound(text.status())) {
      return absl::NotFoundError(absl::StrFormat("no generation %d in %s (see fulcrumctl history)",
                                                 generation, opt_.state_dir));
    }
    return text.status();
  }
  json j = json::parse(*text, nullptr, false);
  if (j.is_discarded()) {
    return absl::DataLossError(
        absl::StrFormat("%s is not valid JSON", store_->RecordPath(generation)));
  }
  return RecordFromJson(j);
}

absl::Status Server::Resume() {
  const GenerationRecord* newest = nullptr;
  for (const GenerationRecord& r : history_) {
    if (r.result != AckResult::kRejected) newest = &r;
  }
  if (newest == nullptr) return absl::OkStatus();
  absl::StatusOr<GenerationRecord> record = LoadRecord(newest->generation);
  if (!record.ok()) return record.status();
  ParsedConfig parsed = ParseConfig(record->config_yaml);
  if (!parsed.ok()) {
    return absl::DataLossError(
        absl::StrFormat("generation %d's config no longer parses:\n%s", record->generation,
                        FormatErrors(store_->RecordPath(record->generation), parsed.errors)));
  }
  if (!opt_.config_path.empty()) {
    absl::StatusOr<std::string> file = ReadConfigFile(opt_.config_path);
    if (file.ok() && *file != record->config_yaml) {
      Log("note: %s differs from generation %d's config; the state directory wins: run "
          "'fulcrumctl plan %s' and 'fulcrumctl apply %s' to change it",
          opt_.config_path, record->generation, opt_.config_path, opt_.config_path);
    }
  }

  // What the segment holds now, and the health it published: a restart must not bring back
  // backends the checks had taken out before it.
  const uint64_t published = writer_->published_generation();
  HealthMap health;
  std::optional<shm::Snapshot> in_segment;
  if (published != 0) {
    absl::StatusOr<shm::MappedSegment> mapping = shm::AttachConfigSegment(opt_.shm_prefix);
    if (mapping.ok()) {
      shm::ConfigReader copier(*std::move(mapping));  // reads only: never acks
      shm::ConfigReader::Result r = copier.Poll(nullptr);
      if (r.kind == shm::ConfigReader::Result::kSnapshot && r.generation == published) {
        in_segment = std::move(r.snapshot);
      }
    }
  }
  if (in_segment.has_value()) {
    std::set<std::pair<IpAddress, uint16_t>> down;
    for (const shm::BackendRecord& b : in_segment->backends) {
      if (b.state != shm::BackendState::kDown) continue;
      IpAddress ip;
      std::memcpy(ip.bytes.data(), b.address, 16);
      ip.v6 = b.family == shm::Family::kIpv6;
      down.insert({ip, b.port});
    }
    for (const VipConfig& v : parsed.config.vips) {
      for (const BackendConfig& b : v.backends) {
        if (down.count({b.address, b.port}) != 0)
          health[{b.address, CheckPort(v, b)}] = Health::kDown;
      }
    }
  }

  if (in_segment.has_value() && published == record->generation) {
    absl::StatusOr<Candidate> same =
        BuildCandidate(record->config_yaml, parsed.config, record->overrides, health, published);
    if (!same.ok()) return same.status();
    if (SameRecords(same->snapshot, *in_segment)) {
      auto running = std::make_unique<Running>();
      running->record = *record;
      running->config = same->config;
      running->ids = same->ids;
      running->state = same->state;
      running->snapshot = std::move(same->snapshot);
      vip_ids_ = same->vip_ids;
      backend_ids_ = same->backend_ids;
      running_ = std::move(running);
      health_->SetTargets(ProbeTargetsOf(running_->config, running_->record.overrides), health);
      Log("resumed generation %d (%s by %s); the segment holds it, the data plane runs %d",
          record->generation, CauseName(record->cause), record->who.user,
          writer_->reader().acked_generation);
      return absl::OkStatus();
    }
  }
  const uint64_t generation =
      record->generation > published ? record->generation : TakeGeneration();
  absl::StatusOr<Candidate> c =
      BuildCandidate(record->config_yaml, parsed.config, record->overrides, health, generation);
  if (!c.ok()) return c.status();
  GenerationRecord r = *record;
  std::string why;
  if (generation != record->generation) {
    r = GenerationRecord{};
    r.generation = generation;
    r.cause = Cause::kRestore;
    r.created_unix_ms = NowUnixMs();
    r.who = ServerWho("fulcrumctl serve (restart)");
    r.origin = record->origin;
    r.rollback_of = record->generation;
    r.reason = absl::StrFormat(
        "restart: the segment held generation %d, not generation %d's state; republished it",
        published, record->generation);
    why = r.reason;
  } else {
    why = published == 0 ? "the config segment was gone (reboot?); republished"
                         : "it was recorded but not published before the restart";
    r.result = AckResult::kPending;
  }
  // Drop the stale entry: Commit appends the record again.
  history_.erase(
      std::remove_if(history_.begin(), history_.end(),
                     [&](const GenerationRecord& h) { return h.generation == r.generation; }),
      history_.end());
  Log("resuming generation %d as generation %d: %s", record->generation, generation, why);
  const Plan plan = PlanFor(*c);
  Reply reply = PublishChange(*std::move(c), std::move(r), plan);
  if (reply.exit == kExitRejected) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "the data plane rejected the resumed generation: %s", reply.status.message()));
  }
  return reply.exit == kExitFailure ? reply.status : absl::OkStatus();
}

absl::Status Server::ApplyInitialConfig() {
  if (opt_.config_path.empty()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "the state directory %s has no generation yet: pass --config FILE for the first one",
        opt_.state_dir));
  }
  absl::StatusOr<std::string> text = ReadConfigFile(opt_.config_path);
  if (!text.ok()) return text.status();
  ParsedConfig parsed = ParseConfig(*text);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%d error%s in %s:\n%s", parsed.errors.size(), parsed.errors.size() == 1 ? "" : "s",
        opt_.config_path, FormatErrors(opt_.config_path, parsed.errors)));
  }
  absl::StatusOr<Candidate> c = BuildCandidate(*text, parsed.config, {}, {}, next_generation_);
  if (!c.ok()) return c.status();
  const Plan plan = PlanFor(*c);
  if (!plan.ok() && !opt_.force) {
    std::string lines;
    for (const std::string& v : plan.Violations()) lines += absl::StrCat("  ", v, "\n");
    return absl::FailedPreconditionError(
        absl::StrFormat("the first config breaks its guards:\n%sfix %s, or start with --force",
                        lines, opt_.config_path));
  }
  GenerationRecord r;
  r.generation = TakeGeneration();
  r.cause = Cause::kInitial;
  r.created_unix_ms = NowUnixMs();
  r.who = ServerWho(absl::StrFormat("fulcrumctl serve --config %s", opt_.config_path));
  r.origin = r.generation;
  r.forced = !plan.ok();
  r.plan_summary = PlanSummary(plan);
  Reply reply = PublishChange(*std::move(c), std::move(r), plan);
  Log("first generation: %s", reply.status.message());
  if (reply.exit == kExitRejected || reply.exit == kExitFailure) return reply.status;
  return absl::OkStatus();
}

// --- Changes ---------------------------------------------------------------------------------

uint64_t Server::TakeGeneration() { return next_generation_++; }

absl::StatusOr<Server::Candidate> Server::BuildCandidate(std::string yaml, Config config,
                                                         Overrides overrides,
                                                         const HealthMap& health,
                                                         uint64_t generation) const {
  if (config.bgp.has_value()) {
    // Every host runs the same file; one without an entry cannot announce anything, and running
    // it silently unannounced is worse than refusing.
    if (absl::StatusOr<const BgpHostConfig*> h = FindBgpHost(*config.bgp, opt_.host); !h.ok()) {
      return absl::InvalidArgumentError(h.status().message());
    }
  }
  Candidate c;
  c.yaml = std::move(yaml);
  c.config = std::move(config);
  // An override dies with its backend.
  const std::vector<std::string> backend_keys = BackendKeys(c.config);
  const std::set<std::string> present(backend_keys.begin(), backend_keys.end());
  for (auto it = overrides.begin(); it != overrides.end();) {
    it = present.count(it->first) == 0 ? overrides.erase(it) : std::next(it);
  }
  c.overrides = std::move(overrides);
  c.vip_ids = vip_ids_;
  c.backend_ids = backend_ids_;
  const int64_t now = NowUnixMs();
  absl::StatusOr<std::map<std::string, uint16_t>> v = c.vip_ids.Assign(VipKeys(c.config), now);
  if (!v.ok()) return v.status();
  absl::StatusOr<std::map<std::string, uint16_t>> b = c.backend_ids.Assign(backend_keys, now);
  if (!b.ok()) return b.status();
  c.ids.vips = *std::move(v);
  c.ids.backends = *std::move(b);
  absl::StatusOr<EffectiveState> state = BuildEffective(c.config, c.ids, c.overrides, health);
  if (!state.ok()) return state.status();
  c.state = *std::move(state);
  const std::vector<shm::VipSpec> specs = ToSpecs(c.state);
  absl::StatusOr<shm::Snapshot> snap =
      shm::BuildSnapshot(generation, ToSettings(c.config.dataplane), specs);
  if (!snap.ok()) return snap.status();
  snap->header.created_unix_ns = static_cast<uint64_t>(NowUnixMs()) * 1000000ull;
  snap->Seal();
  c.snapshot = *std::move(snap);
  return c;
}

std::map<std::string, double> Server::VipRatesLocked() const {
  std::map<std::string, double> out;
  if (running_ == nullptr) return out;
  const StatsSample* latest = stats_.Latest();
  const StatsSample* base = stats_.Base(uint64_t{running_->config.watch.window_ms} * 1000000ull);
  if (latest == nullptr || base == nullptr) return out;
  const Rates rates = RatesBetween(*base, *latest);
  for (const EffectiveVip& v : running_->state.vips) {
    auto a = base->vips.find(v.id);
    auto b = latest->vips.find(v.id);
    if (a == base->vips.end() || b == latest->vips.end()) continue;
    out[v.config.name] = rates.Of(a->second.new_flows, b->second.new_flows);
  }
  return out;
}

Plan Server::PlanFor(const Candidate& c) const {
  std::map<std::string, double> rates;
  {
    std::lock_guard<std::mutex> lock(mu_);
    rates = VipRatesLocked();
  }
  PlanSide after{&c.config, &c.state, &c.snapshot};
  if (running_ == nullptr) return ComputePlan(nullptr, after, rates, 0);
  PlanSide before{&running_->config, &running_->state, &running_->snapshot};
  return ComputePlan(&before, after, rates, running_->record.generation);
}

absl::Status Server::Commit(Candidate c, GenerationRecord record) {
  // ids.json before the record: a record never names an id that is not on disk.
  if (absl::Status s =
          store_->WriteIds({{"vips", c.vip_ids.ToJson()}, {"backends", c.backend_ids.ToJson()}});
      !s.ok()) {
    return s;
  }
  CrashPoint("after_ids");
  record.config_yaml = c.yaml;
  record.overrides = c.overrides;
  record.down = DownTargets(c.state);
  if (absl::Status s = store_->Write(record); !s.ok()) return s;
  CrashPoint("after_record");
  if (absl::Status s = writer_->Publish(c.snapshot); !s.ok()) {
    record.result = AckResult::kRejected;
    record.result_detail = absl::StrFormat("not published: %s", s.message());
    (void)store_->Write(record);
    return s;
  }
  CrashPoint("after_publish");
  auto running = std::make_unique<Running>();
  running->record = record;
  running->config = std::move(c.config);
  running->ids = std::move(c.ids);
  running->state = std::move(c.state);
  running->snapshot = std::move(c.snapshot);
  GenerationRecord light = record;
  light.config_yaml.clear();
  {
    std::lock_guard<std::mutex> lock(mu_);
    vip_ids_ = std::move(c.vip_ids);
    backend_ids_ = std::move(c.backend_ids);
    running_ = std::move(running);
    history_.push_back(std::move(light));
    published_mono_ns_ = shm::MonotonicNowNs();
    sample_now_ = true;
    bgp_now_ = true;
    cv_.notify_all();
  }
  health_->SetTargets(ProbeTargetsOf(running_->config, running_->record.overrides),
                      HealthOf(running_->state));
  if (opt_.history_limit > 0 && history_.size() > opt_.history_limit) {
    if (absl::Status s = store_->Prune(opt_.history_limit, record.generation); !s.ok()) {
      Log("history: pruning failed: %s", s.message());
    }
    std::lock_guard<std::mutex> lock(mu_);
    while (history_.size() > opt_.history_limit) history_.erase(history_.begin());
  }
  return absl::OkStatus();
}

AckResult Server::WaitForAck(uint64_t generation, std::string& detail) const {
  const uint64_t start = shm::MonotonicNowNs();
  const uint64_t deadline = start + uint64_t{opt_.ack_timeout_ms} * 1000000ull;
  while (true) {
    const shm::ReaderView r = writer_->reader();
    const uint64_t now = shm::MonotonicNowNs();
    if (r.acked_generation >= generation) {
      detail = absl::StrFormat("fulcrumd pid %d acknowledged it in %.1f ms", r.pid,
                               double(now - start) / 1e6);
      return AckResult::kAcked;
    }
    if (r.rejected_generation == generation) {
      detail = absl::StrFormat("%s: %s", ReasonName(r.reason), r.detail);
      return AckResult::kRejected;
    }
    const bool alive = r.pid != 0 && r.heartbeat_ns != 0 && now > r.heartbeat_ns &&
                       now - r.heartbeat_ns < kDataplaneDeadNs;
    if (!alive) {
      detail = r.pid == 0 ? "no fulcrumd has attached to the config segment"
                          : absl::StrFormat("fulcrumd pid %d has not sent a heartbeat for %.1f s",
                                            r.pid, double(now - r.heartbeat_ns) / 1e9);
      return AckResult::kNoDataplane;
    }
    if (now >= deadline) {
      detail = absl::StrFormat("fulcrumd pid %d did not answer within %d ms; it runs %d", r.pid,
                               opt_.ack_timeout_ms, r.acked_generation);
      return AckResult::kTimeout;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

absl::Status Server::RecordResult(uint64_t generation, AckResult result,
                                  const std::string& detail) {
  absl::StatusOr<GenerationRecord> r = LoadRecord(generation);
  if (!r.ok()) return r.status();
  r->result = result;
  r->result_detail = detail;
  if (absl::Status s = store_->Write(*r); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  for (GenerationRecord& h : history_) {
    if (h.generation == generation) {
      h.result = result;
      h.result_detail = detail;
    }
  }
  if (running_ != nullptr && running_->record.generation == generation) {
    running_->record.result = result;
    running_->record.result_detail = detail;
  }
  return absl::OkStatus();
}

Server::Reply Server::PublishChange(Candidate c, GenerationRecord record, const Plan& plan) {
  const uint64_t generation = record.generation;
  json data = {{"generation", generation}, {"plan", PlanToJson(plan)}};
  std::unique_ptr<Running> previous;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (running_ != nullptr) {
      previous = std::make_unique<Running>(*running_);
    }
  }
  if (absl::Status s = Commit(std::move(c), std::move(record)); !s.ok()) {
    return {kExitFailure, s, data};
  }
  std::string detail;
  const AckResult ack = WaitForAck(generation, detail);
  if (absl::Status s = RecordResult(generation, ack, detail); !s.ok()) {
    Log("generation %d: recording the data plane's answer failed: %s", generation, s.message());
  }
  CrashPoint("after_ack");
  data["result"] = AckResultName(ack);
  data["detail"] = detail;
  switch (ack) {
    case AckResult::kAcked:
      return {kExitOk, absl::OkStatus(), data};
    case AckResult::kNoDataplane:
    case AckResult::kTimeout:
      return {kExitNotAcked,
              absl::DeadlineExceededError(
                  absl::StrFormat("generation %d %s (%s)", generation, ResultText(ack), detail)),
              data};
    case AckResult::kRejected:
    case AckResult::kPending:
      break;
  }
  // The data plane kept the previous snapshot: so does the control plane.
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++counters_.rejected_applies;
    running_ = std::move(previous);
  }
  if (running_ != nullptr) {
    health_->SetTargets(ProbeTargetsOf(running_->config, running_->record.overrides),
                        health_->CurrentHealth());
  }
  return {kExitRejected,
          absl::AbortedError(absl::StrFormat(
              "the data plane rejected generation %d (%s); it keeps running generation %d",
              generation, detail, writer_->reader().acked_generation)),
          data};
}

std::optional<uint64_t> Server::PreviousOperatorChange() const {
  if (running_ == nullptr) return std::nullopt;
  const uint64_t origin = running_->record.origin;
  std::optional<uint64_t> best;
  for (const GenerationRecord& r : history_) {
    if (r.generation < origin && IsOperatorChange(r.cause) && r.result != AckResult::kRejected) {
      best = r.generation;
    }
  }
  return best;
}

std::shared_ptr<Server::WatchSession> Server::SupersedeWatchLocked(uint64_t by_generation) {
  if (watch_ == nullptr) return nullptr;
  // A watch whose outcome is already decided keeps it; the caller records it either way.
  if (!watch_->finished) {
    watch_->finished = true;
    watch_->outcome = {{"outcome", "superseded"}, {"by_generation", by_generation}};
    watch_->reply = {kExitOk,
                     absl::OkStatus(),
                     {{"watch", watch_->outcome},
                      {"message", absl::StrFormat("watch ended: generation %d superseded "
                                                  "generation %d before the watch was over",
                                                  by_generation, watch_->generation)}}};
  }
  std::shared_ptr<WatchSession> ended = std::move(watch_);
  return ended;
}

// --- Requests ------------------------------------------------------------------------------

void Server::Handle(const Peer& peer, const json& request, Responder& out) {
  const std::string cmd = request["cmd"].get<std::string>();
  Reply r;
  if (cmd == "status") {
    r.data = StatusJson();
  } else if (cmd == "plan") {
    r = HandlePlan(request);
  } else if (cmd == "apply") {
    HandleApply(peer, request, out);
    return;
  } else if (cmd == "rollback") {
    r = HandleRollback(peer, request);
  } else if (cmd == "history") {
    r = HandleHistory(request);
  } else if (cmd == "lookup") {
    r = HandleLookup(request);
  } else if (cmd == "backend") {
    r = HandleBackend(peer, request);
  } else if (cmd == "ping") {
    r.data = {{"pid", getpid()}};
  } else {
    r = {kExitUsage, absl::InvalidArgumentError(absl::StrFormat("unknown command '%s'", cmd)),
         json::object()};
  }
  out.Result(r.exit, r.status, std::move(r.data));
}

Server::Reply Server::HandlePlan(const json& request) {
  const std::string yaml = request.value("config", "");
  ParsedConfig parsed = ParseConfig(yaml);
  if (!parsed.ok()) {
    return {
        kExitInvalidConfig,
        absl::InvalidArgumentError(absl::StrFormat("%d error%s in the config", parsed.errors.size(),
                                                   parsed.errors.size() == 1 ? "" : "s")),
        {{"errors", ErrorsToJson(parsed.errors)}}};
  }
  std::lock_guard<std::mutex> change(change_mu_);
  absl::StatusOr<Candidate> c =
      BuildCandidate(yaml, parsed.config, running_ ? running_->record.overrides : Overrides{},
                     health_->CurrentHealth(), next_generation_);
  if (!c.ok()) return {ExitCodeFor(c.status()), c.status(), json::object()};
  const Plan plan = PlanFor(*c);
  json data = {{"plan", PlanToJson(plan)}};
  if (!plan.ok()) {
    return {kExitGuard,
            absl::FailedPreconditionError("the plan breaks a guard: apply would need --force"),
            data};
  }
  return {kExitOk, absl::OkStatus(), data};
}

void Server::HandleApply(const Peer& peer, const json& request, Responder& out) {
  const std::string yaml = request.value("config", "");
  const bool force = request.value("force", false);
  const int64_t watch_ms = request.value("watch_ms", int64_t{0});
  ParsedConfig parsed = ParseConfig(yaml);
  if (!parsed.ok()) {
    out.Result(kExitInvalidConfig,
               absl::InvalidArgumentError(
                   absl::StrFormat("%d error%s in the config; nothing was applied",
                                   parsed.errors.size(), parsed.errors.size() == 1 ? "" : "s")),
               {{"errors", ErrorsToJson(parsed.errors)}});
    return;
  }
  std::shared_ptr<WatchSession> session;
  Reply reply;
  {
    std::lock_guard<std::mutex> change(change_mu_);
    absl::StatusOr<Candidate> c =
        BuildCandidate(yaml, parsed.config, running_ ? running_->record.overrides : Overrides{},
                       health_->CurrentHealth(), next_generation_);
    if (!c.ok()) {
      out.Result(ExitCodeFor(c.status()), c.status());
      return;
    }
    const Plan plan = PlanFor(*c);
    if (!plan.HasChanges()) {
      out.Result(kExitOk, absl::OkStatus(),
                 {{"plan", PlanToJson(plan)},
                  {"generation", running_ ? running_->record.generation : 0},
                  {"message", absl::StrFormat("no changes: generation %d already runs this "
                                              "config",
                                              running_ ? running_->record.generation : 0)}});
      return;
    }
    if (!plan.ok() && !force) {
      std::string lines;
      for (const std::string& v : plan.Violations()) lines += absl::StrCat("\n  ", v);
      out.Result(kExitGuard,
                 absl::FailedPreconditionError(absl::StrFormat(
                     "refused by guards; nothing was applied:%s\nfix the config, or apply with "
                     "--force",
                     lines)),
                 {{"plan", PlanToJson(plan)}});
      return;
    }
    GenerationRecord r;
    r.generation = TakeGeneration();
    r.cause = Cause::kApply;
    r.created_unix_ms = NowUnixMs();
    r.who = WhoOf(peer, request);
    r.origin = r.generation;
    r.forced = !plan.ok();
    r.plan_summary = PlanSummary(plan);
    const uint64_t rollback_to = running_ != nullptr ? running_->record.generation : 0;
    std::set<std::string> healthy;
    double baseline_drops = 0;
    std::shared_ptr<WatchSession> superseded;
    {
      std::lock_guard<std::mutex> lock(mu_);
      superseded = SupersedeWatchLocked(r.generation);
      for (const EffectiveVip& v : c->state.vips) {
        for (const EffectiveBackend& b : v.backends) {
          if (b.health != Health::kDown) healthy.insert(b.key);
        }
      }
      const StatsSample* latest = stats_.Latest();
      const StatsSample* base = stats_.Base(uint64_t{parsed.config.watch.window_ms} * 1000000ull);
      if (latest != nullptr && base != nullptr) {
        baseline_drops = RatesBetween(*base, *latest).Of(base->TotalDrops(), latest->TotalDrops());
      }
      ++counters_.applies;
    }
    if (superseded != nullptr) FinishWatchRecord(superseded);
    reply = PublishChange(*std::move(c), std::move(r), plan);
    const uint64_t generation = reply.data["generation"].get<uint64_t>();
    Log("apply: generation %d by %s (uid %d)%s: %s", generation, UserName(peer.uid), peer.uid,
        plan.ok() ? "" : " FORCED past guards",
        reply.status.ok() ? "acknowledged" : std::string(reply.status.message()));
    if (watch_ms > 0) {
      if (reply.exit != kExitOk) {
        reply.data["watch"] = {{"outcome", "not_started"},
                               {"reason", "the data plane did not acknowledge the apply"}};
      } else if (rollback_to == 0) {
        reply.data["watch"] = {{"outcome", "not_started"},
                               {"reason", "there is no earlier generation to roll back to"}};
      } else {
        session = std::make_shared<WatchSession>(
            WatchEvaluator(parsed.config.watch, baseline_drops, std::move(healthy)));
        session->generation = generation;
        session->rollback_to = rollback_to;
        session->start_ns = shm::MonotonicNowNs();
        session->deadline_ns = session->start_ns + static_cast<uint64_t>(watch_ms) * 1000000ull;
        session->window_ns = uint64_t{parsed.config.watch.window_ms} * 1000000ull;
        std::lock_guard<std::mutex> lock(mu_);
        watch_ = session;
        sample_now_ = true;
        cv_.notify_all();
        Log("watch: generation %d for %d ms; rolls back to generation %d on trouble", generation,
            watch_ms, rollback_to);
      }
    }
  }
  if (session == nullptr) {
    if (reply.status.ok()) {
      reply.data["message"] =
          absl::StrFormat("generation %d is running: %s", reply.data["generation"].get<uint64_t>(),
                          reply.data["detail"].get<std::string>());
    }
    out.Result(reply.exit, reply.status, std::move(reply.data));
    return;
  }
  // Stream the watch. The watch belongs to the server: a client that goes away (Ctrl-C) does
  // not stop it, and an automatic rollback happens without it.
  out.Progress({{"applied", reply.data},
                {"message", absl::StrFormat("generation %d is running; watching it for %.0f s, "
                                            "rolling back to generation %d on trouble",
                                            session->generation, double(watch_ms) / 1000,
                                            session->rollback_to)}});
  size_t sent = 0;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait_for(lock, std::chrono::milliseconds(500),
                 [&] { return session->done || session->progress.size() > sent || stop_; });
    while (sent < session->progress.size()) {
      const json p = session->progress[sent++];
      lock.unlock();
      out.Progress(p);
      lock.lock();
    }
    if (session->done || stop_) break;
  }
  Reply final = session->done ? session->reply
                              : Reply{kExitFailure, absl::UnavailableError("the server stopped"),
                                      json::object()};
  lock.unlock();
  final.data["apply"] = reply.data;
  out.Result(final.exit, final.status, std::move(final.data));
}

Server::Reply Server::HandleRollback(const Peer& peer, const json& request) {
  std::lock_guard<std::mutex> change(change_mu_);
  if (running_ == nullptr) {
    return {kExitNotFound, absl::NotFoundError("nothing runs yet: there is nothing to roll back"),
            json::object()};
  }
  std::optional<uint64_t> target;
  if (request.contains("generation") && request["generation"].is_number_unsigned()) {
    target = request["generation"].get<uint64_t>();
  } else {
    target = PreviousOperatorChange();
    if (!target.has_value()) {
      return {kExitNotFound,
              absl::NotFoundError(absl::StrFormat(
                  "generation %d is the first change in the history: there is no earlier one",
                  running_->record.origin)),
              json::object()};
    }
  }
  absl::StatusOr<GenerationRecord> old = LoadRecord(*target);
  if (!old.ok()) return {ExitCodeFor(old.status()), old.status(), json::object()};
  if (old->result == AckResult::kRejected) {
    return {kExitNotFound,
            absl::FailedPreconditionError(absl::StrFormat(
                "generation %d was rejected by the data plane: it never ran", *target)),
            json::object()};
  }
  ParsedConfig parsed = ParseConfig(old->config_yaml);
  if (!parsed.ok()) {
    return {
        kExitInvalidConfig,
        absl::DataLossError(absl::StrFormat("generation %d's config no longer parses", *target)),
        {{"errors", ErrorsToJson(parsed.errors)}}};
  }
  absl::StatusOr<Candidate> c = BuildCandidate(old->config_yaml, parsed.config, old->overrides,
                                               health_->CurrentHealth(), next_generation_);
  if (!c.ok()) return {ExitCodeFor(c.status()), c.status(), json::object()};
  const Plan plan = PlanFor(*c);
  if (!plan.HasChanges()) {
    return {kExitOk,
            absl::OkStatus(),
            {{"generation", running_->record.generation},
             {"message", absl::StrFormat("generation %d already runs generation %d's config",
                                         running_->record.generation, *target)}}};
  }
  // No guards: a rollback restores what ran before, and refusing it in an emergency helps
  // nobody. The plan is still shown and recorded.
  GenerationRecord r;
  r.generation = TakeGeneration();
  r.cause = Cause::kRollback;
  r.created_unix_ms = NowUnixMs();
  r.who = WhoOf(peer, request);
  r.origin = r.generation;
  r.rollback_of = *target;
  r.plan_summary = PlanSummary(plan);
  std::shared_ptr<WatchSession> superseded;
  {
    std::lock_guard<std::mutex> lock(mu_);
    superseded = SupersedeWatchLocked(r.generation);
    ++counters_.rollbacks;
  }
  if (superseded != nullptr) FinishWatchRecord(superseded);
  const uint64_t from = running_->record.generation;
  Reply reply = PublishChange(*std::move(c), std::move(r), plan);
  const uint64_t generation = reply.data["generation"].get<uint64_t>();
  reply.data["rollback_of"] = *target;
  if (reply.status.ok()) {
    reply.data["message"] = absl::StrFormat(
        "rolled back from generation %d to generation %d's config, running as generation %d "
        "(%s)",
        from, *target, generation, reply.data["detail"].get<std::string>());
  }
  Log("rollback: generation %d -> %d's config as %d by %s: %s", from, *target, generation,
      UserName(peer.uid), reply.status.ok() ? "acknowledged" : std::string(reply.status.message()));
  return reply;
}

Server::Reply Server::HandleHistory(const json& request) const {
  const shm::ReaderView reader = writer_->reader();
  auto resolved = [&](const GenerationRecord& r) {
    if (r.result != AckResult::kPending) return r.result;
    if (reader.rejected_generation == r.generation) return AckResult::kRejected;
    if (reader.acked_generation >= r.generation) return AckResult::kAcked;
    return AckResult::kPending;
  };
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t current = running_ != nullptr ? running_->record.generation : 0;
  if (request.contains("generation") && request["generation"].is_number_unsigned()) {
    lock.unlock();  // a file read: not under the lock
    absl::StatusOr<GenerationRecord> r = LoadRecord(request["generation"].get<uint64_t>());
    if (!r.ok()) return {ExitCodeFor(r.status()), r.status(), json::object()};
    json j = RecordToJson(*r);
    j["result"] = AckResultName(resolved(*r));
    j["current"] = r->generation == current;
    return {kExitOk, absl::OkStatus(), {{"record", j}}};
  }
  const size_t limit = request.value("limit", kDefaultHistoryRows);
  json rows = json::array();
  for (auto it = history_.rbegin(); it != history_.rend() && rows.size() < limit; ++it) {
    json j = RecordToJson(*it);
    j.erase("config_yaml");
    j["result"] = AckResultName(resolved(*it));
    j["current"] = it->generation == current;
    rows.push_back(std::move(j));
  }
  return {kExitOk,
          absl::OkStatus(),
          {{"generations", rows},
           {"current", current},
           {"total", history_.size()},
           {"warnings", history_warnings_}}};
}

Server::Reply Server::HandleLookup(const json& request) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (running_ == nullptr) {
    return {kExitNotFound, absl::NotFoundError("nothing is published yet"), json::object()};
  }
  const std::string vip_arg = request.value("vip", "");
  const std::string proto_arg = request.value("proto", "");
  const std::string src_arg = request.value("src", "");
  const int64_t sport = request.value("sport", int64_t{-1});
  uint8_t proto = 0;
  if (proto_arg == "tcp") {
    proto = 6;
  } else if (proto_arg == "udp") {
    proto = 17;
  } else {
    return {
        kExitUsage,
        absl::InvalidArgumentError(absl::StrFormat("protocol '%s': want tcp or udp", proto_arg)),
        json::object()};
  }
  absl::StatusOr<IpAddress> src = IpAddress::Parse(src_arg);
  if (!src.ok() || sport < 0 || sport > 65535) {
    return {kExitUsage,
            absl::InvalidArgumentError(absl::StrFormat(
                "client '%s' port %d: want an IPv4 or IPv6 address and a port 0..65535", src_arg,
                sport)),
            json::object()};
  }
  // The VIP: by name, or by address[:port] with the protocol.
  std::optional<size_t> index;
  const EffectiveState& st = running_->state;
  for (size_t i = 0; i < st.vips.size(); ++i) {
    if (st.vips[i].config.name == vip_arg) index = i;
  }
  if (!index.has_value()) {
    absl::StatusOr<std::pair<IpAddress, std::optional<uint16_t>>> a = ParseBackendArg(vip_arg);
    if (a.ok()) {
      std::vector<size_t> matches;
      for (size_t i = 0; i < st.vips.size(); ++i) {
        const VipConfig& v = st.vips[i].config;
        if (v.address == a->first && v.proto == proto &&
            (!a->second.has_value() || *a->second == v.port)) {
          matches.push_back(i);
        }
      }
      if (matches.size() > 1) {
        return {kExitUsage,
                absl::InvalidArgumentError(absl::StrFormat(
                    "%s has %d %s VIPs on different ports: give address:port or the VIP's name",
                    vip_arg, matches.size(), proto_arg)),
                json::object()};
      }
      if (matches.size() == 1) index = matches[0];
    }
  }
  if (!index.has_value()) {
    return {kExitNotFound,
            absl::NotFoundError(absl::StrFormat(
                "no VIP '%s' (%s) in generation %d: give a VIP name or address:port", vip_arg,
                proto_arg, running_->record.generation)),
            json::object()};
  }
  const EffectiveVip& v = st.vips[*index];
  if (v.config.proto != proto) {
    return {kExitNotFound,
            absl::NotFoundError(absl::StrFormat("VIP %s is %s, not %s", v.config.name,
                                                ProtocolName(v.config.proto), proto_arg)),
            json::object()};
  }
  if (src->v6 != v.config.address.v6) {
    return {kExitUsage,
            absl::InvalidArgumentError(
                absl::StrFormat("client %s and VIP %s are of different address families", src_arg,
                                v.config.address.ToString())),
            json::object()};
  }
  // Exactly what the data plane computes for a new flow (docs/flow-hash.md): the tuple as the
  // client sends it, the cluster key from the published settings, the VIP's table.
  FlowTuple t;
  t.src = src->bytes;
  t.dst = v.config.address.bytes;
  t.src_port = static_cast<uint16_t>(sport);
  t.dst_port = v.config.port;
  t.proto = proto;
  t.v6 = src->v6;
  FlowHashKey key;
  std::memcpy(&key.k0, running_->snapshot.header.settings.hash_key, 8);
  std::memcpy(&key.k1, running_->snapshot.header.settings.hash_key + 8, 8);
  const uint64_t hash = FlowHash(t, key);
  const shm::Table& table = *running_->snapshot.tables[*index];
  json data = {{"vip", v.config.name},
               {"service", ServiceName(v.config)},
               {"client", BackendName(*src, static_cast<uint16_t>(sport))},
               {"generation", running_->record.generation},
               {"hash", absl::StrFormat("%016x", hash)},
               {"table_size", table.size()}};
  if (table.empty()) {
    data["backend"] = nullptr;
    data["message"] = "no backend is eligible: the data plane drops the VIP's new flows";
    return {kExitOk, absl::OkStatus(), data};
  }
  const uint32_t slot = HashToSlot(hash, static_cast<uint32_t>(table.size()));
  const EffectiveBackend& b = v.backends[table[slot]];
  data["slot"] = slot;
  data["backend"] = {
      {"name", b.name}, {"address", b.config.address.ToString()}, {"port", b.config.port},
      {"id", b.id},     {"state", OperatorStateName(b.state)},    {"health", HealthName(b.health)}};
  data["message"] = absl::StrFormat(
      "a new flow from %s to %s goes to backend %s (slot %d of %d); a flow already in the data "
      "plane's flow table stays on its backend while that one is active or draining",
      data["client"].get<std::string>(), ServiceName(v.config), b.name, slot, table.size());
  return {kExitOk, absl::OkStatus(), data};
}

Server::Reply Server::HandleBackend(const Peer& peer, const json& request) {
  const std::string action = request.value("action", "");
  const std::string vip_name = request.value("vip", "");
  const std::string backend_arg = request.value("backend", "");
  const bool force = request.value("force", false);
  std::lock_guard<std::mutex> change(change_mu_);
  if (running_ == nullptr) {
    return {kExitNotFound, absl::NotFoundError("nothing is published yet"), json::object()};
  }
  const VipConfig* vip = nullptr;
  for (const VipConfig& v : running_->config.vips) {
    if (v.name == vip_name) vip = &v;
  }
  if (vip == nullptr) {
    return {kExitNotFound,
            absl::NotFoundError(absl::StrFormat("no VIP named '%s' in generation %d", vip_name,
                                                running_->record.generation)),
            json::object()};
  }
  absl::StatusOr<std::pair<IpAddress, std::optional<uint16_t>>> arg = ParseBackendArg(backend_arg);
  if (!arg.ok()) return {kExitUsage, arg.status(), json::object()};
  std::vector<const BackendConfig*> matches;
  for (const BackendConfig& b : vip->backends) {
    if (b.address == arg->first && (!arg->second.has_value() || *arg->second == b.port)) {
      matches.push_back(&b);
    }
  }
  if (matches.empty()) {
    return {kExitNotFound,
            absl::NotFoundError(absl::StrFormat("VIP %s has no backend %s", vip_name, backend_arg)),
            json::object()};
  }
  if (matches.size() > 1) {
    return {kExitUsage,
            absl::InvalidArgumentError(
                absl::StrFormat("VIP %s has %d backends at %s: give address:port", vip_name,
                                matches.size(), backend_arg)),
            json::object()};
  }
  const BackendConfig b = *matches[0];  // a copy: the publish below replaces running_
  const std::string key = BackendKey(vip->name, b.address, b.port);
  Overrides overrides = running_->record.overrides;
  BackendOverride& o = overrides[key];
  Cause cause;
  if (action == "drain") {
    cause = Cause::kDrain;
    o.state = OperatorState::kDraining;
  } else if (action == "undrain") {
    cause = Cause::kUndrain;
    if (b.state == OperatorState::kActive) {
      o.state.reset();
    } else {
      o.state = OperatorState::kActive;
    }
  } else if (action == "weight") {
    cause = Cause::kWeight;
    const int64_t w = request.value("weight", int64_t{-1});
    if (w < 1 || w > kMaxWeight) {
      return {kExitUsage,
              absl::InvalidArgumentError(absl::StrFormat(
                  "weight %d: want 1 to %d (to stop new flows, use backend drain)", w, kMaxWeight)),
              json::object()};
    }
    if (static_cast<uint32_t>(w) == b.weight) {
      o.weight.reset();
    } else {
      o.weight = static_cast<uint32_t>(w);
    }
  } else {
    return {kExitUsage,
            absl::InvalidArgumentError(
                absl::StrFormat("backend action '%s': want drain, undrain or weight", action)),
            json::object()};
  }
  if (!o.state.has_value() && !o.weight.has_value()) overrides.erase(key);
  absl::StatusOr<Candidate> c =
      BuildCandidate(running_->record.config_yaml, running_->config, overrides,
                     health_->CurrentHealth(), next_generation_);
  if (!c.ok()) return {ExitCodeFor(c.status()), c.status(), json::object()};
  const Plan plan = PlanFor(*c);
  json data = {{"plan", PlanToJson(plan)}};
  if (!plan.HasChanges()) {
    data["generation"] = running_->record.generation;
    data["message"] = absl::StrFormat("no change: %s of %s is already so",
                                      BackendName(b.address, b.port), vip_name);
    return {kExitOk, absl::OkStatus(), data};
  }
  if (!plan.ok() && !force) {
    std::string lines;
    for (const std::string& v : plan.Violations()) lines += absl::StrCat("\n  ", v);
    return {kExitGuard,
            absl::FailedPreconditionError(absl::StrFormat(
                "refused by guards; nothing was changed:%s\nre-run with --force to change it "
                "anyway",
                lines)),
            data};
  }
  GenerationRecord r;
  r.generation = TakeGeneration();
  r.cause = cause;
  r.created_unix_ms = NowUnixMs();
  r.who = WhoOf(peer, request);
  r.origin = r.generation;
  r.forced = !plan.ok();
  r.reason = absl::StrFormat("backend %s %s%s", action, BackendName(b.address, b.port),
                             action == "weight"
                                 ? absl::StrFormat(" %d", request.value("weight", int64_t{0}))
                                 : std::string());
  r.plan_summary = PlanSummary(plan);
  std::shared_ptr<WatchSession> superseded;
  {
    std::lock_guard<std::mutex> lock(mu_);
    superseded = SupersedeWatchLocked(r.generation);
  }
  if (superseded != nullptr) FinishWatchRecord(superseded);
  Reply reply = PublishChange(*std::move(c), std::move(r), plan);
  if (reply.status.ok()) {
    reply.data["message"] =
        absl::StrFormat("%s: %s %s; generation %d is running (%s)", vip_name, action,
                        BackendName(b.address, b.port), reply.data["generation"].get<uint64_t>(),
                        reply.data["detail"].get<std::string>());
  }
  Log("backend %s %s/%s by %s: %s", action, vip_name, BackendName(b.address, b.port),
      UserName(peer.uid), reply.status.ok() ? "acknowledged" : std::string(reply.status.message()));
  return reply;
}

json Server::StatusJson() const {
  std::lock_guard<std::mutex> lock(mu_);
  StatusInput in;
  if (running_ != nullptr) {
    in.config = &running_->config;
    in.state = &running_->state;
    in.snapshot = &running_->snapshot;
    in.current = &running_->record;
  }
  in.published_generation = writer_->published_generation();
  in.reader = writer_->reader();
  in.now_mono_ns = shm::MonotonicNowNs();
  const uint32_t window_ms = running_ != nullptr ? running_->config.watch.window_ms : 2000;
  in.latest = stats_.Latest() != nullptr ? stats_.Latest() : &last_sample_;
  in.base = stats_.Base(uint64_t{window_ms} * 1000000ull, published_mono_ns_);
  in.health = health_->Status();
  if (announcer_ != nullptr) in.bgp = announcer_->StatusJson();
  for (const std::string& w : history_warnings_) in.extra_alerts.push_back({"history", "", w});
  const int64_t now = NowUnixMs();
  for (const auto& [when, alert] : events_) {
    if (now - when < kEventKeepMs) in.extra_alerts.push_back(alert);
  }
  json watch = nullptr;
  if (watch_ != nullptr && !watch_->finished) {
    watch = {{"generation", watch_->generation},
             {"rollback_to", watch_->rollback_to},
             {"remaining_s", in.now_mono_ns < watch_->deadline_ns
                                 ? double(watch_->deadline_ns - in.now_mono_ns) / 1e9
                                 : 0.0}};
  }
  in.controlplane = {
      {"pid", getpid()},
      {"shm_prefix", opt_.shm_prefix},
      {"socket", opt_.socket_path},
      {"state_dir", opt_.state_dir},
      {"metrics", metrics_ != nullptr
                      ? json(absl::StrFormat("%s:%d", metrics_->host(), metrics_->port()))
                      : json(nullptr)},
      {"metrics_port", metrics_ != nullptr ? metrics_->port() : 0},
      {"stats_interval_ms", opt_.stats_interval_ms},
      {"host", opt_.host},
      {"watch", watch},
      {"counters",
       {{"applies", counters_.applies},
        {"rollbacks", counters_.rollbacks},
        {"auto_rollbacks", counters_.auto_rollbacks},
        {"health_republishes", counters_.health_republishes},
        {"rejected_applies", counters_.rejected_applies}}}};
  return BuildStatus(in);
}

std::string Server::MetricsText() const {
  const json status = StatusJson();
  std::lock_guard<std::mutex> lock(mu_);
  return RenderMetrics(status, stats_.Latest());
}

// --- The loop --------------------------------------------------------------------------------

void Server::SampleStats() {
  std::vector<uint16_t> vip_ids;
  std::vector<uint16_t> backend_ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    vip_ids = vip_ids_.AllIds();
    backend_ids = backend_ids_.AllIds();
  }
  StatsSample sample = stats_reader_.Sample(vip_ids, backend_ids);
  writer_->Heartbeat();
  std::lock_guard<std::mutex> lock(mu_);
  last_sample_ = StatsSample{};
  last_sample_.attached = false;
  last_sample_.error = sample.error;
  stats_.Add(std::move(sample));
}

void Server::EvaluateWatchLocked() {
  const std::shared_ptr<WatchSession> s = watch_;
  if (s == nullptr || s->finished || s->rollback_requested || running_ == nullptr) return;
  const uint64_t now = shm::MonotonicNowNs();
  const StatsSample* latest = stats_.Latest();
  const StatsSample* base = stats_.Base(s->window_ns, s->start_ns);
  if (latest != nullptr && base != nullptr && latest->mono_ns > base->mono_ns) {
    const std::vector<WatchFinding> findings =
        s->evaluator.Evaluate(running_->state, running_->snapshot, *base, *latest);
    s->judged = true;
    StatusInput in;
    in.config = &running_->config;
    in.state = &running_->state;
    in.snapshot = &running_->snapshot;
    in.now_mono_ns = now;
    in.base = base;
    in.latest = latest;
    const json view = BuildStatus(in);
    json vips = json::array();
    for (const json& v : view["vips"]) {
      double max_load = 0;
      for (const json& b : v["backends"]) {
        if (b["load"].is_number()) max_load = std::max(max_load, b["load"].get<double>());
      }
      vips.push_back({{"name", v["name"]},
                      {"new_flow_rate", v["new_flow_rate"]},
                      {"imbalance", v["imbalance"]},
                      {"max_load", max_load}});
    }
    json messages = json::array();
    for (const WatchFinding& f : findings) messages.push_back(f.message);
    s->progress.push_back(
        {{"elapsed_s", double(now - s->start_ns) / 1e9},
         {"remaining_s", now < s->deadline_ns ? double(s->deadline_ns - now) / 1e9 : 0.0},
         {"window_s", double(latest->mono_ns - base->mono_ns) / 1e9},
         {"vips", vips},
         {"findings", messages}});
    if (!findings.empty()) {
      s->rollback_requested = true;
      s->findings = findings;
    }
    cv_.notify_all();
  }
  if (!s->rollback_requested && now >= s->deadline_ns) {
    s->finished = true;
    const double seconds = double(s->deadline_ns - s->start_ns) / 1e9;
    s->outcome = {{"outcome", s->judged ? "passed" : "not_judged"}, {"seconds", seconds}};
    s->reply = {kExitOk,
                absl::OkStatus(),
                {{"watch", s->outcome},
                 {"message",
                  s->judged ? absl::StrFormat("watched generation %d for %.0f s: no imbalance, "
                                              "overload, unhealthy backend or drop increase",
                                              s->generation, seconds)
                            : absl::StrFormat("watched generation %d for %.0f s without stats from "
                                              "the data plane: nothing could be judged",
                                              s->generation, seconds)}}};
    cv_.notify_all();
  }
}

void Server::FinishWatchRecord(std::shared_ptr<WatchSession> session) {
  absl::StatusOr<GenerationRecord> r = LoadRecord(session->generation);
  if (r.ok()) {
    r->watch = session->outcome;
    if (absl::Status s = store_->Write(*r); !s.ok()) {
      Log("watch: recording the outcome failed: %s", s.message());
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (GenerationRecord& h : history_) {
    if (h.generation == session->generation) h.watch = session->outcome;
  }
  session->done = true;
  if (watch_ == session) watch_.reset();
  cv_.notify_all();
}

void Server::AutoRollback(std::shared_ptr<WatchSession> session) {
  const double after_s = double(shm::MonotonicNowNs() - session->start_ns) / 1e9;
  std::string reason;
  json findings = json::array();
  for (const WatchFinding& f : session->findings) {
    reason += (reason.empty() ? "" : "; ") + f.message;
    findings.push_back({{"kind", f.kind},
                        {"vip", f.vip},
                        {"backend", f.backend},
                        {"value", f.value},
                        {"limit", f.limit},
                        {"message", f.message}});
  }
  Reply reply;
  uint64_t generation = 0;
  absl::StatusOr<GenerationRecord> old = LoadRecord(session->rollback_to);
  absl::Status failure;
  if (!old.ok()) {
    failure = old.status();
  } else {
    ParsedConfig parsed = ParseConfig(old->config_yaml);
    absl::StatusOr<Candidate> c =
        parsed.ok() ? BuildCandidate(old->config_yaml, parsed.config, old->overrides,
                                     health_->CurrentHealth(), next_generation_)
                    : absl::StatusOr<Candidate>(absl::DataLossError("its config does not parse"));
    if (!c.ok()) {
      failure = c.status();
    } else {
      const Plan plan = PlanFor(*c);
      GenerationRecord r;
      r.generation = generation = TakeGeneration();
      r.cause = Cause::kAutoRollback;
      r.created_unix_ms = NowUnixMs();
      r.who = ServerWho(absl::StrFormat("apply --watch of generation %d", session->generation));
      r.origin = r.generation;
      r.rollback_of = session->rollback_to;
      r.reason = reason;
      r.plan_summary = PlanSummary(plan);
      reply = PublishChange(*std::move(c), std::move(r), plan);
      if (reply.exit == kExitFailure || reply.exit == kExitRejected) failure = reply.status;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  ++counters_.auto_rollbacks;
  session->outcome = {{"outcome", failure.ok() ? "rolled_back" : "rollback_failed"},
                      {"after_s", after_s},
                      {"findings", findings},
                      {"rollback_of", session->rollback_to},
                      {"rollback_generation", generation}};
  const std::string message =
      failure.ok() ? absl::StrFormat(
                         "rolled back generation %d to generation %d's config (running as "
                         "generation %d) %.1f s after the apply: %s",
                         session->generation, session->rollback_to, generation, after_s, reason)
                   : absl::StrFormat("generation %d needs a rollback (%s) but it failed: %s",
                                     session->generation, reason, failure.message());
  session->reply = {kExitRolledBack,
                    absl::AbortedError(message),
                    {{"watch", session->outcome}, {"rollback", reply.data}}};
  session->finished = true;
  events_.push_back({NowUnixMs(), Alert{"auto_rollback", "", message}});
  cv_.notify_all();
  Log("watch: %s", message);
}

void Server::RepublishForHealth() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    health_dirty_ = false;
  }
  if (running_ == nullptr) return;
  const HealthMap health = health_->CurrentHealth();
  absl::StatusOr<EffectiveState> state =
      BuildEffective(running_->config, running_->ids, running_->record.overrides, health);
  if (!state.ok()) {
    Log("health: %s", state.status().message());
    return;
  }
  std::string changes;
  for (size_t i = 0; i < state->vips.size(); ++i) {
    for (size_t j = 0; j < state->vips[i].backends.size(); ++j) {
      const EffectiveBackend& now = state->vips[i].backends[j];
      const EffectiveBackend& was = running_->state.vips[i].backends[j];
      if (now.health != was.health) {
        changes += absl::StrFormat("%s%s/%s %s -> %s", changes.empty() ? "" : ", ",
                                   state->vips[i].config.name, now.name, HealthName(was.health),
                                   HealthName(now.health));
      }
    }
    if (state->vips[i].panic != running_->state.vips[i].panic) {
      changes +=
          absl::StrFormat("%s%s panic %s", changes.empty() ? "" : ", ", state->vips[i].config.name,
                          state->vips[i].panic ? "on (failing open)" : "off");
    }
  }
  if (SamePublished(*state, running_->state)) {
    std::lock_guard<std::mutex> lock(mu_);
    running_->state = *std::move(state);
    if (!changes.empty()) Log("health: %s (no table change)", changes);
    return;
  }
  absl::StatusOr<Candidate> c =
      BuildCandidate(running_->record.config_yaml, running_->config, running_->record.overrides,
                     health, next_generation_);
  if (!c.ok()) {
    Log("health: cannot build the new tables: %s", c.status().message());
    return;
  }
  GenerationRecord r;
  r.generation = TakeGeneration();
  r.cause = Cause::kHealth;
  r.created_unix_ms = NowUnixMs();
  r.who = ServerWho("health checks");
  r.origin = running_->record.origin;
  r.reason = changes;
  // Not waited for: the loop must keep sampling; status and history show the ack.
  if (absl::Status s = Commit(*std::move(c), std::move(r)); !s.ok()) {
    Log("health: publishing failed: %s", s.message());
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  ++counters_.health_republishes;
  Log("health: %s; published generation %d", changes, running_->record.generation);
}

void Server::Loop() {
  using Clock = std::chrono::steady_clock;
  const auto interval = std::chrono::milliseconds(opt_.stats_interval_ms);
  auto next_sample = Clock::now();
  bool retry_soon = false;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      const auto wake = retry_soon
                            ? std::min(next_sample, Clock::now() + std::chrono::milliseconds(20))
                            : next_sample;
      cv_.wait_until(lock, wake,
                     [&] { return stop_ || sample_now_ || (!retry_soon && health_dirty_); });
      if (stop_) break;
    }
    bool sample_now;
    {
      std::lock_guard<std::mutex> lock(mu_);
      sample_now = std::exchange(sample_now_, false);
    }
    if (sample_now) {
      SampleStats();
      next_sample = Clock::now() + interval;
    } else if (Clock::now() >= next_sample) {
      SampleStats();
      next_sample = std::max(next_sample + interval, Clock::now());
    }
    bool dirty;
    std::shared_ptr<WatchSession> session;
    {
      std::lock_guard<std::mutex> lock(mu_);
      EvaluateWatchLocked();
      dirty = health_dirty_;
      session = watch_;
      const int64_t now = NowUnixMs();
      std::erase_if(events_, [&](const auto& e) { return now - e.first >= kEventKeepMs; });
    }
    const bool rollback = session != nullptr && session->rollback_requested && !session->finished;
    const bool record = session != nullptr && session->finished && !session->done;
    retry_soon = false;
    if (!dirty && !rollback && !record) continue;
    std::unique_lock<std::mutex> change(change_mu_, std::try_to_lock);
    if (!change.owns_lock()) {
      retry_soon = true;  // a change is in flight; it may even supersede the watch
      continue;
    }
    if (rollback) AutoRollback(session);
    if (session != nullptr && session->finished && !session->done) FinishWatchRecord(session);
    if (dirty) RepublishForHealth();
  }
}

// --- BGP -------------------------------------------------------------------------------------

namespace {

// The BGP thread looks this often even without an event: a data plane that dies says nothing.
constexpr auto kBgpTick = std::chrono::milliseconds(100);
// fulcrumd heartbeats every 100 ms. Silence this long means it is stuck or gone...
constexpr uint64_t kBgpDeadNs = 1'000'000'000ull;
// ...and a process that no longer exists is gone once it has missed two heartbeats (the pid
// alone is not trusted: fulcrumd may run in another pid namespace).
constexpr uint64_t kBgpExitedNs = 250'000'000ull;

// The process exists and is not a zombie.
bool ProcessExists(int pid) {
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  const std::string path = absl::StrFormat("/proc/%d/stat", pid);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;  // no /proc: trust kill()
  char buf[512];
  const ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return true;
  buf[n] = 0;
  const char* close_paren = std::strrchr(buf, ')');
  return close_paren == nullptr || close_paren[1] == 0 || close_paren[2] != 'Z';
}

}  // namespace

AnnounceInput Server::GatherAnnounceInput(std::optional<BgpConfig>& bgp) const {
  AnnounceInput in;
  const shm::ReaderView r = writer_->reader();
  const uint64_t now = shm::MonotonicNowNs();
  const uint64_t age = r.heartbeat_ns != 0 && now > r.heartbeat_ns ? now - r.heartbeat_ns : 0;
  if (r.pid == 0 || r.heartbeat_ns == 0) {
    in.dataplane_detail = "no fulcrumd has attached to the config segment";
  } else if (age >= kBgpDeadNs) {
    in.dataplane_detail = absl::StrFormat("fulcrumd pid %d has not sent a heartbeat for %.1f s",
                                          r.pid, double(age) / 1e9);
  } else if (age >= kBgpExitedNs && !ProcessExists(r.pid)) {
    in.dataplane_detail = absl::StrFormat("fulcrumd pid %d has exited", r.pid);
  } else {
    in.dataplane_alive = true;
  }
  in.acked_generation = r.acked_generation;
  std::lock_guard<std::mutex> lock(mu_);
  in.shutting_down = bgp_stop_;
  if (running_ == nullptr) return in;
  bgp = running_->config.bgp;
  in.generation = running_->record.generation;
  in.ack_grace = now - published_mono_ns_ < uint64_t{opt_.ack_timeout_ms} * 1000000ull;
  for (const EffectiveVip& v : running_->state.vips) {
    AnnounceInput::Vip vip;
    vip.name = v.config.name;
    vip.address = v.config.address;
    // In panic the down backends stay in the table, but they are still down: a host whose
    // checks all fail withdraws, so that the routers prefer hosts that see healthy backends.
    vip.healthy_backend = std::any_of(v.backends.begin(), v.backends.end(), [](const auto& b) {
      return b.published == shm::BackendState::kActive && b.health != Health::kDown;
    });
    for (const Announcement& a : bgp_decisions_) {
      if (a.name == vip.name && a.address == vip.address) vip.was_announced = a.announce;
    }
    in.vips.push_back(std::move(vip));
  }
  return in;
}

void Server::BgpLoop() {
  bool first = true;
  while (true) {
    std::optional<BgpConfig> bgp;
    const AnnounceInput in = GatherAnnounceInput(bgp);
    // The first tick tells BIRD whatever it holds (a restarted serve does not know); the last
    // one withdraws everything before serve exits.
    bgp_decisions_ = announcer_->Tick(bgp, in, first || in.shutting_down);
    first = false;
    if (in.shutting_down) return;
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, kBgpTick, [&] { return bgp_stop_ || bgp_now_; });
    bgp_now_ = false;
  }
}

}  // namespace fulcrum::controlplane
