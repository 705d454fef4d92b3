/* Per-CPU counters indexed by an abi.h counter enum: one writer per CPU, so plain adds. */
#pragma once

#include "bpf/lib/pkt.h"

#define FULCRUM_COUNTER_MAP(name, n)                                                           \
	struct {                                                                               \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                                       \
		__uint(max_entries, n);                                                        \
		__type(key, __u32);                                                            \
		__type(value, struct fulcrum_counter);                                         \
	} name SEC(".maps")

static __always_inline void counter_add(void *map, __u32 index, __u64 bytes)
{
	struct fulcrum_counter *c = bpf_map_lookup_elem(map, &index);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}
