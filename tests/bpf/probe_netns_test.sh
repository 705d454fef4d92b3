#!/usr/bin/env bash
# Health probes through the tunnel across network namespaces: a prober (the load balancer's
# control plane) with the probe program on its veth and policy routing for marked packets, a
# backend with fulcrum-decap, the VIP on lo and a service answering "ok". A TCP probe marked with
# SO_MARK reaches the VIP through each encapsulation and gets its answer straight from the VIP;
# an unmarked connection to the VIP has no route. Needs root; everything it creates carries this
# shell's PID and is removed on exit.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: needs root (network namespaces, tc, XDP); CI runs as root"
  exit 77
fi
decap=${FULCRUM_DECAP:?run through meson test}
probe_ctl=${FULCRUM_PROBE_CTL:?run through meson test}
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3

id=$$
lb=fplb$id be=fpbe$id vl=fpl$id vb=fpb$id
lb_mac=02:00:00:00:02:01 be_mac=02:00:00:00:02:02
mark=0xf1c00001
service=
cleanup() {
  if [ -n "$service" ]; then kill "$service" 2>/dev/null || true; fi
  ip netns del "$lb" 2>/dev/null || true
  ip netns del "$be" 2>/dev/null || true
}
trap cleanup EXIT

ip netns add "$lb"
ip netns add "$be"
ip link add "$vl" address $lb_mac netns "$lb" type veth peer name "$vb" address $be_mac netns "$be"
in_lb() { ip netns exec "$lb" "$@"; }
in_be() { ip netns exec "$be" "$@"; }

# The prober. Its kernel checksums the probe after the program has encapsulated it only with
# checksum offload off (veth would hand the backend a partial checksum, which XDP cannot finish).
in_lb ip link set lo up
in_lb ip link set "$vl" up
in_lb ethtool -K "$vl" tx off >/dev/null
in_lb ip addr add 192.0.2.1/24 dev "$vl"
in_lb ip addr add 2001:db8:1::1/64 dev "$vl" nodad
# Only marked packets have a route to the VIPs (docs/bpf.md, "Probes through the tunnel"); the
# next hop must answer ARP/ND, the program replaces the Ethernet header anyway.
in_lb ip rule add fwmark $mark table 100
in_lb ip -6 rule add fwmark $mark table 100
in_lb ip route add 203.0.113.10/32 via 192.0.2.2 dev "$vl" table 100
in_lb ip -6 route add 2001:db8:f::10/128 via 2001:db8:1::2 dev "$vl" table 100

# The backend, as README "Backends: decapsulation" sets one up, with a service on the VIPs.
in_be ip link set lo up
in_be ip link set "$vb" up
in_be ip addr add 192.0.2.2/24 dev "$vb"
in_be ip addr add 2001:db8:1::2/64 dev "$vb" nodad
in_be ip addr add 203.0.113.10/32 dev lo
in_be ip addr add 2001:db8:f::10/128 dev lo
in_be sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf."$vb".rp_filter=0 \
  net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
in_be "$decap" attach "$vb" --address 192.0.2.2 2001:db8:1::2 --gue-port 6080 >/dev/null
ip netns exec "$be" "$py" -c '
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 8080)); s.listen(16)
while True:
    c, _ = s.accept()
    c.settimeout(3)
    if c.recv(64): c.sendall(b"ok\n")
    c.close()' >/dev/null 2>&1 &
service=$!
sleep 0.5

fail=0
probe() {  # probe TYPE BACKEND VIP EXPECTED_COUNTER
  local out
  echo "== $1 to $2, probing $3"
  if ! out=$(in_lb "$probe_ctl" "$vl" $mark "$2" "$1" $lb_mac $be_mac 192.0.2.1 2001:db8:1::1 6080 \
               -- "$py" "$here/probe_client.py" $mark "$3" 8080); then
    echo "$out"
    echo "FAIL: the probe got no answer"
    fail=1
    return
  fi
  echo "$out" | head -1
  local n
  n=$(echo "$out" | awk -v c="$4" '$1 == c {print $2}')
  if [ "${n:-0}" -lt 3 ]; then  # SYN, ACK, request at least
    echo "$out"
    echo "FAIL: $4 counted ${n:-0} packets"
    fail=1
  fi
}
probe ipip 192.0.2.2 203.0.113.10 encap_ipip4
probe gue 192.0.2.2 2001:db8:f::10 encap_gue4
probe ipip 2001:db8:1::2 203.0.113.10 encap_ipip6
probe gue 2001:db8:1::2 2001:db8:f::10 encap_gue6

status=$(in_be "$decap" status "$vb")
for c in decap_4in4 decap_gue4 decap_4in6 decap_gue6; do
  n=$(echo "$status" | awk -v c=$c '$1 == c {print $2}')
  [ "${n:-0}" -ge 3 ] || { echo "$status"; echo "FAIL: backend $c is ${n:-0}"; fail=1; }
done

echo "== unmarked"
if in_lb "$py" -c "import socket; socket.create_connection(('203.0.113.10', 8080), timeout=2)" \
     2>/dev/null; then
  echo "FAIL: an unmarked connection reached the VIP; the probes above prove nothing"
  fail=1
else
  echo "no route, as configured"
fi

if [ $fail -ne 0 ]; then echo "FAIL"; exit 1; fi
echo "PASS"
