#!/usr/bin/env bash
# The scale-out test bed: a client, a router running BIRD with ECMP, N load-balancer hosts (each
# with its own fulcrumd, fulcrumctl serve and BIRD) on one LAN with the router, and backends like
# the e2e bed's. Reuses tests/e2e/testbed.sh for the namespaces' plumbing and the backends.
#
#   TB=name scaleout_bed.sh up HOSTS BACKENDS   namespaces, links, backends, router BIRD
#   TB=name scaleout_bed.sh start-fulcrumd I    fulcrumd on host I (af_packet + TAP)
#   TB=name scaleout_bed.sh start-bird I        BIRD on host I (its include file from serve)
#   TB=name scaleout_bed.sh start-ctl I CONFIG  fulcrumctl serve --host lbI
#   TB=name scaleout_bed.sh cut I | uncut I     host I silently cut off (XDP drop) / back
#   TB=name scaleout_bed.sh down
#
# Addresses (only inside these namespaces):
#   client   10.10.1.2/24, default via the router
#   router   10.10.1.1 (client), 10.10.2.1 (backend bridge), 10.10.3.1 on the bridge $TB-lbr
#            to the LB hosts (MAC 02:00:00:00:03:01, the config's gateway_mac); AS 65000; learns
#            the VIPs from every host and installs them as one multipath route
#   lbI      10.10.3.(1+I)/24 on fulcrumd's TAP ($TB-tI): the VIP's next hop; its veth $TB-lI
#            has no address (fulcrumd owns it). 10.10.4.(1+I)/24 on $TB-mI, a management link
#            to the router (10.10.4.1 on the bridge $TB-mbr) that carries BGP (AS 65001): a
#            session through fulcrumd's TAP would die with fulcrumd, and a killed data plane
#            would then be withdrawn only when the router's hold timer expires (docs/deploy.md)
#   backends as testbed.sh: 10.10.2.(10+N), the VIP on lo, fulcrum-decap, nginx
# Per-host files are in $TB_DIR/lbI/: bird.conf, bird.ctl, fulcrum.conf (serve's), state/,
# ctl.sock, and logs.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TB=${TB:-fso$$}
# shellcheck source=../e2e/testbed.sh
source "$HERE/../e2e/testbed.sh"

SO_ROUTER_MAC=02:00:00:00:03:01

so_addr() { echo "10.10.3.$((1 + $1))"; }
so_mgmt() { echo "10.10.4.$((1 + $1))"; }

so_down() {
  set +e
  local n
  n=$(cat "$TB_DIR/hosts" 2>/dev/null || echo 3)
  tb_down_keep=${TB_KEEP_DIR:-}
  TB_KEEP_DIR=1 tb_down
  for i in $(seq 1 "$n"); do
    rm -rf "/var/run/dpdk/$TB-lb$i" "/dev/shm/$TB-lb$i.config" "/dev/shm/$TB-lb$i.stats" \
      "/dev/shm/$TB-lb$i.config-lock"
  done
  [ -n "$tb_down_keep" ] || rm -rf "$TB_DIR"
  set -e
}

so_up() {
  local hosts=$1 backends=$2
  trap so_down EXIT
  mkdir -p "$TB_DIR"
  echo "$hosts" >"$TB_DIR/hosts"
  for ns in c r; do
    ip netns add "$(tb_ns "$ns")"
    tb_exec "$ns" ip link set lo up
  done
  tb_veth c "$TB-c0" r "$TB-rc"
  tb_exec c ip addr add 10.10.1.2/24 dev "$TB-c0"
  tb_exec c ip route add default via 10.10.1.1
  tb_exec r ip addr add 10.10.1.1/24 dev "$TB-rc"
  # Flows spread over the hosts by their 5-tuple, as a production router's ECMP does. Policy 3
  # (custom fields: addresses, protocol, ports) rather than 1: policy 1 takes the hash a packet
  # already carries when it has one, and a packet from a local socket that crossed a veth
  # carries the socket's random txhash, so the path of a connection from the client namespace
  # would be random, not the one `ip route get` with its ports predicts (the test predicts
  # which connections a cut host carried). A real router hashes the packet, as policy 3 does.
  tb_exec r sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=3 \
    net.ipv4.fib_multipath_hash_fields=0x37
  tb_exec r ip link add "$TB-lbr" type bridge
  tb_exec r ip link set "$TB-lbr" address "$SO_ROUTER_MAC"
  tb_exec r ip link set "$TB-lbr" up
  tb_exec r ip addr add 10.10.3.1/24 dev "$TB-lbr"
  tb_exec r ip link add "$TB-mbr" type bridge
  tb_exec r ip link set "$TB-mbr" up
  tb_exec r ip addr add 10.10.4.1/24 dev "$TB-mbr"
  tb_exec r ip link add "$TB-br" type bridge
  tb_exec r ip link set "$TB-br" up
  tb_exec r ip addr add 10.10.2.1/24 dev "$TB-br"
  for i in $(seq 1 "$hosts"); do
    mkdir -p "$TB_DIR/lb$i"
    ip netns add "$(tb_ns "lb$i")"
    tb_exec "lb$i" ip link set lo up
    tb_veth r "$TB-rl$i" "lb$i" "$TB-l$i"
    tb_exec r ip link set "$TB-rl$i" master "$TB-lbr"
    tb_exec "lb$i" sysctl -qw "net.ipv6.conf.$TB-l$i.disable_ipv6=1"
    tb_veth r "$TB-rm$i" "lb$i" "$TB-m$i"
    tb_exec r ip link set "$TB-rm$i" master "$TB-mbr"
    tb_exec "lb$i" ip addr add "$(so_mgmt "$i")/24" dev "$TB-m$i"
  done
  for i in $(seq 1 "$backends"); do tb_add_backend "$i"; done
  so_router_bird "$hosts"
}

