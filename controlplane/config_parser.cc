// ConfigParser: a schema walk over the YAML tree that records errors instead of stopping at the
// first, then the checks that need the whole config (duplicates, capacities, families).
#include "controlplane/config_parser.h"

#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <span>
#include <sstream>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "dataplane/core/encap.h"
#include "dataplane/core/maglev.h"
#include "dataplane/shm/abi.h"

namespace fulcrum::controlplane {
namespace {

constexpr size_t kMaxConfigBytes = size_t{64} << 20;
constexpr uint32_t kMaxFlowTimeoutS = 86400;
constexpr double kMaxCapacityCps = 1e9;

int LineOf(const YAML::Node& n) {
  if (!n.IsDefined()) return 0;
  const YAML::Mark m = n.Mark();
  return m.line >= 0 ? m.line + 1 : 0;
}

class Checker {
 public:
  void Error(std::string path, int line, std::string message) {
    errors_.push_back({std::move(path), line, std::move(message)});
  }
  void Error(std::string path, const YAML::Node& at, std::string message) {
    Error(std::move(path), LineOf(at), std::move(message));
  }
  size_t count() const { return errors_.size(); }
  std::vector<ConfigError> Take() { return std::move(errors_); }

 private:
  std::vector<ConfigError> errors_;
};

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// " (did you mean 'weight'?)" when one valid word is close to what was written.
std::string Suggestion(std::string_view got, std::span<const std::string_view> valid) {
  std::string_view best;
  size_t best_distance = 3;
  for (std::string_view v : valid) {
    const size_t d = EditDistance(absl::AsciiStrToLower(std::string(got)), v);
    if (d < best_distance && d <= std::max<size_t>(1, v.size() / 3)) {
      best = v;
      best_distance = d;
    }
  }
  return best.empty() ? "" : absl::StrFormat(" (did you mean '%s'?)", best);
}

std::string JoinWords(std::span<const std::string_view> words) {
  std::string out;
  for (std::string_view w : words) {
    if (!out.empty()) out += ", ";
    out += w;
  }
  return out;
}

std::string Describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "nothing";
    case YAML::NodeType::Scalar:
      return n.Tag() == "!" ? absl::StrFormat("the quoted string \"%s\"", n.Scalar())
                            : absl::StrFormat("'%s'", n.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    default:
      return "nothing";
  }
}

std::string Join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

// One YAML mapping of a known schema. Unknown and repeated keys are reported when it is read;
// values are fetched by name.
class Section {
 public:
  Section(Checker& c, const YAML::Node& node, std::string path,
          std::initializer_list<std::string_view> known)
      : c_(c), node_(node), path_(std::move(path)) {
    if (!node.IsMap()) {
      c_.Error(path_, node,
               absl::StrFormat("must be a mapping of 'key: value' lines, got %s", Describe(node)));
      return;
    }
    valid_ = true;
    const std::vector<std::string_view> keys(known);
    std::map<std::string, int> seen;
    for (auto it = node.begin(); it != node.end(); ++it) {
      const YAML::Node key = it->first;  // a copy: the iterator yields a temporary proxy
      if (!key.IsScalar()) {
        c_.Error(path_, key, absl::StrFormat("keys must be plain names, got %s", Describe(key)));
        continue;
      }
      const std::string name = key.Scalar();
      if (auto [pos, inserted] = seen.emplace(name, LineOf(key)); !inserted) {
        c_.Error(Join(path_, name), key,
                 absl::StrFormat("appears twice in this mapping (first on line %d): keep one",
                                 pos->second));
        continue;
      }
      if (std::find(keys.begin(), keys.end(), name) == keys.end()) {
        c_.Error(Join(path_, name), key,
                 absl::StrFormat("unknown key '%s'%s; valid keys here: %s", name,
                                 Suggestion(name, keys), JoinWords(keys)));
        continue;
      }
      values_.emplace(name, it->second);
    }
  }

  bool valid() const { return valid_; }
  int line() const { return LineOf(node_); }
  std::string PathOf(std::string_view key) const { return Join(path_, key); }

  // The key's value; nullopt when absent, or present without a value (reported).
  std::optional<YAML::Node> Value(std::string_view key) const {
    auto it = values_.find(std::string(key));
    if (it == values_.end()) return std::nullopt;
    if (it->second.IsNull()) {
      c_.Error(PathOf(key), it->second,
               "has no value: give one, or remove the key to get its default");
      return std::nullopt;
    }
    return it->second;
  }
  bool Has(std::string_view key) const { return values_.count(std::string(key)) != 0; }
  int LineOfValue(std::string_view key) const {
    auto it = values_.find(std::string(key));
    return it == values_.end() ? line() : LineOf(it->second);
  }
  // Like Value, and an error naming `hint` when the key is absent.
  std::optional<YAML::Node> Required(std::string_view key, std::string_view hint) const {
    if (values_.find(std::string(key)) == values_.end()) {
      c_.Error(PathOf(key), line(), "is required: " + std::string(hint));
      return std::nullopt;
    }
    return Value(key);
  }

