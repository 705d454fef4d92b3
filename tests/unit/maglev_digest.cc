// Prints a digest of the Maglev table for a generated backend set, so that a test can compare
// tables built in separate processes: maglev_digest BACKENDS TABLE_SIZE SHUFFLE_SEED
#include <cstdio>
#include <cstdlib>

#include "tests/unit/maglev_testing.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s BACKENDS TABLE_SIZE SHUFFLE_SEED\n", argv[0]);
    return 2;
  }
  const auto backends = fulcrum::testing::GenerateBackends(
      static_cast<uint32_t>(std::atoi(argv[1])), static_cast<uint32_t>(std::atoi(argv[3])));
  const auto table = fulcrum::BuildMaglevTable(backends, static_cast<uint32_t>(std::atoi(argv[2])));
  if (!table.ok()) {
    std::fprintf(stderr, "%s\n", table.status().ToString().c_str());
    return 1;
  }
  std::printf("%016llx\n",
              static_cast<unsigned long long>(fulcrum::testing::Digest(backends, *table)));
  return 0;
}
