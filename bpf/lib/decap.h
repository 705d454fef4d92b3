/* Decapsulation: which frames are Fulcrum tunnel packets for this host, where their inner
 * packet starts, and what its ECN field becomes. Shared by the XDP and the tc program, which
 * differ only in how they cut the outer headers off.
 *
 * Policy (docs/bpf.md): anything that is not a tunnel packet for one of this host's configured
 * addresses passes untouched, including frames too broken to tell (the kernel judges outer IP
 * headers, as it would without us); a tunnel packet for this host that cannot be delivered is
 * dropped, because no kernel tunnel device is there to take it. Every outcome has a counter.
 */
#pragma once

#include "bpf/lib/csum.h"
#include "bpf/lib/ecn.h"
#include "bpf/lib/eth.h"
#include "bpf/lib/ipv6.h"
#include "bpf/lib/pkt.h"

/* The UDP port GUE arrives on; 0 = no GUE. Set by the loader before load (.rodata), so the
 * verifier sees a constant.
 */
const volatile __u16 gue_port = 0;

/* The outer destinations this host decapsulates for (abi.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FULCRUM_DECAP_MAX_ADDRESSES);
	__type(key, __be32);
	__type(value, __u8);
} decap_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FULCRUM_DECAP_MAX_ADDRESSES);
	__type(key, struct fulcrum_in6);
	__type(value, __u8);
} decap_v6 SEC(".maps");

struct decap_info {
	__u32 l2_len;	 /* 14, or 18 with an 802.1Q tag (kept) */
	__u32 inner_off; /* frame offset of the inner IP header: the outer headers are
			  * [l2_len, inner_off) */
	__u8 outer_v6;
	__u8 inner_v6;
	__u8 ecn_rewrite; /* the inner ECN field must become `ecn` */
	__u8 ecn;
};

/* The inner IP header at [off, end): version, header and total length, ECN. Returns `kind`
 * (a decap_* counter) when the packet can be delivered.
 */
static __always_inline __u32 decap_inner(void *data, void *data_end, __u32 off, __u32 end,
					 int v6, __u8 outer_ecn, __u32 kind, struct decap_info *d)
{
	__u8 *ip;
	__u8 inner_ecn;
	int ecn;

	if (v6) {
		if (end - off < sizeof(struct ipv6hdr))
			return FULCRUM_DECAP_DROP_TRUNCATED_INNER;
		ip = pkt_header(data, data_end, off, sizeof(struct ipv6hdr));
		if (!ip)
			return FULCRUM_DECAP_DROP_TRUNCATED_INNER;
		if (ip[0] >> 4 != 6)
			return FULCRUM_DECAP_DROP_BAD_INNER;
		if (sizeof(struct ipv6hdr) + ((__u32)ip[4] << 8 | ip[5]) > end - off)
			return FULCRUM_DECAP_DROP_BAD_LENGTH;
		inner_ecn = ipv6_ecn(ip);
	} else {
		__u32 hl, tot;

		if (end - off < sizeof(struct iphdr))
			return FULCRUM_DECAP_DROP_TRUNCATED_INNER;
		ip = pkt_header(data, data_end, off, sizeof(struct iphdr));
		if (!ip)
			return FULCRUM_DECAP_DROP_TRUNCATED_INNER;
		if (ip[0] >> 4 != 4)
			return FULCRUM_DECAP_DROP_BAD_INNER;
		hl = (ip[0] & 0xf) * 4;
		if (hl < sizeof(struct iphdr))
			return FULCRUM_DECAP_DROP_BAD_INNER;
		tot = (__u32)ip[2] << 8 | ip[3];
		if (tot < hl || tot > end - off)
			return FULCRUM_DECAP_DROP_BAD_LENGTH;
		inner_ecn = ip[1] & 3;
	}
	ecn = ecn_decapsulate(outer_ecn, inner_ecn);
	if (ecn < 0)
		return FULCRUM_DECAP_DROP_ECN;
	d->ecn_rewrite = ecn != inner_ecn;
	d->ecn = (__u8)ecn;
	d->inner_off = off;
	d->inner_v6 = v6;
	return kind;
}

/* GUE variant 1 (docs/packet.md): UDP to gue_port whose payload is the inner IP packet; its
 * first nibble is the IP version. [off, end) is the UDP datagram as the outer IP header bounds it.
 */