 private:
  Checker& c_;
  YAML::Node node_;
  std::string path_;
  bool valid_ = false;
  std::map<std::string, YAML::Node> values_;
};

// --- Scalars ---------------------------------------------------------------------------------

std::optional<int64_t> ReadInt(Checker& c, const YAML::Node& n, const std::string& path,
                               int64_t min, int64_t max) {
  const std::string want = absl::StrFormat("must be an integer from %d to %d", min, max);
  if (!n.IsScalar()) {
    c.Error(path, n, absl::StrFormat("%s, got %s", want, Describe(n)));
    return std::nullopt;
  }
  if (n.Tag() == "!") {
    c.Error(path, n,
            absl::StrFormat("%s, got %s: write the number without quotes", want, Describe(n)));
    return std::nullopt;
  }
  int64_t v = 0;
  if (!absl::SimpleAtoi(n.Scalar(), &v)) {
    c.Error(path, n, absl::StrFormat("%s, got %s", want, Describe(n)));
    return std::nullopt;
  }
  if (v < min || v > max) {
    c.Error(path, n, absl::StrFormat("%s, got %d", want, v));
    return std::nullopt;
  }
  return v;
}

// A number in [min, max], or (min, max] when `min_exclusive`.
std::optional<double> ReadNumber(Checker& c, const YAML::Node& n, const std::string& path,
                                 double min, double max, bool min_exclusive, std::string_view why) {
  const std::string want = absl::StrFormat("must be a number %s %g and at most %g%s",
                                           min_exclusive ? "above" : "from", min, max, why);
  if (!n.IsScalar() || n.Tag() == "!") {
    c.Error(path, n, absl::StrFormat("%s, got %s", want, Describe(n)));
    return std::nullopt;
  }
  double v = 0;
  if (!absl::SimpleAtod(n.Scalar(), &v) || !std::isfinite(v)) {
    c.Error(path, n, absl::StrFormat("%s, got %s", want, Describe(n)));
    return std::nullopt;
  }
  if (v > max || v < min || (min_exclusive && v == min)) {
    c.Error(path, n, absl::StrFormat("%s, got %g", want, v));
    return std::nullopt;
  }
  return v;
}

std::optional<std::string> ReadString(Checker& c, const YAML::Node& n, const std::string& path) {
  if (!n.IsScalar()) {
    c.Error(path, n, absl::StrFormat("must be a text value, got %s", Describe(n)));
    return std::nullopt;
  }
  return n.Scalar();
}

std::optional<size_t> ReadChoice(Checker& c, const YAML::Node& n, const std::string& path,
                                 std::initializer_list<std::string_view> choices) {
  const std::vector<std::string_view> valid(choices);
  if (n.IsScalar()) {
    for (size_t i = 0; i < valid.size(); ++i) {
      if (n.Scalar() == valid[i]) return i;
    }
  }
  c.Error(path, n,
          absl::StrFormat("must be one of %s, got %s%s", JoinWords(valid), Describe(n),
                          n.IsScalar() ? Suggestion(n.Scalar(), valid) : ""));
  return std::nullopt;
}

bool AllZero(const uint8_t* p, size_t n) {
  return std::all_of(p, p + n, [](uint8_t b) { return b == 0; });
}

// An address a packet can be sent to: not unspecified, multicast or limited broadcast.
std::optional<IpAddress> ReadAddress(Checker& c, const YAML::Node& n, const std::string& path) {
  if (!n.IsScalar()) {
    c.Error(path, n, absl::StrFormat("must be an IPv4 or IPv6 address, got %s", Describe(n)));
    return std::nullopt;
  }
  absl::StatusOr<IpAddress> ip = IpAddress::Parse(n.Scalar());
  if (!ip.ok()) {
    const bool looks_like_prefix = n.Scalar().find('/') != std::string::npos;
    c.Error(path, n,
            absl::StrFormat("must be an IPv4 or IPv6 address (like 10.10.2.11 or fd00::11), got "
                            "'%s'%s",
                            n.Scalar(), looks_like_prefix ? ": one address, not a prefix" : ""));
    return std::nullopt;
  }
  const auto& b = ip->bytes;
  const bool unspecified = AllZero(b.data(), 16);
  const bool multicast = ip->v6 ? b[0] == 0xff : (b[0] & 0xf0) == 0xe0;
  const bool broadcast = !ip->v6 && b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255;
  if (unspecified || multicast || broadcast) {
    c.Error(path, n,
            absl::StrFormat("'%s' is %s: give a unicast address of one host", n.Scalar(),
                            unspecified ? "the unspecified address"
                                        : (multicast ? "a multicast address" : "broadcast")));
    return std::nullopt;
  }
  return *ip;
}

bool ParseHexByte(std::string_view s, uint8_t& out) {
  if (s.size() != 2) return false;
  int v = 0;
  for (char ch : s) {
    const int d = (ch >= '0' && ch <= '9')   ? ch - '0'
                  : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10
                  : (ch >= 'A' && ch <= 'F') ? ch - 'A' + 10
                                             : -1;
    if (d < 0) return false;
    v = v * 16 + d;
  }
  out = static_cast<uint8_t>(v);
  return true;
}

bool ReadMac(Checker& c, const YAML::Node& n, const std::string& path, uint8_t (&mac)[6]) {
  const std::string text = n.IsScalar() ? n.Scalar() : "";
  const std::optional<MacAddress> parsed = ParseMac(text);
  if (!parsed.has_value()) {
    c.Error(path, n,
            absl::StrFormat("must be a MAC address of six hex pairs like 02:00:00:00:03:01, "
                            "got %s",
                            Describe(n)));
    return false;
  }
  std::memcpy(mac, parsed->data(), 6);
  if (AllZero(mac, 6) || (mac[0] & 1) != 0) {
    c.Error(path, n,
            absl::StrFormat("'%s' is %s: give the unicast MAC of the next-hop router", text,
                            AllZero(mac, 6) ? "all zeros" : "a multicast or broadcast address"));
    return false;
  }
  return true;
}

bool ReadHashKey(Checker& c, const YAML::Node& n, const std::string& path, uint8_t (&key)[16]) {
  const std::string text = n.IsScalar() ? n.Scalar() : "";
  bool ok = n.IsScalar() && text.size() == 32;
  for (size_t i = 0; ok && i < 16; ++i) {
    ok = ParseHexByte(std::string_view(text).substr(2 * i, 2), key[i]);
  }
  if (!ok) {
    c.Error(path, n,
            absl::StrFormat("must be 32 hex digits (128 bits), got %s%s: generate one with "
                            "'openssl rand -hex 16' and use the same key on every Fulcrum host",
                            Describe(n),
                            n.IsScalar() ? absl::StrFormat(" (%d characters)", text.size()) : ""));
    return false;
  }
  if (AllZero(key, 16)) {
    c.Error(path, n,
            "is all zeros, which anyone can guess (and so aim flows at one backend): generate "
            "one with 'openssl rand -hex 16'");
    return false;
  }
  return true;
}

bool IsPrime(uint64_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (uint64_t d = 3; d * d <= n; d += 2) {
    if (n % d == 0) return false;
  }
  return true;
}

uint64_t NextPrime(uint64_t n) {
  while (!IsPrime(n)) ++n;
  return n;
}

// --- Sections --------------------------------------------------------------------------------

void ParseDataplane(Checker& c, const YAML::Node& node, DataplaneConfig& d) {
  Section s(
      c, node, "dataplane",
      {"source_ipv4", "source_ipv6", "gateway_mac", "encap", "gue_port", "mtu", "ttl", "hash_key",
       "tcp_timeout_s", "tcp_closing_timeout_s", "udp_timeout_s", "icmp_rate_pps"});
  if (!s.valid()) return;
  if (auto n = s.Value("source_ipv4")) {
    if (auto ip = ReadAddress(c, *n, s.PathOf("source_ipv4"))) {
      if (ip->v6) {
        c.Error(s.PathOf("source_ipv4"), *n,
                absl::StrFormat("must be an IPv4 address, got the IPv6 address '%s' (that one "
                                "belongs in source_ipv6)",
                                n->Scalar()));
      } else {
        d.source_ipv4 = *ip;
      }
    }
  }
  if (auto n = s.Value("source_ipv6")) {
    if (auto ip = ReadAddress(c, *n, s.PathOf("source_ipv6"))) {
      if (!ip->v6) {
        c.Error(s.PathOf("source_ipv6"), *n,
                absl::StrFormat("must be an IPv6 address, got the IPv4 address '%s' (that one "
                                "belongs in source_ipv4)",
                                n->Scalar()));
      } else {
        d.source_ipv6 = *ip;
      }
    }
  }
  if (auto n = s.Required("gateway_mac",
                          "the MAC address of the next-hop router for encapsulated packets")) {
    ReadMac(c, *n, s.PathOf("gateway_mac"), d.gateway_mac);
  }
  if (auto n = s.Value("encap")) {
    if (auto i = ReadChoice(c, *n, s.PathOf("encap"), {"ipip", "gue"})) {
      d.encap = *i == 0 ? shm::EncapKindSetting::kIpip : shm::EncapKindSetting::kGue;
    }
  }
  if (auto n = s.Value("gue_port")) {
    if (auto v = ReadInt(c, *n, s.PathOf("gue_port"), 1, 65535)) d.gue_port = uint16_t(*v);
  }
  if (auto n = s.Value("mtu")) {
    if (auto v = ReadInt(c, *n, s.PathOf("mtu"), 576, 9216)) d.mtu = uint16_t(*v);
  }
  if (auto n = s.Value("ttl")) {
    if (auto v = ReadInt(c, *n, s.PathOf("ttl"), 1, 255)) d.ttl = uint8_t(*v);
  }
  if (auto n = s.Required("hash_key",
                          "32 hex digits, the same on every Fulcrum host of the cluster "
                          "(generate one with 'openssl rand -hex 16')")) {
    ReadHashKey(c, *n, s.PathOf("hash_key"), d.hash_key);
  }
  bool timeouts_ok = true;
  for (auto [key, field] : {std::pair{"tcp_timeout_s", &d.tcp_timeout_s},
                            {"tcp_closing_timeout_s", &d.tcp_closing_timeout_s},
                            {"udp_timeout_s", &d.udp_timeout_s}}) {
    if (auto n = s.Value(key)) {
      if (auto v = ReadInt(c, *n, s.PathOf(key), 1, kMaxFlowTimeoutS)) {
        *field = uint32_t(*v);
      } else {
        timeouts_ok = false;
      }
    }
  }
  if (timeouts_ok && d.tcp_closing_timeout_s > d.tcp_timeout_s) {
    const auto n = s.Value("tcp_closing_timeout_s");
    c.Error(s.PathOf("tcp_closing_timeout_s"), n ? LineOf(*n) : s.line(),
            absl::StrFormat("%d must not exceed tcp_timeout_s (%d): a FIN or RST shortens a "
                            "flow's idle timeout, never lengthens it",
                            d.tcp_closing_timeout_s, d.tcp_timeout_s));
  }
  if (auto n = s.Value("icmp_rate_pps")) {
    if (auto v = ReadInt(c, *n, s.PathOf("icmp_rate_pps"), 0, 1000000)) {
      d.icmp_rate_pps = uint32_t(*v);
    }
  }
}

void ParseWatch(Checker& c, const YAML::Node& node, WatchConfig& w) {
  Section s(c, node, "watch", {"window_ms", "max_imbalance", "max_load", "max_drop_increase_pps"});
  if (!s.valid()) return;
  if (auto n = s.Value("window_ms")) {
    if (auto v = ReadInt(c, *n, s.PathOf("window_ms"), 200, 600000)) w.window_ms = uint32_t(*v);
  }
  if (auto n = s.Value("max_imbalance")) {
    if (auto v = ReadNumber(c, *n, s.PathOf("max_imbalance"), 1.0, 100.0, true,
                            " (observed share / expected share)")) {
      w.max_imbalance = *v;
    }
  }
  if (auto n = s.Value("max_load")) {
    if (auto v = ReadNumber(c, *n, s.PathOf("max_load"), 0.0, 100.0, true,
                            " (observed new flows/s / capacity_cps)")) {
      w.max_load = *v;
    }
  }
  if (auto n = s.Value("max_drop_increase_pps")) {
    if (auto v = ReadNumber(c, *n, s.PathOf("max_drop_increase_pps"), 0.0, 1e12, false, "")) {
      w.max_drop_increase_pps = *v;
    }
  }
}

void ParseHealthCheck(Checker& c, const YAML::Node& node, const std::string& path,
                      HealthCheckConfig& h) {
  Section s(c, node, path,
            {"type", "port", "path", "host", "expect_status", "interval_ms", "timeout_ms", "rise",
             "fall", "so_mark", "through_tunnel"});
  if (!s.valid()) return;
  if (auto n = s.Required("type", "tcp (connect) or http (GET), or none")) {
    if (auto i = ReadChoice(c, *n, s.PathOf("type"), {"none", "tcp", "http"})) {
      h.type = static_cast<CheckType>(*i);
    }
  }
  if (auto n = s.Value("port")) {
    if (auto v = ReadInt(c, *n, s.PathOf("port"), 1, 65535)) h.port = uint16_t(*v);
  }
  auto http_only = [&](std::string_view key) {
    if (!s.Has(key)) return false;
    if (h.type != CheckType::kHttp) {
      c.Error(s.PathOf(key), s.LineOfValue(key),
              absl::StrFormat("applies to type http only (this check is %s): remove it or set "
                              "type: http",
                              h.type == CheckType::kTcp ? "tcp" : "none"));
      return false;
    }
    return true;
  };
  if (http_only("path")) {
    if (auto n = s.Value("path")) {
      if (auto v = ReadString(c, *n, s.PathOf("path"))) {
        const bool printable =
            std::all_of(v->begin(), v->end(), [](char ch) { return ch > ' ' && ch < 0x7f; });
        if (v->empty() || (*v)[0] != '/' || !printable) {
          c.Error(s.PathOf("path"), *n,
                  absl::StrFormat("must be a URL path starting with '/' without spaces or "
                                  "control characters, got %s",
                                  Describe(*n)));
        } else {
          h.path = *v;
        }
      }
    }
  }
  if (http_only("host")) {
    if (auto n = s.Value("host")) {
      if (auto v = ReadString(c, *n, s.PathOf("host"))) {
        const bool printable =
            std::all_of(v->begin(), v->end(), [](char ch) { return ch > ' ' && ch < 0x7f; });
        if (v->empty() || !printable) {
          c.Error(s.PathOf("host"), *n,
                  "must be a host name for the Host header, without spaces or control "
                  "characters");
        } else {
          h.host = *v;
        }
      }
    }
  }
  if (http_only("expect_status")) {
    if (auto n = s.Value("expect_status")) {
      if (!n->IsSequence() || n->size() == 0) {
        c.Error(s.PathOf("expect_status"), *n,
                absl::StrFormat("must be a non-empty list of HTTP status codes like [200, 204], "
                                "got %s",
                                Describe(*n)));
      } else {
        for (size_t i = 0; i < n->size(); ++i) {
          if (auto v = ReadInt(c, (*n)[i], absl::StrFormat("%s[%d]", s.PathOf("expect_status"), i),
                               100, 599)) {
            h.expect_status.push_back(int(*v));
          }
        }
      }
    }
  }
  bool timing_ok = true;
  for (auto [key, field, min, max] : {std::tuple{"interval_ms", &h.interval_ms, 100, 3600000},
                                      {"timeout_ms", &h.timeout_ms, 10, 60000},
                                      {"rise", &h.rise, 1, 100},
                                      {"fall", &h.fall, 1, 100}}) {
    if (auto n = s.Value(key)) {
      if (auto v = ReadInt(c, *n, s.PathOf(key), min, max)) {
        *field = uint32_t(*v);
      } else {
        timing_ok = false;
      }
    }
  }
  if (timing_ok && h.timeout_ms >= h.interval_ms) {
    const auto n = s.Value("timeout_ms");
    c.Error(s.PathOf("timeout_ms"), n ? LineOf(*n) : s.line(),
            absl::StrFormat("%d ms must be below interval_ms (%d ms): a probe has to finish "
                            "before the next one starts",
                            h.timeout_ms, h.interval_ms));
  }
  if (auto n = s.Value("so_mark")) {
    if (auto v = ReadInt(c, *n, s.PathOf("so_mark"), 0, 0xffffffffll)) h.so_mark = uint32_t(*v);
  }
  if (auto n = s.Value("through_tunnel")) {
    if (auto v = ReadChoice(c, *n, s.PathOf("through_tunnel"), {"false", "true"})) {
      h.through_tunnel = *v == 1;
    }
    if (h.through_tunnel && h.so_mark != 0) {
      c.Error(s.PathOf("so_mark"), s.LineOfValue("so_mark"),
              "cannot be set with through_tunnel: true, which gives each backend's probes a mark "
              "of their own: remove so_mark");
    }
  }
}

void ParseGuards(Checker& c, const YAML::Node& node, const std::string& path, GuardsConfig& g) {
  Section s(c, node, path, {"max_backend_share", "max_moved_fraction", "min_healthy"});
  if (!s.valid()) return;
  if (auto n = s.Value("max_backend_share")) {
    if (auto v = ReadNumber(c, *n, s.PathOf("max_backend_share"), 0.0, 1.0, true,
                            " (a fraction of the VIP's flows; 1 means no limit)")) {
      g.max_backend_share = *v;
    }
  }
  if (auto n = s.Value("max_moved_fraction")) {
    if (auto v = ReadNumber(c, *n, s.PathOf("max_moved_fraction"), 0.0, 1.0, false,
                            " (a fraction of the VIP's flows; 1 means no limit)")) {
      g.max_moved_fraction = *v;
    }
  }
  if (auto n = s.Value("min_healthy")) {
    if (auto v = ReadNumber(c, *n, s.PathOf("min_healthy"), 0.0, 1.0, false,
                            " (a fraction of the VIP's serving weight; 0 never fails open)")) {
      g.min_healthy = *v;
    }
  }
}

void ParseBackend(Checker& c, const YAML::Node& node, const std::string& path, BackendConfig& b,
                  bool& address_ok) {
  Section s(c, node, path, {"address", "port", "weight", "state", "capacity_cps"});
  address_ok = false;
  if (!s.valid()) return;
  if (auto n = s.Required("address", "the backend's IPv4 or IPv6 address")) {
    if (auto ip = ReadAddress(c, *n, s.PathOf("address"))) {
      b.address = *ip;
      address_ok = true;
    }
  }
  if (auto n = s.Value("port")) {
    if (auto v = ReadInt(c, *n, s.PathOf("port"), 0, 65535)) b.port = uint16_t(*v);
  }
  if (auto n = s.Value("weight")) {
    const std::string p = s.PathOf("weight");
    if (n->IsScalar() && n->Scalar() == "0") {
      c.Error(p, *n,
              absl::StrFormat("must be an integer from 1 to %d, got 0: to stop new flows to "
                              "this backend set state: draining (or disabled)",
                              kMaxWeight));
    } else if (auto v = ReadInt(c, *n, p, 1, kMaxWeight)) {
      b.weight = uint32_t(*v);
    }
  }
  if (auto n = s.Value("state")) {
    if (auto i = ReadChoice(c, *n, s.PathOf("state"), {"active", "draining", "disabled"})) {
      b.state = static_cast<OperatorState>(*i);
    }
  }
  if (auto n = s.Value("capacity_cps")) {
    if (auto v = ReadNumber(c, *n, s.PathOf("capacity_cps"), 0.0, kMaxCapacityCps, true,
                            " new connections per second")) {
      b.capacity_cps = *v;
    }
  }
}

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > shm::kNameLen) return false;
  if (!absl::ascii_isalnum(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](char ch) {
    return absl::ascii_isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' ||
           ch == '.';
  });
}

