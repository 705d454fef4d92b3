#!/usr/bin/env bash
# AF_XDP steering with the real consumer: dpdk-testpmd (DPDK 22.11) runs a net_af_xdp port on a
# veth with xdp_prog= the steering object, exactly as fulcrumd will; steer_ctl then finds the
# program through the interface and sets the VIPs (bpf/steer.h). VIP datagrams from another
# namespace must reach testpmd; a TCP connection to the host's own address must still reach
# its kernel. Needs root; everything it creates carries this shell's PID and is removed on exit.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: needs root (network namespaces, XDP, AF_XDP); CI runs as root"
  exit 77
fi
steer_ctl=${FULCRUM_STEER_CTL:?run through meson test}
steer_obj=${FULCRUM_STEER_BPF_OBJ:?run through meson test}
testpmd=$(command -v dpdk-testpmd) || { echo "FAIL: dpdk-testpmd missing (Debian dpdk-dev)"; exit 1; }
py=/usr/bin/python3

id=$$
cl=fscl$id lb=fslb$id vc=fsc$id vl=fsl$id prefix=fulcrum-steer-$id
log=$(mktemp)
pmd= service=
cleanup() {
  if [ -n "$pmd" ]; then kill -INT "$pmd" 2>/dev/null || true; wait "$pmd" 2>/dev/null || true; fi
  if [ -n "$service" ]; then kill "$service" 2>/dev/null || true; fi
  ip netns del "$cl" 2>/dev/null || true
  ip netns del "$lb" 2>/dev/null || true
  rm -rf "/var/run/dpdk/$prefix" "$log"
}
trap cleanup EXIT

ip netns add "$cl"
ip netns add "$lb"
ip link add "$vc" netns "$cl" type veth peer name "$vl" netns "$lb"
in_cl() { ip netns exec "$cl" "$@"; }
in_lb() { ip netns exec "$lb" "$@"; }
in_cl ip link set lo up
in_cl ip link set "$vc" up
in_cl ethtool -K "$vc" tx off >/dev/null  # XDP cannot finish a veth's partial checksums
in_cl ip addr add 192.0.2.1/24 dev "$vc"
in_cl ip route add 203.0.113.10/32 via 192.0.2.2
in_lb ip link set lo up
in_lb ip link set "$vl" up
in_lb ip addr add 192.0.2.2/24 dev "$vl"
ip netns exec "$lb" "$py" -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("192.0.2.2", 8080)); s.listen(8)
while True: s.accept()[0].close()' >/dev/null 2>&1 &
service=$!

# fulcrumd's port, played by testpmd: rxonly counts what the AF_XDP socket receives.
ip netns exec "$lb" "$testpmd" --no-huge -m 512 --no-pci --file-prefix="$prefix" \
  --vdev "net_af_xdp0,iface=$vl,start_queue=0,queue_count=1,xdp_prog=$steer_obj" -- \
  --forward-mode=rxonly --total-num-mbufs=8192 --stats-period=1 </dev/null >"$log" 2>&1 &
pmd=$!
for _ in $(seq 50); do
  if in_lb ip link show "$vl" | grep -q 'prog/xdp'; then break; fi
  sleep 0.2
done
in_lb ip link show "$vl" | grep 'prog/xdp' || { cat "$log"; echo "FAIL: testpmd did not load it"; exit 1; }

fail=0
in_lb "$steer_ctl" "$vl" set 203.0.113.10:4500/udp "[2001:db8:f::10]:443/tcp"
in_cl "$py" -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(20): s.sendto(b"vip %d" % i, ("203.0.113.10", 4500))
s.sendto(b"not a vip port", ("203.0.113.10", 4501))'
in_cl "$py" -c "import socket; socket.create_connection(('192.0.2.2', 8080), timeout=3).close()" ||
  { echo "FAIL: the host kernel is unreachable while the af_xdp port runs"; fail=1; }
sleep 1.5  # a stats period
counters=$(in_lb "$steer_ctl" "$vl" counters)
echo "$counters"
redirect=$(echo "$counters" | awk '$1 == "redirect" {print $2}')
[ "$redirect" -eq 20 ] || { echo "FAIL: redirect is $redirect, expected 20"; fail=1; }
[ "$(echo "$counters" | awk '$1 == "pass_not_vip" {print $2}')" -ge 2 ] ||
  { echo "FAIL: the other port and the TCP connection were not passed"; fail=1; }

kill -INT "$pmd"
wait "$pmd" || true
pmd=
rx=$(awk '/Accumulated forward statistics/ {s = 1} s && /RX-packets:/ {print $2; exit}' "$log")
echo "testpmd received $rx packets"
[ "${rx:-0}" -eq 20 ] || { tail -30 "$log"; echo "FAIL: testpmd got ${rx:-0}, expected 20"; fail=1; }
if in_lb ip link show "$vl" | grep -q 'prog/xdp'; then
  echo "FAIL: the program outlived the port"
  fail=1
fi

if [ $fail -ne 0 ]; then echo "FAIL"; exit 1; fi
echo "PASS"