static __always_inline __u32 decap_gue(void *data, void *data_end, __u32 off, __u32 end,
				       __u8 outer_ecn, __u32 kind, struct decap_info *d)
{
	struct udphdr *udp;
	__u32 ulen;
	__u8 *first;

	if (end - off < sizeof(*udp))
		return FULCRUM_DECAP_PASS_BAD_OUTER;
	udp = pkt_header(data, data_end, off, sizeof(*udp));
	if (!udp)
		return FULCRUM_DECAP_PASS_BAD_OUTER;
	if (gue_port == 0 || udp->dest != bpf_htons(gue_port))
		return FULCRUM_DECAP_PASS_NOT_TUNNEL;
	/* The checksum is not verified: Fulcrum sends 0 (docs/packet.md), and the inner packet
	 * carries its own end-to-end checksums, which the kernel verifies after us.
	 */
	ulen = bpf_ntohs(udp->len);
	if (ulen < sizeof(*udp) || ulen > end - off)
		return FULCRUM_DECAP_DROP_BAD_LENGTH;
	end = off + ulen;
	off += sizeof(*udp);
	if (off >= end)
		return FULCRUM_DECAP_DROP_TRUNCATED_INNER;
	first = pkt_header(data, data_end, off, 1);
	if (!first)
		return FULCRUM_DECAP_DROP_TRUNCATED_INNER;
	/* 0100 and 0110 are variant 1 carrying IPv4 and IPv6; 00xx is a GUE header (variant 0),
	 * which Fulcrum never sends.
	 */
	if (*first >> 4 == 4)
		return decap_inner(data, data_end, off, end, 0, outer_ecn, kind, d);
	if (*first >> 4 == 6)
		return decap_inner(data, data_end, off, end, 1, outer_ecn, kind, d);
	return FULCRUM_DECAP_DROP_BAD_INNER;
}

static __always_inline __u32 decap_outer4(void *data, void *data_end, __u32 l3,
					  struct decap_info *d)
{
	struct iphdr *ip = pkt_header(data, data_end, l3, sizeof(*ip));
	__u8 *b = (__u8 *)ip;
	__u32 hl, tot, off, end;
	__be32 dst;

	if (!ip)
		return FULCRUM_DECAP_PASS_BAD_OUTER;
	hl = (b[0] & 0xf) * 4;
	tot = bpf_ntohs(ip->tot_len);
	if (b[0] >> 4 != 4 || hl < sizeof(*ip) || tot < hl || tot > pkt_len(data, data_end) - l3)
		return FULCRUM_DECAP_PASS_BAD_OUTER;
	/* The header checksum is not verified: NICs verify it on receive, and the worst a
	 * corrupted header that still names this host and a tunnel protocol can do is hand the
	 * kernel an inner packet, which it checks in full.
	 */
	dst = ip->daddr;
	if (!bpf_map_lookup_elem(&decap_v4, &dst))
		return FULCRUM_DECAP_PASS_NOT_LOCAL;
	if (ip->frag_off & bpf_htons(0x3fff)) /* MF or an offset */
		return FULCRUM_DECAP_PASS_FRAGMENT;
	d->outer_v6 = 0;
	off = l3 + hl;
	end = l3 + tot;
	if (ip->protocol == IPPROTO_IPIP)
		return decap_inner(data, data_end, off, end, 0, b[1] & 3, FULCRUM_DECAP_4IN4, d);
	if (ip->protocol == IPPROTO_UDP)
		return decap_gue(data, data_end, off, end, b[1] & 3, FULCRUM_DECAP_GUE4, d);
	/* Protocol 41 over IPv4 (6in4, sit) included: Fulcrum never sends it (encap.h refuses). */
	return FULCRUM_DECAP_PASS_NOT_TUNNEL;
}

static __always_inline __u32 decap_outer6(void *data, void *data_end, __u32 l3,
					  struct decap_info *d)
{
	struct ipv6hdr *ip6 = pkt_header(data, data_end, l3, sizeof(*ip6));
	struct ipv6_chain c = {};
	struct fulcrum_in6 dst;
	__u32 end;
	__u8 outer_ecn;

