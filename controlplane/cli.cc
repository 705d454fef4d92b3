// Cli: subcommands, their options, and how results are printed.
#include "controlplane/cli.h"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <thread>
#include <variant>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "controlplane/client.h"
#include "controlplane/config_parser.h"
#include "controlplane/log.h"
#include "controlplane/offline_plan.h"
#include "controlplane/protocol.h"
#include "controlplane/render.h"
#include "controlplane/server.h"

namespace fulcrum::controlplane {
namespace {

using nlohmann::json;

constexpr char kDefaultSocket[] = "/run/fulcrum/fulcrumctl.sock";

struct Globals {
  std::string socket = kDefaultSocket;
  bool json = false;
};

absl::StatusOr<absl::Duration> ParseDurationArg(const std::string& text) {
  double seconds = 0;
  if (absl::SimpleAtod(text, &seconds)) return absl::Seconds(seconds);
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("'%s' is not a duration: write it like 30s, 500ms, 2m", text));
  }
  return d;
}

void PrintJson(const json& j) { std::cout << j.dump(2) << std::endl; }

int Fail(const Globals& g, int exit, const absl::Status& s, json data = json::object()) {
  if (g.json) {
    PrintJson({{"exit", exit},
               {"code", StatusCodeName(s.code())},
               {"message", std::string(s.message())},
               {"data", std::move(data)}});
  } else {
    std::cerr << "fulcrumctl: " << s.message() << std::endl;
  }
  return exit;
}

std::string ReportedUser() {
  for (const char* var : {"SUDO_USER", "USER", "LOGNAME"}) {
    if (const char* v = std::getenv(var); v != nullptr && *v != '\0') return v;
  }
  return "";
}

// Reads and checks a config file locally; on errors prints them and returns the exit code.
std::optional<int> LoadAndCheck(const Globals& g, const std::string& path, std::string& text,
                                ParsedConfig& parsed) {
  absl::StatusOr<std::string> t = ReadConfigFile(path);
  if (!t.ok()) return Fail(g, kExitInvalidConfig, t.status());
  text = *std::move(t);
  parsed = ParseConfig(text);
  if (parsed.ok()) return std::nullopt;
  if (g.json) {
    PrintJson({{"exit", kExitInvalidConfig},
               {"code", "INVALID_ARGUMENT"},
               {"message", absl::StrFormat("%d errors in %s", parsed.errors.size(), path)},
               {"data", {{"file", path}, {"ok", false}, {"errors", ErrorsToJson(parsed.errors)}}}});
  } else {
    std::cout << FormatErrors(path, parsed.errors)
              << absl::StrFormat("%s: %d error%s: nothing was changed\n", path,
                                 parsed.errors.size(), parsed.errors.size() == 1 ? "" : "s");
  }
  return kExitInvalidConfig;
}

// One request to the server, printing progress lines as they come; the result message, or
// the exit code to return when there is none.
std::variant<json, int> Call(const Globals& g, json request, absl::Duration idle_timeout,
                             bool print_progress) {
  request["user"] = ReportedUser();
  Client client(g.socket);
  absl::StatusOr<json> r = client.Call(
      std::move(request),
      [&](const json& p) {
        if (!print_progress) return;
        if (g.json) {
          std::cout << json({{"progress", p}}).dump() << std::endl;
        } else {
          std::cout << RenderWatchProgress(p) << std::flush;
        }
      },
      idle_timeout);
  if (!r.ok()) {
    const int exit = absl::IsPermissionDenied(r.status()) ? kExitPermission : kExitUnreachable;
    return Fail(g, exit, r.status());
  }
  return *std::move(r);
}

// Prints a result: JSON as is, or `human(data)` and the message (on stderr when it failed).
int Finish(const Globals& g, const json& result,
           const std::function<std::string(const json&)>& human) {
  const int exit = result.value("exit", int{kExitFailure});
  if (g.json) {
    PrintJson(result);
    return exit;
  }
  const json& data = result.contains("data") ? result["data"] : json::object();
  if (data.contains("errors")) {
    std::vector<ConfigError> errors;
    for (const json& e : data["errors"]) {
      errors.push_back({e.value("path", ""), e.value("line", 0), e.value("message", "")});
    }
    std::cout << FormatErrors("config", errors);
  }
  if (human) std::cout << human(data);
  const std::string message = result.value("message", "");
  if (exit != kExitOk) {
    if (!message.empty()) std::cerr << "fulcrumctl: " << message << std::endl;
  } else if (data.contains("message") && data["message"].is_string()) {
    std::cout << data["message"].get<std::string>() << std::endl;
  } else if (!message.empty()) {
    std::cout << message << std::endl;
  }
  return exit;
}

