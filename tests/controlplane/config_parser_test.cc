// ConfigParser: a valid config parses to the values it says; each of many broken configs is
// rejected with the path of what is wrong; every error of a config is reported at once.
#include "controlplane/config_parser.h"

#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fulcrum::controlplane {
namespace {

using ::testing::HasSubstr;

constexpr char kGood[] = R"(dataplane:
  source_ipv4: 10.10.3.2
  source_ipv6: fd00:3::2
  gateway_mac: 02:00:00:00:03:01
  encap: ipip
  gue_port: 6080
  mtu: 1600
  hash_key: 0123456789abcdef0123456789abcdef
watch:
  window_ms: 2000
vips:
  - name: web
    address: 10.10.0.100
    port: 80
    protocol: tcp
    table_size: 65537
    fragments: drop
    backends:
      - { address: 10.10.2.11, weight: 1, state: active, capacity_cps: 5000 }
      - { address: 10.10.2.12 }
      - { address: 10.10.2.13 }
    health_check: { type: http, port: 80, path: /, interval_ms: 1000, timeout_ms: 500, rise: 2, fall: 3 }
    guards:
      max_backend_share: 0.5
      max_moved_fraction: 0.3
      min_healthy: 0.5
  - name: dns
    address: fd00::53
    port: 53
    protocol: udp
    table_size: 251
    backends:
      - { address: fd00:2::1 }
      - { address: fd00:2::2 }
)";

std::string ReplaceAll(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
  return s;
}

std::string Edit(const std::string& from, const std::string& to) {
  const std::string good = kGood;
  const std::string out = ReplaceAll(good, from, to);
  EXPECT_NE(out, good) << "the edit '" << from << "' matched nothing";
  return out;
}

TEST(ConfigParser, GoodConfigParsesToItsValues) {
  const ParsedConfig p = ParseConfig(kGood);
  ASSERT_TRUE(p.ok()) << FormatErrors("good", p.errors);
  const Config& c = p.config;
  EXPECT_EQ(c.dataplane.mtu, 1600);
  EXPECT_EQ(c.dataplane.gateway_mac[5], 0x01);
  EXPECT_EQ(c.dataplane.hash_key[0], 0x01);
  EXPECT_EQ(c.dataplane.hash_key[15], 0xef);
  ASSERT_EQ(c.vips.size(), 2u);
  EXPECT_EQ(c.vips[0].name, "web");
  EXPECT_EQ(c.vips[0].backends.size(), 3u);
  EXPECT_EQ(c.vips[0].backends[0].capacity_cps, 5000);
  EXPECT_FALSE(c.vips[0].backends[1].capacity_cps.has_value());
  EXPECT_EQ(c.vips[0].health_check.type, CheckType::kHttp);
  EXPECT_EQ(c.vips[0].guards.max_moved_fraction, 0.3);
  EXPECT_EQ(c.vips[1].proto, 17);
  EXPECT_TRUE(c.vips[1].address.v6);
  EXPECT_EQ(c.vips[1].guards.min_healthy, 0.5);  // the default
}

TEST(ConfigParser, JsonIsAcceptedAsYaml) {
  const ParsedConfig p = ParseConfig(R"({"dataplane": {"source_ipv4": "10.0.0.1",
      "gateway_mac": "02:00:00:00:00:01", "hash_key": "0123456789abcdef0123456789abcdef"},
      "vips": [{"name": "a", "address": "10.0.0.100", "port": 80,
                "backends": [{"address": "10.0.1.1"}]}]})");
  EXPECT_TRUE(p.ok()) << FormatErrors("json", p.errors);
}

TEST(ConfigParser, ThroughTunnelParses) {
  const ParsedConfig p = ParseConfig(Edit("fall: 3 }", "fall: 3, through_tunnel: true }"));
  ASSERT_TRUE(p.errors.empty()) << p.errors[0].message;
  EXPECT_TRUE(p.config.vips[0].health_check.through_tunnel);
  EXPECT_FALSE(ParseConfig(kGood).config.vips[0].health_check.through_tunnel);
}

struct BadCase {
  std::string name;
  std::string yaml;
  std::string path;       // the error that must be reported
  std::string substring;  // in its message
};

std::string ManyVips(int n) {
  std::string s = R"(dataplane:
  source_ipv4: 10.10.3.2
  gateway_mac: 02:00:00:00:03:01
  hash_key: 0123456789abcdef0123456789abcdef
vips:
)";
  for (int i = 0; i < n; ++i) {
    s += absl::StrFormat(
        "  - { name: v%d, address: 10.%d.%d.1, port: 80, table_size: 251, backends: [{ address: "
        "10.200.0.1 }] }\n",
        i, i / 256, i % 256);
  }
  return s;
}