// Where things are, for the checks that run after the walk.
struct VipLines {
  int vip = 0;
  int name = 0;
  int table_size = 0;
  int backends = 0;
  int health_check = 0;
  std::vector<int> backend;
  std::vector<bool> backend_ok;  // its address parsed
  bool table_size_ok = true;
  bool name_ok = false;
  bool service_ok = false;
};

void ParseVip(Checker& c, const YAML::Node& node, const std::string& path, VipConfig& v,
              VipLines& lines) {
  Section s(c, node, path,
            {"name", "address", "port", "protocol", "table_size", "fragments", "backends",
             "health_check", "guards"});
  lines.vip = LineOf(node);
  if (!s.valid()) return;
  if (auto n = s.Required("name", "a short unique name like 'web' (letters, digits, '-', '_')")) {
    lines.name = LineOf(*n);
    if (auto name = ReadString(c, *n, s.PathOf("name"))) {
      if (!ValidName(*name)) {
        c.Error(s.PathOf("name"), *n,
                absl::StrFormat("'%s' is not a valid VIP name: use 1 to %d letters, digits, "
                                "'-', '_' or '.', starting with a letter or digit",
                                *name, shm::kNameLen));
      } else {
        v.name = *name;
        lines.name_ok = true;
      }
    }
  }
  const size_t service_errors = c.count();
  if (auto n = s.Required("address", "the VIP's IPv4 or IPv6 address")) {
    if (auto ip = ReadAddress(c, *n, s.PathOf("address"))) v.address = *ip;
  }
  if (auto n = s.Required("port", "the VIP's port, 1 to 65535")) {
    if (auto p = ReadInt(c, *n, s.PathOf("port"), 1, 65535)) v.port = uint16_t(*p);
  }
  if (auto n = s.Value("protocol")) {
    if (auto i = ReadChoice(c, *n, s.PathOf("protocol"), {"tcp", "udp"})) {
      v.proto = *i == 0 ? 6 : 17;
    }
  }
  lines.service_ok = c.count() == service_errors && v.port != 0;
  if (auto n = s.Value("table_size")) {
    lines.table_size = LineOf(*n);
    const size_t before = c.count();
    if (auto t = ReadInt(c, *n, s.PathOf("table_size"), kMaglevMinTableSize, kMaglevMaxTableSize)) {
      if (absl::Status st = CheckMaglevTableSize(uint64_t(*t)); !st.ok()) {
        c.Error(s.PathOf("table_size"), *n, std::string(st.message()));
      } else {
        v.table_size = uint32_t(*t);
      }
    }
    lines.table_size_ok = c.count() == before;
  } else {
    lines.table_size = s.line();
  }
  if (auto n = s.Value("fragments")) {
    if (auto i = ReadChoice(c, *n, s.PathOf("fragments"), {"drop", "hash-addresses"})) {
      v.fragments = *i == 0 ? shm::FragmentPolicy::kDrop : shm::FragmentPolicy::kHashAddresses;
    }
  }
  if (auto n = s.Value("health_check")) {
    lines.health_check = LineOf(*n);
    ParseHealthCheck(c, *n, s.PathOf("health_check"), v.health_check);
  }
  if (auto n = s.Value("guards")) ParseGuards(c, *n, s.PathOf("guards"), v.guards);
  if (auto n = s.Required("backends", "a list of backends, each at least { address: ... }")) {
    lines.backends = LineOf(*n);
    if (!n->IsSequence()) {
      c.Error(s.PathOf("backends"), *n,
              absl::StrFormat("must be a list of backends (lines starting with '- '), got %s",
                              Describe(*n)));
    } else {
      v.backends.resize(n->size());
      lines.backend.resize(n->size());
      lines.backend_ok.resize(n->size());
      for (size_t i = 0; i < n->size(); ++i) {
        const YAML::Node b = (*n)[i];
        lines.backend[i] = LineOf(b);
        bool address_ok = false;
        ParseBackend(c, b, absl::StrFormat("%s[%d]", s.PathOf("backends"), i), v.backends[i],
                     address_ok);
        lines.backend_ok[i] = address_ok;
      }
    }
  } else {
    lines.backends = s.line();
  }
}

