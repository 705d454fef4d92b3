// StateStore: lock, records, ids.
#include "controlplane/state_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "controlplane/durable_file.h"

namespace fulcrum::controlplane {

absl::StatusOr<std::unique_ptr<StateStore>> StateStore::Open(const std::string& dir) {
  if (absl::Status s = EnsureDirectory(dir, 0750); !s.ok()) return s;
  if (absl::Status s = EnsureDirectory(dir + "/generations", 0750); !s.ok()) return s;
  const std::string lock = dir + "/LOCK";
  const int fd = open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return ErrnoStatus(errno, "open", lock);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "state directory %s is in use by another fulcrumctl serve (its LOCK is held); stop "
          "that one or give this one --state-dir of its own",
          dir));
    }
    return ErrnoStatus(err, "flock", lock);
  }
  for (const std::string& d : {dir, dir + "/generations"}) {
    if (absl::StatusOr<int> n = RemoveTemporaries(d); !n.ok()) {
      close(fd);
      return n.status();
    }
  }
  return std::unique_ptr<StateStore>(new StateStore(dir, fd));
}

StateStore::~StateStore() {
  if (lock_fd_ >= 0) close(lock_fd_);  // releases the flock
}

std::string StateStore::RecordPath(uint64_t generation) const {
  return absl::StrFormat("%s/generations/%020d.json", dir_, generation);
}

std::vector<uint64_t> StateStore::ListGenerations() const {
  std::vector<uint64_t> out;
  DIR* d = opendir((dir_ + "/generations").c_str());
  if (d == nullptr) return out;
  while (const dirent* e = readdir(d)) {
    const std::string name(e->d_name);
    if (name.size() != 25 || name.substr(20) != ".json") continue;
    uint64_t g = 0;
    if (absl::SimpleAtoi(name.substr(0, 20), &g) && g > 0) out.push_back(g);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<GenerationRecord> StateStore::LoadHistory(std::vector<std::string>& warnings) const {
  std::vector<GenerationRecord> out;
  for (uint64_t g : ListGenerations()) {
    const std::string path = RecordPath(g);
    absl::StatusOr<std::string> text = ReadWholeFile(path);
    if (!text.ok()) {
      warnings.push_back(std::string(text.status().message()));
      continue;
    }
    nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      warnings.push_back(absl::StrFormat("%s: not valid JSON; skipped", path));
      continue;
    }
    absl::StatusOr<GenerationRecord> r = RecordFromJson(j);
    if (!r.ok() || r->generation != g) {
      warnings.push_back(absl::StrFormat("%s: %s; skipped", path,
                                         r.ok()
                                             ? absl::StrFormat("holds generation %d", r->generation)
                                             : std::string(r.status().message())));
      continue;
    }
    out.push_back(*std::move(r));
  }
  return out;
}

absl::Status StateStore::Write(const GenerationRecord& r) {
  return WriteFileDurably(RecordPath(r.generation), RecordToJson(r).dump(1) + "\n");
}

absl::Status StateStore::Prune(size_t keep, uint64_t protect) {
  std::vector<uint64_t> all = ListGenerations();
  if (all.size() <= keep) return absl::OkStatus();
  size_t excess = all.size() - keep;
  for (uint64_t g : all) {
    if (excess == 0) break;
    if (g == protect) continue;
    if (unlink(RecordPath(g).c_str()) != 0 && errno != ENOENT) {
      return ErrnoStatus(errno, "unlink", RecordPath(g));
    }
    --excess;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<nlohmann::json>> StateStore::LoadIds() const {
  const std::string path = dir_ + "/ids.json";
  absl::StatusOr<std::string> text = ReadWholeFile(path);
  if (!text.ok()) {
    if (absl::IsNotFound(text.status())) return std::optional<nlohmann::json>();
    return text.status();
  }
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded()) {
    return absl::DataLossError(absl::StrFormat(
        "%s is not valid JSON: the stable ids cannot be read (restore it from a backup; "
        "deleting it renumbers every VIP and backend's counters)",
        path));
  }
  return std::optional<nlohmann::json>(std::move(j));
}

absl::Status StateStore::WriteIds(const nlohmann::json& ids) {
  return WriteFileDurably(dir_ + "/ids.json", ids.dump(1) + "\n");
}

}  // namespace fulcrum::controlplane
