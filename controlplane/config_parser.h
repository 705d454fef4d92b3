// ConfigParser: YAML text to a validated Config, reporting every error at once, each with its
// path in the file (`vips[1].backends[3].weight`), its line, and what would be valid.
//
// yaml-cpp throws; nothing escapes from here: syntax errors become ConfigErrors too. The
// checks are those of the data plane's snapshot validation and more (a table size too small
// for its backends, impossible health-check timings, capacity of the shm segment), so a config
// that passes here builds a snapshot that fulcrumd accepts.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/config.h"
#include "nlohmann/json.hpp"

namespace fulcrum::controlplane {

struct ConfigError {
  std::string path;  // "" for the file as a whole
  int line = 0;      // 1-based; 0 when unknown
  std::string message;

  friend bool operator==(const ConfigError&, const ConfigError&) = default;
};

struct ParsedConfig {
  Config config;  // meaningful only when errors is empty
  std::vector<ConfigError> errors;

  bool ok() const { return errors.empty(); }
};

// Never throws.
ParsedConfig ParseConfig(std::string_view yaml);

// The file's contents; NotFound / PermissionDenied / FailedPrecondition (too large, not a file)
// with the path in the message.
absl::StatusOr<std::string> ReadConfigFile(const std::string& path);

// One line per error: "FILE:LINE: PATH: MESSAGE".
std::string FormatErrors(std::string_view file, const std::vector<ConfigError>& errors);
nlohmann::json ErrorsToJson(const std::vector<ConfigError>& errors);

}  // namespace fulcrum::controlplane
