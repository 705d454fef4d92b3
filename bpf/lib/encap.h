/* Completing an EncapTemplate's outer headers for one packet, as dataplane/core/encap.h's
 * WriteEncap() does: lengths, DSCP/ECN copied from the inner packet (RFC 6040 normal mode), the
 * IPv4 checksum from the template's partial sum, and the entropy fields.
 */
#pragma once

#include "bpf/lib/csum.h"
#include "bpf/lib/pkt.h"

#define ENCAP_ETH_LEN 14
#define GUE_SOURCE_PORT_MIN 0xc000

static __always_inline void put16(__u8 *p, __u16 v)
{
	p[0] = v >> 8;
	p[1] = (__u8)v;
}

static __always_inline __u16 get16(const __u8 *p)
{
	return (__u16)p[0] << 8 | p[1];
}

/* `out` holds t->bytes[0, len) already; `inner_len` is the inner IP packet's length, `tos` its
 * TOS / traffic class. The entropy comes from a 32-bit flow hash: the GUE source port takes 14
 * bits in 49152..65535 and the flow label 20 other bits, as docs/packet.md asks of the 64-bit
 * FlowHash.
 */
static __always_inline void encap_complete_ipv4(__u8 *out, const struct fulcrum_encap_header *t,
						__u32 overhead, __u32 inner_len, __u8 tos,
						__u32 hash, int gue)
{
	__u8 *ip = out + ENCAP_ETH_LEN;
	__u32 total = inner_len + overhead;
	__u32 sum;

	ip[1] = tos;
	put16(ip + 2, (__u16)total);
	/* The template's checksum field holds the folded sum of every other word; the TOS adds to
	 * the low byte of word 0 (0x45, TOS).
	 */
	sum = (__u32)get16(t->bytes + ENCAP_ETH_LEN + 10) + tos + total;
	put16(ip + 10, (__u16)~csum_fold(sum));
	if (gue) {
		put16(ip + 20, GUE_SOURCE_PORT_MIN | (hash & 0x3fff));
		put16(ip + 24, (__u16)(inner_len + 8));
	}
}

static __always_inline void encap_complete_ipv6(__u8 *out, __u32 inner_len, __u8 tos,
						__u32 hash, int gue)
{
	__u8 *ip = out + ENCAP_ETH_LEN;
	__u32 label = (hash >> 12) & 0xfffff;
	__u32 udp_len = gue ? 8 : 0;

	ip[0] = 0x60 | tos >> 4;
	ip[1] = (__u8)(tos << 4 | label >> 16);
	put16(ip + 2, (__u16)label);
	put16(ip + 4, (__u16)(inner_len + udp_len));
	if (gue) {
		put16(ip + 40, GUE_SOURCE_PORT_MIN | (hash & 0x3fff));
		put16(ip + 44, (__u16)(inner_len + 8));
	}
}
