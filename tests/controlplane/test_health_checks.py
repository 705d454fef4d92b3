"""Health checks against real HTTP and TCP servers on loopback: a backend that stops answering
goes down and is taken out of the table, and comes back after `rise` good probes; a slow
backend times out without slowing the server; a flapping one does not flap the table; one
probe per address and port however many VIPs list it; below min_healthy the VIP fails open.

Backends listen on 127.0.0.x addresses of their own with ports picked for each test."""

import time
import unittest

import harness
from harness import HttpBackend, TcpBackend, backend, backend_status, config, vip

INTERVAL_MS = 200


def check(kind="http", **fields):
    c = {"type": kind, "interval_ms": INTERVAL_MS, "timeout_ms": 150, "rise": 2, "fall": 2}
    c.update(fields)
    return c


class HealthChecks(unittest.TestCase):
    def setUp(self):
        self.cp = harness.ControlPlane(self, "health")
        self.dp = harness.FakeDataplane(self.cp).start()

    def serve(self, vips):
        self.cp.serve(self.cp.write(config(vips)))

    def health(self, vip_name, b):
        return backend_status(self.cp.vip_status(vip_name), f"127.0.0.{b.host.split('.')[-1]}:"
                                                            f"{b.port}")

    def wait_health(self, vip_name, b, health, published=None, timeout=10):
        def ok():
            s = self.health(vip_name, b)
            return s["health"] == health and (published is None or s["published"] == published)

        harness.wait_for(ok, timeout=timeout, what=f"{b.host}:{b.port} to be {health}")
        return self.health(vip_name, b)

    def http_vip(self, backends, interval_ms=INTERVAL_MS, **fields):
        return vip("web", backends=[backend(b.host, port=b.port) for b in backends],
                   health_check=check(interval_ms=interval_ms), **fields)

    def test_an_http_backend_that_stops_is_taken_out_and_comes_back(self):
        servers = [HttpBackend(self, f"127.0.0.{11 + i}") for i in range(3)]
        interval_ms = 500  # what the publish must beat, with room for a loaded machine
        self.serve([self.http_vip(servers, interval_ms=interval_ms)])
        for s in servers:
            self.wait_health("web", s, "up")
        first = self.cp.generation()
        servers[1].stop()
        down = self.wait_health("web", servers[1], "down", "down")
        self.assertIn("connect", down["health_detail"])
        self.assertEqual(down["slots"], 0)
        for s in (servers[0], servers[2]):
            self.assertAlmostEqual(self.health("web", s)["expected_share"], 0.5, places=3)
        record = self.cp.history()[0]
        self.assertEqual(record["cause"], "health")
        self.assertGreater(record["generation"], first)
        self.assertIn(f"{servers[1].host}:{servers[1].port} up -> down", record["reason"])
        # The table changed within one check interval of the state change.
        self.assertLess(record["created_unix_ms"] - down["health_changed_unix_ms"], interval_ms)
        print(f"\nhealth change -> new table published: "
              f"{record['created_unix_ms'] - down['health_changed_unix_ms']} ms")
        harness.wait_for(lambda: self.cp.status()["dataplane"]["acked_generation"] ==
                         record["generation"], what="the data plane to take the new table")
        servers[1].start()
        up = self.wait_health("web", servers[1], "up", "active")
        self.assertGreater(up["slots"], 0)
        self.assertEqual(self.cp.history()[0]["cause"], "health")

    def test_http_status_codes_decide_the_health(self):
        ok, failing = HttpBackend(self, "127.0.0.21"), HttpBackend(self, "127.0.0.22")
        failing.mode = "fail"
        self.serve([self.http_vip([ok, failing])])
        s = self.wait_health("web", failing, "down", "down")
        self.assertIn("HTTP 503", s["health_detail"])
        self.assertIn("ok (HTTP 200", self.health("web", ok)["health_detail"])

    def test_a_tcp_backend_that_stops_listening_goes_down(self):
        servers = [TcpBackend(self, f"127.0.0.{31 + i}") for i in range(2)]
        self.serve([vip("tcp", backends=[backend(s.host, port=s.port) for s in servers],
                        health_check=check("tcp"))])
        self.wait_health("tcp", servers[0], "up")
        servers[0].stop()
        s = self.wait_health("tcp", servers[0], "down", "down")
        self.assertIn("Connection refused", s["health_detail"])
        servers[0].start()
        self.wait_health("tcp", servers[0], "up", "active")

    def test_a_slow_backend_times_out_and_the_server_stays_responsive(self):
        fast, slow = HttpBackend(self, "127.0.0.41"), HttpBackend(self, "127.0.0.42")
        self.serve([self.http_vip([fast, slow])])
        self.wait_health("web", slow, "up")
        slow.mode = "slow"
        slow.slow_s = 3.0
        worst = 0.0
        deadline = time.monotonic() + 10
        while self.health("web", slow)["health"] != "down":
            self.assertLess(time.monotonic(), deadline, "the slow backend never went down")
            started = time.monotonic()
            self.assertEqual(self.cp.ctl("status").rc, 0)
            worst = max(worst, time.monotonic() - started)
        self.assertIn("timeout after 150 ms", self.health("web", slow)["health_detail"])
        # Slow probes never held up a request (a probe alone takes 3 s).
        self.assertLess(worst, 1.5)

    def test_a_flapping_backend_does_not_flap_the_table(self):
        steady, flapping = HttpBackend(self, "127.0.0.51"), HttpBackend(self, "127.0.0.52")
        self.serve([self.http_vip([steady, flapping])])
        self.wait_health("web", flapping, "up")
        generation = self.cp.generation()
        flapping.mode = "flap"  # 200, 503, 200, 503...: never two failures in a row
        time.sleep(12 * INTERVAL_MS / 1000)
        self.assertGreaterEqual(flapping.requests, 8)
        self.assertEqual(self.health("web", flapping)["health"], "up")
        self.assertEqual(self.cp.generation(), generation)

    def test_a_backend_in_two_vips_is_probed_once(self):
        shared = HttpBackend(self, "127.0.0.61")
        other = HttpBackend(self, "127.0.0.62")
        hc = check()
        # min_healthy 0: a's only backend may go down without a's failing open.
        a = backend(shared.host, port=shared.port)
        b = backend(other.host, port=other.port)
        self.serve([vip("a", address="10.10.0.101", backends=[a], health_check=hc,
                        guards={"min_healthy": 0}),
                    vip("b", address="10.10.0.102", backends=[a, b], health_check=hc)])
        self.wait_health("a", shared, "up")
        before = shared.requests
        time.sleep(2.0)
        probes = shared.requests - before
        # 2 s at one probe per 200 ms: about 10, not 20.
        self.assertGreaterEqual(probes, 5)
        self.assertLessEqual(probes, 15)
        shared.stop()
        self.wait_health("a", shared, "down", "down")
        self.wait_health("b", shared, "down", "down")

    def test_below_min_healthy_the_vip_fails_open(self):
        servers = [HttpBackend(self, f"127.0.0.{71 + i}") for i in range(3)]
        self.serve([self.http_vip(servers, guards={"min_healthy": 0.5})])
        for s in servers:
            self.wait_health("web", s, "up")
        servers[0].stop()
        self.wait_health("web", servers[0], "down", "down")  # 2 of 3 healthy: not below 0.5
        self.assertFalse(self.cp.vip_status("web")["panic"])
        servers[1].stop()
        harness.wait_for(lambda: self.cp.vip_status("web")["panic"], what="the panic threshold")
        v = self.cp.vip_status("web")
        for b in v["backends"]:
            # Down backends keep their slots: one survivor must not take every flow.
            self.assertEqual(b["published"], "active", b)
            self.assertAlmostEqual(b["expected_share"], 1 / 3, places=3)
        alerts = {a["kind"]: a["message"] for a in self.cp.status()["alerts"]}
        self.assertIn("panic", alerts)
        self.assertIn("failing open", alerts["panic"])
        servers[0].start()
        harness.wait_for(lambda: not self.cp.vip_status("web")["panic"],
                         what="the panic to end")
        self.wait_health("web", servers[1], "down", "down")


if __name__ == "__main__":
    unittest.main(verbosity=2)
