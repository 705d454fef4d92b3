#!/usr/bin/env bash
# Whole-process forwarding rate: fulcrumd against dpdk-testpmd (io and macswap) on the same
# ports in the same run. The source is net_pcap replaying a many-flow pcap from memory
# (infinite_rx=1: the file is loaded into mbufs once); what is sent is dropped by the PMD
# (no tx_pcap), so the figure is the forwarding work, not a sink's.
#
#   bench/pps.sh [FLOWS=1048576] [SECONDS=8]       (root: it mounts hugepages)
#   PPS_BURST=32 bench/pps.sh ...                  (both with another RX burst than 64)
#
# Prints, for 1 and 2 workers: packets per second of testpmd io, testpmd macswap and fulcrumd,
# and fulcrumd's added cost per packet, 1/rate(fulcrumd) - 1/rate(testpmd io).
set -euo pipefail
cd "$(dirname "$0")/.."
flows=${1:-1048576}
seconds=${2:-8}
burst=${PPS_BURST:-64}  # RX burst of both fulcrumd and testpmd; 64 is fulcrumd's default
build=build
testpmd=$(command -v dpdk-testpmd)
work=$(mktemp -d /tmp/fulcrum-pps.XXXXXX)
prefix=fulcrum-pps-$$
cleanup() {
  pkill -f "file-prefix=$prefix" 2>/dev/null || true
  rm -rf "$work" "/var/run/dpdk/$prefix"
  rm -f "/dev/shm/$prefix.config" "/dev/shm/$prefix.stats"
}
trap cleanup EXIT
[ -n "${PPS_DEBUG:-}" ] && trap - EXIT

# Hugepages: the mbufs of a million-packet pcap are 2.3 GB.
pages=$(( (flows * 2304 / 2097152) + 512 ))
if [ "$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages)" -lt "$pages" ]; then
  echo "$pages" > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
fi
mkdir -p /dev/hugepages
mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages
free=$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages)
echo "hugepages: $free free of 2 MiB"

# The pcaps: 64-byte TCP ACKs to the VIP, one flow per packet; two halves for two workers.
/usr/bin/python3 - "$work" "$flows" <<'EOF'
import struct, sys
work, flows = sys.argv[1], int(sys.argv[2])
def write(path, first, count):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        eth = bytes.fromhex("0200000000aa02000000000c0800")
        for n in range(first, first + count):
            src = bytes([100, (n >> 16) & 255, (n >> 8) & 255, n & 255])
            ip = bytearray(b"\x45\x00\x00\x32\x00\x00\x40\x00\x40\x06\x00\x00" + src +
                           bytes([10, 10, 0, 100]))
            tcp = struct.pack(">HHIIBBHHH", 1024 + (n >> 24), 80, 1, 1, 0x50, 0x10, 512, 0, 0)
            pkt = eth + bytes(ip) + tcp + b"\0" * 10
            f.write(struct.pack("<IIII", 0, 0, len(pkt), len(pkt)) + pkt)
