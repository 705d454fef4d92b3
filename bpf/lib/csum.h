/* Internet checksum arithmetic (RFC 1071, RFC 1624). Byte order does not matter to a
 * ones'-complement sum as long as every word is in the same order (RFC 1071 section 2(B)), so
 * these work on words as they are in the packet.
 */
#pragma once

#include <linux/types.h>

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* RFC 1624 equation 3: the checksum after one 16-bit word of the header changes from `from` to
 * `to`: HC' = ~(~HC + ~m + m').
 */
static __always_inline __u16 csum_replace16(__u16 check, __u16 from, __u16 to)
{
	__u32 sum = (__u16)~check + (__u32)(__u16)~from + to;

	return (__u16)~csum_fold(sum);
}
