#!/usr/bin/env bash
# Instructions per packet inside ProcessBurst (and what it calls), per pipeline_bench case:
# callgrind, collection toggled on ProcessBurst only. This VM has no hardware counters; the
# instruction count is exact where the time is noisy, so each change is first read here.
#
#   bench/instructions.sh [CASE...]     (default: the four cases of the data-plane floors and the
#                                       interleaved hot case; a CASE is a benchmark filter regex)
#
# Needs valgrind (apt-get install valgrind; not part of scripts/bootstrap, which installs what
# building and testing need).
#
# Builds build-callgrind/ (release, -g; Debian's DPDK flags give -march=corei7, which valgrind
# runs: it does not run AVX-512). Each case runs twice, with two benchmark durations, and the
# count is the difference of the two runs over the difference of their packets: the set-up of
# the 1 Mi case (tracking every flow with a SYN through the same ProcessBurst) and of the
# new-flow case cancels out. A single run's total over its packets mixes those in: the
# 1 Mi case read 529 that way where its timed loop ran 448 (docs/dataplane.md "Cost").
set -euo pipefail
if ! command -v valgrind >/dev/null; then
  echo "bench/instructions.sh: valgrind is not installed (apt-get install valgrind)" >&2
  exit 1
fi
cd "$(dirname "$0")/.."
build=build-callgrind
[ -d "$build" ] || meson setup "$build" --buildtype=release -Dcpp_args=-g >/dev/null
ninja -C "$build" bench/pipeline_bench >/dev/null
work=$(mktemp -d /tmp/fulcrum-instructions.XXXXXX)
trap 'rm -rf "$work"' EXIT

run() {  # case min_time -> "instructions packets"
  local out packets total
  out=$(FULCRUM_NO_HUGE=1 FULCRUM_PRINT_BURSTS=1 valgrind --tool=callgrind \
    --toggle-collect='fulcrum::ProcessBurst(*BurstOutput&)' --callgrind-out-file="$work/cg.out" \
    "$build/bench/pipeline_bench" --benchmark_filter="$1" --benchmark_min_time="$2" 2>/dev/null)
  packets=$(awk '/^bursts/ {print $4}' <<<"$out")
  total=$(callgrind_annotate "$work/cg.out" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo "$total $packets"
}

cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=('Established_Hot$' Established_HotInterleaved 'Established_1M_RandomOrder$' NewFlow NotForAVip)
for name in "${cases[@]}"; do
  read -r i1 p1 < <(run "$name" 0.2)
  read -r i2 p2 < <(run "$name" 0.6)
  awk -v n="$name" -v i="$((i2 - i1))" -v p="$((p2 - p1))" \
    'BEGIN {printf "%-16s %6.1f instructions per packet\n", n, i / p}'
done
