#!/usr/bin/env bash
# fulcrum-decap across network namespaces: a load balancer stand-in sends encapsulated TCP SYNs
# to the VIP (every encapsulation, scapy), a backend with fulcrum-decap on its veth, the VIP on
# lo and a listener answers with a SYN-ACK straight from the VIP. XDP mode, then tc mode; with
# the decapsulator detached the same SYN gets no answer. Also checks the tool's counters and
# exit codes. Needs root; everything it creates carries this shell's PID and is removed on exit.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: needs root (network namespaces, XDP); CI runs as root"
  exit 77
fi
decap=${FULCRUM_DECAP:?run through meson test}
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3  # Debian's, with scapy

id=$$
lb=fdlb$id be=fdbe$id vl=fdl$id vb=fdb$id
lb_mac=02:00:00:00:01:01 be_mac=02:00:00:00:01:02
listener=
cleanup() {
  if [ -n "$listener" ]; then kill "$listener" 2>/dev/null || true; fi
  ip netns del "$lb" 2>/dev/null || true
  ip netns del "$be" 2>/dev/null || true
}
trap cleanup EXIT

ip netns add "$lb"
ip netns add "$be"
ip link add "$vl" address $lb_mac netns "$lb" type veth peer name "$vb" address $be_mac netns "$be"
in_lb() { ip netns exec "$lb" "$@"; }
in_be() { ip netns exec "$be" "$@"; }

in_lb ip link set lo up
in_lb ip link set "$vl" up
in_lb ip addr add 192.0.2.1/24 dev "$vl"
in_lb ip addr add 2001:db8:1::1/64 dev "$vl" nodad

# The backend, as README "Backends: decapsulation" sets one up.
in_be ip link set lo up
in_be ip link set "$vb" up
in_be ip addr add 192.0.2.2/24 dev "$vb"
in_be ip addr add 2001:db8:1::2/64 dev "$vb" nodad
in_be ip addr add 203.0.113.10/32 dev lo
in_be ip addr add 2001:db8:f::10/128 dev lo
in_be sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf."$vb".rp_filter=0 \
  net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
in_be ip route add 198.51.100.0/24 via 192.0.2.1
in_be ip -6 route add 2001:db8:c::/64 via 2001:db8:1::1
# Not through in_be: $! must be the listener itself (ip netns exec execs it), not a subshell.
ip netns exec "$be" "$py" -c '
import socket, time
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 8080)); s.listen(64); time.sleep(600)' >/dev/null 2>&1 &
listener=$!
sleep 0.5

counter() {  # counter NAME: the packets of one counter in `fulcrum-decap status`
  in_be "$decap" status "$vb" | awk -v n="$1" '$1 == n {print $2}'
}
expect_counter() {
  local got
  got=$(counter "$1")
  if [ "$got" != "$2" ]; then
    echo "FAIL: counter $1 is $got, expected $2"
    in_be "$decap" status "$vb"
    exit 1
  fi
}

fail=0
base=41000
for mode in xdp tc; do
  echo "== $mode"
  in_be "$decap" attach "$vb" --mode $mode --address 192.0.2.2 2001:db8:1::2 --gue-port 6080
  in_be "$decap" status "$vb" | head -4
  in_lb "$py" "$here/decap_handshake.py" "$vl" $lb_mac $be_mac $base || fail=1
  base=$((base + 1000))
  expect_counter decap_4in4 1
  expect_counter decap_6in6 1
  expect_counter decap_4in6 1
  expect_counter decap_gue4 2
  expect_counter decap_gue6 2
  # Traffic for the backend's own addresses still reaches its kernel, untouched.
  for addr in 192.0.2.2 2001:db8:1::2; do
    in_lb "$py" -c "import socket; socket.create_connection(('$addr', 8080), timeout=3).close()" ||
      { echo "FAIL: no TCP connection to the backend's own address $addr"; fail=1; }
  done
  [ "$(counter pass_not_tunnel)" -ge 2 ] || { echo "FAIL: pass_not_tunnel did not count"; fail=1; }
done

echo "== detached"
in_be "$decap" detach "$vb"
rc=0
in_be "$decap" status "$vb" || rc=$?
[ $rc -eq 3 ] || { echo "FAIL: status after detach exited $rc, expected 3"; fail=1; }
in_lb "$py" "$here/decap_handshake.py" "$vl" $lb_mac $be_mac $base --expect-none 4in4 gue6_inner6 ||
  fail=1

rc=0
in_be "$decap" attach "$vb" 2>/dev/null || rc=$?
[ $rc -eq 2 ] || { echo "FAIL: attach without --address exited $rc, expected 2 (usage)"; fail=1; }
"$decap" --help | grep -q 'fulcrum-decap attach IFACE' || { echo "FAIL: --help"; fail=1; }

if [ $fail -ne 0 ]; then echo "FAIL"; exit 1; fi
echo "PASS"
