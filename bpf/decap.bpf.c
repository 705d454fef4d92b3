// SPDX-License-Identifier: GPL-2.0
/* fulcrum-decap, XDP: strips Fulcrum's outer headers (IPIP, IPv6-in-IPv6, IPv4-in-IPv6, GUE)
 * from packets for this host and passes the inner packet to the kernel, which delivers it to
 * the VIP on lo. lib/decap.h decides; this file cuts.
 *
 * Cost (bench/bpf_bench.cc, BPF_PROG_TEST_RUN, README "Benchmarks"): traffic that is not for
 * this host 29 ns and plain traffic for it 39 ns above a bare XDP_PASS program (26 ns);
 * decapsulating a SYN 100-130 ns above it, measured one run at a time (which inflates the
 * figures about 1.5x against the repeated measurement).
 */
#include "bpf/lib/counters.h"
#include "bpf/lib/decap.h"

FULCRUM_COUNTER_MAP(decap_counters, FULCRUM_DECAP_COUNTER_COUNT);

/* The L2 header as received (Ethernet, maybe one 802.1Q tag); it is moved, not rebuilt, so
 * the kernel sees the same MACs and tag.
 */
struct l2_copy {
	__u8 b[18];
};

SEC("xdp")
int fulcrum_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = pkt_len(data, data_end);
	struct decap_info d = {};
	struct l2_copy l2;
	__be32 from, to;
	__be16 *type;
	void *p;
	__u32 outcome = decap_classify(data, data_end, 1, &d);

	if (!decap_is_delivered(outcome)) {
		counter_add(&decap_counters, outcome, bytes);
		return decap_is_dropped(outcome) ? XDP_DROP : XDP_PASS;
	}
	if (d.ecn_rewrite) {
		if (decap_rewrite_ecn(data, data_end, &d, &from, &to))
			goto error;
		if (d.ecn == ECN_CE)
			counter_add(&decap_counters, FULCRUM_DECAP_ECN_CE, bytes);
	}

	/* Keep the L2 header, drop everything up to the inner IP header, and put the L2 header
	 * back in front of it with the inner EtherType.
	 */
	if (d.l2_len == sizeof(struct ethhdr) + sizeof(struct fulcrum_vlan_hdr)) {
		p = pkt_header(data, data_end, 0, 18);
		if (!p)
			goto error;
		__builtin_memcpy(l2.b, p, 18);
	} else {
		p = pkt_header(data, data_end, 0, 14);
		if (!p)
			goto error;
		__builtin_memcpy(l2.b, p, 14);
	}
	if (bpf_xdp_adjust_head(ctx, (int)(d.inner_off - d.l2_len)))
		goto error;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (d.l2_len == 18) {
		p = pkt_header(data, data_end, 0, 18);
		if (!p)
			goto error;
		__builtin_memcpy(p, l2.b, 18);
	} else {
		p = pkt_header(data, data_end, 0, 14);
		if (!p)
			goto error;
		__builtin_memcpy(p, l2.b, 14);
	}
	type = eth_type_field(data, data_end, d.l2_len);
	if (!type)
		goto error;
	*type = bpf_htons(d.inner_v6 ? ETH_P_IPV6 : ETH_P_IP);
	counter_add(&decap_counters, outcome, bytes);
	return XDP_PASS;

error:
	/* After a failed adjust the frame is unchanged, but no kernel tunnel device is there to
	 * take a tunnel packet: drop it, counted.
	 */
	counter_add(&decap_counters, FULCRUM_DECAP_DROP_ERROR, bytes);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
