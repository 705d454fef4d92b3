// Programs and maps the kernel holds: lookups by interface and id, tc and XDP attachment.
#include "bpf/kernel.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/str_format.h"
#include "bpf/abi.h"
#include "bpf/bpf_status.h"

namespace fulcrum::bpf {
namespace {

bpf_tc_hook MakeHook(int ifindex, TcHook hook) {
  bpf_tc_hook h{};
  h.sz = sizeof(h);
  h.ifindex = ifindex;
  h.attach_point = hook == TcHook::kIngress ? BPF_TC_INGRESS : BPF_TC_EGRESS;
  return h;
}

bpf_tc_opts MakeTcOpts(uint32_t handle) {
  bpf_tc_opts o{};
  o.sz = sizeof(o);
  o.handle = handle;
  o.priority = FULCRUM_TC_PRIORITY;
  return o;
}

const char* HookName(TcHook hook) { return hook == TcHook::kIngress ? "ingress" : "egress"; }

// libbpf logs the kernel's netlink error text for every failed tc query, which for "is our
// filter there?" is the expected answer, not news. Queries raise this; the log hook drops the
// kernel's text while it is raised and hands everything else (the verifier's log included) to
// the print function that was there before (libbpf's default, or the application's).
thread_local int quiet_netlink = 0;
libbpf_print_fn_t previous_print = nullptr;

int LogHook(libbpf_print_level level, const char* format, va_list args) {
  if (quiet_netlink > 0 && std::strstr(format, "Kernel error message") != nullptr) return 0;
  if (previous_print != nullptr) return previous_print(level, format, args);
  return level == LIBBPF_DEBUG ? 0 : std::vfprintf(stderr, format, args);
}

struct QuietNetlink {
  QuietNetlink() {
    static const bool installed = [] {
      previous_print = libbpf_set_print(LogHook);
      return true;
    }();
    (void)installed;
    ++quiet_netlink;
  }
  ~QuietNetlink() { --quiet_netlink; }
};

}  // namespace

absl::StatusOr<int> InterfaceIndex(std::string_view name) {
  const std::string s(name);
  const unsigned index = if_nametoindex(s.c_str());
  if (index == 0) {
    return absl::NotFoundError(
        absl::StrFormat("no network interface named '%s' here (ip link show lists them): %s", name,
                        std::strerror(errno)));
  }
  return static_cast<int>(index);
}

absl::StatusOr<ProgramInfo> GetProgramInfo(int prog_fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (int err = bpf_obj_get_info_by_fd(prog_fd, &info, &len); err != 0) {
    return LibbpfError(err, "reading a BPF program's info");
  }
  ProgramInfo out;
  out.id = info.id;
  out.type = info.type;
  out.name = std::string(info.name, strnlen(info.name, sizeof(info.name)));
  const uint32_t nr_maps = info.nr_map_ids;
  if (nr_maps > 0) {
    out.map_ids.resize(nr_maps);
    info = bpf_prog_info{};
    info.nr_map_ids = nr_maps;
    info.map_ids = reinterpret_cast<uintptr_t>(out.map_ids.data());
    len = sizeof(info);
    if (int err = bpf_obj_get_info_by_fd(prog_fd, &info, &len); err != 0) {
      return LibbpfError(err, absl::StrFormat("reading the map ids of BPF program %u", out.id));
    }
    out.map_ids.resize(std::min(nr_maps, info.nr_map_ids));
  }
  return out;
}

absl::StatusOr<ProgramInfo> GetProgramInfoById(uint32_t id) {
  const int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) return LibbpfError(fd, absl::StrFormat("opening BPF program %u", id));
  ScopedFd owned(fd);
  return GetProgramInfo(owned.get());
}

absl::StatusOr<XdpAttachment> QueryXdp(int ifindex) {
  bpf_xdp_query_opts opts{};
  opts.sz = sizeof(opts);
  if (int err = bpf_xdp_query(ifindex, 0, &opts); err != 0) {
    return LibbpfError(err, absl::StrFormat("querying the XDP program of interface %d", ifindex));
  }
  XdpAttachment a;
  if (opts.drv_prog_id != 0) {
    a.prog_id = opts.drv_prog_id;
    a.driver_mode = true;
  } else {
    a.prog_id = opts.skb_prog_id;
  }
  return a;
}

absl::Status AttachXdp(int ifindex, int prog_fd, uint32_t expected_prog_id, bool generic) {
  uint32_t flags = generic ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
  bpf_xdp_attach_opts opts{};
  opts.sz = sizeof(opts);
  ScopedFd old;
  if (expected_prog_id != 0) {
    const int fd = bpf_prog_get_fd_by_id(expected_prog_id);
    if (fd < 0) return LibbpfError(fd, absl::StrFormat("opening BPF program %u", expected_prog_id));
    old.Reset(fd);
    opts.old_prog_fd = old.get();
    flags |= XDP_FLAGS_REPLACE;
  } else {
    flags |= XDP_FLAGS_UPDATE_IF_NOEXIST;
  }
  if (int err = bpf_xdp_attach(ifindex, prog_fd, flags, &opts); err != 0) {
    if (err == -EEXIST || err == -EBUSY) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "interface %d has another XDP program attached (or one in the other mode); "
          "`ip link show` names it",
          ifindex));
    }
    if (err == -EOPNOTSUPP && !generic) {
      return absl::UnimplementedError(
          absl::StrFormat("interface %d: its driver has no native XDP (%s); use the tc variant",
                          ifindex, std::strerror(EOPNOTSUPP)));
    }
    return LibbpfError(err, absl::StrFormat("attaching XDP program to interface %d", ifindex));
  }
  return absl::OkStatus();
}

