/* The VIP key of a packet: what the data plane classifies on (dataplane/core/parse.h): the
 * destination address, protocol and port; for fragments and for ICMP errors about a flow, the
 * address-and-protocol key (FULCRUM_VIP_F_ANY_PORT).
 */
#pragma once

#include "bpf/lib/eth.h"
#include "bpf/lib/ipv6.h"
#include "bpf/lib/pkt.h"

#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4
#define ICMPV6_PKT_TOOBIG 2

enum vip_key_result {
	VIP_KEY_OK,	     /* look `key` up */
	VIP_KEY_NOT_IP,	     /* not IPv4/IPv6 */
	VIP_KEY_NO_VIP,	     /* IP, but never VIP traffic (another protocol, plain ICMP) */
	VIP_KEY_BAD_HEADERS, /* headers the data plane's parser rejects */
};

/* The upper-layer part: ports for TCP and UDP (with parse.h's minimum header lengths), the
 * any-port key for frag-needed / packet-too-big. [l4, end) is what the IP packet holds.
 */
static __always_inline int vip_key_l4(void *data, void *data_end, __u32 l4, __u32 end,
				      __u8 proto, struct fulcrum_vip_key *key)
{
	__u8 *h;

	key->proto = proto;
	switch (proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		if (end - l4 < (proto == IPPROTO_TCP ? 20 : 8))
			return VIP_KEY_BAD_HEADERS;
		h = pkt_header(data, data_end, l4, 4);
		if (!h)
			return VIP_KEY_BAD_HEADERS;
		__builtin_memcpy(&key->port, h + 2, sizeof(key->port));
		return VIP_KEY_OK;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (end - l4 < 8)
			return VIP_KEY_BAD_HEADERS;
		h = pkt_header(data, data_end, l4, 2);
		if (!h)
			return VIP_KEY_BAD_HEADERS;
		if (proto == IPPROTO_ICMP ? (h[0] == ICMP_DEST_UNREACH && h[1] == ICMP_FRAG_NEEDED)
					  : h[0] == ICMPV6_PKT_TOOBIG) {
			key->flags |= FULCRUM_VIP_F_ANY_PORT;
			return VIP_KEY_OK;
		}
		return VIP_KEY_NO_VIP;
	default:
		return VIP_KEY_NO_VIP;
	}
}

static __always_inline int vip_key(void *data, void *data_end, struct fulcrum_vip_key *key)
{
	__u16 proto;
	__u32 l3, end;

	if (eth_parse(data, data_end, 1, &proto, &l3))
		return VIP_KEY_BAD_HEADERS;
	if (proto == ETH_P_IP) {
		struct iphdr *ip = pkt_header(data, data_end, l3, sizeof(*ip));
		__u32 hl, tot;

		if (!ip)
			return VIP_KEY_BAD_HEADERS;
		hl = (((__u8 *)ip)[0] & 0xf) * 4;
		tot = bpf_ntohs(ip->tot_len);
		if (((__u8 *)ip)[0] >> 4 != 4 || hl < sizeof(*ip) || tot < hl ||
		    tot > pkt_len(data, data_end) - l3)
			return VIP_KEY_BAD_HEADERS;
		__builtin_memcpy(key->addr, &ip->daddr, 4);
		if (ip->frag_off & bpf_htons(0x3fff)) {
			key->proto = ip->protocol;
			key->flags |= FULCRUM_VIP_F_ANY_PORT;
			return VIP_KEY_OK;
		}
		return vip_key_l4(data, data_end, l3 + hl, l3 + tot, ip->protocol, key);
	}
	if (proto == ETH_P_IPV6) {
		struct ipv6hdr *ip6 = pkt_header(data, data_end, l3, sizeof(*ip6));
		struct ipv6_chain c = {};

		if (!ip6)
			return VIP_KEY_BAD_HEADERS;
		end = l3 + sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
		if (((__u8 *)ip6)[0] >> 4 != 6 || end > pkt_len(data, data_end))
			return VIP_KEY_BAD_HEADERS;
		__builtin_memcpy(key->addr, &ip6->daddr, 16);
		key->flags = FULCRUM_VIP_F_IPV6;
		if (ipv6_walk(data, data_end, l3 + sizeof(*ip6), end, ip6->nexthdr, &c) !=
		    IPV6_CHAIN_OK)
			return VIP_KEY_BAD_HEADERS;
		if (c.fragment) {
			key->proto = c.proto;
			key->flags |= FULCRUM_VIP_F_ANY_PORT;
			return VIP_KEY_OK;
		}
		return vip_key_l4(data, data_end, c.l4_off, end, c.proto, key);
	}
	return VIP_KEY_NOT_IP;
}
