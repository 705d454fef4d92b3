/* The contract between Fulcrum's BPF programs and their C++ loaders: map keys and values,
 * counter indexes and names, attach handles. Compiled by clang -target bpf and by the C++
 * compiler; both check the layout with the static asserts at the end.
 *
 * Counter values and names are a public interface: the values index per-CPU counter arrays,
 * the names are metric labels. Never renumber, reuse or rename an entry; append with the next
 * value, and retire an entry by leaving it unused. Every key and value below is read by the
 * kernel and by user space with no translation, so a layout change is a change to both sides
 * and to every program object already attached: bump FULCRUM_BPF_ABI_VERSION with it.
 */
#pragma once

#include <linux/types.h>

#define FULCRUM_BPF_ABI_VERSION 1

/* One counter: packets and the bytes of those packets as received (before any change). */
struct fulcrum_counter {
  __u64 packets;
  __u64 bytes;
};

/* ---- fulcrum-decap ---------------------------------------------------------------------- */

/* Every outcome of the decapsulator: X(enumerator, value, name, help). decap_* strip the outer
 * headers and pass the inner packet; pass_* leave the packet untouched and pass it; drop_* are
 * tunnel packets addressed to this host that cannot be delivered. ecn_ce is counted in addition
 * to the outcome, so the outcomes alone add up to the packets seen.
 */
#define FULCRUM_DECAP_COUNTERS(X)                                                                  \
  X(FULCRUM_DECAP_4IN4, 0, "decap_4in4", "IPv4-in-IPv4 decapsulated")                              \
  X(FULCRUM_DECAP_6IN6, 1, "decap_6in6", "IPv6-in-IPv6 decapsulated")                              \
  X(FULCRUM_DECAP_4IN6, 2, "decap_4in6", "IPv4-in-IPv6 decapsulated")                              \
  X(FULCRUM_DECAP_GUE4, 3, "decap_gue4", "GUE over IPv4 decapsulated (either inner family)")       \
  X(FULCRUM_DECAP_GUE6, 4, "decap_gue6", "GUE over IPv6 decapsulated (either inner family)")       \
  X(FULCRUM_DECAP_PASS_NOT_IP, 5, "pass_not_ip",                                                   \
    "not IPv4 or IPv6 (ARP, LLDP, stacked VLAN tags; in tc mode any VLAN tag in the frame)")       \
  X(FULCRUM_DECAP_PASS_NOT_LOCAL, 6, "pass_not_local",                                             \
    "outer destination is not one of the configured addresses")                                    \
  X(FULCRUM_DECAP_PASS_NOT_TUNNEL, 7, "pass_not_tunnel",                                           \
    "to a configured address, but not IPIP/IPv6-in-IPv6 nor UDP to the GUE port")                  \
  X(FULCRUM_DECAP_PASS_FRAGMENT, 8, "pass_fragment",                                               \
    "outer packet is a fragment: left to the kernel, which reassembles")                           \
  X(FULCRUM_DECAP_PASS_BAD_OUTER, 9, "pass_bad_outer",                                             \
    "frame ends inside its outer headers, or the outer IP header is invalid: the kernel drops it") \
  X(FULCRUM_DECAP_PASS_IPV6_EXT, 10, "pass_ipv6_ext",                                              \
    "outer IPv6 routing header with segments left, or an extension chain beyond the bound")        \
  X(FULCRUM_DECAP_DROP_TRUNCATED_INNER, 11, "drop_truncated_inner",                                \
    "tunnel packet whose payload is shorter than an inner IP header")                              \
  X(FULCRUM_DECAP_DROP_BAD_INNER, 12, "drop_bad_inner",                                            \
    "inner version does not match the outer protocol, inner IHL below 5, or a GUE header "         \
    "(variant 0)")                                                                                 \
  X(FULCRUM_DECAP_DROP_BAD_LENGTH, 13, "drop_bad_length",                                          \
    "UDP length or inner IP length runs past the outer packet, or UDP length below 8")             \
  X(FULCRUM_DECAP_DROP_ECN, 14, "drop_ecn",                                                        \
    "outer ECN CE on a Not-ECT inner packet (RFC 6040 section 4.2)")                               \
  X(FULCRUM_DECAP_DROP_ERROR, 15, "drop_error",                                                    \
    "the kernel refused to remove the outer headers (bpf_xdp_adjust_head/bpf_skb_adjust_room)")    \
  X(FULCRUM_DECAP_ECN_CE, 16, "ecn_ce",                                                            \
    "outer CE copied to the inner header (also counted under its decap_* outcome)")

enum fulcrum_decap_counter {
#define FULCRUM_X_ENUM(name, value, label, help) name = value,
  FULCRUM_DECAP_COUNTERS(FULCRUM_X_ENUM)
#undef FULCRUM_X_ENUM
};
#define FULCRUM_X_COUNT(name, value, label, help) +1
enum { FULCRUM_DECAP_COUNTER_COUNT = 0 FULCRUM_DECAP_COUNTERS(FULCRUM_X_COUNT) };
#undef FULCRUM_X_COUNT

