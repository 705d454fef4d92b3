#!/usr/bin/env bash
# The end-to-end test bed: a client, a router, the load-balancer host and backends, each in its
# own network namespace, on one machine. Used by scripts/demo and the e2e suite.
#
#   source tests/e2e/testbed.sh
#   tb_up [BACKENDS=3]     namespaces, links, routes, backends (fulcrum-decap + nginx)
#   tb_start_lb            fulcrumd (af_packet) and fulcrumctl serve on the load-balancer host
#   tb_down                everything torn down (also on failure: tb_up installs an EXIT trap)
#
# Addresses (only ever inside these namespaces):
#   client   10.10.1.2/24   fd00:1::2/64       default via the router
#   router   10.10.1.1 (client side), 10.10.3.1 (lb side), 10.10.2.1 (backend bridge)
#            routes the VIPs 10.10.0.0/24 and fd00:10::/64 to the load balancer, 10.10.3.2
#   lb       10.10.3.2/24   fd00:3::2/64 on the TAP exception path; the veth has no address:
#            fulcrumd owns it
#   backend  10.10.2.(10+N)/24  fd00:2::(10+N)/64; the VIPs on lo; nginx on port 80
#   VIPs     10.10.0.100 (TCP 80, UDP 53), fd00:10::100 (TCP 80)
# Names: every namespace and interface starts with $TB (default fe2e<pid>), so concurrent runs
# never meet; interface names stay within 15 characters.

TB=${TB:-fe2e$$}
TB_BUILD=${TB_BUILD:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build}
TB_DIR=${TB_DIR:-/tmp/$TB}
TB_VIP=10.10.0.100
TB_VIP6=fd00:10::100
TB_BACKENDS=0

tb_ns() { echo "$TB-$1"; }
tb_exec() { local ns=$1; shift; ip netns exec "$(tb_ns "$ns")" "$@"; }

