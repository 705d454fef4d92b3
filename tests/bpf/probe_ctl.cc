// probe_ctl: attaches the probe program to an interface for the length of one command, with one
// mark -> backend target, then prints the probe counters. For probe_netns_test.sh.
//
//   probe_ctl IFACE MARK BACKEND ipip|gue SRC_MAC GATEWAY_MAC SOURCE_V4 SOURCE_V6 GUE_PORT --
//   CMD...
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "bpf/counters.h"
#include "bpf/kernel.h"
#include "bpf/probe.h"

namespace {

int Fail(const std::string& what) {
  std::fprintf(stderr, "probe_ctl: %s\n", what.c_str());
  return 2;
}

bool ParseMac(const std::string& text, fulcrum::MacAddress& mac) {
  const std::optional<fulcrum::MacAddress> parsed = fulcrum::ParseMac(text);
  if (parsed.has_value()) mac = *parsed;
  return parsed.has_value();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 12 || std::string(argv[10]) != "--") {
    return Fail("usage: IFACE MARK BACKEND ipip|gue SRC_MAC GW_MAC SRC4 SRC6 GUE_PORT -- CMD...");
  }
  fulcrum::EncapConfig config;
  if (!ParseMac(argv[5], config.src_mac) || !ParseMac(argv[6], config.gateway_mac)) {
    return Fail("bad MAC address");
  }
  config.type =
      std::string(argv[4]) == "gue" ? fulcrum::EncapType::kGue : fulcrum::EncapType::kIpip;
  config.source_v4 = fulcrum::IpAddress::Parse(argv[7]).value();
  config.source_v6 = fulcrum::IpAddress::Parse(argv[8]).value();
  config.gue_port = static_cast<uint16_t>(std::stoul(argv[9]));
  const uint32_t mark = static_cast<uint32_t>(std::stoul(argv[2], nullptr, 0));
  const absl::StatusOr<fulcrum::IpAddress> backend = fulcrum::IpAddress::Parse(argv[3]);
  if (!backend.ok()) return Fail(std::string(backend.status().message()));

  const absl::StatusOr<int> ifindex = fulcrum::bpf::InterfaceIndex(argv[1]);
  if (!ifindex.ok()) return Fail(std::string(ifindex.status().message()));
  absl::StatusOr<fulcrum::bpf::ProbeEncap> probe = fulcrum::bpf::ProbeEncap::Attach(*ifindex);
  if (!probe.ok()) return Fail(std::string(probe.status().message()));
  if (absl::Status s = probe->SetTarget(mark, config, *backend); !s.ok()) {
    return Fail(std::string(s.message()));
  }

  const pid_t child = fork();
  if (child == 0) {
    execvp(argv[11], argv + 11);
    std::perror("execvp");
    _exit(127);
  }
  int status = 0;
  waitpid(child, &status, 0);
  const absl::StatusOr<fulcrum::bpf::CounterValues> counters = probe->Counters();
  if (!counters.ok()) return Fail(std::string(counters.status().message()));
  for (const fulcrum::bpf::CounterDef& def : fulcrum::bpf::kProbeCounters) {
    std::printf("%s %llu\n", std::string(def.name).c_str(),
                static_cast<unsigned long long>(counters->packets(static_cast<size_t>(def.value))));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