// --- bgp -------------------------------------------------------------------------------------

bool ValidHostName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  if (!absl::ascii_isalnum(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](char ch) {
    return absl::ascii_isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' ||
           ch == '.';
  });
}

// An absolute path without characters that would end a BIRD string or a line.
std::optional<std::string> ReadPath(Checker& c, const YAML::Node& n, const std::string& path) {
  auto text = ReadString(c, n, path);
  if (!text) return std::nullopt;
  const bool printable = std::all_of(text->begin(), text->end(), [](char ch) {
    return static_cast<unsigned char>(ch) > ' ' && ch != '"' && ch != '\\' && ch != 0x7f;
  });
  if (text->empty() || (*text)[0] != '/' || !printable || text->size() > 107) {
    c.Error(path, n,
            absl::StrFormat("must be an absolute path (starting with '/', at most 107 "
                            "characters, no spaces or quotes), got %s",
                            Describe(n)));
    return std::nullopt;
  }
  return text;
}

std::optional<IpAddress> ReadFamilyAddress(Checker& c, const YAML::Node& n, const std::string& path,
                                           bool v6) {
  auto ip = ReadAddress(c, n, path);
  if (ip && ip->v6 != v6) {
    c.Error(path, n,
            absl::StrFormat("must be an %s address, got the %s address '%s'", v6 ? "IPv6" : "IPv4",
                            v6 ? "IPv4" : "IPv6", n.Scalar()));
    return std::nullopt;
  }
  return ip;
}

