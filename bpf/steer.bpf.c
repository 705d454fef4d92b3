// SPDX-License-Identifier: GPL-2.0
/* AF_XDP steering for fulcrumd: VIP traffic goes to the AF_XDP socket of the queue it arrived
 * on, everything else (ARP, ND, BGP, SSH, health-check replies) to the kernel.
 *
 * DPDK's net_af_xdp PMD loads this object itself (xdp_prog=<path>): it takes the object's
 * first program and inserts its sockets into the map named xsks_map, keyed by queue. fulcrumd
 * then fills `vips` (bpf/steer.h). Keep one program in this object and keep that map's name.
 *
 * Cost (bench/bpf_bench.cc, 64 VIPs): VIP packet 49 ns, other IP traffic 32 ns, ARP 5 ns above a
 * bare XDP_PASS program (26 ns), through BPF_PROG_TEST_RUN.
 */
#include "bpf/lib/counters.h"
#include "bpf/lib/vip.h"

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, FULCRUM_STEER_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FULCRUM_STEER_MAX_VIP_KEYS);
	__type(key, struct fulcrum_vip_key);
	__type(value, __u8);
} vips SEC(".maps");

FULCRUM_COUNTER_MAP(steer_counters, FULCRUM_STEER_COUNTER_COUNT);

SEC("xdp")
int fulcrum_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = pkt_len(data, data_end);
	struct fulcrum_vip_key key = {};
	__u32 counter;
	int action = XDP_PASS;

	switch (vip_key(data, data_end, &key)) {
	case VIP_KEY_OK:
		if (!bpf_map_lookup_elem(&vips, &key)) {
			counter = FULCRUM_STEER_PASS_NOT_VIP;
			break;
		}
		/* Without a socket on this queue the lookup fails and the packet goes to the kernel
		 * (the XDP_PASS fallback) rather than being lost.
		 */
		action = bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
		counter = action == XDP_REDIRECT ? FULCRUM_STEER_REDIRECT : FULCRUM_STEER_NO_SOCKET;
		break;
	case VIP_KEY_NOT_IP:
		counter = FULCRUM_STEER_PASS_NOT_IP;
		break;
	case VIP_KEY_NO_VIP:
		counter = FULCRUM_STEER_PASS_NOT_VIP;
		break;
	default:
		counter = FULCRUM_STEER_PASS_BAD_HEADERS;
		break;
	}
	counter_add(&steer_counters, counter, bytes);
	return action;
}

char LICENSE[] SEC("license") = "GPL";
