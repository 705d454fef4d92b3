"""What an operator sees: observed against expected shares and the imbalance ratio under
traffic, Prometheus metrics on 127.0.0.1, `lookup` agreeing with the data plane's own choice
for the same flows, `stats --watch`, and alerts when the data plane is gone.

Traffic and the data plane's choices come from FakeDataplane (harness.py), which computes them
from its own validated copy of the snapshot; with fulcrumd, the lookup test compares against the
backend each packet was encapsulated to."""

import subprocess
import time
import unittest

import harness
from harness import backend, config, vip

RATE = 4000


class Visibility(unittest.TestCase):
    def setUp(self):
        self.cp = harness.ControlPlane(self, "visibility")
        self.dp = harness.FakeDataplane(self.cp, lcores=3).start()
        self.cp.serve(self.cp.write(config(
            [vip("web", backends=[backend("10.10.2.11", weight=2, capacity_cps=10000),
                                  backend("10.10.2.12"), backend("10.10.2.13")]),
             vip("dns", address="fd00::53", port=53, protocol="udp", table_size=1009,
                 backends=[backend("fd00:2::1"), backend("fd00:2::2"), backend("fd00:2::3")])],
            dataplane={"source_ipv6": "fd00:3::2"}, watch={"window_ms": 1000})))
        self.dp.traffic(rate={"web": RATE, "dns": 500})
        harness.wait_for(lambda: (self.cp.vip_status("web")["new_flow_rate"] or 0) > RATE * 0.8,
                         what="a window of traffic")

    def test_status_shows_observed_shares_against_expected_ones(self):
        v = self.cp.vip_status("web")
        self.assertGreater(v["flows_in_window"], 1000)
        expected = {"10.10.2.11": 0.5, "10.10.2.12": 0.25, "10.10.2.13": 0.25}
        for b in v["backends"]:
            self.assertAlmostEqual(b["expected_share"], expected[b["name"]], places=3)
            self.assertAlmostEqual(b["observed_flow_share"], b["expected_share"], delta=0.05)
            self.assertAlmostEqual(b["observed_packet_share"], b["expected_share"], delta=0.05)
        self.assertLess(v["imbalance"], 1.2)
        self.assertGreaterEqual(v["imbalance"], 1.0)
        self.assertAlmostEqual(v["new_flow_rate"], RATE, delta=RATE * 0.25)
        heavy = harness.backend_status(v, "10.10.2.11")
        self.assertAlmostEqual(heavy["load"], heavy["new_flow_rate"] / 10000)
        dp = self.cp.status()["dataplane"]
        self.assertTrue(dp["attached"])
        self.assertEqual(dp["stats"]["lcores"], 3)
        self.assertGreater(dp["stats"]["counter_rates"]["new_flows"], RATE * 0.8)
        self.assertEqual(self.cp.status()["alerts"], [])

    def test_observed_shares_are_never_judged_against_a_table_not_in_effect(self):
        even = config(
            [vip("web", backends=[backend("10.10.2.11", capacity_cps=10000),
                                  backend("10.10.2.12"), backend("10.10.2.13")]),
             vip("dns", address="fd00::53", port=53, protocol="udp", table_size=1009,
                 backends=[backend("fd00:2::1"), backend("fd00:2::2"), backend("fd00:2::3")])],
            dataplane={"source_ipv6": "fd00:3::2"}, watch={"window_ms": 1000})
        self.assertEqual(self.cp.ctl("apply", self.cp.write(even, "even.yaml")).rc, 0)
        seen = 0
        deadline = time.monotonic() + 1.5  # from right after the change through a whole window
        while time.monotonic() < deadline:
            v = self.cp.vip_status("web")
            for b in v["backends"]:
                self.assertAlmostEqual(b["expected_share"], 1 / 3, places=3)
                # Judged once the window holds enough flows for the share to be sharp: at 1000
                # flows one standard deviation is 0.015; the old table's 0.5 is 0.17 away.
                if v["flows_in_window"] >= 1000:
                    seen += 1
                    self.assertAlmostEqual(b["observed_flow_share"], 1 / 3, delta=0.08, msg=b)
            time.sleep(0.05)
        self.assertGreater(seen, 0)
        self.assertNotIn("imbalance", [a["kind"] for a in self.cp.status()["alerts"]])

    def test_the_human_views_show_the_same_numbers(self):
        text = self.cp.ctl("status", json_out=False)
        self.assertEqual(text.rc, 0, text)
        self.assertIn("VIP web 10.10.0.100:80/tcp", text.out)
        self.assertIn("50.00%", text.out)
        self.assertIn("alerts: none", text.out)
        stats = self.cp.ctl("stats", json_out=False)
        self.assertIn("new_flows", stats.out)
        self.assertIn("DROP REASON", stats.out)

    def test_metrics_are_served_on_loopback_in_prometheus_format(self):
        self.assertTrue(self.cp.status()["controlplane"]["metrics"].startswith("127.0.0.1:"))
        content_type, text = self.cp.metrics()
        self.assertIn("text/plain; version=0.0.4", content_type)
        for needle in ('fulcrum_dataplane_up 1',
                       'fulcrum_dataplane_new_flows_total{lcore="1"}',
                       'fulcrum_dataplane_drops_total{lcore="2",reason="vip_no_backend"}',
                       'fulcrum_backend_expected_share{vip="web",backend="10.10.2.11"} 0.5',
                       'fulcrum_backend_observed_flow_share{vip="web",backend="10.10.2.12"}',
                       'fulcrum_backend_up{vip="dns",backend="fd00:2::1"} 1',
                       'fulcrum_vip_imbalance_ratio{vip="web"}',
                       'fulcrum_controlplane_generation_published 1'):
            self.assertIn(needle, text)

    def test_lookup_agrees_with_the_data_planes_choice(self):
        flows = self.dp.flows(60)
        self.assertEqual(len(flows), 120)
        for f in flows:
            r = self.cp.ctl("lookup", f["vip"], f["proto"], f["src"], f["sport"])
            self.assertEqual(r.rc, 0, r)
            self.assertEqual(r.data["backend"]["address"], f["backend"], f)
            self.assertEqual(r.data["generation"], f["generation"])
        by_address = self.cp.ctl("lookup", "10.10.0.100:80", "tcp", flows[0]["src"],
                                 flows[0]["sport"])
        self.assertEqual(by_address.data["backend"]["address"], flows[0]["backend"])
        wrong = self.cp.ctl("lookup", "web", "udp", "192.0.2.1", 1)
        self.assertEqual(wrong.rc, 9, wrong)

    def test_stats_watch_refreshes(self):
        r = subprocess.run([harness.FULCRUMCTL, "--socket", self.cp.socket, "--json", "stats",
                            "--watch", "--interval", "200ms", "--count", "3"],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 3)
        for line in lines:
            self.assertIn('"vips"', line)

    def test_a_missing_data_plane_is_an_alert(self):
        self.dp.stop()
        harness.wait_for(
            lambda: "dataplane_down" in [a["kind"] for a in self.cp.status()["alerts"]],
            what="the dataplane_down alert")
        _, text = self.cp.metrics()
        self.assertIn("fulcrum_dataplane_up 0", text)
        self.assertIn('fulcrum_alert{kind="dataplane_down",subject=""} 1', text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