void ParseBgpHost(Checker& c, const YAML::Node& node, const std::string& path, BgpHostConfig& h) {
  Section s(c, node, path,
            {"router_id", "local_address", "peers", "next_hop", "next_hop6", "bird_socket",
             "include_file"});
  if (!s.valid()) return;
  if (auto n = s.Required("router_id",
                          "this host's BGP router id, an IPv4 address unique among the routers "
                          "(usually its own address)")) {
    if (auto ip = ReadFamilyAddress(c, *n, s.PathOf("router_id"), false)) h.router_id = *ip;
  }
  if (auto n = s.Value("local_address")) {
    if (auto ip = ReadAddress(c, *n, s.PathOf("local_address"))) h.local_address = *ip;
  }
  if (auto n = s.Required("peers", "a list of the routers' addresses, like [10.10.3.1]")) {
    const std::string p = s.PathOf("peers");
    if (!n->IsSequence() || n->size() == 0) {
      c.Error(p, *n,
              absl::StrFormat("must be a list of at least one router address, like [10.10.3.1], "
                              "got %s",
                              n->IsSequence() ? "an empty list" : Describe(*n)));
    } else if (n->size() > 16) {
      c.Error(p, *n, absl::StrFormat("at most 16 peers per host, got %d", n->size()));
    } else {
      for (size_t i = 0; i < n->size(); ++i) {
        const std::string pi = absl::StrFormat("%s[%d]", p, i);
        if (auto ip = ReadAddress(c, (*n)[i], pi)) {
          if (std::find(h.peers.begin(), h.peers.end(), *ip) != h.peers.end()) {
            c.Error(pi, (*n)[i], absl::StrFormat("%s is listed twice: keep one", ip->ToString()));
          } else {
            h.peers.push_back(*ip);
          }
        }
      }
    }
  }
  if (auto n = s.Value("next_hop")) {
    if (auto ip = ReadFamilyAddress(c, *n, s.PathOf("next_hop"), false)) h.next_hop = *ip;
  }
  if (auto n = s.Value("next_hop6")) {
    if (auto ip = ReadFamilyAddress(c, *n, s.PathOf("next_hop6"), true)) h.next_hop6 = *ip;
  }
  if (auto n = s.Value("bird_socket")) {
    if (auto v = ReadPath(c, *n, s.PathOf("bird_socket"))) h.bird_socket = *v;
  }
  if (auto n = s.Value("include_file")) {
    if (auto v = ReadPath(c, *n, s.PathOf("include_file"))) h.include_file = *v;
  }
}

