#!/usr/bin/python3
"""End to end: real clients, a router, fulcrumd and fulcrumctl serve, real backends (nginx,
fulcrum-decap) in network namespaces (tests/e2e/testbed.sh). Each test states the property it
proves; the figures it measures go to $E2E_REPORT (JSON) for the README.

Needs root (namespaces, XDP). Paths from meson: TB_BUILD (the build directory)."""
import json
import os
import re
import signal
import sys
import tempfile
import time
import unittest

import netns

HERE = os.path.dirname(os.path.abspath(__file__))
TESTBED = os.path.join(HERE, "testbed.sh")
BUILD = os.environ.get("TB_BUILD", os.path.join(HERE, "..", "..", "build"))
TB = os.environ.get("TB", "fe2e%d" % (os.getpid() % 100000))
TB_DIR = "/tmp/" + TB
ENV = dict(os.environ, TB=TB, TB_BUILD=BUILD, TB_DIR=TB_DIR)
VIP, VIP6 = "10.10.0.100", "fd00:10::100"
URL, URL6 = "http://10.10.0.100/", "http://[fd00:10::100]/"
BACKENDS = ["10.10.2.11", "10.10.2.12", "10.10.2.13"]
HEALTH = {"type": "http", "port": 80, "path": "/", "interval_ms": 500, "timeout_ms": 300,
          "rise": 2, "fall": 2}
REPORT = {}
# fulcrumctl serve's flags; through_tunnel probes leave by fulcrumd's TAP (the host's interface).
CTL_FLAGS = ["--metrics", "off", "--stats-interval", "200ms", "--probe-interface", TB + "-tap"]


BED = netns.Bed(TB, ENV)
sh, ns = BED.sh, BED.ns


def tb(*args, **kw):
    return sh("bash", TESTBED, *args, **kw)


