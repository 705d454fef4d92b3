// EffectiveState: overrides, health and the panic threshold applied to a config.
#include "controlplane/effective_state.h"

#include "absl/strings/str_format.h"

namespace fulcrum::controlplane {

std::string_view HealthName(Health h) {
  switch (h) {
    case Health::kUnchecked:
      return "unchecked";
    case Health::kUp:
      return "up";
    case Health::kDown:
      return "down";
  }
  return "unknown";
}

const EffectiveVip* EffectiveState::FindVip(std::string_view name) const {
  for (const EffectiveVip& v : vips) {
    if (v.config.name == name) return &v;
  }
  return nullptr;
}

std::vector<std::string> VipKeys(const Config& cfg) {
  std::vector<std::string> out;
  for (const VipConfig& v : cfg.vips) out.push_back(v.name);
  return out;
}

std::vector<std::string> BackendKeys(const Config& cfg) {
  std::vector<std::string> out;
  for (const VipConfig& v : cfg.vips) {
    for (const BackendConfig& b : v.backends) out.push_back(BackendKey(v.name, b.address, b.port));
  }
  return out;
}

absl::StatusOr<EffectiveState> BuildEffective(const Config& cfg, const Ids& ids,
                                              const Overrides& overrides, const HealthMap& health) {
  EffectiveState out;
  for (const VipConfig& vc : cfg.vips) {
    EffectiveVip v;
    v.config = vc;
    auto vid = ids.vips.find(vc.name);
    if (vid == ids.vips.end()) {
      return absl::FailedPreconditionError(absl::StrFormat("VIP %s has no id", vc.name));
    }
    v.id = vid->second;
    uint64_t serving = 0;
    uint64_t healthy = 0;
    bool any_down = false;
    for (const BackendConfig& bc : vc.backends) {
      EffectiveBackend b;
      b.config = bc;
      b.name = BackendName(bc.address, bc.port);
      b.key = BackendKey(vc.name, bc.address, bc.port);
      auto bid = ids.backends.find(b.key);
      if (bid == ids.backends.end()) {
        return absl::FailedPreconditionError(absl::StrFormat("backend %s has no id", b.key));
      }
      b.id = bid->second;
      b.state = bc.state;
      b.weight = bc.weight;
      if (auto o = overrides.find(b.key); o != overrides.end()) {
        if (o->second.state.has_value()) b.state = *o->second.state;
        if (o->second.weight.has_value()) b.weight = *o->second.weight;
        b.overridden = o->second.state.has_value() || o->second.weight.has_value();
      }
      b.check_port = CheckPort(vc, bc);
      if (vc.health_check.type == CheckType::kNone || b.state == OperatorState::kDisabled) {
        b.health = Health::kUnchecked;
      } else {
        auto h = health.find({bc.address, b.check_port});
        b.health = h == health.end() ? Health::kUp : h->second;
      }
      if (b.state == OperatorState::kActive) {
        serving += b.weight;
        if (b.health != Health::kDown) {
          healthy += b.weight;
        } else {
          any_down = true;
        }
      }
      v.backends.push_back(std::move(b));
    }
    v.healthy_fraction =
        serving == 0 ? 1.0 : static_cast<double>(healthy) / static_cast<double>(serving);
    v.panic = any_down && v.healthy_fraction < vc.guards.min_healthy;
    for (EffectiveBackend& b : v.backends) {
      switch (b.state) {
        case OperatorState::kDisabled:
          b.published = shm::BackendState::kDisabled;
          break;
        case OperatorState::kDraining:
          b.published =
              b.health == Health::kDown ? shm::BackendState::kDown : shm::BackendState::kDraining;
          break;
        case OperatorState::kActive:
          b.published = b.health == Health::kDown && !v.panic ? shm::BackendState::kDown
                                                              : shm::BackendState::kActive;
          break;
      }
    }
    out.vips.push_back(std::move(v));
  }
  return out;
}

std::vector<shm::VipSpec> ToSpecs(const EffectiveState& state) {
  std::vector<shm::VipSpec> out;
  for (const EffectiveVip& v : state.vips) {
    shm::VipSpec s;
    s.name = v.config.name;
    s.address = v.config.address;
    s.port = v.config.port;
    s.proto = v.config.proto;
    s.fragments = v.config.fragments;
    s.id = v.id;
    s.table_size = v.config.table_size;
    for (const EffectiveBackend& b : v.backends) {
      shm::BackendSpec bs;
      bs.address = b.config.address;
      bs.port = b.config.port;
      bs.weight = b.weight;
      bs.state = b.published;
      bs.id = b.id;
      s.backends.push_back(bs);
    }
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace fulcrum::controlplane
