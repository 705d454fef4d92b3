// Finding Fulcrum's programs where the kernel keeps them, from any process: the program on an
// interface (XDP, tc), its maps, its per-CPU counters; and tc attachment by fixed handle.
//
// A program loaded by another process (the DPDK af_xdp PMD, an earlier `fulcrum-decap
// attach`) has no skeleton here, so its maps are found through the program: interface ->
// program id (netlink) -> map ids (BPF_OBJ_GET_INFO_BY_FD) -> the map whose name, type, key and
// value sizes all match what abi.h declares. The name alone could match another program's map;
// the shape check makes that a NotFound instead of a write into the wrong map.
#pragma once

#include <linux/bpf.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bpf/counters.h"
#include "bpf/scoped_fd.h"

struct bpf_tc_hook;

namespace fulcrum::bpf {

// if_nametoindex(), with NotFound naming the interface.
absl::StatusOr<int> InterfaceIndex(std::string_view name);

struct ProgramInfo {
  uint32_t id = 0;
  uint32_t type = 0;  // enum bpf_prog_type
  std::string name;   // at most 15 characters
  std::vector<uint32_t> map_ids;
};
absl::StatusOr<ProgramInfo> GetProgramInfo(int prog_fd);
absl::StatusOr<ProgramInfo> GetProgramInfoById(uint32_t id);

// The XDP program on ifindex: its id and whether it runs in driver (native) mode. id 0: none.
struct XdpAttachment {
  uint32_t prog_id = 0;
  bool driver_mode = false;
};
absl::StatusOr<XdpAttachment> QueryXdp(int ifindex);

// Attaches prog_fd as the XDP program of ifindex in driver mode (generic: the kernel's skb
// mode), atomically replacing `expected_prog_id` if it is not 0, and failing with
// FailedPrecondition if another program is attached meanwhile.
absl::Status AttachXdp(int ifindex, int prog_fd, uint32_t expected_prog_id, bool generic);
// Detaches prog_id from ifindex, only if it is still the one attached.
absl::Status DetachXdp(int ifindex, uint32_t prog_id, bool driver_mode);

enum class TcHook { kIngress, kEgress };
// The program id of the filter (handle, FULCRUM_TC_PRIORITY) on ifindex's clsact hook; 0 when
// there is none (or no clsact qdisc at all).
absl::StatusOr<uint32_t> QueryTc(int ifindex, TcHook hook, uint32_t handle);
// Creates the clsact qdisc if needed and attaches (or replaces) the filter (handle,
// FULCRUM_TC_PRIORITY). Other filters on the hook are left alone.
absl::Status AttachTc(int ifindex, TcHook hook, uint32_t handle, int prog_fd);
// Removes that filter; the clsact qdisc stays, other filters may live on it.
absl::Status DetachTc(int ifindex, TcHook hook, uint32_t handle);

struct MapShape {
  std::string_view name;  // as BPF_OBJ_NAME_LEN keeps it; a name ending in ".rodata" matches
                          // libbpf's "<object prefix>.rodata"
  uint32_t type;          // enum bpf_map_type
  uint32_t key_size;
  uint32_t value_size;
};
// The map of `prog` with that shape, opened read-only or read-write. NotFound, naming the
// program, if it has none.
absl::StatusOr<ScopedFd> FindProgramMap(const ProgramInfo& prog, const MapShape& shape,
                                        bool read_only);

// Sums a BPF_MAP_TYPE_PERCPU_ARRAY of fulcrum_counter over the possible CPUs.
absl::StatusOr<CounterValues> ReadCounters(int map_fd, uint32_t count);

// All keys of a hash map, each key_size bytes.
absl::StatusOr<std::vector<std::vector<uint8_t>>> MapKeys(int map_fd, uint32_t key_size);

}  // namespace fulcrum::bpf
