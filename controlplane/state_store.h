// StateStore: the control plane's state directory. Layout (docs/controlplane.md):
//
//   <dir>/LOCK                          flock()ed by the one server that uses the directory
//   <dir>/ids.json                      the stable VIP and backend ids (id_registry.h)
//   <dir>/generations/<20 digits>.json  one GenerationRecord per published generation
//
// Every file is written durably (durable_file.h): after a crash at any instant each file holds
// its old or its new contents, and leftover temporaries are deleted at the next Open().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controlplane/generation_record.h"
#include "nlohmann/json.hpp"

namespace fulcrum::controlplane {

class StateStore {
 public:
  // Creates the directory (mode 0750) when missing and takes its lock: FailedPrecondition when
  // another server holds it.
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(const std::string& dir);
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // All records, oldest first. A file that does not parse is skipped and named in `warnings`
  // (it cannot come from a crash; it means someone edited or damaged the directory).
  std::vector<GenerationRecord> LoadHistory(std::vector<std::string>& warnings) const;
  absl::Status Write(const GenerationRecord& r);
  // Deletes the oldest records so that at most `keep` remain, never `protect`.
  absl::Status Prune(size_t keep, uint64_t protect);

  absl::StatusOr<std::optional<nlohmann::json>> LoadIds() const;
  absl::Status WriteIds(const nlohmann::json& ids);

  const std::string& dir() const { return dir_; }
  std::string RecordPath(uint64_t generation) const;

 private:
  StateStore(std::string dir, int lock_fd) : dir_(std::move(dir)), lock_fd_(lock_fd) {}
  std::vector<uint64_t> ListGenerations() const;

  std::string dir_;
  int lock_fd_;
};

}  // namespace fulcrum::controlplane