std::string ManyBackends(int vips, int per_vip, uint32_t table_size) {
  std::string s = R"(dataplane:
  source_ipv4: 10.10.3.2
  gateway_mac: 02:00:00:00:03:01
  hash_key: 0123456789abcdef0123456789abcdef
vips:
)";
  for (int v = 0; v < vips; ++v) {
    s += absl::StrFormat(
        "  - name: v%d\n    address: 10.0.0.%d\n    port: 80\n    table_size: %d\n"
        "    backends:\n",
        v, v + 1, table_size);
    for (int b = 0; b < per_vip; ++b) {
      s += absl::StrFormat("      - { address: 10.%d.%d.%d }\n", 100 + v, b / 256, b % 256);
    }
  }
  return s;
}

std::vector<BadCase> BadCases() {
  return {
      {"UnknownTopLevelKey", std::string(kGood) + "extra: 1\n", "extra", "unknown key"},
      {"MisspelledKeyGetsASuggestion", Edit("  mtu: 1600", "  mtuu: 1600"), "dataplane.mtuu",
       "did you mean 'mtu'"},
      {"SourceIpv4NotAnAddress", Edit("10.10.3.2", "10.10.3.256"), "dataplane.source_ipv4",
       "IPv4 or IPv6 address"},
      {"SourceIpv4IsIpv6", Edit("source_ipv4: 10.10.3.2", "source_ipv4: fd00::1"),
       "dataplane.source_ipv4", "IPv6"},
      {"SourceIpv6IsIpv4", Edit("source_ipv6: fd00:3::2", "source_ipv6: 10.0.0.1"),
       "dataplane.source_ipv6", "IPv4"},
      {"GatewayMacMalformed", Edit("02:00:00:00:03:01", "02:00:00:00:03"), "dataplane.gateway_mac",
       "six hex pairs"},
      {"GatewayMacMulticast", Edit("02:00:00:00:03:01", "03:00:00:00:03:01"),
       "dataplane.gateway_mac", "multicast"},
      {"GatewayMacZero", Edit("02:00:00:00:03:01", "00:00:00:00:00:00"), "dataplane.gateway_mac",
       "all zeros"},
      {"GatewayMacMissing", Edit("  gateway_mac: 02:00:00:00:03:01\n", ""), "dataplane.gateway_mac",
       "is required"},
      {"EncapUnknown", Edit("encap: ipip", "encap: vxlan"), "dataplane.encap", "one of ipip, gue"},
      {"GuePortZero", Edit("gue_port: 6080", "gue_port: 0"), "dataplane.gue_port", "1 to 65535"},
      {"MtuTooSmall", Edit("mtu: 1600", "mtu: 500"), "dataplane.mtu", "576 to 9216"},
      {"MtuQuoted", Edit("mtu: 1600", "mtu: \"1600\""), "dataplane.mtu", "without quotes"},
      {"TtlZero", Edit("  mtu: 1600\n", "  mtu: 1600\n  ttl: 0\n"), "dataplane.ttl", "1 to 255"},
      {"HashKeyTooShort", Edit("0123456789abcdef0123456789abcdef", "0123"), "dataplane.hash_key",
       "32 hex digits"},
      {"HashKeyNotHex",
       Edit("0123456789abcdef0123456789abcdef", "0123456789abcdefg123456789abcdef"),
       "dataplane.hash_key", "32 hex digits"},
      {"HashKeyAllZeros", Edit("0123456789abcdef0123456789abcdef", std::string(32, '0')),
       "dataplane.hash_key", "all zeros"},
      {"HashKeyMissing", Edit("  hash_key: 0123456789abcdef0123456789abcdef\n", ""),
       "dataplane.hash_key", "is required"},
      {"ClosingTimeoutAboveTcpTimeout",
       Edit("  mtu: 1600\n", "  mtu: 1600\n  tcp_timeout_s: 10\n  tcp_closing_timeout_s: 20\n"),
       "dataplane.tcp_closing_timeout_s", "must not exceed tcp_timeout_s"},
      {"UdpTimeoutZero", Edit("  mtu: 1600\n", "  mtu: 1600\n  udp_timeout_s: 0\n"),
       "dataplane.udp_timeout_s", "1 to 86400"},
      {"WatchImbalanceNotAboveOne", Edit("  window_ms: 2000\n", "  max_imbalance: 1\n"),
       "watch.max_imbalance", "above 1"},
      {"WatchWindowTooShort", Edit("window_ms: 2000", "window_ms: 10"), "watch.window_ms",
       "200 to 600000"},
      {"VipsNotAList",
       "dataplane:\n  source_ipv4: 10.0.0.1\n  gateway_mac: 02:00:00:00:00:01\n"
       "  hash_key: 0123456789abcdef0123456789abcdef\nvips: { web: 1 }\n",
       "vips", "must be a list"},
      {"VipsMissing",
       "dataplane:\n  source_ipv4: 10.0.0.1\n  gateway_mac: 02:00:00:00:00:01\n"
       "  hash_key: 0123456789abcdef0123456789abcdef\n",
       "vips", "is required"},
      {"VipEntryNotAMapping", Edit("  - name: dns\n", "  - 7\n  - name: dns\n"), "vips[1]",
       "must be a mapping"},
      {"VipNameInvalid", Edit("name: web", "name: -web"), "vips[0].name", "not a valid VIP name"},
      {"VipNameTooLong", Edit("name: web", "name: web-frontend-number-1"), "vips[0].name",
       "1 to 16"},
      {"VipNameDuplicate", Edit("name: dns", "name: web"), "vips[1].name", "already the name"},
      {"VipServiceDuplicate",
       Edit("    address: fd00::53\n    port: 53\n    protocol: udp\n",
            "    address: 10.10.0.100\n    port: 80\n    protocol: tcp\n"),
       "vips[1]", "is already vips[0]"},
      {"VipAddressInvalid", Edit("address: 10.10.0.100", "address: 10.10.0"), "vips[0].address",
       "IPv4 or IPv6 address"},
      {"VipAddressMulticast", Edit("address: 10.10.0.100", "address: 224.0.0.1"), "vips[0].address",
       "multicast"},
      {"VipAddressIsAPrefix", Edit("address: 10.10.0.100", "address: 10.10.0.0/24"),
       "vips[0].address", "not a prefix"},
      {"VipPortZero", Edit("    port: 80\n", "    port: 0\n"), "vips[0].port", "1 to 65535"},
      {"VipPortTooLarge", Edit("    port: 80\n", "    port: 70000\n"), "vips[0].port",
       "1 to 65535"},
      {"VipPortNotANumber", Edit("    port: 80\n", "    port: http\n"), "vips[0].port", "integer"},
      {"VipPortMissing", Edit("    port: 80\n", ""), "vips[0].port", "is required"},
      {"ProtocolUnknown", Edit("protocol: tcp", "protocol: sctp"), "vips[0].protocol",
       "one of tcp, udp"},
      {"TableSizeNotPrime", Edit("table_size: 65537", "table_size: 65536"), "vips[0].table_size",
       "not prime"},
      {"TableSizeOutOfRange", Edit("table_size: 65537", "table_size: 100"), "vips[0].table_size",
       "from 251"},
      {"TableSizeTooSmallForBackends", Edit("table_size: 65537", "table_size: 251"),
       "vips[0].table_size", "at least 100 slots per backend"},
      {"FragmentsUnknown", Edit("fragments: drop", "fragments: reassemble"), "vips[0].fragments",
       "one of drop, hash-addresses"},
      {"BackendsMissing",
       Edit("    backends:\n      - { address: 10.10.2.11",
            "    servers:\n      - { address: 10.10.2.11"),
       "vips[0].backends", "is required"},
      {"BackendsEmpty",
       Edit("      - { address: fd00:2::1 }\n      - { address: fd00:2::2 }\n", "")
           .append("    backends: []\n"),
       "vips[1].backends", "is empty"},
      {"NoActiveBackend",
       Edit("      - { address: fd00:2::1 }\n      - { address: fd00:2::2 }\n",
            "      - { address: fd00:2::1, state: draining }\n"
            "      - { address: fd00:2::2, state: disabled }\n"),
       "vips[1].backends", "no active backend"},
      {"BackendEntryNotAMapping", Edit("      - { address: 10.10.2.12 }", "      - 10.10.2.12"),
       "vips[0].backends[1]", "must be a mapping"},
      {"BackendAddressInvalid", Edit("{ address: 10.10.2.12 }", "{ address: backend-2 }"),
       "vips[0].backends[1].address", "IPv4 or IPv6 address"},
      {"BackendAddressMissing", Edit("{ address: 10.10.2.12 }", "{ weight: 2 }"),
       "vips[0].backends[1].address", "is required"},
      {"BackendDuplicate", Edit("{ address: 10.10.2.13 }", "{ address: 10.10.2.11 }"),
       "vips[0].backends[2]", "already backends[0]"},
      {"BackendWeightZero", Edit("weight: 1, state", "weight: 0, state"),
       "vips[0].backends[0].weight", "state: draining"},
      {"BackendWeightTooLarge", Edit("weight: 1, state", "weight: 70000, state"),
       "vips[0].backends[0].weight", "1 to 65535"},
      {"BackendWeightNegative", Edit("weight: 1, state", "weight: -1, state"),
       "vips[0].backends[0].weight", "1 to 65535"},
      {"BackendWeightNotANumber", Edit("weight: 1, state", "weight: heavy, state"),
       "vips[0].backends[0].weight", "integer"},
      {"BackendStateUnknown", Edit("state: active", "state: up"), "vips[0].backends[0].state",
       "one of active, draining, disabled"},
      {"BackendCapacityZero", Edit("capacity_cps: 5000", "capacity_cps: 0"),
       "vips[0].backends[0].capacity_cps", "above 0"},
      {"BackendCapacityNegative", Edit("capacity_cps: 5000", "capacity_cps: -5"),
       "vips[0].backends[0].capacity_cps", "above 0"},
      {"BackendUnknownKey", Edit("{ address: 10.10.2.12 }", "{ address: 10.10.2.12, wieght: 2 }"),
       "vips[0].backends[1].wieght", "did you mean 'weight'"},
      {"BackendPortTooLarge",
       Edit("{ address: 10.10.2.12 }", "{ address: 10.10.2.12, port: 70000 }"),
       "vips[0].backends[1].port", "0 to 65535"},
      {"HealthCheckTypeUnknown", Edit("type: http", "type: icmp"), "vips[0].health_check.type",
       "one of none, tcp, http"},
      {"HealthCheckTimeoutNotBelowInterval", Edit("timeout_ms: 500", "timeout_ms: 1000"),
       "vips[0].health_check.timeout_ms", "below interval_ms"},
      {"HealthCheckIntervalTooShort", Edit("interval_ms: 1000", "interval_ms: 10"),
       "vips[0].health_check.interval_ms", "100 to 3600000"},
      {"HealthCheckRiseZero", Edit("rise: 2", "rise: 0"), "vips[0].health_check.rise", "1 to 100"},
      {"HealthCheckThroughTunnelNotABool", Edit("fall: 3 }", "fall: 3, through_tunnel: yes }"),
       "vips[0].health_check.through_tunnel", "one of false, true"},
      {"HealthCheckThroughTunnelWithSoMark",
       Edit("fall: 3 }", "fall: 3, so_mark: 7, through_tunnel: true }"),
       "vips[0].health_check.so_mark", "through_tunnel"},
      {"HealthCheckPathWithoutSlash", Edit("path: /,", "path: health,"),
       "vips[0].health_check.path", "starting with '/'"},
      {"HealthCheckPathOnTcp", Edit("type: http", "type: tcp"), "vips[0].health_check.path",
       "type http only"},
      {"HealthCheckExpectStatusOutOfRange",
       Edit("fall: 3 }", "fall: 3, expect_status: [200, 700] }"),
       "vips[0].health_check.expect_status[1]", "100 to 599"},
      {"HealthCheckConflictsAcrossVips",
       Edit("      - { address: fd00:2::1 }\n      - { address: fd00:2::2 }\n",
            "      - { address: 10.10.2.11, port: 80 }\n      - { address: fd00:2::2 }\n"
            "    health_check: { type: tcp, port: 80 }\n"),
       "vips[1].health_check", "probes 10.10.2.11:80"},
      {"GuardShareZero", Edit("max_backend_share: 0.5", "max_backend_share: 0"),
       "vips[0].guards.max_backend_share", "above 0"},
      {"GuardShareAboveOne", Edit("max_backend_share: 0.5", "max_backend_share: 1.5"),
       "vips[0].guards.max_backend_share", "at most 1"},
      {"GuardMinHealthyAboveOne", Edit("min_healthy: 0.5", "min_healthy: 2"),
       "vips[0].guards.min_healthy", "at most 1"},
      {"GuardUnknown", Edit("min_healthy: 0.5", "min_healthy: 0.5\n      max_share: 0.5"),
       "vips[0].guards.max_share", "unknown key"},
      {"Ipv6VipWithIpv4BackendUnderIpip", Edit("{ address: fd00:2::1 }", "{ address: 10.9.9.9 }"),
       "vips[1].backends[0].address", "IPIP cannot carry IPv6 in IPv4"},
      {"Ipv6BackendsNeedSourceIpv6", Edit("  source_ipv6: fd00:3::2\n", ""),
       "dataplane.source_ipv6", "is required"},
      {"RepeatedKey", Edit("  mtu: 1600\n", "  mtu: 1600\n  mtu: 1500\n"), "dataplane.mtu",
       "appears twice"},
      {"YamlSyntaxError",
       Edit("    backends:\n      - { address: 10.10.2.11",
            "    backends:\n      - { address: [10.10.2.11"),
       "", "not valid YAML"},
      {"EmptyFile", "", "", "is empty"},
      {"TopLevelNotAMapping", "- a\n- b\n", "", "must be a mapping"},
      {"MoreVipsThanTheSegmentHolds", ManyVips(1025), "vips", "at most 1024"},
      {"MoreBackendsPerVipThanTheSegmentHolds", ManyBackends(1, 4097, 409711), "vips[0].backends",
       "at most 4096"},
      {"MoreBackendsThanTheSegmentHolds", ManyBackends(5, 4000, 400009), "vips[4].backends",
       "at most 16384"},
      {"MoreTableSlotsThanTheSegmentHolds", ManyBackends(3, 1, 16777213), "vips[2].table_size",
       "at most 33554432"},
  };
}

