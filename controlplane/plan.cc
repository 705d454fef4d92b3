// Plan: diff, shares, moved fraction, load and guards.
#include "controlplane/plan.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_format.h"

namespace fulcrum::controlplane {
namespace {

constexpr double kShareTolerance = 0.01;  // table vs weight share: beyond this is a bug

std::string_view FragmentsName(shm::FragmentPolicy f) {
  return f == shm::FragmentPolicy::kDrop ? "drop" : "hash-addresses";
}

std::string Percent(double x) { return absl::StrFormat("%.2f%%", 100 * x); }

std::string MacText(const uint8_t (&m)[6]) {
  return absl::StrFormat("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

std::vector<std::string> SettingsChanges(const Config& a, const Config& b) {
  std::vector<std::string> out;
  const DataplaneConfig& x = a.dataplane;
  const DataplaneConfig& y = b.dataplane;
  auto addr = [](const std::optional<IpAddress>& ip) {
    return ip.has_value() ? ip->ToString() : std::string("(none)");
  };
  if (x.source_ipv4 != y.source_ipv4) {
    out.push_back(absl::StrFormat("dataplane.source_ipv4 %s -> %s", addr(x.source_ipv4),
                                  addr(y.source_ipv4)));
  }
  if (x.source_ipv6 != y.source_ipv6) {
    out.push_back(absl::StrFormat("dataplane.source_ipv6 %s -> %s", addr(x.source_ipv6),
                                  addr(y.source_ipv6)));
  }
  if (std::memcmp(x.gateway_mac, y.gateway_mac, 6) != 0) {
    out.push_back(absl::StrFormat("dataplane.gateway_mac %s -> %s", MacText(x.gateway_mac),
                                  MacText(y.gateway_mac)));
  }
  if (x.encap != y.encap) {
    out.push_back(absl::StrFormat("dataplane.encap %s -> %s",
                                  x.encap == shm::EncapKindSetting::kIpip ? "ipip" : "gue",
                                  y.encap == shm::EncapKindSetting::kIpip ? "ipip" : "gue"));
  }
  auto num = [&](std::string_view name, uint64_t p, uint64_t q) {
    if (p != q) out.push_back(absl::StrFormat("%s %d -> %d", name, p, q));
  };
  num("dataplane.gue_port", x.gue_port, y.gue_port);
  num("dataplane.mtu", x.mtu, y.mtu);
  num("dataplane.ttl", x.ttl, y.ttl);
  num("dataplane.tcp_timeout_s", x.tcp_timeout_s, y.tcp_timeout_s);
  num("dataplane.tcp_closing_timeout_s", x.tcp_closing_timeout_s, y.tcp_closing_timeout_s);
  num("dataplane.udp_timeout_s", x.udp_timeout_s, y.udp_timeout_s);
  num("dataplane.icmp_rate_pps", x.icmp_rate_pps, y.icmp_rate_pps);
  if (std::memcmp(x.hash_key, y.hash_key, 16) != 0) {
    out.push_back(
        "dataplane.hash_key changed: every flow of every VIP is rehashed (a flow keeps its "
        "backend only while this host's flow table holds it)");
  }
  auto dbl = [&](std::string_view name, double p, double q) {
    if (p != q) out.push_back(absl::StrFormat("watch.%s %g -> %g", name, p, q));
  };
  if (a.bgp != b.bgp) {
    // The control plane rewrites BIRD's include file from it; no table changes.
    out.push_back(!a.bgp.has_value()   ? "bgp: added (this host starts announcing its VIPs)"
                  : !b.bgp.has_value() ? "bgp: removed (this host stops driving BIRD)"
                                       : "bgp: changed");
  }
  num("watch.window_ms", a.watch.window_ms, b.watch.window_ms);
  dbl("max_imbalance", a.watch.max_imbalance, b.watch.max_imbalance);
  dbl("max_load", a.watch.max_load, b.watch.max_load);
  dbl("max_drop_increase_pps", a.watch.max_drop_increase_pps, b.watch.max_drop_increase_pps);
  return out;
}

std::vector<uint32_t> SlotCounts(const shm::Table& table, size_t backends) {
  std::vector<uint32_t> counts(backends, 0);
  for (shm::TableEntry e : table) {
    if (e < counts.size()) ++counts[e];
  }
  return counts;
}

struct SideVip {
  const EffectiveVip* vip = nullptr;
  const shm::Table* table = nullptr;
  std::vector<uint32_t> counts;
};

// Backend j of the old side, which the new config no longer has.
BackendPlan RemovedBackend(const SideVip& old, size_t j) {
  const EffectiveBackend& ob = old.vip->backends[j];
  BackendPlan bp;
  bp.name = ob.name;
  bp.id = ob.id;
  bp.change = Change::kRemoved;
  bp.state = ob.state;
  bp.health = ob.health;
  bp.published = ob.published;
  bp.weight = ob.weight;
  bp.old_slots = old.counts[j];
  bp.old_table_share = old.table->empty() ? 0 : bp.old_slots / double(old.table->size());
  return bp;
}

SideVip Side(const PlanSide& side, size_t i) {
  SideVip s;
  s.vip = &side.state->vips[i];
  s.table = side.snapshot->tables[i].get();
  s.counts = SlotCounts(*s.table, s.vip->backends.size());
  return s;
}

std::vector<std::string> VipChanges(const VipConfig& a, const VipConfig& b) {
  std::vector<std::string> out;
  if (a.address != b.address || a.port != b.port || a.proto != b.proto) {
    out.push_back(absl::StrFormat("service %s -> %s", ServiceName(a), ServiceName(b)));
  }
  if (a.table_size != b.table_size) {
    out.push_back(absl::StrFormat("table_size %d -> %d", a.table_size, b.table_size));
  }
  if (a.fragments != b.fragments) {
    out.push_back(absl::StrFormat("fragments %s -> %s", FragmentsName(a.fragments),
                                  FragmentsName(b.fragments)));
  }
  if (!(a.health_check == b.health_check)) out.push_back("health_check changed");
  auto g = [&](std::string_view name, double p, double q) {
    if (p != q) out.push_back(absl::StrFormat("guards.%s %g -> %g", name, p, q));
  };
  g("max_backend_share", a.guards.max_backend_share, b.guards.max_backend_share);
  g("max_moved_fraction", a.guards.max_moved_fraction, b.guards.max_moved_fraction);
  g("min_healthy", a.guards.min_healthy, b.guards.min_healthy);
  return out;
}

std::string CapacityText(const std::optional<double>& c) {
  return c.has_value() ? absl::StrFormat("%g", *c) : std::string("(none)");
}

}  // namespace

std::string_view ChangeName(Change c) {
  switch (c) {
    case Change::kUnchanged:
      return "unchanged";
    case Change::kAdded:
      return "added";
    case Change::kRemoved:
      return "removed";
    case Change::kChanged:
      return "changed";
  }
  return "unknown";
}

double MovedFraction(std::span<const shm::TableEntry> old_table, std::span<const int64_t> old_owner,
                     std::span<const shm::TableEntry> new_table,
                     std::span<const int64_t> new_owner) {
  if (old_table.empty()) return 0;
  if (new_table.empty()) return 1;
  constexpr uint64_t kSpace = uint64_t{1} << 32;
  const uint64_t mo = old_table.size();
  const uint64_t mn = new_table.size();
  // ⌈i·2^32 / m⌉: where slot i of a table of size m begins (m < 2^24, so no overflow).
  auto begin = [](uint64_t i, uint64_t m) { return (i * kSpace + m - 1) / m; };
  uint64_t i = 0;
  uint64_t j = 0;
  uint64_t u = 0;
  uint64_t moved = 0;
  while (u < kSpace) {
    const uint64_t end_old = begin(i + 1, mo);
    const uint64_t end_new = begin(j + 1, mn);
    const uint64_t end = std::min(end_old, end_new);
    if (old_owner[old_table[i]] != new_owner[new_table[j]]) moved += end - u;
    u = end;
    if (end == end_old) ++i;
    if (end == end_new) ++j;
  }
  return static_cast<double>(moved) / static_cast<double>(kSpace);
}

bool Plan::HasChanges() const {
  if (!settings_changes.empty()) return true;
  return std::any_of(vips.begin(), vips.end(),
                     [](const VipPlan& v) { return v.change != Change::kUnchanged; });
}

std::vector<std::string> Plan::Violations() const {
  std::vector<std::string> out;
  for (const VipPlan& v : vips) {
    for (const GuardCheck& g : v.guards) {
      if (!g.ok) out.push_back(absl::StrFormat("%s: %s: %s", v.name, g.guard, g.detail));
    }
    for (const std::string& s : v.inconsistencies) {
      out.push_back(absl::StrFormat("%s: internal error: %s", v.name, s));
    }
  }
  return out;
}

Plan ComputePlan(const PlanSide* before, const PlanSide& after,
                 const std::map<std::string, double>& vip_rates, uint64_t against_generation) {
  Plan plan;
  plan.against_generation = against_generation;
  bool rehash = false;
  if (before != nullptr) {
    plan.settings_changes = SettingsChanges(*before->config, *after.config);
    rehash =
        std::memcmp(before->config->dataplane.hash_key, after.config->dataplane.hash_key, 16) != 0;
  }
  std::map<std::string, size_t> old_index;
  if (before != nullptr) {
    for (size_t i = 0; i < before->state->vips.size(); ++i) {
      old_index[before->state->vips[i].config.name] = i;
    }
  }
  for (size_t i = 0; i < after.state->vips.size(); ++i) {
    const SideVip now = Side(after, i);
    const EffectiveVip& v = *now.vip;
    VipPlan vp;
    vp.name = v.config.name;
    vp.service = ServiceName(v.config);
    vp.id = v.id;
    vp.table_size = static_cast<uint32_t>(now.table->size());
    vp.healthy_fraction = v.healthy_fraction;
    vp.panic = v.panic;
    if (auto r = vip_rates.find(v.config.name); r != vip_rates.end()) vp.new_flow_rate = r->second;

    std::optional<SideVip> old;
    if (auto it = old_index.find(v.config.name); it != old_index.end()) {
      old = Side(*before, it->second);
      old_index.erase(it);
    }
    if (!old.has_value()) {
      vp.change = Change::kAdded;
    } else {
      vp.old_table_size = static_cast<uint32_t>(old->table->size());
      vp.changes = VipChanges(old->vip->config, v.config);
    }

    uint64_t eligible_weight = 0;
    for (const EffectiveBackend& b : v.backends) {
      if (b.published == shm::BackendState::kActive) eligible_weight += b.weight;
    }
    std::map<std::string, size_t> old_backend;
    if (old.has_value()) {
      for (size_t j = 0; j < old->vip->backends.size(); ++j) {
        old_backend[old->vip->backends[j].key] = j;
      }
    }
    bool backends_changed = false;
    const double m = static_cast<double>(std::max<size_t>(now.table->size(), 1));
    for (size_t j = 0; j < v.backends.size(); ++j) {
      const EffectiveBackend& b = v.backends[j];
      BackendPlan bp;
      bp.name = b.name;
      bp.id = b.id;
      bp.state = b.state;
      bp.health = b.health;
      bp.published = b.published;
      bp.overridden = b.overridden;
      bp.weight = b.weight;
      bp.slots = now.counts[j];
      bp.table_share = now.table->empty() ? 0 : bp.slots / m;
      bp.weight_share = b.published == shm::BackendState::kActive && eligible_weight > 0
                            ? static_cast<double>(b.weight) / static_cast<double>(eligible_weight)
                            : 0;
      bp.capacity_cps = b.config.capacity_cps;
      if (vp.new_flow_rate.has_value()) bp.expected_cps = *vp.new_flow_rate * bp.table_share;
      if (std::abs(bp.table_share - bp.weight_share) > kShareTolerance) {
        vp.inconsistencies.push_back(
            absl::StrFormat("backend %s has a table share of %s but a weight share of %s", b.name,
                            Percent(bp.table_share), Percent(bp.weight_share)));
      }
      if (!old.has_value()) {
        bp.change = Change::kAdded;
      } else if (auto it = old_backend.find(b.key); it == old_backend.end()) {
        bp.change = Change::kAdded;
        backends_changed = true;
      } else {
        const EffectiveBackend& ob = old->vip->backends[it->second];
        bp.old_slots = old->counts[it->second];
        bp.old_table_share = old->table->empty() ? 0 : bp.old_slots / double(old->table->size());
        if (ob.weight != b.weight) {
          bp.changes.push_back(absl::StrFormat("weight %d -> %d", ob.weight, b.weight));
        }
        if (ob.state != b.state) {
          bp.changes.push_back(absl::StrFormat("state %s -> %s", OperatorStateName(ob.state),
                                               OperatorStateName(b.state)));
        }
        if (ob.config.capacity_cps != b.config.capacity_cps) {
          bp.changes.push_back(absl::StrFormat("capacity_cps %s -> %s",
                                               CapacityText(ob.config.capacity_cps),
                                               CapacityText(b.config.capacity_cps)));
        }
        if (ob.published != b.published) {
          bp.changes.push_back(absl::StrFormat("published %s -> %s",
                                               PublishedStateName(ob.published),
                                               PublishedStateName(b.published)));
        }
        bp.change = bp.changes.empty() ? Change::kUnchanged : Change::kChanged;
        if (bp.change != Change::kUnchanged || bp.slots != bp.old_slots) backends_changed = true;
        old_backend.erase(it);
      }
      vp.backends.push_back(std::move(bp));
    }
    if (old.has_value()) {
      for (const auto& [key, j] : old_backend) {
        BackendPlan bp = RemovedBackend(*old, j);
        bp.capacity_cps = old->vip->backends[j].config.capacity_cps;
        vp.backends.push_back(std::move(bp));
        backends_changed = true;
      }
      // Owners are compared by identity (address, port): new backends are 0..n-1, old ones map
      // to the same number or to a negative one of their own.
      std::map<std::pair<IpAddress, uint16_t>, int64_t> identity;
      std::vector<int64_t> new_owner(v.backends.size());
      for (size_t j = 0; j < v.backends.size(); ++j) {
        identity[{v.backends[j].config.address, v.backends[j].config.port}] = int64_t(j);
        new_owner[j] = int64_t(j);
      }
      std::vector<int64_t> old_owner(old->vip->backends.size());
      for (size_t j = 0; j < old_owner.size(); ++j) {
        const auto& ob = old->vip->backends[j].config;
        auto it = identity.find({ob.address, ob.port});
        old_owner[j] = it == identity.end() ? -1 - int64_t(j) : it->second;
      }
      const bool service_changed = old->vip->config.address != v.config.address ||
                                   old->vip->config.port != v.config.port ||
                                   old->vip->config.proto != v.config.proto;
      if (service_changed) {
        vp.moved_fraction = 1;
      } else if (rehash) {
        // Independent hashes: a flow stays only where both tables happen to agree, with
        // probability Σ old share × new share over the backends in both.
        double stay = 0;
        for (const BackendPlan& bp : vp.backends) stay += bp.old_table_share * bp.table_share;
        vp.moved_fraction = old->table->empty() ? 0 : 1 - stay;
      } else {
        vp.moved_fraction = MovedFraction(*old->table, old_owner, *now.table, new_owner);
      }
      const bool changed = !vp.changes.empty() || backends_changed || rehash ||
                           vp.moved_fraction > 0 || !plan.settings_changes.empty();
      vp.change = changed ? Change::kChanged : Change::kUnchanged;
    }

    if (vp.change != Change::kUnchanged) {
      const GuardsConfig& g = v.config.guards;
      // The share the config asks for: weights of the backends the operator keeps active,
      // whatever their health (health is the panic threshold's business, not a change's).
      uint64_t intended = 0;
      for (const EffectiveBackend& b : v.backends) {
        if (b.state == OperatorState::kActive) intended += b.weight;
      }
      GuardCheck share{"max_backend_share", true, 0, g.max_backend_share, ""};
      for (const EffectiveBackend& b : v.backends) {
        if (b.state != OperatorState::kActive || intended == 0) continue;
        const double s = static_cast<double>(b.weight) / static_cast<double>(intended);
        if (s > share.value) {
          share.value = s;
          share.detail = absl::StrFormat("%s would get %s of new flows (limit %s)", b.name,
                                         Percent(s), Percent(g.max_backend_share));
        }
      }
      share.ok = share.value <= g.max_backend_share + 1e-12;
      vp.guards.push_back(share);
      if (old.has_value()) {
        GuardCheck moved{"max_moved_fraction", true, vp.moved_fraction, g.max_moved_fraction, ""};
        moved.ok = vp.moved_fraction <= g.max_moved_fraction + 1e-12;
        moved.detail = absl::StrFormat(
            "%s of the VIP's flows would reach another backend "
            "(limit %s)",
            Percent(vp.moved_fraction), Percent(g.max_moved_fraction));
        vp.guards.push_back(moved);
      }
      // Not configurable: a change that leaves a VIP without any backend for new flows is never
      // what the operator meant (it is what `backend drain` of the last backend would do).
      GuardCheck eligible{"eligible_backends", !now.table->empty(),
                          static_cast<double>(eligible_weight > 0 ? 1 : 0), 1, ""};
      eligible.detail = now.table->empty()
                            ? "no backend would get new flows (all are down, draining or "
                              "disabled): the VIP's new flows would be dropped"
                            : "at least one backend gets new flows";
      vp.guards.push_back(eligible);
      GuardCheck cap{"capacity", true, 0, 1, ""};
      if (!vp.new_flow_rate.has_value()) {
        cap.detail = "no traffic data for this VIP: not judged";
      } else {
        cap.detail =
            absl::StrFormat("every backend within capacity at %.0f new flows/s", *vp.new_flow_rate);
        for (const BackendPlan& bp : vp.backends) {
          if (!bp.capacity_cps.has_value() || !bp.expected_cps.has_value()) continue;
          const double load = *bp.expected_cps / *bp.capacity_cps;
          if (load > cap.value) cap.value = load;
          if (load > 1 && cap.ok) {
            cap.ok = false;
            cap.detail = absl::StrFormat(
                "%s would receive %.0f new flows/s (%s of the VIP's current %.0f/s), above its "
                "capacity_cps %g",
                bp.name, *bp.expected_cps, Percent(bp.table_share), *vp.new_flow_rate,
                *bp.capacity_cps);
          }
        }
      }
      vp.guards.push_back(cap);
    }
    plan.vips.push_back(std::move(vp));
  }
  // VIPs that the new config drops.
  for (const auto& [name, i] : old_index) {
    const SideVip old = Side(*before, i);
    VipPlan vp;
    vp.name = name;
    vp.service = ServiceName(old.vip->config);
    vp.id = old.vip->id;
    vp.change = Change::kRemoved;
    vp.old_table_size = static_cast<uint32_t>(old.table->size());
    vp.moved_fraction = 1;
    if (auto r = vip_rates.find(name); r != vip_rates.end()) vp.new_flow_rate = r->second;
    for (size_t j = 0; j < old.vip->backends.size(); ++j) {
      vp.backends.push_back(RemovedBackend(old, j));
    }
    plan.vips.push_back(std::move(vp));
  }
  return plan;
}

nlohmann::json PlanToJson(const Plan& plan) {
  using nlohmann::json;
  json vips = json::array();
  for (const VipPlan& v : plan.vips) {
    json backends = json::array();
    for (const BackendPlan& b : v.backends) {
      json jb = {{"name", b.name},
                 {"id", b.id},
                 {"change", ChangeName(b.change)},
                 {"changes", b.changes},
                 {"state", OperatorStateName(b.state)},
                 {"health", HealthName(b.health)},
                 {"published", PublishedStateName(b.published)},
                 {"overridden", b.overridden},
                 {"weight", b.weight},
                 {"slots", b.slots},
                 {"old_slots", b.old_slots},
                 {"table_share", b.table_share},
                 {"old_table_share", b.old_table_share},
                 {"weight_share", b.weight_share},
                 {"capacity_cps", nullptr},
                 {"expected_cps", nullptr},
                 {"load", nullptr}};
      if (b.capacity_cps.has_value()) jb["capacity_cps"] = *b.capacity_cps;
      if (b.expected_cps.has_value()) jb["expected_cps"] = *b.expected_cps;
      if (b.capacity_cps.has_value() && b.expected_cps.has_value()) {
        jb["load"] = *b.expected_cps / *b.capacity_cps;
      }
      backends.push_back(std::move(jb));
    }
    json guards = json::array();
    for (const GuardCheck& g : v.guards) {
      guards.push_back({{"guard", g.guard},
                        {"ok", g.ok},
                        {"value", g.value},
                        {"limit", g.limit},
                        {"detail", g.detail}});
    }
    json jv = {{"name", v.name},
               {"service", v.service},
               {"id", v.id},
               {"change", ChangeName(v.change)},
               {"changes", v.changes},
               {"table_size", v.table_size},
               {"old_table_size", v.old_table_size},
               {"moved_fraction", v.moved_fraction},
               {"new_flow_rate", nullptr},
               {"healthy_fraction", v.healthy_fraction},
               {"panic", v.panic},
               {"backends", std::move(backends)},
               {"guards", std::move(guards)},
               {"inconsistencies", v.inconsistencies}};
    if (v.new_flow_rate.has_value()) jv["new_flow_rate"] = *v.new_flow_rate;
    vips.push_back(std::move(jv));
  }
  return {{"against_generation", plan.against_generation},
          {"settings_changes", plan.settings_changes},
          {"vips", std::move(vips)},
          {"has_changes", plan.HasChanges()},
          {"ok", plan.ok()},
          {"violations", plan.Violations()}};
}

}  // namespace fulcrum::controlplane
