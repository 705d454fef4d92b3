/* IPv6 extension headers: a bounded walk to the upper-layer header, with the rules of
 * dataplane/core/parse.h (docs/packet.md): hop-by-hop (0), routing (43), fragment (44) and
 * destination options (60) are walked, anything else is the upper layer; at most
 * FULCRUM_IPV6_MAX_EXT_HEADERS (abi.h) of them.
 */
#pragma once

#include "bpf/lib/pkt.h"

/* The upper-layer header must start by this offset in the frame, so that the headers read after
 * it (an inner IPv6 header behind UDP at most) stay within FULCRUM_MAX_HEADER_OFFSET.
 */
#define FULCRUM_IPV6_MAX_L4_OFFSET (FULCRUM_MAX_HEADER_OFFSET - 64)

struct ipv6_chain {
	__u32 l4_off;	     /* frame offset of the upper-layer header */
	__u8 proto;	     /* its protocol number */
	__u8 fragment;	     /* a fragment header with an offset or the M flag (not atomic) */
	__u8 later_fragment; /* ... with a non-zero offset: no upper-layer header follows */
	__u8 routing_left;   /* a routing header with segments left: not the final destination */
};

enum ipv6_chain_result {
	IPV6_CHAIN_OK,
	IPV6_CHAIN_TRUNCATED, /* a header runs past `end`, the end of the IPv6 packet */
	IPV6_CHAIN_TOO_LONG,  /* more headers than the bound, or past FULCRUM_IPV6_MAX_L4_OFFSET */
};

static __always_inline int ipv6_is_walked(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_FRAGMENT ||
	       nh == IPPROTO_DSTOPTS;
}

/* Walks the chain that starts at frame offset `off` with next header `nh`; `end` is the frame
 * offset where the IPv6 packet ends, at most the frame length.
 */
static __always_inline int ipv6_walk(void *data, void *data_end, __u32 off, __u32 end, __u8 nh,
				     struct ipv6_chain *c)
{
	__u8 *h;
	__u32 len;
	int i;

#pragma unroll
	for (i = 0; i < FULCRUM_IPV6_MAX_EXT_HEADERS; i++) {
		if (!ipv6_is_walked(nh))
			break;
		/* Every extension header is at least 8 bytes (RFC 8200 section 4). */
		if (off + 8 > end)
			return IPV6_CHAIN_TRUNCATED;
		h = pkt_header(data, data_end, off, 8);
		if (!h)
			return IPV6_CHAIN_TOO_LONG; /* inside the packet, beyond the offset bound */
		if (nh == IPPROTO_FRAGMENT) {
			__u16 frag = ((__u16)h[2] << 8 | h[3]);

			if (frag & 0xfff9) /* offset (bits 15..3) or M (bit 0) */
				c->fragment = 1;
			if (frag & 0xfff8) {
				c->later_fragment = 1;
				c->proto = h[0];
				c->l4_off = off + 8;
				return IPV6_CHAIN_OK;
			}
			len = 8;
		} else {
			len = ((__u32)h[1] + 1) * 8;
			if (nh == IPPROTO_ROUTING && h[3] != 0)
				c->routing_left = 1;
			if (off + len > end)
				return IPV6_CHAIN_TRUNCATED;
		}
		nh = h[0];
		off += len;
	}
	if (ipv6_is_walked(nh) || off > FULCRUM_IPV6_MAX_L4_OFFSET)
		return IPV6_CHAIN_TOO_LONG;
	c->proto = nh;
	c->l4_off = off;
	return IPV6_CHAIN_OK;
}

/* The traffic class's ECN bits from the first byte pair of an IPv6 header. */
static __always_inline __u8 ipv6_ecn(const __u8 *ip6)
{
	return (ip6[1] >> 4) & 3;
}