def ctl(*args, check=True, timeout=120):
    out = ns("lb", os.path.join(BUILD, "controlplane", "fulcrumctl"), "--socket",
             TB_DIR + "/ctl.sock", "--json", *args, check=False, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError("fulcrumctl %s: exit %d: %s %s" % (" ".join(args), out.returncode,
                                                              out.stdout, out.stderr))
    return out


def ctl_json(*args):
    """The command's data: fulcrumctl --json wraps it as {code, exit, kind, message, data}."""
    return json.loads(ctl(*args).stdout)["data"]


load, finish = BED.load, netns.finish


def stats():
    out = ns("lb", os.path.join(BUILD, "tests", "tools", "fulcrum-stats-dump"), "--shm-prefix", TB)
    return json.loads(out.stdout)


def config(backends=None, weights=None, vip_extra=None, extra_vips=(), watch=None):
    """The suite's config as YAML text (JSON is YAML)."""
    backends = backends or BACKENDS
    weights = weights or [1] * len(backends)
    vip = {"name": "web", "address": VIP, "port": 80, "table_size": 65537,
           "backends": [{"address": b, "weight": w, "capacity_cps": 100000}
                        for b, w in zip(backends, weights)],
           "health_check": HEALTH}
    vip.update(vip_extra or {})
    cfg = {"dataplane": {"source_ipv4": "10.10.3.2", "source_ipv6": "fd00:3::2",
                         "gateway_mac": GATEWAY_MAC[0],
                         "hash_key": "0123456789abcdef0123456789abcdef"},
           "vips": [vip] + list(extra_vips)}
    if watch:
        cfg["watch"] = watch
    return json.dumps(cfg, indent=1)


GATEWAY_MAC = [None]
UDP_VIP = {"name": "dns", "address": VIP, "port": 53, "protocol": "udp", "table_size": 65537,
           "backends": [{"address": b} for b in BACKENDS],
           "health_check": HEALTH}  # the same target as web's: the same check
V6_VIP = {"name": "web6", "address": VIP6, "port": 80, "table_size": 65537,
          "backends": [{"address": "fd00:2::%d" % (11 + i)} for i in range(3)],
          "health_check": dict(HEALTH)}


def json_objects(text):
    """The JSON objects printed one after another (pretty-printed, so not one per line)."""
    decoder, objects, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return objects
        obj, i = decoder.raw_decode(text, i)
        objects.append(obj)


def write_config(text, name="web.yaml"):
    path = os.path.join(TB_DIR, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def apply(text, *flags, check=True):
    return ctl("apply", write_config(text, "apply.yaml"), *flags, check=check)


def backend_counts():
    counts = {}
    for i in range(1, 5):
        path = os.path.join(TB_DIR, "b%d.log" % i)
        if os.path.exists(path):
            with open(path) as f:
                counts["b%d" % i] = sum(1 for _ in f)
    return counts


def reset_logs():
    for i in range(1, 5):
        path = os.path.join(TB_DIR, "b%d.log" % i)
        if os.path.exists(path):
            open(path, "w").close()
    # nginx keeps its file open: truncating is enough (O_APPEND).


def link_packets(namespace, dev):
    out = ns(namespace, "cat", "/sys/class/net/%s/statistics/tx_packets" % dev,
             "/sys/class/net/%s/statistics/rx_packets" % dev).stdout.split()
    return int(out[0]), int(out[1])


def read(path):
    with open(path) as f:
        return f.read()


def generation():
    return ctl_json("status")["controlplane"]["published_generation"]


class E2E(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        tb("down", check=False)
        tb("up", "3")
        tb("start-fulcrumd")
        GATEWAY_MAC[0] = tb("router-mac").stdout.strip()
        tb("start-ctl", write_config(config(extra_vips=[UDP_VIP, V6_VIP])), *CTL_FLAGS)
        cls.wait_healthy()

    @classmethod
    def tearDownClass(cls):
        report = os.environ.get("E2E_REPORT")
        if report:
            with open(report, "w") as f:
                json.dump(REPORT, f, indent=1)
        tb("down", check=False)

    @staticmethod
    def wait_healthy(expect=None, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = ctl_json("status")
            ups = [b["name"] for v in st["vips"] if v["name"] == "web" for b in v["backends"]
                   if b["health"] == "up"]
            if st["dataplane"].get("attached") and (expect is None or sorted(ups) == sorted(expect)) \
                    and len(ups) >= (len(expect) if expect else 3):
                return st
            time.sleep(0.2)
        raise AssertionError("backends not healthy in time: %s" % ctl("status").stdout[:2000])

    def wait_settled(self):
        """No backend of any VIP down, and no health generation for longer than a
        check takes to change its mind (interval x max(rise, fall) + 1 s); returns the
        generation."""
        quiet = HEALTH["interval_ms"] * max(HEALTH["rise"], HEALTH["fall"]) / 1000 + 1
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            st = ctl_json("status")
            before = st["controlplane"]["published_generation"]
            if any(b["health"] == "down" for v in st["vips"] for b in v["backends"]):
                time.sleep(0.2)
                continue
            time.sleep(quiet)
            if generation() == before:
                return before
        raise AssertionError("health generations did not settle: %s" % ctl("history").stdout)

    def restore_baseline(self):
        apply(config(extra_vips=[UDP_VIP, V6_VIP]), "--force", check=False)

    # --- 1 ------------------------------------------------------------------------------------
    def test_1_three_thousand_connections_spread_evenly_with_direct_server_return(self):
        """3000 new HTTP connections all succeed; each of three equal backends serves within
        10 % of a third (access logs); the load balancer never sees reply traffic. `lookup`
        agrees with the backend that served each connection. The LB host answers ping through
        the TAP exception path."""
        reset_logs()
        before = stats()["counters"]
        c_tx0, c_rx0 = link_packets("c", TB + "-c0")
        result = load("new", URL, "--connections", "3000", "--concurrency", "16")
        c_tx1, c_rx1 = link_packets("c", TB + "-c0")
        after = stats()["counters"]
        self.assertEqual(result["failed"], 0, result["failures"][:5])
        self.assertEqual(result["ok"], 3000)
        counts = backend_counts()
        for b in ("b1", "b2", "b3"):
            self.assertAlmostEqual(counts[b], 1000, delta=100, msg=counts)
        # Direct server return: what the LB forwarded is what the client sent, never what the
        # client received; the rest of what it received is its own traffic (health-check
        # replies), for the kernel.
        lb_rx = after["rx_packets"] - before["rx_packets"]
        to_kernel = after["to_kernel"] - before["to_kernel"]
        client_tx, client_rx = c_tx1 - c_tx0, c_rx1 - c_rx0
        self.assertLessEqual(lb_rx - to_kernel, client_tx)
        self.assertGreaterEqual(lb_rx - to_kernel, 0.99 * client_tx)
        self.assertLess(to_kernel, 0.05 * client_tx)
        self.assertGreater(client_rx, 0.5 * client_tx, "the replies reached the client")
        # `fulcrumctl lookup` names the backend fulcrumd chose: the access logs say which
        # client port each backend served.
        for i, b in enumerate(("b1", "b2", "b3")):
            with open(os.path.join(TB_DIR, b + ".log")) as f:
                # (the health checks, from the LB host's own address, are logged too)
                ports = [w[1] for w in map(str.split, f) if w[0] == "10.10.1.2"][:40]
            for port in ports:
                answer = ctl_json("lookup", "web", "tcp", "10.10.1.2", port)
                self.assertEqual(answer["backend"]["address"], BACKENDS[i], (b, port, answer))
        # The host itself stays reachable through fulcrumd's exception path: ARP for the
        # router and ping from the client reach the kernel by the TAP and come back.
        before_kernel = stats()["counters"]["to_kernel"]
        ping = ns("c", "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.10.3.2", check=False)
        self.assertEqual(ping.returncode, 0, ping.stdout + ping.stderr)
        self.assertIn("3 received", ping.stdout)
        self.assertGreaterEqual(stats()["counters"]["to_kernel"] - before_kernel, 3)
        REPORT["spread"] = {"connections": 3000, "per_backend": counts,
                            "seconds": result["seconds"],
                            "connections_per_second": round(3000 / result["seconds"]),
                            "lb_rx_packets": lb_rx, "lb_to_kernel": to_kernel,
                            "client_tx_packets": client_tx,
                            "client_rx_packets": client_rx}

    # --- 2 ------------------------------------------------------------------------------------
    def test_2_an_added_backend_takes_new_connections_and_established_ones_stay(self):
        """An apply that adds a backend while keep-alive connections run: they keep their
        backends; new connections start reaching the new one. `rollback` undoes it: new
        connections follow the previous table again."""
        tb("add-backend", "4")
        keep = load("keepalive", URL, "--connections", "20", "--duration", "6", background=True)
        time.sleep(2)
        apply(config(backends=BACKENDS + ["10.10.2.14"]), "--force")
        time.sleep(1)
        fresh = load("new", URL, "--connections", "400", "--concurrency", "8")
        kept = finish(keep)
        for c in kept["connections"]:
            self.assertEqual(c["failures"], [])
            self.assertEqual(len(c["backends"]), 1, c)
        self.assertEqual(fresh["failed"], 0)
        self.assertGreater(fresh["by_backend"].get("b4", 0), 400 * 0.15, fresh["by_backend"])
        # One-command rollback: packets follow the previous table again.
        ctl("rollback")
        self.wait_healthy(expect=BACKENDS)
        back = load("new", URL, "--connections", "300", "--concurrency", "8")
        self.assertEqual(back["failed"], 0)
        self.assertNotIn("b4", back["by_backend"], back["by_backend"])
        for b in ("b1", "b2", "b3"):
            self.assertAlmostEqual(back["by_backend"].get(b, 0), 100, delta=40, msg=back)
        REPORT["add_backend"] = {"keepalive_connections": 20,
                                 "requests": sum(c["requests"] for c in kept["connections"]),
                                 "new_connections_by_backend": fresh["by_backend"],
                                 "after_rollback_by_backend": back["by_backend"]}

    # --- 3 ------------------------------------------------------------------------------------
    def test_3_a_failed_backend_loses_its_share_and_gets_it_back(self):
        """A backend's server stopped under load: after detection (interval x fall + 1 s) no new
        connection fails and its share is zero; when it comes back, so does its share."""
        self.wait_healthy()
        proc = load("new", URL, "--duration", "9", "--rate", "150", "--concurrency", "8",
                    background=True)
        time.sleep(2)
        tb("stop-nginx", "2")
        result = finish(proc)
        detection = HEALTH["interval_ms"] * HEALTH["fall"] / 1000 + 1
        stop_at = 2.0  # seconds after the load started (it started just after Popen)
        late = [f for f in result["failures"] if f[0] > stop_at + detection + 0.3]
        self.assertEqual(late, [], "failures after detection")
        after = [s for s in result["successes"] if s[0] > stop_at + detection + 0.3]
        self.assertGreater(len(after), 200)
        self.assertEqual([s for s in after if s[1] == "b2"], [])
        first_fail = min([f[0] for f in result["failures"]], default=None)
        last_fail = max([f[0] for f in result["failures"]], default=None)
        tb("start-nginx", "2")
        self.wait_healthy()
        back = load("new", URL, "--connections", "600", "--concurrency", "8")
        self.assertEqual(back["failed"], 0)
        self.assertAlmostEqual(back["by_backend"].get("b2", 0), 200, delta=60)
        REPORT["backend_failure"] = {"failed_during_detection": result["failed"],
                                     "first_failure_s": first_fail, "last_failure_s": last_fail,
                                     "stopped_at_s": stop_at, "detection_bound_s": detection,
                                     "share_after_return": back["by_backend"]}

    # --- 4 ------------------------------------------------------------------------------------
    def test_4_drain_keeps_existing_connections_and_new_ones_avoid_the_backend(self):
        """Drain: existing keep-alive connections to the drained backend continue; new ones
        avoid it."""
        self.wait_healthy()
        keep = load("keepalive", URL, "--connections", "30", "--duration", "6", background=True)
        time.sleep(2)
        ctl("backend", "drain", "web", "10.10.2.11")
        fresh = load("new", URL, "--connections", "300", "--concurrency", "8")
        kept = finish(keep)
        ctl("backend", "undrain", "web", "10.10.2.11")
        on_b1 = [c for c in kept["connections"] if c["backends"] == ["b1"]]
        self.assertGreater(len(on_b1), 0, "some keep-alive connection was on b1")
        for c in kept["connections"]:
            self.assertEqual(c["failures"], [])
            self.assertEqual(len(c["backends"]), 1)
        self.assertEqual(fresh["failed"], 0)
        self.assertEqual(fresh["by_backend"].get("b1", 0), 0, fresh["by_backend"])
        REPORT["drain"] = {"keepalive_on_drained": len(on_b1),
                           "requests_on_drained_after_drain": sum(c["requests"] for c in on_b1),
                           "new_by_backend": fresh["by_backend"]}

    # --- 5 ------------------------------------------------------------------------------------
    def test_5_two_hundred_applies_under_load_fail_no_request(self):
        """200 applies during a load run: zero failed requests, zero drops caused by the swaps."""
        self.wait_healthy()
        drops_before = sum(stats()["drops"].values())
        proc = load("new", URL, "--duration", "600", "--rate", "150", "--concurrency", "8",
                    background=True)
        time.sleep(0.5)
        start = time.monotonic()
        for i in range(200):
            apply(config(weights=[1, 1, 1 + i % 2]), "--force")
        seconds = time.monotonic() - start
        proc.send_signal(signal.SIGTERM)  # the load stops and reports
        result = finish(proc)
        drops = sum(stats()["drops"].values()) - drops_before
        self.assertEqual(drops, 0)
        self.assertEqual(result["failed"], 0, result["failures"][:5])
        self.assertGreater(result["ok"], 100 * seconds)
        REPORT["applies_under_load"] = {"applies": 200, "seconds": round(seconds, 1),
                                        "drops": drops}
        self.restore_baseline()

    # --- 6 ------------------------------------------------------------------------------------
    def test_6_killed_processes_come_back_and_traffic_survives_the_control_plane(self):
        """kill -9 of fulcrumd under load, then restart: service back within 2 s. kill -9 of
        the control plane: no request fails; restarted, it resumes the last generation."""
        self.wait_healthy()
        proc = load("new", URL, "--duration", "8", "--rate", "100", "--concurrency", "8",
                    background=True)
        time.sleep(2)
        pid = netns.read_pid(TB_DIR + "/fulcrumd.pid")
        os.kill(pid, signal.SIGKILL)
        netns.wait_gone(pid)
        time.sleep(0.5)
        restart = time.monotonic()
        tb("start-fulcrumd")
        # Service is back when a new connection succeeds.
        back = None
        while time.monotonic() - restart < 10:
            probe = load("new", URL, "--connections", "1", "--concurrency", "1")
            if probe["ok"] == 1:
                back = time.monotonic() - restart
                break
        result = finish(proc)
        self.assertIsNotNone(back)
        self.assertLess(back, 2.0)
        # While fulcrumd was down the health checks (which leave by its TAP) may have failed
        # and taken backends out; they come back by health generations of their own. Those
        # must be over before the control plane is killed, or the restarted one publishes the
        # last of them and the check below cannot tell it from a republish.
        generation_before = self.wait_settled()
        # The control plane: kill -9 under load, no request may fail.
        proc = load("new", URL, "--duration", "5", "--rate", "100", "--concurrency", "8",
                    background=True)
        time.sleep(1.5)
        pid = netns.read_pid(TB_DIR + "/fulcrumctl.pid")
        os.kill(pid, signal.SIGKILL)
        netns.wait_gone(pid)
        time.sleep(1.5)
        during = finish(proc)
        self.assertEqual(during["failed"], 0, during["failures"][:5])
        os.unlink(TB_DIR + "/ctl.sock")
        tb("start-ctl", os.path.join(TB_DIR, "web.yaml"), *CTL_FLAGS)
        self.wait_healthy()
        history = ctl_json("history", "--limit", "5")
        records = history["generations"] if isinstance(history, dict) else history
        self.assertEqual(generation(), generation_before,
                         "resumed, nothing republished: %s" % [r for r in records
                                                              if r["generation"] > generation_before])
        REPORT["restarts"] = {"fulcrumd_back_after_s": round(back, 2),
                              "failed_while_fulcrumd_was_down": result["failed"],
                              "failed_while_control_plane_was_down": during["failed"]}

    # --- 7 ------------------------------------------------------------------------------------
    def test_7_a_bad_config_is_refused_under_load_and_traffic_is_unaffected(self):
        """A bad config applied under load: refused, traffic unaffected."""
        self.wait_healthy()
        before = generation()
        proc = load("new", URL, "--duration", "4", "--rate", "100", "--concurrency", "8",
                    background=True)
        time.sleep(1)
        bad = config(weights=[1, 0, 1]).replace('"fragments"', '"fragmnets"')
        out = apply(bad, check=False)
        result = finish(proc)
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("weight", out.stdout + out.stderr)
        # Nothing the apply did: any generation since is a health check's, not an apply's.
        history = ctl_json("history", "--limit", "20")
        records = history["generations"] if isinstance(history, dict) else history
        self.assertEqual([r for r in records if r["generation"] > before and r["cause"] == "apply"],
                         [])
        self.assertEqual(result["failed"], 0)

    # --- 8 ------------------------------------------------------------------------------------
    def test_8_the_incident_is_refused_by_plan_and_rolled_back_when_forced(self):
        """The incident story: weights that send most new connections to one backend whose
        capacity is below that load are refused by plan; forced with --watch, the overload is
        detected and rolled back automatically."""
        self.wait_healthy()
        before = generation()
        bad = json.loads(config(weights=[100, 1, 1]))
        bad["vips"][0]["guards"] = {"max_backend_share": 0.5}
        bad["vips"][0]["backends"][0]["capacity_cps"] = 80
        bad_text = json.dumps(bad)
        plan = ctl("plan", write_config(bad_text, "incident.yaml"), check=False)
        self.assertEqual(plan.returncode, 3, plan.stdout)
        self.assertIn("max_backend_share", plan.stdout)
        proc = load("new", URL, "--duration", "12", "--rate", "200", "--concurrency", "8",
                    background=True)
        time.sleep(2)
        start = time.monotonic()
        out = apply(bad_text, "--force", "--watch", "8s", check=False)
        rolled_back_after = time.monotonic() - start
        result = finish(proc)
        self.assertEqual(out.returncode, 6, out.stdout + out.stderr)
        self.assertIn("capacity", out.stdout)
        self.assertLess(rolled_back_after, 5.0)
        self.assertEqual(result["failed"], 0)
        st = ctl_json("status")
        web = [v for v in st["vips"] if v["name"] == "web"][0]
        for b in web["backends"]:
            self.assertAlmostEqual(b["expected_share"], 1 / 3, delta=0.01)
        self.assertGreater(generation(), before + 1, "the apply and its rollback")
        last = json_objects(out.stdout)[-1]  # --watch prints an object per step
        REPORT["incident"] = {"apply_to_rollback_s": round(rolled_back_after, 2),
                              "message": last.get("message", "")[:300]}

    # --- 9 ------------------------------------------------------------------------------------
    def test_9_udp_ipv6_and_icmp_errors_reach_the_right_backend(self):
        """UDP through a UDP VIP; an IPv6 VIP with IPv6 backends; an ICMP frag-needed from the
        client side reaches the backend that owns the flow."""
        self.wait_healthy()
        udp = ns("c", "/usr/bin/python3", "-c", """
import json, socket
seen = {}
for port in range(40000, 40300):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.10.1.2", port)); s.settimeout(2)
    s.sendto(b"ping", ("%s", 53))
    data, peer = s.recvfrom(100)
    assert peer[0] == "%s", peer
    name = data.split()[0].decode()
    seen[name] = seen.get(name, 0) + 1
    s.close()
print(json.dumps(seen))""" % (VIP, VIP))
        by_backend = json.loads(udp.stdout)
        self.assertEqual(sum(by_backend.values()), 300)
        for b in ("b1", "b2", "b3"):
            self.assertAlmostEqual(by_backend.get(b, 0), 100, delta=35, msg=by_backend)
        v6 = load("new", URL6, "--connections", "600", "--concurrency", "8")
        self.assertEqual(v6["failed"], 0, v6["failures"][:5])
        for b in ("b1", "b2", "b3"):
            self.assertAlmostEqual(v6["by_backend"].get(b, 0), 200, delta=60, msg=v6["by_backend"])

        def unreachables():
            counts = {}
            for i in (1, 2, 3):
                snmp = ns("b%d" % i, "cat", "/proc/net/snmp").stdout.splitlines()
                names, values = [l.split() for l in snmp if l.startswith("Icmp:")][:2]
                counts["b%d" % i] = int(values[names.index("InDestUnreachs")])
            return counts
        before = unreachables()
        probe = json.loads(ns("c", "/usr/bin/python3", os.path.join(HERE, "icmp_probe.py"), VIP,
                              "1300").stdout)
        time.sleep(0.3)
        after = unreachables()
        grew = {b: after[b] - before[b] for b in after}
        self.assertEqual(grew[probe["backend"]], 1, (probe, grew))
        self.assertEqual(sum(grew.values()), 1, grew)
        REPORT["udp_ipv6_icmp"] = {"udp_by_backend": by_backend, "ipv6_by_backend": v6["by_backend"],
                                   "icmp_reached": probe["backend"]}

    # --- 10 -----------------------------------------------------------------------------------
    def test_10_a_check_through_the_tunnel_sees_a_backend_that_stopped_decapsulating(self):
        """A backend whose decapsulator is gone still answers on its own address, so a plain
        check keeps it in while its share of client connections fails. With through_tunnel the
        probe travels the tunnel to the VIP (marked, encapsulated by the probe program on the
        LB host's interface) and the backend is taken out; back in when it decapsulates again.
        The same after fulcrumd restarts: its TAP, the program's interface, is replaced, and
        the checker re-attaches the program by itself."""
        self.wait_healthy()
        self.route_probes()
        decap = os.path.join(BUILD, "bpf", "fulcrum-decap")

        def break_b3():
            ns("b3", decap, "detach", TB + "-e3")

        def fix_b3():
            ns("b3", decap, "attach", TB + "-e3", "--mode", "xdp", "--address", BACKENDS[2],
               "fd00:2::13", "--gue-port", "6080")

        break_b3()
        try:
            time.sleep(HEALTH["interval_ms"] * HEALTH["fall"] / 1000 + 1)
            health = {b["name"]: b["health"] for v in ctl_json("status")["vips"]
                      if v["name"] == "web" for b in v["backends"]}
            self.assertEqual(health[BACKENDS[2]], "up", "a plain check cannot see it")
            harm = load("new", URL, "--connections", "90", "--concurrency", "30")
            self.assertGreater(harm["failed"], 10, "its share of the connections fail")
            with_tunnel = json.loads(config(extra_vips=[UDP_VIP, V6_VIP]))
            for v in with_tunnel["vips"]:
                v["health_check"] = dict(v["health_check"], through_tunnel=True)
            apply(json.dumps(with_tunnel), "--force")
            start = time.monotonic()
            self.wait_healthy(expect=BACKENDS[:2], timeout=10)
            detected = time.monotonic() - start
            fresh = load("new", URL, "--connections", "300", "--concurrency", "8")
            self.assertEqual(fresh["failed"], 0, fresh["failures"][:5])
            self.assertNotIn("b3", fresh["by_backend"])
        finally:
            fix_b3()
        self.wait_healthy(expect=BACKENDS)
        back = load("new", URL, "--connections", "300", "--concurrency", "8")
        self.assertEqual(back["failed"], 0)
        self.assertGreater(back["by_backend"].get("b3", 0), 50, back["by_backend"])
        for v in ctl_json("status")["vips"]:
            for b in v["backends"]:
                self.assertIn("through the tunnel to ", b["health_detail"])

        # fulcrumd restarts: a new TAP. The checker re-attaches the probe program to it.
        pid = netns.read_pid(TB_DIR + "/fulcrumd.pid")
        os.kill(pid, signal.SIGTERM)
        netns.wait_gone(pid)
        tb("start-fulcrumd")
        self.route_probes()
        deadline = time.monotonic() + 10
        while "probe program re-attached" not in read(TB_DIR + "/fulcrumctl.log"):
            self.assertLess(time.monotonic(), deadline, "the probe program was not re-attached")
            time.sleep(0.2)
        self.wait_healthy(expect=BACKENDS)
        break_b3()
        try:
            self.wait_healthy(expect=BACKENDS[:2], timeout=10)
        finally:
            fix_b3()
        self.wait_healthy(expect=BACKENDS)
        REPORT["through_tunnel"] = {"failed_with_plain_check": harm["failed"],
                                    "taken_out_after_s": round(detected, 2),
                                    "new_by_backend_while_out": fresh["by_backend"],
                                    "new_by_backend_after": back["by_backend"]}
        self.restore_baseline()
        ns("lb", "ip", "route", "del", "unreachable", VIP + "/32")

    @staticmethod
    def route_probes():
        """The probes' route (docs/bpf.md): marked packets to the VIP out of the TAP; unmarked
        ones unroutable, so a probe that missed the program cannot pass another way. The
        table-100 route goes with the TAP when fulcrumd stops."""
        ns("lb", "ip", "rule", "del", "fwmark", "0xf1c00000/0xffff0000", "table", "100",
           check=False)
        for cmd in (["ip", "rule", "add", "fwmark", "0xf1c00000/0xffff0000", "table", "100"],
                    ["ip", "route", "replace", VIP + "/32", "via", "10.10.3.1", "dev", TB + "-tap",
                     "table", "100"],
                    ["ip", "route", "replace", "unreachable", VIP + "/32"]):
            ns("lb", *cmd)

if __name__ == "__main__":
    unittest.main(verbosity=2)