tb_down() {
  set +e
  for pidfile in "$TB_DIR"/*.pid; do
    [ -f "$pidfile" ] || continue
    kill "$(cat "$pidfile")" 2>/dev/null
  done
  sleep 0.3
  for pidfile in "$TB_DIR"/*.pid; do
    [ -f "$pidfile" ] || continue
    kill -9 "$(cat "$pidfile")" 2>/dev/null
  done
  for ns in $(ip netns list | awk '{print $1}' | grep "^$TB-"); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "/var/run/dpdk/$TB" "/dev/shm/$TB.config" "/dev/shm/$TB.stats"
  [ -n "${TB_KEEP_DIR:-}" ] || rm -rf "$TB_DIR"
  set -e
}

# veth NAME_A in ns A, NAME_B in ns B, checksum offload off on both (XDP and AF_PACKET see the
# packets before the checksum would be filled in).
tb_veth() {
  ip link add "$2" netns "$(tb_ns "$1")" type veth peer name "$4" netns "$(tb_ns "$3")"
  tb_exec "$1" ethtool -K "$2" tx off rx off >/dev/null 2>&1 || true
  tb_exec "$3" ethtool -K "$4" tx off rx off >/dev/null 2>&1 || true
  tb_exec "$1" ip link set "$2" up
  tb_exec "$3" ip link set "$4" up
}

tb_mac() { tb_exec "$1" cat "/sys/class/net/$2/address"; }

tb_up() {
  local n=${1:-3}
  TB_BACKENDS=$n
  trap tb_down EXIT
  mkdir -p "$TB_DIR"
  for ns in c r lb $(seq -f 'b%g' 1 "$n"); do
    ip netns add "$(tb_ns "$ns")"
    tb_exec "$ns" ip link set lo up
  done
  # Client <-> router.
  tb_veth c "$TB-c0" r "$TB-rc"
  tb_exec c ip addr add 10.10.1.2/24 dev "$TB-c0"
  tb_exec c ip -6 addr add fd00:1::2/64 dev "$TB-c0" nodad
  tb_exec c ip route add default via 10.10.1.1
  tb_exec c ip -6 route add default via fd00:1::1
  tb_exec r ip addr add 10.10.1.1/24 dev "$TB-rc"
  tb_exec r ip -6 addr add fd00:1::1/64 dev "$TB-rc" nodad
  # Router <-> load balancer: the LB side has no address, fulcrumd owns it.
  tb_veth r "$TB-rl" lb "$TB-l0"
  tb_exec lb sysctl -qw "net.ipv6.conf.$TB-l0.disable_ipv6=1"
  tb_exec r ip addr add 10.10.3.1/24 dev "$TB-rl"
  tb_exec r ip -6 addr add fd00:3::1/64 dev "$TB-rl" nodad
  tb_exec r ip route add 10.10.0.0/24 via 10.10.3.2
  tb_exec r ip -6 route add fd00:10::/64 via fd00:3::2
  # Router <-> backends, over a bridge.
  tb_exec r ip link add "$TB-br" type bridge
  tb_exec r ip link set "$TB-br" up
  tb_exec r ip addr add 10.10.2.1/24 dev "$TB-br"
  tb_exec r ip -6 addr add fd00:2::1/64 dev "$TB-br" nodad
  tb_exec r sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
  for i in $(seq 1 "$n"); do tb_add_backend "$i"; done
}

# Backend i: the VIPs on lo, DSR sysctls, fulcrum-decap, nginx logging to $TB_DIR/bI.log.
tb_add_backend() {
  local i=$1 b="b$1" addr="10.10.2.$((10 + $1))" addr6="fd00:2::$((10 + $1))"
  [ -e "/run/netns/$(tb_ns "$b")" ] || { ip netns add "$(tb_ns "$b")"; tb_exec "$b" ip link set lo up; }
  tb_veth r "$TB-rb$i" "$b" "$TB-e$i"
  tb_exec r ip link set "$TB-rb$i" master "$TB-br"
  tb_exec "$b" ip addr add "$addr/24" dev "$TB-e$i"
  tb_exec "$b" ip -6 addr add "$addr6/64" dev "$TB-e$i" nodad
  tb_exec "$b" ip route add default via 10.10.2.1
  tb_exec "$b" ip -6 route add default via fd00:2::1
  tb_exec "$b" ip addr add "$TB_VIP/32" dev lo
  tb_exec "$b" ip -6 addr add "$TB_VIP6/128" dev lo nodad
  tb_exec "$b" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
    net.ipv4.conf.all.rp_filter=0 "net.ipv4.conf.$TB-e$i.rp_filter=0" net.ipv4.conf.lo.rp_filter=0
  tb_exec "$b" "$TB_BUILD/bpf/fulcrum-decap" attach "$TB-e$i" --mode xdp --address "$addr" "$addr6" \
    --gue-port 6080 >/dev/null
  tb_start_nginx "$i"
  # Background jobs run `ip netns exec` directly (not through tb_exec, a function, which would
  # fork a subshell): $! is then the process itself, which the tests signal.
  ip netns exec "$(tb_ns "$b")" /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/udp_echo.py" \
    "b$i" "$TB_VIP" 53 </dev/null >"$TB_DIR/udp$i.log" 2>&1 &
  echo $! >"$TB_DIR/udp$i.pid"
}

tb_start_nginx() {
  local i=$1 dir="$TB_DIR/nginx$1"
  mkdir -p "$dir/logs"
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log;
events { worker_connections 4096; }
http {
  log_format fulcrum '\$remote_addr \$remote_port \$connection \$connection_requests';
  access_log $TB_DIR/b$i.log fulcrum;
  keepalive_requests 1000000;
  client_body_temp_path $dir; proxy_temp_path $dir; fastcgi_temp_path $dir;
  uwsgi_temp_path $dir; scgi_temp_path $dir;
  server {
    listen 80 reuseport;
    listen [::]:80 reuseport;
    location / { return 200 "b$i\n"; }
  }
}
EOF
  tb_exec "b$i" nginx -c "$dir/nginx.conf" -p "$dir" </dev/null >/dev/null 2>&1
  cp "$dir/nginx.pid" "$TB_DIR/nginx$i.pid"
}

tb_stop_nginx() { kill "$(cat "$TB_DIR/nginx$1/nginx.pid")"; rm -f "$TB_DIR/nginx$1.pid"; }

# fulcrumd on the LB host. TB_MODE=af_packet (default): af_packet on the veth, and the TAP
# exception path holds the host's addresses. TB_MODE=af_xdp: AF_XDP on the veth with Fulcrum's
# steering program (VIP traffic to fulcrumd, the rest to the kernel on the veth itself, which
# then holds the host's addresses; no TAP).
tb_start_fulcrumd() {
  local port_args
  if [ "${TB_MODE:-af_packet}" = af_xdp ]; then
    "$TB_BUILD/dataplane/fulcrumd" --write-steer-object "$TB_DIR/steer.bpf.o"
    tb_exec lb ip link set "$TB-l0" xdp off 2>/dev/null || true
    tb_exec lb sysctl -qw "net.ipv6.conf.$TB-l0.disable_ipv6=0"
    tb_exec lb ip addr add 10.10.3.2/24 dev "$TB-l0"
    tb_exec lb ip -6 addr add fd00:3::2/64 dev "$TB-l0" nodad
    tb_exec lb ip route replace default via 10.10.3.1
    tb_exec lb ip -6 route replace default via fd00:3::1
    port_args=("--vdev=net_af_xdp0,iface=$TB-l0,start_queue=0,queue_count=1,xdp_prog=$TB_DIR/steer.bpf.o")
    set -- --no-tap "$@"
  else
    port_args=("--vdev=net_af_packet0,iface=$TB-l0")
    set -- --tap "$TB-tap" "$@"
  fi
  ip netns exec "$(tb_ns lb)" "$TB_BUILD/dataplane/fulcrumd" -l 0,1 --no-huge -m 512 --no-pci \
    --file-prefix="$TB" --log-level=error "${port_args[@]}" -- \
    --shm-prefix "$TB" --flow-capacity 262144 "$@" \
    </dev/null >>"$TB_DIR/fulcrumd.log" 2>&1 &
  echo $! >"$TB_DIR/fulcrumd.pid"
  [ "${TB_MODE:-af_packet}" = af_xdp ] && return 0
  for _ in $(seq 100); do
    tb_exec lb ip link show "$TB-tap" >/dev/null 2>&1 && break
    sleep 0.05
  done
  tb_exec lb ip addr add 10.10.3.2/24 dev "$TB-tap" 2>/dev/null || true
  tb_exec lb ip -6 addr add fd00:3::2/64 dev "$TB-tap" nodad 2>/dev/null || true
  tb_exec lb ip link set "$TB-tap" up
  tb_exec lb ip route replace default via 10.10.3.1
  tb_exec lb ip -6 route replace default via fd00:3::1 2>/dev/null || true
}

tb_router_mac() { tb_mac r "$TB-rl"; }

# fulcrumctl serve on the LB host with CONFIG (a file), state in $TB_DIR/state, socket
# $TB_DIR/ctl.sock, metrics on 127.0.0.1:PORT inside the LB namespace.
tb_start_ctl() {
  local config=$1; shift
  ip netns exec "$(tb_ns lb)" "$TB_BUILD/controlplane/fulcrumctl" serve --config "$config" \
    --state-dir "$TB_DIR/state" --socket "$TB_DIR/ctl.sock" --shm-prefix "$TB" "$@" \
    </dev/null >>"$TB_DIR/fulcrumctl.log" 2>&1 &
  echo $! >"$TB_DIR/fulcrumctl.pid"
  for _ in $(seq 100); do
    [ -S "$TB_DIR/ctl.sock" ] && return 0
    sleep 0.05
  done
  echo "fulcrumctl serve did not start; $TB_DIR/fulcrumctl.log:" >&2
  tail -5 "$TB_DIR/fulcrumctl.log" >&2
  return 1
}

tb_ctl() { tb_exec lb "$TB_BUILD/controlplane/fulcrumctl" --socket "$TB_DIR/ctl.sock" "$@"; }

# Run as a command (the e2e suite drives it this way; the trap is then the caller's):
#   TB=name tests/e2e/testbed.sh up N | start-fulcrumd [ARGS] | start-ctl CONFIG [ARGS] |
#                                 add-backend I | stop-nginx I | start-nginx I |
#                                 router-mac | down
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  command=$1; shift
  case "$command" in
    up) tb_up "$@"; trap - EXIT ;;
    start-fulcrumd) tb_start_fulcrumd "$@" ;;
    start-ctl) tb_start_ctl "$@" ;;
    add-backend) mkdir -p "$TB_DIR"; tb_add_backend "$@" ;;
    stop-nginx) tb_stop_nginx "$@" ;;
    start-nginx) tb_start_nginx "$@" ;;
    router-mac) tb_router_mac ;;
    down) tb_down ;;
    *) echo "testbed.sh: unknown command $command" >&2; exit 2 ;;
  esac
fi
