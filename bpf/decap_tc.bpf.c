// SPDX-License-Identifier: GPL-2.0
/* fulcrum-decap, tc (clsact ingress): the XDP program's twin for drivers without native XDP.
 * lib/decap.h decides; this file cuts with bpf_skb_adjust_room(), which keeps the skb's
 * protocol, offsets and checksum state right.
 *
 * Cost (bench/bpf_bench.cc): plain traffic 37 ns above a bare TC_ACT_OK program; decapsulating
 * 160-190 ns above it one run at a time (bpf_skb_adjust_room is most of it).
 */
#include "bpf/lib/counters.h"
#include "bpf/lib/decap.h"

FULCRUM_COUNTER_MAP(decap_counters, FULCRUM_DECAP_COUNTER_COUNT);

/* The kernel's uapi headers here predate these flags (Linux 6.3): they tell
 * bpf_skb_adjust_room() the family of the header that becomes outermost, so that it sets
 * skb->protocol. Needed only when the inner family differs from the outer one.
 */
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)
#endif

SEC("tc")
int fulcrum_tcdecap(struct __sk_buff *skb)
{
	__u32 want = skb->len < FULCRUM_MAX_HEADER_OFFSET ? skb->len : FULCRUM_MAX_HEADER_OFFSET;
	__u64 bytes = skb->len;
	struct decap_info d = {};
	void *data, *data_end;
	__be32 from, to;
	__be16 *type;
	__u64 flags = 0;
	__u32 outcome;

	/* Headers may sit in paged data; pull what classification can read (a no-op for the
	 * usual linear skb).
	 */
	if ((long)skb->data_end - (long)skb->data < want)
		bpf_skb_pull_data(skb, want);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	outcome = decap_classify(data, data_end, 0, &d);
	if (!decap_is_delivered(outcome)) {
		counter_add(&decap_counters, outcome, bytes);
		return decap_is_dropped(outcome) ? TC_ACT_SHOT : TC_ACT_OK;
	}
	if (d.ecn_rewrite) {
		if (decap_rewrite_ecn(data, data_end, &d, &from, &to))
			goto error;
		/* CHECKSUM_COMPLETE covers the bytes just changed (a no-op otherwise). */
		if (from != to)
			bpf_csum_update(skb, bpf_csum_diff(&from, 4, &to, 4, 0));
		if (d.ecn == ECN_CE)
			counter_add(&decap_counters, FULCRUM_DECAP_ECN_CE, bytes);
	}
	if (d.inner_v6 != d.outer_v6)
		flags = d.inner_v6 ? BPF_F_ADJ_ROOM_DECAP_L3_IPV6 : BPF_F_ADJ_ROOM_DECAP_L3_IPV4;
	if (bpf_skb_adjust_room(skb, -(__s32)(d.inner_off - d.l2_len), BPF_ADJ_ROOM_MAC, flags))
		goto error;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	type = eth_type_field(data, data_end, sizeof(struct ethhdr));
	if (!type)
		goto error;
	*type = bpf_htons(d.inner_v6 ? ETH_P_IPV6 : ETH_P_IP);
	counter_add(&decap_counters, outcome, bytes);
	return TC_ACT_OK;

error:
	counter_add(&decap_counters, FULCRUM_DECAP_DROP_ERROR, bytes);
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
