#!/usr/bin/env bash
# Config swap latency: publish to acknowledgement of a new generation, p50 / p99 / max over
# SWAPS swaps of a VIPS-VIP snapshot (each swap changes one backend's weight in one VIP), with
# fulcrumd forwarding on one worker meanwhile (net_null RX: a packet source that never runs
# dry). The writer is fulcrum-test-writer; the reference it measures in the same run is its own
# cost of filling the slot before each publish. fulcrumd's log (/tmp/fulcrum-swap-PID.log)
# splits each swap into copy-and-check, build, and grace period.
#
#   bench/swap.sh [SWAPS=1000] [VIPS=256]     (root; BUILD=DIR for another build directory)
set -euo pipefail
cd "$(dirname "$0")/.."
swaps=${1:-1000}
vips=${2:-256}
prefix=fulcrum-swap-$$
cleanup() {
  pkill -f "file-prefix=$prefix" 2>/dev/null || true
  rm -rf "/var/run/dpdk/$prefix" "/dev/shm/$prefix.config" "/dev/shm/$prefix.stats"
}
trap cleanup EXIT
mem=(--no-huge -m 1024)
if [ "$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages 2>/dev/null || echo 0)" -ge 512 ]; then
  mem=()
fi
${BUILD:-build}/dataplane/fulcrumd -l 0,1 --in-memory --no-pci --file-prefix=$prefix --log-level=error \
  "${mem[@]}" --vdev=net_null0 -- --shm-prefix "$prefix" --no-tap --flow-capacity 65536 \
  2>/tmp/$prefix.log &
for _ in $(seq 100); do [ -e "/dev/shm/$prefix.stats" ] && break; sleep 0.05; done
${BUILD:-build}/tests/tools/fulcrum-test-writer --shm-prefix "$prefix" --swap-bench "$swaps" --vips "$vips"
