/* Packet access for every Fulcrum program: the includes, and the one bounds-checked way to get
 * at a header.
 */
#pragma once

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/types.h>
#include <linux/udp.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "bpf/abi.h"

/* Every header a program reads starts within this many bytes of the frame: it bounds each
 * variable offset for the verifier, and a packet whose headers go further is not ours (the
 * programs pass it to the kernel).
 */
#define FULCRUM_MAX_HEADER_OFFSET 512

/* A pointer to the `len` bytes at data + off, or NULL unless all of them are inside the packet
 * (and off is within FULCRUM_MAX_HEADER_OFFSET). `len` is a constant at every call site.
 */
static __always_inline void *pkt_header(void *data, void *data_end, __u32 off, __u32 len)
{
	void *p;

	if (off > FULCRUM_MAX_HEADER_OFFSET)
		return NULL;
	p = data + off;
	if (p + len > data_end)
		return NULL;
	return p;
}

/* The frame's length; the verifier knows data <= data_end. */
static __always_inline __u32 pkt_len(void *data, void *data_end)
{
	return (__u32)((long)data_end - (long)data);
}