so_router_bird() {
  local hosts=$1 conf="$TB_DIR/router-bird.conf"
  {
    echo "log \"$TB_DIR/router-bird.log\" all;"
    echo "router id 10.10.3.1;"
    echo "protocol device {}"
    # merge paths: the equally good routes from every host become one multipath kernel route.
    echo "protocol kernel { ipv4 { import none; export all; }; merge paths on; }"
    for i in $(seq 1 "$hosts"); do
      echo "protocol bgp lb$i {"
      echo "  local 10.10.4.1 as 65000; neighbor $(so_mgmt "$i") as 65001;"
      # After an error (a hold-timer expiry, a peer's shutdown) BIRD waits 60 s or more before it
      # talks to the peer again by default; a lab wants the host back at once.
      echo "  hold time 3; keepalive time 1; connect retry time 1; error wait time 1, 5;"
      echo "  ipv4 { import all; export none; };"
      echo "}"
    done
  } >"$conf"
  tb_exec r bird -c "$conf" -s "$TB_DIR/router-bird.ctl" -P "$TB_DIR/birdr.pid"
}

# Cut host I off silently: every packet on its data and management links dropped at both ends
# (XDP, ahead of fulcrumd's af_packet socket). No link goes down, so the router learns it only
# from BGP's hold timer, and its bridges keep their forwarding tables (a port going down would
# flush them and flood the host's frames to the other hosts, which would forward them).
so_cut() {
  local i=$1
  [ -f "$TB_DIR/drop_all.o" ] || clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu \
    -c "$HERE/drop_all.bpf.c" -o "$TB_DIR/drop_all.o"
  for link in "r $TB-rl$i" "r $TB-rm$i" "lb$i $TB-l$i" "lb$i $TB-m$i"; do
    set -- $link
    tb_exec "$1" ip link set dev "$2" xdp obj "$TB_DIR/drop_all.o" sec xdp
  done
}

so_uncut() {
  local i=$1
  for link in "r $TB-rl$i" "r $TB-rm$i" "lb$i $TB-l$i" "lb$i $TB-m$i"; do
    set -- $link
    tb_exec "$1" ip link set dev "$2" xdp off
  done
}

so_start_fulcrumd() {
  local i=$1
  local d="$TB_DIR/lb$i"
  ip netns exec "$(tb_ns "lb$i")" "$TB_BUILD/dataplane/fulcrumd" -l 0,1 --no-huge -m 512 \
    --no-pci --file-prefix="$TB-lb$i" --log-level=error "--vdev=net_af_packet0,iface=$TB-l$i" -- \
    --shm-prefix "$TB-lb$i" --flow-capacity 65536 --tap "$TB-t$i" --idle-sleep-us 200 \
    </dev/null >>"$d/fulcrumd.log" 2>&1 &
  echo $! >"$TB_DIR/fulcrumd$i.pid"
  for _ in $(seq 200); do
    tb_exec "lb$i" ip link show "$TB-t$i" >/dev/null 2>&1 && break
    sleep 0.05
  done
  tb_exec "lb$i" ip addr add "$(so_addr "$i")/24" dev "$TB-t$i" 2>/dev/null || true
  tb_exec "lb$i" ip link set "$TB-t$i" up
  tb_exec "lb$i" ip route replace default via 10.10.3.1
}

so_start_bird() {
  local i=$1
  local d="$TB_DIR/lb$i"
  # BIRD refuses a config without protocols: wait for serve's include file (a host's boot order
  # is the same: fulcrumctl serve, then BIRD; docs/deploy.md).
  for _ in $(seq 200); do
    [ -s "$d/fulcrum.conf" ] && break
    sleep 0.05
  done
  printf 'log "%s/bird.log" all;\ninclude "%s/fulcrum.conf";\n' "$d" "$d" >"$d/bird.conf"
  tb_exec "lb$i" bird -c "$d/bird.conf" -s "$d/bird.ctl" -P "$TB_DIR/bird$i.pid"
}

so_start_ctl() {
  local i=$1 config=$2
  local d="$TB_DIR/lb$i"
  shift 2
  ip netns exec "$(tb_ns "lb$i")" "$TB_BUILD/controlplane/fulcrumctl" serve --config "$config" \
    --state-dir "$d/state" --socket "$d/ctl.sock" --shm-prefix "$TB-lb$i" --host "lb$i" \
    --metrics off --stats-interval 200ms "$@" </dev/null >>"$d/fulcrumctl.log" 2>&1 &
  echo $! >"$TB_DIR/fulcrumctl$i.pid"
  for _ in $(seq 200); do
    [ -S "$d/ctl.sock" ] && return 0
    sleep 0.05
  done
  echo "fulcrumctl serve on lb$i did not start; $d/fulcrumctl.log:" >&2
  tail -5 "$d/fulcrumctl.log" >&2
  return 1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  command=$1
  shift
  case "$command" in
    up) so_up "$@"; trap - EXIT ;;
    start-fulcrumd) so_start_fulcrumd "$@" ;;
    start-bird) so_start_bird "$@" ;;
    start-ctl) so_start_ctl "$@" ;;
    cut) so_cut "$@" ;;
    uncut) so_uncut "$@" ;;
    down) so_down ;;
    *) echo "scaleout_bed.sh: unknown command $command" >&2; exit 2 ;;
  esac
fi
