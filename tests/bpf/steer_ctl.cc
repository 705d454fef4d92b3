// steer_ctl: what fulcrumd does with the steering program after its af_xdp port has started,
// from the command line, for steer_testpmd_test.sh.
//
//   steer_ctl IFACE set [ADDR:PORT/tcp|udp ...]   (IPv6 as [ADDR]:PORT/udp)
//   steer_ctl IFACE counters
#include <cstdio>
#include <string>
#include <vector>

#include "bpf/counters.h"
#include "bpf/kernel.h"
#include "bpf/steer.h"

namespace {

int Fail(const std::string& what) {
  std::fprintf(stderr, "steer_ctl: %s\n", what.c_str());
  return 1;
}

bool ParseVip(const std::string& text, fulcrum::bpf::SteerVip& vip) {
  const size_t slash = text.rfind('/');
  const size_t colon = text.rfind(':', slash);
  if (slash == std::string::npos || colon == std::string::npos) return false;
  std::string addr = text.substr(0, colon);
  if (addr.size() > 2 && addr.front() == '[') addr = addr.substr(1, addr.size() - 2);
  const absl::StatusOr<fulcrum::IpAddress> ip = fulcrum::IpAddress::Parse(addr);
  if (!ip.ok()) return false;
  vip.address = *ip;
  vip.port = static_cast<uint16_t>(std::stoul(text.substr(colon + 1, slash - colon - 1)));
  const std::string proto = text.substr(slash + 1);
  vip.proto = proto == "tcp" ? 6 : proto == "udp" ? 17 : 0;
  return vip.proto != 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return Fail("usage: IFACE set [ADDR:PORT/PROTO ...] | IFACE counters");
  const absl::StatusOr<int> ifindex = fulcrum::bpf::InterfaceIndex(argv[1]);
  if (!ifindex.ok()) return Fail(std::string(ifindex.status().message()));
  absl::StatusOr<fulcrum::bpf::SteerMaps> maps = fulcrum::bpf::SteerMaps::ForInterface(*ifindex);
  if (!maps.ok()) return Fail(std::string(maps.status().message()));
  const std::string command = argv[2];
  if (command == "set") {
    std::vector<fulcrum::bpf::SteerVip> vips;
    for (int i = 3; i < argc; ++i) {
      fulcrum::bpf::SteerVip vip;
      if (!ParseVip(argv[i], vip)) return Fail(std::string("bad VIP ") + argv[i]);
      vips.push_back(vip);
    }
    if (absl::Status s = maps->ReplaceVips(vips); !s.ok()) return Fail(std::string(s.message()));
    std::printf("program %u: %zu VIPs\n", maps->prog_id(), vips.size());
    return 0;
  }
  if (command == "counters") {
    const absl::StatusOr<fulcrum::bpf::CounterValues> c = maps->Counters();
    if (!c.ok()) return Fail(std::string(c.status().message()));
    for (const fulcrum::bpf::CounterDef& def : fulcrum::bpf::kSteerCounters) {
      std::printf("%s %llu\n", std::string(def.name).c_str(),
                  static_cast<unsigned long long>(c->packets(static_cast<size_t>(def.value))));
    }
    return 0;
  }
  return Fail("unknown command " + command);
}
