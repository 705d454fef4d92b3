// SPDX-License-Identifier: GPL-2.0
// Drops every packet. The scale-out test attaches it to both ends of a host's links to cut the
// host off silently: no carrier change, so no bridge flushes its forwarding table and floods.
#include <linux/bpf.h>

__attribute__((section("xdp"), used)) int drop_all(struct xdp_md *ctx)
{
	(void)ctx;
	return XDP_DROP;
}

char _license[] __attribute__((section("license"), used)) = "GPL";