/* Maps decap_v4 (key: IPv4 address as on the wire, 4 bytes) and decap_v6 (key: IPv6 address,
 * 16 bytes): the outer destinations this host decapsulates for. The value is unused (a hash
 * map needs one); it is 1.
 */
#define FULCRUM_DECAP_MAX_ADDRESSES 256

struct fulcrum_in6 {
  __u8 addr[16];
};

/* ---- AF_XDP steering -------------------------------------------------------------------- */

#define FULCRUM_STEER_COUNTERS(X)                                                                \
  X(FULCRUM_STEER_REDIRECT, 0, "redirect", "VIP packet redirected to its queue's AF_XDP socket") \
  X(FULCRUM_STEER_NO_SOCKET, 1, "vip_no_socket",                                                 \
    "VIP packet, but no AF_XDP socket on its queue: passed to the kernel")                       \
  X(FULCRUM_STEER_PASS_NOT_VIP, 2, "pass_not_vip", "IP packet that is not VIP traffic: passed")  \
  X(FULCRUM_STEER_PASS_NOT_IP, 3, "pass_not_ip", "not IPv4 or IPv6 (ARP, LLDP...): passed")      \
  X(FULCRUM_STEER_PASS_BAD_HEADERS, 4, "pass_bad_headers",                                       \
    "truncated or invalid headers, or an IPv6 chain beyond the bound: passed to the kernel")

enum fulcrum_steer_counter {
#define FULCRUM_X_ENUM(name, value, label, help) name = value,
  FULCRUM_STEER_COUNTERS(FULCRUM_X_ENUM)
#undef FULCRUM_X_ENUM
};
#define FULCRUM_X_COUNT(name, value, label, help) +1
enum { FULCRUM_STEER_COUNTER_COUNT = 0 FULCRUM_STEER_COUNTERS(FULCRUM_X_COUNT) };
#undef FULCRUM_X_COUNT

#define FULCRUM_VIP_F_IPV6 0x01
/* Any port of this address and protocol: the key that fragments (no ports in a later fragment,
 * and the data plane applies its per-VIP fragment policy to all of them) and ICMP errors
 * (protocol ICMP/ICMPv6, about a VIP flow) are looked up with. The loader adds these keys for
 * every VIP; port is 0 in them.
 */
#define FULCRUM_VIP_F_ANY_PORT 0x02

/* Map vips: key fulcrum_vip_key, value __u8 (unused, 1). Map xsks_map: XSKMAP, key = RX queue
 * index, value = AF_XDP socket (the DPDK af_xdp PMD inserts its sockets there itself).
 */
struct fulcrum_vip_key {
  __u8 addr[16]; /* IPv4: bytes 0..3, the rest zero (IpAddress's layout) */
  __be16 port;   /* network order, as in the packet; 0 with FULCRUM_VIP_F_ANY_PORT */
  __u8 proto;    /* IPPROTO_TCP, IPPROTO_UDP; IPPROTO_ICMP(V6) for the ICMP-error key */
  __u8 flags;    /* FULCRUM_VIP_F_* */
};

#define FULCRUM_STEER_MAX_VIP_KEYS 16384
#define FULCRUM_STEER_MAX_QUEUES 256

/* ---- health probes through the tunnel --------------------------------------------------- */

#define FULCRUM_PROBE_COUNTERS(X)                                                                \
  X(FULCRUM_PROBE_ENCAP_IPIP4, 0, "encap_ipip4", "probe encapsulated in IPv4 (IPIP)")            \
  X(FULCRUM_PROBE_ENCAP_IPIP6, 1, "encap_ipip6", "probe encapsulated in IPv6 (IPIP)")            \
  X(FULCRUM_PROBE_ENCAP_GUE4, 2, "encap_gue4", "probe encapsulated in GUE over IPv4")            \
  X(FULCRUM_PROBE_ENCAP_GUE6, 3, "encap_gue6", "probe encapsulated in GUE over IPv6")            \
  X(FULCRUM_PROBE_PASS_NO_TARGET, 4, "pass_no_target",                                           \
    "mark names no probe target (ordinary traffic): passed untouched")                           \
  X(FULCRUM_PROBE_DROP_NOT_IP, 5, "drop_not_ip",                                                 \
    "marked packet that is not IPv4 or IPv6, or whose IP header is cut")                         \
  X(FULCRUM_PROBE_DROP_NO_TEMPLATE, 6, "drop_no_template",                                       \
    "the target has no encapsulation for this inner family (IPv6 over IPIP to an IPv4 backend)") \
  X(FULCRUM_PROBE_DROP_TOO_BIG, 7, "drop_too_big",                                               \
    "encapsulated probe would exceed the device MTU")                                            \
  X(FULCRUM_PROBE_DROP_ERROR, 8, "drop_error", "the kernel refused to add the outer headers")

