#!/usr/bin/env bash
# The fuzz suite: builds each target with clang's libFuzzer, AddressSanitizer and UBSan (the
# meson build uses gcc, so these are compiled here, from the same sources) and runs each for a
# fixed time. A crash, an abort (a broken invariant), a sanitizer report or a leak fails it.
#   tests/fuzz/run.sh [SECONDS_PER_TARGET=20] [OUT_DIR]
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-20}
out=${2:-$(mktemp -d /tmp/fulcrum-fuzz.XXXXXX)}
mkdir -p "$out"
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
       -I"$top" $(pkg-config --cflags absl_status libxxhash))
libs=($(pkg-config --libs absl_status absl_statusor absl_str_format absl_strings libxxhash))
core=(dataplane/core/encap.cc dataplane/core/flow_hash.cc dataplane/core/flow_table.cc
      dataplane/core/ip_address.cc dataplane/core/maglev.cc dataplane/core/vip_map.cc)
declare -A sources=(
  [parse]="tests/fuzz/parse_fuzz.cc"
  [snapshot]="tests/fuzz/snapshot_fuzz.cc dataplane/shm/snapshot.cc dataplane/forwarding.cc ${core[*]}"
)
status=0
for target in parse snapshot; do
  src=()
  for f in ${sources[$target]}; do src+=("$top/$f"); done
  clang++ "${flags[@]}" "${src[@]}" "${libs[@]}" -o "$out/$target" 2>"$out/$target.build.log" ||
    { cat "$out/$target.build.log"; exit 1; }
  mkdir -p "$out/$target.corpus"
  if [ "$target" = snapshot ]; then /usr/bin/python3 "$top/tests/fuzz/snapshot_seed.py" "$out/$target.corpus/valid"; fi
  echo "== fuzz $target: ${seconds}s"
  if ! (cd "$out" && "./$target" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
        "$target.corpus" >"$target.log" 2>&1); then
    tail -40 "$out/$target.log"
    status=1
  fi
  grep -E "stat::number_of_executed_units|stat::new_units_added" "$out/$target.log" | tr '\n' ' '
  echo
done
exit $status