// --- serve ---------------------------------------------------------------------------------

int Serve(ServerOptions opt, const std::string& stats_interval, const std::string& ack_timeout) {
  for (auto [text, field] : {std::pair{&stats_interval, &opt.stats_interval_ms},
                             std::pair{&ack_timeout, &opt.ack_timeout_ms}}) {
    if (text->empty()) continue;
    absl::StatusOr<absl::Duration> d = ParseDurationArg(*text);
    if (!d.ok()) {
      std::cerr << "fulcrumctl serve: " << d.status().message() << std::endl;
      return kExitUsage;
    }
    *field = static_cast<uint32_t>(absl::ToInt64Milliseconds(*d));
  }
  if (opt.stats_interval_ms < 50 || opt.stats_interval_ms > 1000) {
    std::cerr << "fulcrumctl serve: --stats-interval must be 50ms to 1s (it also paces the "
                 "config segment's heartbeat)"
              << std::endl;
    return kExitUsage;
  }
  // Signals are taken by sigwait below, never delivered to a worker thread mid-change.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);  // no reload signal: `apply` is the reload
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // Every in-flight probe is a file descriptor.
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (opt.host.empty()) {
    char name[256] = {};
    if (gethostname(name, sizeof(name) - 1) == 0) opt.host = name;
  }
  Server server(opt);
  if (absl::Status s = server.Start(); !s.ok()) {
    std::cerr << "fulcrumctl serve: " << s.message() << std::endl;
    server.Stop();
    return s.code() == absl::StatusCode::kInvalidArgument ? kExitInvalidConfig : kExitFailure;
  }
  int sig = 0;
  sigwait(&signals, &sig);
  Log("signal %d: stopping", sig);
  server.Stop();
  return kExitOk;
}

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{
      "fulcrumctl: the Fulcrum control plane. 'serve' runs it; every other command talks to it "
      "over its Unix socket ('validate' and 'plan' also work without it)."};
  app.require_subcommand(1);
  app.fallthrough();
  Globals g;
  if (const char* s = std::getenv("FULCRUM_SOCKET"); s != nullptr) g.socket = s;
  app.add_option("--socket", g.socket, "the control socket (env FULCRUM_SOCKET)")
      ->capture_default_str();
  app.add_flag("--json", g.json, "print JSON (the same data as the text output)");

  // serve
  ServerOptions opt;
  std::string stats_interval;
  std::string ack_timeout;
  CLI::App* serve = app.add_subcommand("serve", "run the control-plane process");
  serve->add_option("--config", opt.config_path,
                    "the first config (needed only when the state directory is empty)");
  serve->add_option("--state-dir", opt.state_dir, "history and stable ids")->capture_default_str();
  serve->add_option("--shm-prefix", opt.shm_prefix, "names the shm segments (/PREFIX.config)")
      ->capture_default_str();
  serve->add_option("--metrics", opt.metrics_listen, "Prometheus endpoint HOST:PORT, or off")
      ->capture_default_str();
  serve->add_option("--group", opt.socket_group, "group allowed on the socket")
      ->capture_default_str();
  serve->add_option("--stats-interval", stats_interval,
                    "stats sampling period, 50ms to 1s (default 1s)");
  serve->add_option("--ack-timeout", ack_timeout,
                    "how long a change waits for the data plane's ack (default 3s)");
  serve->add_option("--history-limit", opt.history_limit, "generations kept in the state dir")
      ->capture_default_str();
  serve->add_flag("--force", opt.force, "publish the first config even past its guards");
  serve->add_option("--probe-interface", opt.probe_interface,
                    "attach the probe program here: health checks with through_tunnel: true "
                    "leave by it, encapsulated to their backend");
  serve->add_option("--host", opt.host,
                    "this host's entry in the config's bgp.hosts (default: the hostname)");

  std::string file;
  CLI::App* validate = app.add_subcommand("validate", "check a config file; every error at once");
  validate->add_option("FILE", file, "config file")->required();

  bool offline = false;
  CLI::App* plan = app.add_subcommand("plan", "what applying a config would do, and its guards");
  plan->add_option("FILE", file, "config file")->required();
  plan->add_flag("--offline", offline, "plan against an empty state, without the server");

  bool force = false;
  std::string watch_text;
  CLI::App* apply = app.add_subcommand("apply", "plan, check guards, publish, wait for the ack");
  apply->add_option("FILE", file, "config file")->required();
  apply->add_flag("--force", force, "apply even when a guard refuses the plan");
  apply->add_option("--watch", watch_text,
                    "watch this long after the ack and roll back automatically on imbalance, "
                    "overload, unhealthy backends or drops (e.g. 30s)");

  uint64_t generation = 0;
  CLI::App* rollback = app.add_subcommand("rollback", "re-apply a recorded generation");
  rollback->add_option("GENERATION", generation, "default: the change before the current one");

  size_t limit = 50;
  CLI::App* history = app.add_subcommand("history", "recorded generations, or one in full");
  history->add_option("GENERATION", generation, "show this one with its config");
  history->add_option("--limit", limit, "rows")->capture_default_str();

  CLI::App* status = app.add_subcommand("status", "liveness, shares, health, alerts");

  bool stats_watch = false;
  std::string refresh_text = "1s";
  int count = 0;
  CLI::App* stats = app.add_subcommand("stats", "status plus data-plane counters and rates");
  stats->add_flag("--watch", stats_watch, "refresh until interrupted");
  stats->add_option("--interval", refresh_text, "refresh period with --watch")
      ->capture_default_str();
  stats->add_option("--count", count, "with --watch: stop after this many refreshes");

  std::string vip;
  std::string proto;
  std::string src;
  int64_t sport = -1;
  CLI::App* lookup = app.add_subcommand("lookup", "which backend a new flow reaches");
  lookup->add_option("VIP", vip, "VIP name or address:port")->required();
  lookup->add_option("PROTO", proto, "tcp or udp")->required();
  lookup->add_option("SRC", src, "client address")->required();
  lookup->add_option("SPORT", sport, "client port")->required();

  std::string backend_arg;
  int64_t weight = 0;
  bool backend_force = false;
  CLI::App* backend = app.add_subcommand("backend", "drain, undrain or re-weight one backend");
  backend->require_subcommand(1);
  CLI::App* drain = backend->add_subcommand("drain", "existing flows only, no new ones");
  CLI::App* undrain = backend->add_subcommand("undrain", "new flows again");
  CLI::App* reweight = backend->add_subcommand("weight", "set a weight over the file's");
  for (CLI::App* sub : {drain, undrain, reweight}) {
    sub->add_option("VIP", vip, "VIP name")->required();
    sub->add_option("BACKEND", backend_arg, "address or address:port")->required();
    sub->add_flag("--force", backend_force, "even when a guard refuses");
  }
  reweight->add_option("WEIGHT", weight, "1 to 65535")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }

  if (serve->parsed()) {
    opt.socket_path = g.socket;
    return Serve(opt, stats_interval, ack_timeout);
  }
  // A read timeout for the server's answer: longer than any ack wait.
  const absl::Duration idle = absl::Seconds(60);

  if (validate->parsed()) {
    std::string text;
    ParsedConfig parsed;
    if (std::optional<int> exit = LoadAndCheck(g, file, text, parsed)) return *exit;
    size_t backends = 0;
    for (const VipConfig& v : parsed.config.vips) backends += v.backends.size();
    if (g.json) {
      PrintJson({{"exit", 0},
                 {"code", "OK"},
                 {"message", ""},
                 {"data",
                  {{"file", file},
                   {"ok", true},
                   {"errors", json::array()},
                   {"vips", parsed.config.vips.size()},
                   {"backends", backends}}}});
    } else {
      std::cout << absl::StrFormat("%s: OK: %d VIPs, %d backends\n", file,
                                   parsed.config.vips.size(), backends);
    }
    return kExitOk;
  }

  if (plan->parsed()) {
    std::string text;
    ParsedConfig parsed;
    if (std::optional<int> exit = LoadAndCheck(g, file, text, parsed)) return *exit;
    std::string note;
    if (!offline) {
      Client client(g.socket);
      absl::StatusOr<json> r =
          client.Call({{"v", kProtocolVersion}, {"cmd", "plan"}, {"config", text}}, nullptr, idle);
      if (r.ok()) {
        return Finish(g, *r, [](const json& d) {
          return d.contains("plan") ? RenderPlan(d["plan"]) : std::string();
        });
      }
      if (absl::IsPermissionDenied(r.status())) return Fail(g, kExitPermission, r.status());
      note = absl::StrFormat("note: %s; planned against an empty state\n", r.status().message());
    }
    absl::StatusOr<Plan> p = OfflinePlan(parsed.config);
    if (!p.ok()) return Fail(g, ExitCodeFor(p.status()), p.status());
    const json pj = PlanToJson(*p);
    const int exit = p->ok() ? kExitOk : kExitGuard;
    if (g.json) {
      PrintJson({{"exit", exit},
                 {"code", p->ok() ? "OK" : "FAILED_PRECONDITION"},
                 {"message", note},
                 {"data", {{"plan", pj}, {"offline", true}}}});
    } else {
      std::cerr << note;
      std::cout << RenderPlan(pj);
    }
    return exit;
  }

  if (apply->parsed()) {
    std::string text;
    ParsedConfig parsed;
    if (std::optional<int> exit = LoadAndCheck(g, file, text, parsed)) return *exit;
    int64_t watch_ms = 0;
    if (!watch_text.empty()) {
      absl::StatusOr<absl::Duration> d = ParseDurationArg(watch_text);
      if (!d.ok()) return Fail(g, kExitUsage, d.status());
      watch_ms = absl::ToInt64Milliseconds(*d);
    }
    std::variant<json, int> r = Call(g,
                                     {{"cmd", "apply"},
                                      {"config", text},
                                      {"file", file},
                                      {"force", force},
                                      {"watch_ms", watch_ms}},
                                     idle, true);
    if (std::holds_alternative<int>(r)) return std::get<int>(r);
    // With --watch the plan came with the first progress line.
    return Finish(g, std::get<json>(r), [](const json& d) {
      return !d.contains("apply") && d.contains("plan") ? RenderPlan(d["plan"]) : std::string();
    });
  }

  if (rollback->parsed()) {
    json req = {{"cmd", "rollback"}};
    if (rollback->count("GENERATION") > 0) req["generation"] = generation;
    std::variant<json, int> r = Call(g, req, idle, false);
    if (std::holds_alternative<int>(r)) return std::get<int>(r);
    return Finish(g, std::get<json>(r), nullptr);
  }

  if (history->parsed()) {
    json req = {{"cmd", "history"}, {"limit", limit}};
    const bool one = history->count("GENERATION") > 0;
    if (one) req["generation"] = generation;
    std::variant<json, int> r = Call(g, req, idle, false);
    if (std::holds_alternative<int>(r)) return std::get<int>(r);
    return Finish(g, std::get<json>(r), [one](const json& d) {
      if (one) return d.contains("record") ? RenderRecord(d["record"]) : std::string();
      return d.contains("generations") ? RenderHistory(d) : std::string();
    });
  }

  if (status->parsed() || stats->parsed()) {
    const bool is_stats = stats->parsed();
    absl::Duration refresh = absl::Seconds(1);
    if (is_stats) {
      absl::StatusOr<absl::Duration> d = ParseDurationArg(refresh_text);
      if (!d.ok()) return Fail(g, kExitUsage, d.status());
      refresh = *d;
    }
    for (int n = 0;; ++n) {
      std::variant<json, int> r = Call(g, {{"cmd", "status"}}, idle, false);
      if (std::holds_alternative<int>(r)) return std::get<int>(r);
      const json& result = std::get<json>(r);
      const bool live = is_stats && stats_watch;
      if (live && g.json) {
        std::cout << result.dump() << std::endl;  // one object per line
      } else {
        if (live) std::cout << "\033[H\033[2J";  // clear the terminal, cursor home
        const int exit = Finish(g, result, [is_stats](const json& d) {
          return is_stats ? RenderStats(d) : RenderStatus(d);
        });
        if (!live) return exit;
      }
      if (count > 0 && n + 1 >= count) return kExitOk;
      std::this_thread::sleep_for(std::chrono::milliseconds(absl::ToInt64Milliseconds(refresh)));
    }
  }

  if (lookup->parsed()) {
    std::variant<json, int> r =
        Call(g, {{"cmd", "lookup"}, {"vip", vip}, {"proto", proto}, {"src", src}, {"sport", sport}},
             idle, false);
    if (std::holds_alternative<int>(r)) return std::get<int>(r);
    return Finish(g, std::get<json>(r), [](const json& d) {
      return d.contains("backend") ? RenderLookup(d) : std::string();
    });
  }

  if (backend->parsed()) {
    std::string action = drain->parsed() ? "drain" : undrain->parsed() ? "undrain" : "weight";
    json req = {{"cmd", "backend"},
                {"action", action},
                {"vip", vip},
                {"backend", backend_arg},
                {"force", backend_force}};
    if (action == "weight") req["weight"] = weight;
    std::variant<json, int> r = Call(g, req, idle, false);
    if (std::holds_alternative<int>(r)) return std::get<int>(r);
    return Finish(g, std::get<json>(r), [](const json& d) {
      return d.contains("plan") && d.value("generation", 0) == 0 ? RenderPlan(d["plan"])
                                                                 : std::string();
    });
  }
  return kExitUsage;
}

}  // namespace fulcrum::controlplane
