// SPDX-License-Identifier: GPL-2.0
/* Health probes through the tunnel (tc egress): a packet whose skb->mark names a probe target
 * gets the outer headers the data plane would put on real traffic to that backend, so a probe
 * to VIP:port tests the backend's decapsulation and its VIP, not just its own address. The
 * control plane's health checker marks its probe sockets with SO_MARK (bpf/probe.h).
 *
 * Cost (bench/bpf_bench.cc): unmarked traffic 21 ns above a bare TC_ACT_OK program; an
 * encapsulated probe about 400 ns (the flow hash and bpf_skb_adjust_room), which probes, a few
 * per second, can afford.
 */
#include "bpf/lib/counters.h"
#include "bpf/lib/encap.h"
#include "bpf/lib/eth.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FULCRUM_PROBE_MAX_TARGETS);
	__type(key, __u32);
	__type(value, struct fulcrum_probe_target);
} probe_targets SEC(".maps");

FULCRUM_COUNTER_MAP(probe_counters, FULCRUM_PROBE_COUNTER_COUNT);

#define ETH_IP4_LEN (14 + 20)
#define ETH_IP6_LEN (14 + 40)

/* bpf_skb_adjust_room() flags per kind: they set skb->protocol to the outer family and the
 * inner-header offsets and GSO type, so segmentation and checksum offload of the inner packet
 * still work after encapsulation.
 */
static __always_inline __u64 encap_flags(__u8 kind)
{
	switch (kind) {
	case FULCRUM_ENCAP_IPIP4:
		return BPF_F_ADJ_ROOM_ENCAP_L3_IPV4;
	case FULCRUM_ENCAP_IPIP6:
		return BPF_F_ADJ_ROOM_ENCAP_L3_IPV6;
	case FULCRUM_ENCAP_GUE4:
		return BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP;
	default:
		return BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP;
	}
}

/* len 0 means no template for this family; any other mismatch would be a loader bug, and
 * writing more header than the room made would overwrite the inner packet.
 */
static __always_inline int encap_len_ok(const struct fulcrum_encap_header *t)
{
	switch (t->kind) {
	case FULCRUM_ENCAP_IPIP4:
		return t->len == 34;
	case FULCRUM_ENCAP_IPIP6:
		return t->len == 54;
	case FULCRUM_ENCAP_GUE4:
		return t->len == 42;
	case FULCRUM_ENCAP_GUE6:
		return t->len == 62;
	default:
		return 0;
	}
}

/* Writes template `t` (t->len bytes, a constant per kind) at the front of the frame and
 * completes it. Returns -1 if the frame is shorter than the header (cannot happen right after
 * bpf_skb_adjust_room grew it).
 */
static __always_inline int encap_write(struct __sk_buff *skb, const struct fulcrum_encap_header *t,
				       __u32 inner_len, __u8 tos, __u32 hash)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *out;

	switch (t->kind) {
	case FULCRUM_ENCAP_IPIP4:
		out = pkt_header(data, data_end, 0, 34);
		if (!out)
			return -1;
		__builtin_memcpy(out, t->bytes, 34);
		encap_complete_ipv4(out, t, 20, inner_len, tos, hash, 0);
		return 0;
	case FULCRUM_ENCAP_GUE4:
		out = pkt_header(data, data_end, 0, 42);
		if (!out)
			return -1;
		__builtin_memcpy(out, t->bytes, 42);
		encap_complete_ipv4(out, t, 28, inner_len, tos, hash, 1);
		return 0;
	case FULCRUM_ENCAP_IPIP6:
		out = pkt_header(data, data_end, 0, 54);
		if (!out)
			return -1;
		__builtin_memcpy(out, t->bytes, 54);
		encap_complete_ipv6(out, inner_len, tos, hash, 0);
		return 0;
	default:
		out = pkt_header(data, data_end, 0, 62);
		if (!out)
			return -1;
		__builtin_memcpy(out, t->bytes, 62);
		encap_complete_ipv6(out, inner_len, tos, hash, 1);
		return 0;
	}
}

SEC("tc")
int fulcrum_probe(struct __sk_buff *skb)
{
	__u32 mark = skb->mark;
	__u64 bytes = skb->len;
	struct fulcrum_probe_target *target;
	const struct fulcrum_encap_header *t;
	void *data, *data_end;
	__u32 l3, inner_len, mtu = 0, hash;
	__u16 proto;
	__u8 *ip, tos;

	target = bpf_map_lookup_elem(&probe_targets, &mark);
	if (!target) {
		counter_add(&probe_counters, FULCRUM_PROBE_PASS_NO_TARGET, bytes);
		return TC_ACT_OK;
	}
	if ((long)skb->data_end - (long)skb->data < ETH_IP6_LEN)
		bpf_skb_pull_data(skb, skb->len < ETH_IP6_LEN ? skb->len : ETH_IP6_LEN);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (eth_parse(data, data_end, 0, &proto, &l3))
		goto not_ip;
	if (proto == ETH_P_IP) {
		ip = pkt_header(data, data_end, l3, 20);
		if (!ip || ip[0] >> 4 != 4)
			goto not_ip;
		tos = ip[1];
		t = &target->inner_v4;
	} else if (proto == ETH_P_IPV6) {
		ip = pkt_header(data, data_end, l3, 40);
		if (!ip || ip[0] >> 4 != 6)
			goto not_ip;
		tos = (__u8)(ip[0] << 4 | ip[1] >> 4);
		t = &target->inner_v6;
	} else {
		goto not_ip;
	}
	if (!encap_len_ok(t)) {
		counter_add(&probe_counters, FULCRUM_PROBE_DROP_NO_TEMPLATE, bytes);
		return TC_ACT_SHOT;
	}
	/* A probe must take the tunnel or fail: sent bare it could reach the VIP some other way
	 * and report a broken path healthy.
	 */
	if (bpf_check_mtu(skb, 0, &mtu, (__s32)(t->len - ENCAP_ETH_LEN), 0) ==
	    BPF_MTU_CHK_RET_FRAG_NEEDED) {
		counter_add(&probe_counters, FULCRUM_PROBE_DROP_TOO_BIG, bytes);
		return TC_ACT_SHOT;
	}
	inner_len = skb->len - ENCAP_ETH_LEN;
	/* The kernel's flow hash of the probe: stable for a connection, so all its packets take
	 * one path and one backend RSS queue, like a real flow.
	 */
	hash = bpf_get_hash_recalc(skb);
	if (bpf_skb_adjust_room(skb, (__s32)(t->len - ENCAP_ETH_LEN), BPF_ADJ_ROOM_MAC,
				encap_flags(t->kind)))
		goto error;
	if (encap_write(skb, t, inner_len, tos, hash))
		goto error;
	/* The tunnel packet must not be encapsulated again should it pass another egress hook
	 * running this program (a stacked device); nothing after tc egress reads the probe mark.
	 */
	skb->mark = 0;
	counter_add(&probe_counters, FULCRUM_PROBE_ENCAP_IPIP4 + t->kind, bytes);
	return TC_ACT_OK;

not_ip:
	counter_add(&probe_counters, FULCRUM_PROBE_DROP_NOT_IP, bytes);
	return TC_ACT_SHOT;
error:
	counter_add(&probe_counters, FULCRUM_PROBE_DROP_ERROR, bytes);
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