	if (!ip6)
		return FULCRUM_DECAP_PASS_BAD_OUTER;
	end = l3 + sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	if (((__u8 *)ip6)[0] >> 4 != 6 || end > pkt_len(data, data_end))
		return FULCRUM_DECAP_PASS_BAD_OUTER;
	__builtin_memcpy(dst.addr, &ip6->daddr, sizeof(dst.addr));
	if (!bpf_map_lookup_elem(&decap_v6, &dst))
		return FULCRUM_DECAP_PASS_NOT_LOCAL;
	switch (ipv6_walk(data, data_end, l3 + sizeof(*ip6), end, ip6->nexthdr, &c)) {
	case IPV6_CHAIN_OK:
		break;
	case IPV6_CHAIN_TRUNCATED:
		return FULCRUM_DECAP_PASS_BAD_OUTER;
	default:
		return FULCRUM_DECAP_PASS_IPV6_EXT;
	}
	if (c.fragment)
		return FULCRUM_DECAP_PASS_FRAGMENT;
	if (c.routing_left)
		return FULCRUM_DECAP_PASS_IPV6_EXT;
	d->outer_v6 = 1;
	outer_ecn = ipv6_ecn((__u8 *)ip6);
	if (c.proto == IPPROTO_IPV6)
		return decap_inner(data, data_end, c.l4_off, end, 1, outer_ecn, FULCRUM_DECAP_6IN6, d);
	if (c.proto == IPPROTO_IPIP)
		return decap_inner(data, data_end, c.l4_off, end, 0, outer_ecn, FULCRUM_DECAP_4IN6, d);
	if (c.proto == IPPROTO_UDP)
		return decap_gue(data, data_end, c.l4_off, end, outer_ecn, FULCRUM_DECAP_GUE6, d);
	return FULCRUM_DECAP_PASS_NOT_TUNNEL;
}

/* Classifies the frame [data, data_end). Returns a fulcrum_decap_counter: a decap_* value when
 * the packet is to be decapsulated as `d` describes, else the pass_* or drop_* reason.
 */
static __always_inline __u32 decap_classify(void *data, void *data_end, int allow_vlan,
					    struct decap_info *d)
{
	__u16 proto;
	__u32 l3;

	if (eth_parse(data, data_end, allow_vlan, &proto, &l3))
		return FULCRUM_DECAP_PASS_BAD_OUTER;
	d->l2_len = l3;
	if (proto == ETH_P_IP)
		return decap_outer4(data, data_end, l3, d);
	if (proto == ETH_P_IPV6)
		return decap_outer6(data, data_end, l3, d);
	return FULCRUM_DECAP_PASS_NOT_IP;
}

static __always_inline int decap_is_delivered(__u32 outcome)
{
	return outcome <= FULCRUM_DECAP_GUE6;
}

static __always_inline int decap_is_dropped(__u32 outcome)
{
	return outcome >= FULCRUM_DECAP_DROP_TRUNCATED_INNER && outcome <= FULCRUM_DECAP_DROP_ERROR;
}

/* Writes d->ecn into the inner header, in place, before the outer headers go. IPv4: the header
 * checksum is updated incrementally, which leaves any checksum over the whole header unchanged.
 * IPv6: *from and *to get the first 32-bit word before and after, for a tc program to carry into
 * skb->csum. Returns 0, or -1 if the header is not there (cannot happen after decap_classify).
 */
static __always_inline int decap_rewrite_ecn(void *data, void *data_end,
					     const struct decap_info *d, __be32 *from, __be32 *to)
{
	if (d->inner_v6) {
		__be32 *w = pkt_header(data, data_end, d->inner_off, sizeof(struct ipv6hdr));
		__u32 h;

		if (!w)
			return -1;
		*from = *w;
		h = bpf_ntohl(*w);
		h = (h & ~(3u << 20)) | ((__u32)d->ecn << 20);
		*to = bpf_htonl(h);
		*w = *to;
	} else {
		struct iphdr *ip = pkt_header(data, data_end, d->inner_off, sizeof(struct iphdr));
		__u16 old_word, new_word;

		if (!ip)
			return -1;
		old_word = *(__u16 *)ip; /* version/IHL and TOS, as in the packet */
		ip->tos = (ip->tos & ~3) | d->ecn;
		new_word = *(__u16 *)ip;
		ip->check = csum_replace16(ip->check, old_word, new_word);
		*from = *to = 0;
	}
	return 0;
}
