/* Ethernet: the EtherType and where L3 starts, through at most one 802.1Q tag (as
 * dataplane/core/parse.h reads frames).
 */
#pragma once

#include "bpf/lib/pkt.h"

struct fulcrum_vlan_hdr {
	__be16 tci;
	__be16 proto;
};

/* Sets *proto (host order) and *l3_off. Returns -1 when the frame ends inside the Ethernet
 * header or the tag. With allow_vlan 0 a tagged frame comes back as ETH_P_8021Q: tc programs see
 * untagged frames (the kernel strips tags into skb metadata) unless the tag was not for this
 * device, and then the frame is not theirs. A second tag comes back as its TPID, never IP.
 */
static __always_inline int eth_parse(void *data, void *data_end, int allow_vlan, __u16 *proto,
				     __u32 *l3_off)
{
	struct ethhdr *eth = pkt_header(data, data_end, 0, sizeof(*eth));
	struct fulcrum_vlan_hdr *vh;

	if (!eth)
		return -1;
	*proto = bpf_ntohs(eth->h_proto);
	*l3_off = sizeof(*eth);
	if (*proto != ETH_P_8021Q || !allow_vlan)
		return 0;
	vh = pkt_header(data, data_end, sizeof(*eth), sizeof(*vh));
	if (!vh)
		return -1;
	*proto = bpf_ntohs(vh->proto);
	*l3_off = sizeof(*eth) + sizeof(*vh);
	return 0;
}

/* The EtherType field of a frame whose L2 header is l2_len (14 or 18) bytes long. */
static __always_inline __be16 *eth_type_field(void *data, void *data_end, __u32 l2_len)
{
	return pkt_header(data, data_end, l2_len - 2, sizeof(__be16));
}
