// Ports: queue layout, RSS, the mbuf pool and the TAP exception path.
#include "dataplane/ports.h"

#include <rte_bus_vdev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <bit>

#include "absl/strings/str_format.h"

namespace fulcrum {
namespace {

absl::Status DpdkError(int ret, std::string_view what, uint16_t port) {
  const int err = ret < 0 ? -ret : rte_errno;
  return absl::InternalError(
      absl::StrFormat("%s on port %d (%s): %s", what, port, PortName(port), rte_strerror(err)));
}

absl::Status ConfigurePort(uint16_t port, uint16_t queues, const PortOptions& o,
                           rte_mempool* pool) {
  rte_eth_dev_info info;
  if (int ret = rte_eth_dev_info_get(port, &info); ret != 0) {
    return DpdkError(ret, "rte_eth_dev_info_get", port);
  }
  rte_eth_conf conf{};
  const uint64_t rss =
      (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
  if (queues > 1 && rss != 0) {
    conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
    conf.rx_adv_conf.rss_conf.rss_hf = rss;
  }
  if (int ret = rte_eth_dev_configure(port, queues, queues, &conf); ret != 0) {
    return DpdkError(ret, "rte_eth_dev_configure", port);
  }
  uint16_t rx_desc = o.rx_desc;
  uint16_t tx_desc = o.tx_desc;
  if (int ret = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rx_desc, &tx_desc); ret != 0) {
    return DpdkError(ret, "rte_eth_dev_adjust_nb_rx_tx_desc", port);
  }
  const int socket = rte_eth_dev_socket_id(port);
  for (uint16_t q = 0; q < queues; ++q) {
    if (int ret = rte_eth_rx_queue_setup(port, q, rx_desc, socket, nullptr, pool); ret != 0) {
      return DpdkError(ret, absl::StrFormat("rte_eth_rx_queue_setup(queue %d)", q), port);
    }
    if (int ret = rte_eth_tx_queue_setup(port, q, tx_desc, socket, nullptr); ret != 0) {
      return DpdkError(ret, absl::StrFormat("rte_eth_tx_queue_setup(queue %d)", q), port);
    }
  }
  if (o.promiscuous) (void)rte_eth_promiscuous_enable(port);  // not every PMD has it
  if (int ret = rte_eth_dev_start(port); ret != 0) return DpdkError(ret, "rte_eth_dev_start", port);
  return absl::OkStatus();
}

MacAddress MacOf(uint16_t port) {
  rte_ether_addr addr{};
  rte_eth_macaddr_get(port, &addr);
  MacAddress mac;
  std::copy(addr.addr_bytes, addr.addr_bytes + 6, mac.begin());
  return mac;
}

}  // namespace

std::string PortName(uint16_t port) {
  char name[RTE_ETH_NAME_MAX_LEN] = "?";
  rte_eth_dev_get_name_by_port(port, name);
  return name;
}

absl::StatusOr<PortSetup> SetUpPorts(const PortOptions& o) {
  PortSetup setup;
  // RTE_ETH_FOREACH_DEV, spelled out: its macro trips -Wconversion.
  for (uint64_t p = rte_eth_find_next_owned_by(0, RTE_ETH_DEV_NO_OWNER); p < RTE_MAX_ETHPORTS;
       p = rte_eth_find_next_owned_by(static_cast<uint16_t>(p + 1), RTE_ETH_DEV_NO_OWNER)) {
    setup.ports.push_back(static_cast<uint16_t>(p));
  }
  if (setup.ports.empty()) {
    return absl::FailedPreconditionError(
        "no DPDK ports: bind a NIC to a DPDK driver (dpdk-devbind.py) or give a --vdev, e.g. "
        "--vdev=net_af_packet0,iface=eth0 or --vdev=net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap");
  }

  // Queues per port, and which worker owns each (port, queue) pair.
  std::vector<uint16_t> queues(setup.ports.size());
  uint32_t pairs = 0;
  for (size_t i = 0; i < setup.ports.size(); ++i) {
    rte_eth_dev_info info;
    if (int ret = rte_eth_dev_info_get(setup.ports[i], &info); ret != 0) {
      return DpdkError(ret, "rte_eth_dev_info_get", setup.ports[i]);
    }
    queues[i] = std::max<uint16_t>(
        1, std::min<uint16_t>({o.workers, info.max_rx_queues, info.max_tx_queues}));
    pairs += queues[i];
  }
  setup.workers.resize(o.workers);
  uint32_t next = 0;
  for (size_t i = 0; i < setup.ports.size(); ++i) {
    const MacAddress mac = MacOf(setup.ports[i]);
    for (uint16_t q = 0; q < queues[i]; ++q) {
      const uint32_t w = queues[i] == o.workers ? q : next++ % o.workers;
      setup.workers[w].push_back({setup.ports[i], q, mac});
    }
  }
  for (size_t w = 0; w < setup.workers.size(); ++w) {
    if (setup.workers[w].empty()) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "%d workers but only %d (port, queue) pairs: worker %d would have nothing to poll; "
          "use fewer lcores or give each worker a port (one vdev per queue)",
          o.workers, pairs, w));
    }
  }

  uint32_t mbufs = o.mbufs;
  if (mbufs == 0) {
    const uint32_t tap_queues = o.tap_name.empty() ? 0 : o.workers;
    mbufs = (pairs + tap_queues) * (uint32_t{o.rx_desc} + o.tx_desc) +
            (uint32_t{o.workers} + 1) * (256 + 2 * 64) + 4096;
    mbufs = std::bit_ceil(mbufs) - 1;  // the ring-friendly size
  }
  setup.pool = rte_pktmbuf_pool_create("fulcrum_mbufs", mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                       static_cast<int>(rte_socket_id()));
  if (setup.pool == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("rte_pktmbuf_pool_create(%d mbufs): %s (give the EAL more memory, -m)",
                        mbufs, rte_strerror(rte_errno)));
  }
  for (size_t i = 0; i < setup.ports.size(); ++i) {
    if (absl::Status s = ConfigurePort(setup.ports[i], queues[i], o, setup.pool); !s.ok()) {
      return s;
    }
  }

  if (!o.tap_name.empty()) {
    const MacAddress mac = MacOf(setup.ports.front());
    const std::string args =
        absl::StrFormat("iface=%s,mac=%02x:%02x:%02x:%02x:%02x:%02x", o.tap_name, mac[0], mac[1],
                        mac[2], mac[3], mac[4], mac[5]);
    const std::string vdev = "net_tap_" + o.tap_name;
    if (int ret = rte_vdev_init(vdev.c_str(), args.c_str()); ret != 0) {
      return absl::InternalError(absl::StrFormat(
          "creating the exception path %s (%s): %s (is the name taken? --no-tap disables it)", vdev,
          args, rte_strerror(-ret)));
    }
    if (int ret = rte_eth_dev_get_port_by_name(vdev.c_str(), &setup.tap_port); ret != 0) {
      return absl::InternalError(
          absl::StrFormat("TAP %s has no port: %s", vdev, rte_strerror(-ret)));
    }
    PortOptions tap = o;
    tap.promiscuous = false;
    if (absl::Status s = ConfigurePort(setup.tap_port, o.workers, tap, setup.pool); !s.ok()) {
      return s;
    }
    setup.has_tap = true;
  }
  return setup;
}

void StopPorts(const PortSetup& setup) {
  for (uint16_t port : setup.ports) {
    rte_eth_dev_stop(port);
    rte_eth_dev_close(port);
  }
  if (setup.has_tap) {
    rte_eth_dev_stop(setup.tap_port);
    rte_eth_dev_close(setup.tap_port);
  }
}

}  // namespace fulcrum