void ParseBgp(Checker& c, const YAML::Node& node, BgpConfig& b) {
  Section s(c, node, "bgp",
            {"local_asn", "peer_asn", "hold_time_s", "keepalive_s", "connect_retry_s",
             "bird_socket", "include_file", "hosts"});
  if (!s.valid()) return;
  constexpr int64_t kMaxAsn = 4294967295ll;
  if (auto n = s.Required("local_asn", "the AS number of the Fulcrum hosts, 1 to 4294967295")) {
    if (auto v = ReadInt(c, *n, s.PathOf("local_asn"), 1, kMaxAsn)) b.local_asn = uint32_t(*v);
  }
  if (auto n = s.Required("peer_asn", "the routers' AS number, 1 to 4294967295")) {
    if (auto v = ReadInt(c, *n, s.PathOf("peer_asn"), 1, kMaxAsn)) b.peer_asn = uint32_t(*v);
  }
  bool timers_ok = true;
  if (auto n = s.Value("hold_time_s")) {
    // RFC 4271 4.2: the hold time is zero or at least three seconds. Zero (no keepalives) would
    // leave a silently dead host announced forever, so it is refused.
    if (auto v = ReadInt(c, *n, s.PathOf("hold_time_s"), 3, 65535)) {
      b.hold_time_s = uint32_t(*v);
    } else {
      timers_ok = false;
    }
  }
  if (auto n = s.Value("keepalive_s")) {
    if (auto v = ReadInt(c, *n, s.PathOf("keepalive_s"), 1, 21845)) {
      b.keepalive_s = uint32_t(*v);
      if (timers_ok && b.keepalive_s * 3 > b.hold_time_s) {
        c.Error(s.PathOf("keepalive_s"), *n,
                absl::StrFormat("%d s is more than a third of hold_time_s (%d s): three "
                                "keepalives must fit in the hold time, so one lost packet does "
                                "not drop the session",
                                b.keepalive_s, b.hold_time_s));
      }
    }
  }
  if (auto n = s.Value("connect_retry_s")) {
    if (auto v = ReadInt(c, *n, s.PathOf("connect_retry_s"), 1, 65535)) {
      b.connect_retry_s = uint32_t(*v);
    }
  }
  if (auto n = s.Value("bird_socket")) {
    if (auto v = ReadPath(c, *n, s.PathOf("bird_socket"))) b.bird_socket = *v;
  }
  if (auto n = s.Value("include_file")) {
    if (auto v = ReadPath(c, *n, s.PathOf("include_file"))) b.include_file = *v;
  }
  if (auto n = s.Required("hosts",
                          "a mapping from each Fulcrum host's name (fulcrumctl serve --host, by "
                          "default its hostname) to its router_id and peers")) {
    const std::string p = s.PathOf("hosts");
    if (!n->IsMap() || n->size() == 0) {
      c.Error(p, *n,
              absl::StrFormat("must be a mapping with one entry per host, like 'lb1: { "
                              "router_id: 10.10.3.2, peers: [10.10.3.1] }', got %s",
                              n->IsMap() ? "an empty mapping" : Describe(*n)));
      return;
    }
    std::set<std::string> seen;
    std::map<IpAddress, std::string> router_ids;
    for (auto it = n->begin(); it != n->end(); ++it) {
      const YAML::Node key = it->first;
      const YAML::Node value = it->second;
      if (!key.IsScalar() || !ValidHostName(key.Scalar())) {
        c.Error(p, key,
                absl::StrFormat("%s is not a host name: use 1 to 64 letters, digits, '-', '_' "
                                "or '.', starting with a letter or digit",
                                Describe(key)));
        continue;
      }
      const std::string name = key.Scalar();
      const std::string hp = Join(p, name);
      if (!seen.insert(name).second) {
        c.Error(hp, key, "appears twice in this mapping: keep one");
        continue;
      }
      BgpHostConfig h;
      const size_t before = c.count();
      ParseBgpHost(c, value, hp, h);
      if (c.count() != before) continue;
      if (auto [pos, inserted] = router_ids.emplace(h.router_id, name); !inserted) {
        c.Error(Join(hp, "router_id"), value,
                absl::StrFormat("%s is also the router_id of host %s: every BGP speaker needs "
                                "its own",
                                h.router_id.ToString(), pos->second));
      }
      b.hosts.emplace(name, std::move(h));
    }
  }
}

