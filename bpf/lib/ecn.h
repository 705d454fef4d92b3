/* ECN at a tunnel egress: RFC 6040 section 4.2, the rules Linux ipip/ip6tnl/fou apply
 * (INET_ECN_decapsulate), so a Fulcrum backend handles congestion marks as a kernel tunnel would.
 */
#pragma once

#include <linux/types.h>

#define ECN_NOT_ECT 0
#define ECN_ECT1 1
#define ECN_ECT0 2
#define ECN_CE 3

/* The inner ECN field after decapsulation, or -1 when the packet must be dropped: routers
 * marked congestion (CE) on a packet whose sender does not do ECN, and passing it on unmarked
 * would hide the congestion. Outer ECT(1) on inner ECT(0) becomes ECT(1) (RFC 6040 figure 4).
 */
static __always_inline int ecn_decapsulate(__u8 outer, __u8 inner)
{
	if (outer == ECN_CE)
		return inner == ECN_NOT_ECT ? -1 : ECN_CE;
	if (outer == ECN_ECT1 && inner == ECN_ECT0)
		return ECN_ECT1;
	return inner;
}
