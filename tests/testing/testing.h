// Helpers shared by the test suites: hex bytes, 5-tuples from text, the scapy packet fixtures.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "dataplane/core/ip_address.h"
#include "nlohmann/json.hpp"

namespace fulcrum::testing {

inline std::vector<uint8_t> FromHex(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoul(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

inline std::string ToHex(const uint8_t* data, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += kDigits[data[i] >> 4];
    s += kDigits[data[i] & 0xf];
  }
  return s;
}

// The tuple src:sport -> dst:dport over proto; the addresses must parse (a test's own text).
inline FlowTuple Tuple(const std::string& src, const std::string& dst, uint16_t sport,
                       uint16_t dport, uint8_t proto) {
  FlowTuple t;
  const IpAddress s = IpAddress::Parse(src).value();
  const IpAddress d = IpAddress::Parse(dst).value();
  t.src = s.bytes;
  t.dst = d.bytes;
  t.v6 = s.v6;
  t.src_port = sport;
  t.dst_port = dport;
  t.proto = proto;
  return t;
}

// tests/fixtures/make_packets.py's output, at the path meson test puts in
// FULCRUM_PACKET_FIXTURES; an empty object when it is not there (tests then fail with
// REQUIRE_PACKET_FIXTURES's message, never pass vacuously).
inline const nlohmann::json& PacketFixtures() {
  static const nlohmann::json* fixtures = [] {
    const char* path = std::getenv("FULCRUM_PACKET_FIXTURES");
    if (path == nullptr) return new nlohmann::json(nlohmann::json::object());
    std::ifstream in(path);
    return new nlohmann::json(in ? nlohmann::json::parse(in) : nlohmann::json::object());
  }();
  return *fixtures;
}

}  // namespace fulcrum::testing

// Every test that reads the fixture table `section` ("parse", "encap"...) starts with this.
#define REQUIRE_PACKET_FIXTURES(section)                                  \
  ASSERT_TRUE(::fulcrum::testing::PacketFixtures().contains(section))     \
      << "run through meson test, which sets FULCRUM_PACKET_FIXTURES to " \
         "the generated JSON"