absl::Status DetachXdp(int ifindex, uint32_t prog_id, bool driver_mode) {
  const int fd = bpf_prog_get_fd_by_id(prog_id);
  if (fd < 0) return LibbpfError(fd, absl::StrFormat("opening BPF program %u", prog_id));
  ScopedFd old(fd);
  bpf_xdp_attach_opts opts{};
  opts.sz = sizeof(opts);
  opts.old_prog_fd = old.get();
  const uint32_t flags =
      (driver_mode ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE) | XDP_FLAGS_REPLACE;
  if (int err = bpf_xdp_detach(ifindex, flags, &opts); err != 0) {
    return LibbpfError(
        err, absl::StrFormat("detaching XDP program %u from interface %d", prog_id, ifindex));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> QueryTc(int ifindex, TcHook hook, uint32_t handle) {
  bpf_tc_hook h = MakeHook(ifindex, hook);
  bpf_tc_opts o = MakeTcOpts(handle);
  const QuietNetlink quiet;
  const int err = bpf_tc_query(&h, &o);
  // ENOENT: no such filter; EINVAL: no clsact qdisc to look in.
  if (err == -ENOENT || err == -EINVAL) return 0u;
  if (err != 0) {
    return LibbpfError(err, absl::StrFormat("querying tc %s filter %#x on interface %d",
                                            HookName(hook), handle, ifindex));
  }
  return o.prog_id;
}

absl::Status AttachTc(int ifindex, TcHook hook, uint32_t handle, int prog_fd) {
  bpf_tc_hook h = MakeHook(ifindex, hook);
  int err;
  {
    const QuietNetlink quiet;  // EEXIST, the usual answer, comes with the kernel's text
    err = bpf_tc_hook_create(&h);
  }
  if (err != 0 && err != -EEXIST) {
    return LibbpfError(err, absl::StrFormat("creating the clsact qdisc on interface %d", ifindex));
  }
  bpf_tc_opts o = MakeTcOpts(handle);
  o.prog_fd = prog_fd;
  o.flags = BPF_TC_F_REPLACE;
  if (err = bpf_tc_attach(&h, &o); err != 0) {
    return LibbpfError(err, absl::StrFormat("attaching tc %s filter %#x to interface %d",
                                            HookName(hook), handle, ifindex));
  }
  return absl::OkStatus();
}

absl::Status DetachTc(int ifindex, TcHook hook, uint32_t handle) {
  bpf_tc_hook h = MakeHook(ifindex, hook);
  bpf_tc_opts o = MakeTcOpts(handle);
  if (int err = bpf_tc_detach(&h, &o); err != 0) {
    return LibbpfError(err, absl::StrFormat("detaching tc %s filter %#x from interface %d",
                                            HookName(hook), handle, ifindex));
  }
  return absl::OkStatus();
}

absl::StatusOr<ScopedFd> FindProgramMap(const ProgramInfo& prog, const MapShape& shape,
                                        bool read_only) {
  for (uint32_t id : prog.map_ids) {
    bpf_get_fd_by_id_opts opts{};
    opts.sz = sizeof(opts);
    opts.open_flags = read_only ? BPF_F_RDONLY : 0;
    const int fd = bpf_map_get_fd_by_id_opts(id, &opts);
    if (fd < 0) return LibbpfError(fd, absl::StrFormat("opening BPF map %u", id));
    ScopedFd map(fd);
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    if (int err = bpf_obj_get_info_by_fd(map.get(), &info, &len); err != 0) {
      return LibbpfError(err, absl::StrFormat("reading the info of BPF map %u", id));
    }
    const std::string_view name(info.name, strnlen(info.name, sizeof(info.name)));
    const bool name_matches =
        shape.name.ends_with(".rodata") ? name.ends_with(".rodata") : name == shape.name;
    if (name_matches && info.type == shape.type && info.key_size == shape.key_size &&
        info.value_size == shape.value_size) {
      return map;
    }
  }
  return absl::NotFoundError(absl::StrFormat(
      "BPF program %u ('%s') has no map '%s' of the expected type and sizes: not a program of "
      "this Fulcrum build",
      prog.id, prog.name, shape.name));
}

absl::StatusOr<CounterValues> ReadCounters(int map_fd, uint32_t count) {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return LibbpfError(cpus, "counting the possible CPUs");
  std::vector<fulcrum_counter> per_cpu(static_cast<size_t>(cpus));
  CounterValues out;
  out.values.resize(count);
  for (uint32_t i = 0; i < count; ++i) {
    if (int err = bpf_map_lookup_elem(map_fd, &i, per_cpu.data()); err != 0) {
      return LibbpfError(err, absl::StrFormat("reading counter %u", i));
    }
    for (const fulcrum_counter& c : per_cpu) {
      out.values[i].packets += c.packets;
      out.values[i].bytes += c.bytes;
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::vector<uint8_t>>> MapKeys(int map_fd, uint32_t key_size) {
  std::vector<std::vector<uint8_t>> keys;
  std::vector<uint8_t> key(key_size), next(key_size);
  const void* prev = nullptr;  // NULL asks for the first key
  while (true) {
    const int err = bpf_map_get_next_key(map_fd, prev, next.data());
    if (err == -ENOENT) break;
    if (err != 0) return LibbpfError(err, "listing the keys of a BPF map");
    keys.push_back(next);
    key = next;
    prev = key.data();
  }
  return keys;
}

}  // namespace fulcrum::bpf
