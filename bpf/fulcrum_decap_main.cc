// fulcrum-decap: attaches, detaches and reports the backend decapsulator on an interface.
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bpf/counters.h"
#include "bpf/decap.h"
#include "bpf/kernel.h"

namespace fulcrum::bpf {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNotAttached = 3;

constexpr char kUsage[] = R"(Usage:
  fulcrum-decap attach IFACE [--mode xdp|tc] --address ADDR [ADDR ...] [--gue-port PORT]
  fulcrum-decap detach IFACE [--mode xdp|tc]
  fulcrum-decap status IFACE
  fulcrum-decap --help
)";

constexpr char kHelp[] = R"(
Strips Fulcrum's encapsulation from packets that reach this backend, so that the service bound
to the VIP sees the client's packet and answers the client directly. Decapsulates IPv4-in-IPv4,
IPv6-in-IPv6, IPv4-in-IPv6 and GUE (UDP to PORT carrying the inner IP packet) whose outer
destination is one of ADDR; every other packet passes untouched.

Commands:
  attach   Load the decapsulator with these settings and attach it to IFACE. Replaces a
           fulcrum-decap program already there (in either mode: one is left), never another
           program. The attachment stays after this command exits.
  detach   Remove fulcrum-decap from IFACE (the given mode, or both).
  status   Show the attached decapsulator: mode, program id, addresses, GUE port, counters.
           Exits 3 when none is attached.

Options:
  --mode xdp|tc     xdp (default): native XDP, before the kernel allocates an skb.
                    tc: clsact ingress, for drivers without native XDP.
  --address ADDR    This backend's own address (IPv4 or IPv6) that the load balancer sends the
                    tunnel to; not the VIP. Repeat it, or list several after one --address.
  --gue-port PORT   UDP port of GUE: the load balancer's encap.gue_port (default 0: no GUE).

The backend also needs the VIP on lo, rp_filter off and arp_ignore/arp_announce set (README,
"Backends: decapsulation"). Counters and their meaning: docs/bpf.md. Needs root.
)";

struct Args {
  std::string command;
  std::string iface;
  std::optional<DecapMode> mode;
  DecapConfig config;
};

int Usage(const std::string& error) {
  std::fprintf(stderr, "fulcrum-decap: %s\n%s", error.c_str(), kUsage);
  return kExitUsage;
}

// Returns an exit code when parsing ends the program (help, or a usage error).
std::optional<int> ParseArgs(int argc, char** argv, Args& args) {
  std::vector<std::string_view> a(argv + 1, argv + argc);
  for (std::string_view s : a) {
    if (s == "--help" || s == "-h") {
      std::printf("%s%s", kUsage, kHelp);
      return kExitOk;
    }
  }
  if (a.size() < 2) return Usage("a command and an interface are needed");
  args.command = std::string(a[0]);
  if (args.command != "attach" && args.command != "detach" && args.command != "status") {
    return Usage(absl::StrFormat("unknown command '%s'", args.command));
  }
  args.iface = std::string(a[1]);
  for (size_t i = 2; i < a.size(); ++i) {
    std::string_view opt = a[i];
    std::optional<std::string_view> inline_value;
    if (const size_t eq = opt.find('='); eq != std::string_view::npos) {
      inline_value = opt.substr(eq + 1);
      opt = opt.substr(0, eq);
    }
    auto value = [&]() -> std::optional<std::string_view> {
      if (inline_value.has_value()) return inline_value;
      if (i + 1 < a.size()) return a[++i];
      return std::nullopt;
    };
    if (opt == "--mode") {
      const std::optional<std::string_view> v = value();
      if (!v.has_value()) return Usage("--mode needs xdp or tc");
      args.mode = ParseDecapMode(*v);
      if (!args.mode.has_value()) return Usage(absl::StrFormat("--mode %s: xdp or tc", *v));
    } else if (opt == "--address") {
      std::vector<std::string_view> texts;
      if (inline_value.has_value()) {
        for (absl::string_view t :
             absl::StrSplit(std::string(*inline_value), ',', absl::SkipEmpty())) {
          texts.emplace_back(t.data(), t.size());
        }
      }
      while (i + 1 < a.size() && !a[i + 1].starts_with("--")) texts.push_back(a[++i]);
      if (texts.empty()) return Usage("--address needs at least one address");
      for (std::string_view t : texts) {
        absl::StatusOr<IpAddress> ip = IpAddress::Parse(t);
        if (!ip.ok()) return Usage(absl::StrFormat("--address: %s", ip.status().message()));
        args.config.addresses.push_back(*ip);
      }
    } else if (opt == "--gue-port") {
      const std::optional<std::string_view> v = value();
      uint32_t port = 0;
      if (!v.has_value() || !absl::SimpleAtoi(std::string(*v), &port) || port > 65535) {
        return Usage("--gue-port needs a port number 1..65535 (0: no GUE)");
      }
      args.config.gue_port = static_cast<uint16_t>(port);
    } else {
      return Usage(absl::StrFormat("unknown option '%s'", a[i]));
    }
  }
  if (args.command != "attach" && (!args.config.addresses.empty() || args.config.gue_port != 0)) {
    return Usage(absl::StrFormat("%s takes no --address or --gue-port", args.command));
  }
  if (args.command == "status" && args.mode.has_value()) return Usage("status takes no --mode");
  if (args.command == "attach" && args.config.addresses.empty()) {
    return Usage("attach needs --address: this backend's own address(es), not the VIP");
  }
  return std::nullopt;
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "fulcrum-decap: %s\n", std::string(s.message()).c_str());
  return kExitError;
}