class BadConfig : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadConfig, IsRejectedWithThePathOfTheError) {
  const BadCase& c = GetParam();
  const ParsedConfig p = ParseConfig(c.yaml);
  ASSERT_FALSE(p.ok()) << c.name << " was accepted";
  bool found = false;
  for (const ConfigError& e : p.errors) {
    if (e.path == c.path && e.message.find(c.substring) != std::string::npos) found = true;
  }
  EXPECT_TRUE(found) << "want an error at '" << c.path << "' containing '" << c.substring
                     << "', got:\n"
                     << FormatErrors(c.name, p.errors);
}

std::string CaseName(const ::testing::TestParamInfo<BadCase>& param) { return param.param.name; }

INSTANTIATE_TEST_SUITE_P(Cases, BadConfig, ::testing::ValuesIn(BadCases()), CaseName);

TEST(ConfigParser, ThereAreAtLeastFortyBadConfigs) { EXPECT_GE(BadCases().size(), 40u); }

TEST(ConfigParser, EveryErrorIsReportedAtOnce) {
  std::string yaml = Edit("mtu: 1600", "mtu: 5");
  yaml = ReplaceAll(yaml, "weight: 1, state", "weight: 0, state");
  yaml = ReplaceAll(yaml, "protocol: udp", "protocol: icmp");
  yaml = ReplaceAll(yaml, "min_healthy: 0.5", "min_healthy: 3");
  const ParsedConfig p = ParseConfig(yaml);
  std::vector<std::string> paths;
  for (const ConfigError& e : p.errors) paths.push_back(e.path);
  EXPECT_THAT(paths,
              ::testing::UnorderedElementsAre("dataplane.mtu", "vips[0].backends[0].weight",
                                              "vips[1].protocol", "vips[0].guards.min_healthy"));
}

TEST(ConfigParser, ErrorsCarryTheirLine) {
  const ParsedConfig p = ParseConfig(Edit("weight: 1, state", "weight: 0, state"));
  ASSERT_EQ(p.errors.size(), 1u);
  EXPECT_EQ(p.errors[0].line, 19);  // the backend's line in kGood
  EXPECT_THAT(FormatErrors("c.yaml", p.errors), HasSubstr("c.yaml:19: vips[0].backends[0].weight"));
}

TEST(ConfigParser, ASharedBackendWithIdenticalChecksIsAccepted) {
  // GUE: the IPv6 VIP then may have an IPv4 backend.
  const ParsedConfig p = ParseConfig(ReplaceAll(
      Edit("      - { address: fd00:2::1 }\n      - { address: fd00:2::2 }\n",
           "      - { address: 10.10.2.11 }\n      - { address: fd00:2::2 }\n"
           "    health_check: { type: http, port: 80, path: /, interval_ms: 1000, timeout_ms: "
           "500, rise: 2, fall: 3 }\n"),
      "encap: ipip", "encap: gue"));
  EXPECT_TRUE(p.ok()) << FormatErrors("shared", p.errors);
}

}  // namespace
}  // namespace fulcrum::controlplane