// Each host must be able to announce every VIP: a peer of the VIP's family and a next hop.
void CheckBgpFamilies(Checker& c, const Config& cfg, int bgp_line) {
  if (!cfg.bgp.has_value()) return;
  for (bool v6 : {false, true}) {
    const VipConfig* vip = nullptr;
    size_t index = 0;
    for (size_t i = 0; i < cfg.vips.size() && vip == nullptr; ++i) {
      if (cfg.vips[i].address.v6 == v6) {
        vip = &cfg.vips[i];
        index = i;
      }
    }
    if (vip == nullptr) continue;
    const char* family = v6 ? "IPv6" : "IPv4";
    for (const auto& [name, h] : cfg.bgp->hosts) {
      const std::string hp = absl::StrCat("bgp.hosts.", name);
      const bool has_peer = std::any_of(h.peers.begin(), h.peers.end(),
                                        [&](const IpAddress& a) { return a.v6 == v6; });
      if (!has_peer) {
        c.Error(hp + ".peers", bgp_line,
                absl::StrFormat("has no %s router: vips[%d] (%s, %s) is %s and is announced over "
                                "a session of its own family; add an %s peer",
                                family, index, vip->name, vip->address.ToString(), family, family));
      }
      const std::optional<IpAddress>& hop = v6 ? h.next_hop6 : h.next_hop;
      const bool local_fits = h.local_address.has_value() && h.local_address->v6 == v6;
      if (has_peer && !hop.has_value() && !local_fits) {
        c.Error(absl::StrCat(hp, v6 ? ".next_hop6" : ".next_hop"), bgp_line,
                absl::StrFormat("is required: vips[%d] (%s) is %s, and the routers must be told "
                                "an %s next hop on this host (or set an %s local_address)",
                                index, vip->name, family, family, family));
      }
    }
  }
}

// --- Whole-config checks ---------------------------------------------------------------------

void CheckVips(Checker& c, Config& cfg, const std::vector<VipLines>& lines, int vips_line) {
  const DataplaneConfig& d = cfg.dataplane;
  if (cfg.vips.size() > shm::kMaxVips) {
    c.Error("vips", vips_line,
            absl::StrFormat("%d VIPs: the data plane holds at most %d", cfg.vips.size(),
                            shm::kMaxVips));
  }
  std::map<std::string, size_t> names;
  std::map<std::tuple<IpAddress, uint16_t, uint8_t>, size_t> services;
  // Health checks are shared per probe target (address, port): two VIPs that name the same
  // target must agree on how to probe it, or its health would depend on which check ran last.
  std::map<std::pair<IpAddress, uint16_t>, size_t> check_owner;
  size_t total_backends = 0;
  uint64_t total_slots = 0;
  bool v4_error = false;
  bool v6_error = false;
  for (size_t i = 0; i < cfg.vips.size(); ++i) {
    VipConfig& v = cfg.vips[i];
    const VipLines& l = lines[i];
    const std::string path = absl::StrFormat("vips[%d]", i);
    if (l.name_ok) {
      if (auto [it, inserted] = names.emplace(v.name, i); !inserted) {
        c.Error(path + ".name", l.name,
                absl::StrFormat("'%s' is already the name of vips[%d]: VIP names must be unique",
                                v.name, it->second));
      }
    }
    if (l.service_ok) {
      if (auto [it, inserted] = services.emplace(std::tuple{v.address, v.port, v.proto}, i);
          !inserted) {
        c.Error(path, l.vip,
                absl::StrFormat("%s is already vips[%d] ('%s'): one VIP per address, port and "
                                "protocol",
                                ServiceName(v), it->second, cfg.vips[it->second].name));
      }
    }
    const std::string bpath = path + ".backends";
    if (v.backends.size() > shm::kMaxBackendsPerVip) {
      c.Error(bpath, l.backends,
              absl::StrFormat("%d backends: a VIP holds at most %d", v.backends.size(),
                              shm::kMaxBackendsPerVip));
    }
    total_backends += v.backends.size();
    if (total_backends > shm::kMaxBackends &&
        total_backends - v.backends.size() <= shm::kMaxBackends) {
      c.Error(bpath, l.backends,
              absl::StrFormat("the VIPs up to this one have %d backends together: the data "
                              "plane holds at most %d",
                              total_backends, shm::kMaxBackends));
    }
    std::map<std::pair<IpAddress, uint16_t>, size_t> seen;
    size_t usable = 0;
    for (size_t j = 0; j < v.backends.size(); ++j) {
      const BackendConfig& b = v.backends[j];
      if (!l.backend_ok[j]) continue;
      const std::string p = absl::StrFormat("%s[%d]", bpath, j);
      if (auto [it, inserted] = seen.emplace(std::pair{b.address, b.port}, j); !inserted) {
        c.Error(p, l.backend[j],
                absl::StrFormat("%s is already backends[%d] of this VIP: list each backend once "
                                "(give different ports to run several on one host)",
                                BackendName(b.address, b.port), it->second));
      }
      if (b.state == OperatorState::kActive) ++usable;
      if (!b.address.v6 && !d.source_ipv4.has_value() && !v4_error) {
        c.Error("dataplane.source_ipv4", 0,
                absl::StrFormat("is required: %s.address (%s) is IPv4, and encapsulated packets "
                                "to it need an IPv4 outer source address",
                                p, b.address.ToString()));
        v4_error = true;
      }
      if (b.address.v6 && !d.source_ipv6.has_value() && !v6_error) {
        c.Error("dataplane.source_ipv6", 0,
                absl::StrFormat("is required: %s.address (%s) is IPv6, and encapsulated packets "
                                "to it need an IPv6 outer source address",
                                p, b.address.ToString()));
        v6_error = true;
      }
      if (l.service_ok && v.address.v6 && !b.address.v6 &&
          d.encap == shm::EncapKindSetting::kIpip) {
        c.Error(p + ".address", l.backend[j],
                absl::StrFormat("IPv4 backend %s of the IPv6 VIP %s: IPIP cannot carry IPv6 in "
                                "IPv4; use an IPv6 backend address or dataplane.encap: gue",
                                b.address.ToString(), v.address.ToString()));
      }
      if (v.health_check.type != CheckType::kNone && b.state != OperatorState::kDisabled) {
        const auto target = std::pair{b.address, CheckPort(v, b)};
        if (auto [it, inserted] = check_owner.emplace(target, i);
            !inserted && it->second != i &&
            !(cfg.vips[it->second].health_check == v.health_check)) {
          c.Error(path + ".health_check", l.health_check != 0 ? l.health_check : l.vip,
                  absl::StrFormat("probes %s, which vips[%d] ('%s') also probes with different "
                                  "settings: a target is checked once for every VIP, so make "
                                  "the two health_check blocks identical",
                                  BackendName(b.address, target.second), it->second,
                                  cfg.vips[it->second].name));
        }
      }
    }
    if (l.backends != 0 && usable == 0 &&
        std::all_of(l.backend_ok.begin(), l.backend_ok.end(), [](bool ok) { return ok; })) {
      c.Error(bpath, l.backends,
              v.backends.empty()
                  ? "is empty: a VIP needs at least one active backend (or remove the VIP)"
                  : "has no active backend (all are draining or disabled): set one to state: "
                    "active, or remove the VIP");
    }
    if (l.table_size_ok) {
      const uint64_t needed = uint64_t{100} * v.backends.size();
      if (v.table_size < needed) {
        c.Error(path + ".table_size", l.table_size,
                absl::StrFormat("%d is too small for %d backends: Maglev spreads evenly only with "
                                "at least 100 slots per backend; use a prime of at least %d, "
                                "e.g. %d",
                                v.table_size, v.backends.size(), needed, NextPrime(needed)));
      }
      total_slots += v.table_size;
      if (total_slots > shm::kMaxTableEntries &&
          total_slots - v.table_size <= shm::kMaxTableEntries) {
        c.Error(path + ".table_size", l.table_size,
                absl::StrFormat("the tables of the VIPs up to this one take %d slots together: "
                                "the data plane holds at most %d; use smaller table sizes",
                                total_slots, shm::kMaxTableEntries));
      }
    }
  }
}

}  // namespace