std::string Addresses(const DecapConfig& config) {
  std::string out;
  for (const IpAddress& ip : config.addresses) {
    if (!out.empty()) out += ' ';
    out += ip.ToString();
  }
  return out;
}

int Attach(const Args& args, int ifindex) {
  const DecapMode mode = args.mode.value_or(DecapMode::kXdp);
  absl::StatusOr<DecapProgram> program = DecapProgram::Load(mode, args.config);
  if (!program.ok()) return Fail(program.status());
  if (absl::Status s = program->Attach(ifindex); !s.ok()) {
    return Fail(absl::Status(s.code(), absl::StrFormat("%s: %s", args.iface, s.message())));
  }
  // One decapsulator per interface: switching modes removes the other one.
  const DecapMode other = mode == DecapMode::kXdp ? DecapMode::kTc : DecapMode::kXdp;
  if (absl::Status s = DetachDecap(ifindex, other);
      !s.ok() && !absl::IsNotFound(s) && !absl::IsFailedPrecondition(s)) {
    return Fail(s);
  }
  std::printf(
      "fulcrum-decap: %s: attached (%s), addresses %s, GUE %s\n", args.iface.c_str(),
      std::string(DecapModeName(mode)).c_str(), Addresses(args.config).c_str(),
      args.config.gue_port == 0 ? "off" : absl::StrCat("port ", args.config.gue_port).c_str());
  return kExitOk;
}

int Detach(const Args& args, int ifindex) {
  int detached = 0;
  for (DecapMode mode : {DecapMode::kXdp, DecapMode::kTc}) {
    if (args.mode.has_value() && mode != *args.mode) continue;
    absl::Status s = DetachDecap(ifindex, mode);
    if (absl::IsNotFound(s)) continue;
    if (!s.ok()) return Fail(s);
    std::printf("fulcrum-decap: %s: detached (%s)\n", args.iface.c_str(),
                std::string(DecapModeName(mode)).c_str());
    ++detached;
  }
  if (detached == 0) {
    std::fprintf(stderr, "fulcrum-decap: %s: no fulcrum-decap program to detach\n",
                 args.iface.c_str());
    return kExitNotAttached;
  }
  return kExitOk;
}

int Status(const Args& args, int ifindex) {
  absl::StatusOr<std::vector<DecapAttachment>> attached = QueryDecap(ifindex);
  if (!attached.ok()) return Fail(attached.status());
  if (attached->empty()) {
    std::printf("%s: no fulcrum-decap program attached\n", args.iface.c_str());
    return kExitNotAttached;
  }
  for (const DecapAttachment& a : *attached) {
    const CounterValues& c = a.counters;
    std::printf("%s: fulcrum-decap %s, program %u\n", args.iface.c_str(),
                std::string(DecapModeName(a.mode)).c_str(), a.prog_id);
    std::printf("  addresses: %s\n", Addresses(a.config).c_str());
    std::printf("  gue port:  %s\n",
                a.config.gue_port == 0 ? "off" : absl::StrCat(a.config.gue_port).c_str());
    std::printf(
        "  decapsulated %llu, passed %llu, dropped %llu packets\n",
        static_cast<unsigned long long>(c.PacketsIn(FULCRUM_DECAP_4IN4, FULCRUM_DECAP_GUE6)),
        static_cast<unsigned long long>(
            c.PacketsIn(FULCRUM_DECAP_PASS_NOT_IP, FULCRUM_DECAP_PASS_IPV6_EXT)),
        static_cast<unsigned long long>(
            c.PacketsIn(FULCRUM_DECAP_DROP_TRUNCATED_INNER, FULCRUM_DECAP_DROP_ERROR)));
    for (const CounterDef& def : kDecapCounters) {
      const fulcrum_counter& v = c.values[static_cast<size_t>(def.value)];
      std::printf("  %-22s %12llu packets %14llu bytes\n", std::string(def.name).c_str(),
                  static_cast<unsigned long long>(v.packets),
                  static_cast<unsigned long long>(v.bytes));
    }
  }
  return kExitOk;
}

int Main(int argc, char** argv) {
  Args args;
  if (std::optional<int> exit = ParseArgs(argc, argv, args); exit.has_value()) return *exit;
  absl::StatusOr<int> ifindex = InterfaceIndex(args.iface);
  if (!ifindex.ok()) return Fail(ifindex.status());
  if (args.command == "attach") return Attach(args, *ifindex);
  if (args.command == "detach") return Detach(args, *ifindex);
  return Status(args, *ifindex);
}

}  // namespace
}  // namespace fulcrum::bpf

int main(int argc, char** argv) { return fulcrum::bpf::Main(argc, argv); }