write(f"{work}/all.pcap", 0, flows)
write(f"{work}/half0.pcap", 0, flows // 2)
write(f"{work}/half1.pcap", flows // 2, flows - flows // 2)
EOF
cat > "$work/snapshot.json" <<EOF
{"settings": {"source_v4": "10.10.3.2"},
 "vips": [{"name": "web", "address": "10.10.0.100", "port": 80, "id": 0,
   "backends": [$(for b in $(seq 1 10); do printf '{"address": "10.10.2.%d", "id": %d}%s' $((10 + b)) "$b" "$([ "$b" -lt 10 ] && echo ,)"; done)]}]}
EOF

mbufs=$(( flows + 65536 ))
eal_common=(--in-memory --no-pci "--file-prefix=$prefix" --log-level=error)
ports_for() {  # workers -> --vdev arguments
  if [ "$1" = 1 ]; then
    echo "--vdev=net_pcap0,rx_pcap=$work/all.pcap,infinite_rx=1"
  else
    echo "--vdev=net_pcap0,rx_pcap=$work/half0.pcap,infinite_rx=1 --vdev=net_pcap1,rx_pcap=$work/half1.pcap,infinite_rx=1"
  fi
}
lcores_for() {  # workers -> EAL lcore list (the main lcore shares core 0 with a worker at 2)
  if [ "$1" = 1 ]; then echo "0,1"; else echo "0@0,1@1,2@0"; fi
}

# testpmd takes the same RX burst as fulcrumd ($burst; at 1 Mi flows io measured 17.4-18.3
# Mpps with 32 or 64).
testpmd_rate() {  # workers mode -> Mpps (median of the per-second RX rates after warm-up)
  # testpmd loads the pcap into mbufs before its first packet (seconds, on cold hugepages):
  # it runs until SECONDS seconds of non-zero rates are in, the first two dropped as warm-up.
  local out="$work/testpmd-$1-$2.out" pid tries=0
  : >"$out"
  # shellcheck disable=SC2046
  "$testpmd" --lcores "$(lcores_for "$1")" "${eal_common[@]}" $(ports_for "$1") -- \
    --forward-mode="$2" --nb-cores="$1" --burst="$burst" --total-num-mbufs="$mbufs" \
    --stats-period=1 --auto-start --no-mlockall >"$out" 2>&1 &
  pid=$!
  until [ "$(testpmd_periods "$1" <"$out" | wc -l)" -ge "$seconds" ]; do
    if ! kill -0 "$pid" 2>/dev/null || [ $((tries += 1)) -gt 600 ]; then
      echo "pps.sh: testpmd $2 ($1 workers) gave no $seconds s of rates; its output:" >&2
      tail -n 40 "$out" >&2
      exit 1
    fi
    sleep 0.2
  done
  kill -INT "$pid"
  wait "$pid" || true
  testpmd_periods "$1" <"$out" | tail -n +3 | sort -n |
    awk '{a[NR] = $1} END {printf "%.2f", a[int((NR + 1) / 2)] / 1e6}'
}

testpmd_periods() {  # workers < testpmd output -> the RX rate of each period, from the first non-zero
  awk '/Rx-pps:/ {s += $2} /Rx-pps:/ && ++n % '"$1"' == 0 {print s; s = 0}' |
    awk 'started || $1 > 0 {started = 1; print}'
}

fulcrumd_rate() {  # workers -> Mpps (RX rate between the 3rd second and the end)
  local pid
  # Flow tables of 3 x the flows per worker, as in pipeline_bench's many-flow cases (160 MiB
  # for 1 Mi flows on one worker; docs/dataplane.md "Where the floors stand").
  "$build/tests/tools/fulcrum-test-writer" --shm-prefix "$prefix" --snapshot "$work/snapshot.json" \
    --ack-timeout-ms 60000 >/dev/null &
  # shellcheck disable=SC2046
  "$build/dataplane/fulcrumd" --lcores "$(lcores_for "$1")" "${eal_common[@]}" $(ports_for "$1") -- \
    --shm-prefix "$prefix" --no-tap --mbufs "$mbufs" --flow-capacity $((3 * flows / $1)) \
    --burst "$burst" \
    2>"$work/fulcrumd.log" &
  pid=$!
  wait %1
  # The ack comes before the first packet: wait for RX to start (the PMD loads the pcap into
  # mbufs first), then 3 s of warm-up, every flow tracked after the first pass.
  local a b tries=0
  until [ "$(rx_packets)" -gt 0 ]; do
    if ! kill -0 "$pid" 2>/dev/null || [ $((tries += 1)) -gt 600 ]; then
      echo "pps.sh: fulcrumd ($1 workers) forwarded nothing; its log:" >&2
      cat "$work/fulcrumd.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  sleep 3
  a=$(rx_packets)
  sleep $((seconds - 3))
  b=$(rx_packets)
  kill -INT "$pid"
  wait "$pid" || true
  /usr/bin/python3 -c "print('%.2f' % (($b - $a) / ($seconds - 3) / 1e6))"
}

rx_packets() {  # fulcrumd's RX count, 0 until its stats segment is there
  "$build/tests/tools/fulcrum-stats-dump" --shm-prefix "$prefix" 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"]["rx_packets"])' \
      2>/dev/null || echo 0
}

positive() {  # name rate -> fails unless the rate is a number above zero
  if ! /usr/bin/python3 -c "import sys; sys.exit(0 if float('${2:-0}') > 0 else 1)" 2>/dev/null; then
    echo "pps.sh: no rate measured for $1 ('$2')" >&2
    exit 1
  fi
}

printf "%-8s %14s %18s %14s %22s\n" workers "testpmd io" "testpmd macswap" fulcrumd \
  "fulcrumd added ns/pkt"
for w in 1 2; do
  io=$(testpmd_rate "$w" io)
  macswap=$(testpmd_rate "$w" macswap)
  fulcrum=$(fulcrumd_rate "$w")
  positive "testpmd io, $w workers" "$io"
  positive "testpmd macswap, $w workers" "$macswap"
  positive "fulcrumd, $w workers" "$fulcrum"
  added=$(/usr/bin/python3 -c "print('%.1f' % (1e3 / $fulcrum - 1e3 / $io))")
  printf "%-8s %10s Mpps %14s Mpps %10s Mpps %22s\n" "$w" "$io" "$macswap" "$fulcrum" "$added"
done
echo "flows: $flows (one per packet in the pcap, all tracked after the first pass)"