ParsedConfig ParseConfig(std::string_view yaml) {
  ParsedConfig out;
  Checker c;
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    out.errors.push_back(
        {"", e.mark.line >= 0 ? e.mark.line + 1 : 0,
         absl::StrFormat("not valid YAML: %s (column %d)", e.msg, e.mark.column + 1)});
    return out;
  } catch (const std::exception& e) {
    out.errors.push_back({"", 0, absl::StrCat("not valid YAML: ", e.what())});
    return out;
  }
  try {
    if (root.IsNull()) {
      c.Error("", 0, "the config is empty: it needs at least the sections dataplane and vips");
      out.errors = c.Take();
      return out;
    }
    Section top(c, root, "", {"dataplane", "watch", "vips", "bgp"});
    if (top.valid()) {
      if (auto n = top.Required("dataplane",
                                "the section with gateway_mac, hash_key and the outer source "
                                "addresses")) {
        ParseDataplane(c, *n, out.config.dataplane);
      }
      if (auto n = top.Value("watch")) ParseWatch(c, *n, out.config.watch);
      std::vector<VipLines> lines;
      int vips_line = top.line();
      if (auto n = top.Required("vips", "a list of VIPs (may be empty: vips: [])")) {
        vips_line = LineOf(*n);
        if (!n->IsSequence()) {
          c.Error("vips", *n,
                  absl::StrFormat("must be a list of VIPs (lines starting with '- '), got %s",
                                  Describe(*n)));
        } else {
          out.config.vips.resize(n->size());
          lines.resize(n->size());
          for (size_t i = 0; i < n->size(); ++i) {
            ParseVip(c, (*n)[i], absl::StrFormat("vips[%d]", i), out.config.vips[i], lines[i]);
          }
        }
      }
      CheckVips(c, out.config, lines, vips_line);
      if (auto n = top.Value("bgp")) {
        const size_t before = c.count();
        BgpConfig bgp;
        ParseBgp(c, *n, bgp);
        if (c.count() == before) {
          out.config.bgp = std::move(bgp);
          CheckBgpFamilies(c, out.config, LineOf(*n));
        }
      }
    }
  } catch (const std::exception& e) {
    // yaml-cpp may throw on trees it built itself (e.g. bad conversions); never past here.
    c.Error("", 0, absl::StrCat("could not read the config: ", e.what()));
  }
  out.errors = c.Take();
  std::stable_sort(out.errors.begin(), out.errors.end(),
                   [](const ConfigError& a, const ConfigError& b) {
                     // Whole-config errors without a line go first; then in file order.
                     return a.line < b.line;
                   });
  return out;
}

absl::StatusOr<std::string> ReadConfigFile(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    const int err = errno;
    const std::string msg = absl::StrFormat("config file %s: %s", path, std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(msg);
    if (err == EACCES) return absl::PermissionDeniedError(msg);
    return absl::FailedPreconditionError(msg);
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrFormat("config file %s is not a regular file", path));
  }
  if (static_cast<size_t>(st.st_size) > kMaxConfigBytes) {
    return absl::FailedPreconditionError(
        absl::StrFormat("config file %s is %d bytes, more than the %d a config may have", path,
                        st.st_size, kMaxConfigBytes));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::PermissionDeniedError(
        absl::StrFormat("config file %s: %s", path, std::strerror(errno)));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string FormatErrors(std::string_view file, const std::vector<ConfigError>& errors) {
  std::string out;
  for (const ConfigError& e : errors) {
    std::string where(file);
    if (e.line > 0) where = absl::StrCat(where, ":", e.line);
    absl::StrAppend(&out, where, ": ", e.path.empty() ? "" : absl::StrCat(e.path, ": "), e.message,
                    "\n");
  }
  return out;
}

nlohmann::json ErrorsToJson(const std::vector<ConfigError>& errors) {
  nlohmann::json out = nlohmann::json::array();
  for (const ConfigError& e : errors) {
    out.push_back({{"path", e.path}, {"line", e.line}, {"message", e.message}});
  }
  return out;
}

}  // namespace fulcrum::controlplane