enum fulcrum_probe_counter {
#define FULCRUM_X_ENUM(name, value, label, help) name = value,
  FULCRUM_PROBE_COUNTERS(FULCRUM_X_ENUM)
#undef FULCRUM_X_ENUM
};
#define FULCRUM_X_COUNT(name, value, label, help) +1
enum { FULCRUM_PROBE_COUNTER_COUNT = 0 FULCRUM_PROBE_COUNTERS(FULCRUM_X_COUNT) };
#undef FULCRUM_X_COUNT

/* The outer headers of one (backend, inner family), as dataplane/core/encap.h lays them out in
 * an EncapTemplate: Ethernet + IP (+ UDP) with the per-packet fields zero and, for IPv4, the
 * folded partial checksum in the checksum field. The probe program completes them per packet
 * exactly as WriteEncap() does, so a probe is framed like the data plane's own traffic.
 */
#define FULCRUM_ENCAP_MAX_HEADER 62

enum fulcrum_encap_kind { /* the values of EncapKind */
                          FULCRUM_ENCAP_IPIP4 = 0,
                          FULCRUM_ENCAP_IPIP6 = 1,
                          FULCRUM_ENCAP_GUE4 = 2,
                          FULCRUM_ENCAP_GUE6 = 3,
};

struct fulcrum_encap_header {
  __u8 bytes[FULCRUM_ENCAP_MAX_HEADER];
  __u8 kind; /* fulcrum_encap_kind */
  __u8 len;  /* bytes used: 34, 54, 42 or 62; 0 = no encapsulation for this inner family */
};

/* Map probe_targets: key = the probe socket's SO_MARK (__u32), value: */
struct fulcrum_probe_target {
  struct fulcrum_encap_header inner_v4; /* for IPv4 probes (to an IPv4 VIP) */
  struct fulcrum_encap_header inner_v6; /* for IPv6 probes */
};

#define FULCRUM_PROBE_MAX_TARGETS 4096

/* ---- shared parsing rules ---------------------------------------------------------------- */

/* IPv6 extension headers walked at most (dataplane/core/parse.h kMaxIpv6ExtHeaders, which
 * tests/bpf pin it to): RFC 8200 section 4.1's order holds at most five walked kinds, plus one
 * spare.
 */
#define FULCRUM_IPV6_MAX_EXT_HEADERS 6

/* ---- attach points ---------------------------------------------------------------------- */

/* tc filters are found again by (hook, handle, priority): fixed values, one per program. */
#define FULCRUM_TC_PRIORITY 1
#define FULCRUM_TC_HANDLE_DECAP 0xf1c1
#define FULCRUM_TC_HANDLE_PROBE 0xf1c2

/* Program names as the kernel keeps them (at most 15 characters): user space recognises its own
 * programs on an interface by these, together with their maps' shapes.
 */
#define FULCRUM_PROG_DECAP_XDP "fulcrum_decap"
#define FULCRUM_PROG_DECAP_TC "fulcrum_tcdecap"
#define FULCRUM_PROG_STEER "fulcrum_steer"
#define FULCRUM_PROG_PROBE "fulcrum_probe"

/* ---- layout checks, in both languages ---------------------------------------------------- */

#ifdef __cplusplus
#define FULCRUM_STATIC_ASSERT static_assert
#else
#define FULCRUM_STATIC_ASSERT _Static_assert
#endif

FULCRUM_STATIC_ASSERT(sizeof(struct fulcrum_counter) == 16, "counter layout");
FULCRUM_STATIC_ASSERT(sizeof(struct fulcrum_in6) == 16, "in6 layout");
FULCRUM_STATIC_ASSERT(sizeof(struct fulcrum_vip_key) == 20, "vip key layout");
FULCRUM_STATIC_ASSERT(__builtin_offsetof(struct fulcrum_vip_key, port) == 16, "vip key port");
FULCRUM_STATIC_ASSERT(__builtin_offsetof(struct fulcrum_vip_key, proto) == 18, "vip key proto");
FULCRUM_STATIC_ASSERT(__builtin_offsetof(struct fulcrum_vip_key, flags) == 19, "vip key flags");
FULCRUM_STATIC_ASSERT(sizeof(struct fulcrum_encap_header) == 64, "encap header layout");
FULCRUM_STATIC_ASSERT(__builtin_offsetof(struct fulcrum_encap_header, kind) == 62, "kind");
FULCRUM_STATIC_ASSERT(__builtin_offsetof(struct fulcrum_encap_header, len) == 63, "len");
FULCRUM_STATIC_ASSERT(sizeof(struct fulcrum_probe_target) == 128, "probe target layout");
FULCRUM_STATIC_ASSERT(FULCRUM_DECAP_COUNTER_COUNT == 17, "append decap counters, never remove");
FULCRUM_STATIC_ASSERT(FULCRUM_STEER_COUNTER_COUNT == 5, "append steer counters, never remove");
FULCRUM_STATIC_ASSERT(FULCRUM_PROBE_COUNTER_COUNT == 9, "append probe counters, never remove");
FULCRUM_STATIC_ASSERT(sizeof(FULCRUM_PROG_DECAP_TC) <= 16, "BPF_OBJ_NAME_LEN");
