"""The incident in our users' reports, replayed: a weight typo (100:1:1 instead of 1:1:1) that
would send almost every new flow to one backend. plan refuses it (max_backend_share, and
capacity at today's traffic); apply refuses it; forced with --watch while traffic runs, the
overload is detected and rolled back automatically within seconds, and the history says why.

Traffic comes from FakeDataplane (harness.py), which assigns each synthetic flow to
table[HashToSlot(FlowHash(...))] of the acknowledged snapshot and counts it as fulcrumd's
lcores will. Against fulcrumd, RealDataplane.traffic() would drive a packet generator instead;
nothing else here changes."""

import subprocess
import time
import unittest

import harness
from harness import backend, config, vip

RATE = 3000  # new flows per second to the VIP
CAPACITY = 2000  # each backend's capacity_cps: 1000/s each is fine, 2941/s is not


def web(weights):
    return config(
        [vip("web", backends=[backend(f"10.10.2.{11 + i}", weight=w, capacity_cps=CAPACITY)
                              for i, w in enumerate(weights)],
             guards={"max_backend_share": 0.5, "max_moved_fraction": 0.7})],
        watch={"window_ms": 1000, "max_load": 1.0})


class Incident(unittest.TestCase):
    def setUp(self):
        self.cp = harness.ControlPlane(self, "incident")
        self.dp = harness.FakeDataplane(self.cp).start()
        self.cp.serve(self.cp.write(web([1, 1, 1]), "good.yaml"))
        self.dp.traffic(rate={"web": RATE})
        # The control plane has seen a window of today's traffic.
        harness.wait_for(
            lambda: (self.cp.vip_status("web")["new_flow_rate"] or 0) > RATE * 0.8,
            what="the stats window to show the traffic")
        self.typo = self.cp.write(web([100, 1, 1]), "typo.yaml")

    def test_plan_refuses_the_typo_for_share_and_capacity(self):
        r = self.cp.ctl("plan", self.typo)
        self.assertEqual(r.rc, 3, r)
        violations = "\n".join(r.data["plan"]["violations"])
        self.assertIn("max_backend_share: 10.10.2.11 would get 98.04% of new flows", violations)
        self.assertIn("capacity: 10.10.2.11 would receive", violations)
        [v] = r.data["plan"]["vips"]
        heavy = harness.backend_status(v, "10.10.2.11")
        self.assertGreater(heavy["expected_cps"], CAPACITY)
        self.assertAlmostEqual(heavy["expected_cps"], v["new_flow_rate"] * heavy["table_share"])

    def test_apply_without_force_changes_nothing(self):
        before = self.cp.generation()
        r = self.cp.ctl("apply", self.typo)
        self.assertEqual(r.rc, 3, r)
        self.assertEqual(self.cp.generation(), before)

    def test_forced_with_watch_the_overload_is_rolled_back_within_seconds(self):
        good_generation = self.cp.generation()
        started = time.monotonic()
        r = self.cp.ctl("apply", self.typo, "--force", "--watch", "30s", timeout=40)
        elapsed = time.monotonic() - started
        self.assertEqual(r.rc, 6, r)
        message = r.json["message"]
        self.assertIn(f"rolled back generation {good_generation + 1} to generation "
                      f"{good_generation}'s config", message)
        self.assertIn("backend 10.10.2.11 receives", message)
        self.assertIn("capacity_cps 2000", message)
        watch = r.data["watch"]
        self.assertEqual(watch["outcome"], "rolled_back")
        self.assertIn("overload", [f["kind"] for f in watch["findings"]])
        # Seconds, not the watch's 30: one stats window after the ack, plus a sample.
        self.assertLess(watch["after_s"], 5.0, watch)
        self.assertLess(elapsed, 10.0)
        print(f"\napply -> automatic rollback: {watch['after_s']:.2f} s after the ack "
              f"({elapsed:.2f} s for the whole command)")

        history = self.cp.history()
        self.assertEqual(history[0]["cause"], "auto_rollback")
        self.assertEqual(history[0]["rollback_of"], good_generation)
        self.assertIn("10.10.2.11", history[0]["reason"])
        self.assertEqual(history[1]["cause"], "apply")
        self.assertTrue(history[1]["forced"])
        self.assertEqual(history[1]["watch"]["outcome"], "rolled_back")

        # The tables are even again, and so is the traffic once a window has passed.
        v = self.cp.vip_status("web")
        for b in v["backends"]:
            self.assertAlmostEqual(b["expected_share"], 1 / 3, places=3)
        time.sleep(1.3)
        v = self.cp.vip_status("web")
        self.assertLess(v["imbalance"], 1.25, v)
        alerts = [a["kind"] for a in self.cp.status()["alerts"]]
        self.assertIn("auto_rollback", alerts)

    def test_a_good_change_passes_its_watch(self):
        r = self.cp.ctl("apply", self.cp.write(web([1, 1, 1, 1]), "four.yaml"), "--watch", "2s")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.data["watch"]["outcome"], "passed")
        self.assertEqual(self.cp.history()[0]["watch"]["outcome"], "passed")

    def test_another_change_during_a_watch_ends_it_and_answers_its_client(self):
        watcher = subprocess.Popen(
            [harness.FULCRUMCTL, "--socket", self.cp.socket, "--json", "apply",
             self.cp.write(web([1, 1, 1, 1]), "four.yaml"), "--watch", "60s"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        harness.wait_for(lambda: self.cp.status()["controlplane"]["watch"] is not None,
                         what="the watch to start")
        r = self.cp.ctl("apply", self.cp.write(web([1, 1, 1, 1, 1]), "five.yaml"))
        self.assertEqual(r.rc, 0, r)
        out, _ = watcher.communicate(timeout=20)
        result = harness.Result(watcher.returncode, out, "")
        self.assertEqual(result.rc, 0, result)
        self.assertEqual(result.data["watch"]["outcome"], "superseded")
        self.assertEqual(result.data["watch"]["by_generation"], r.data["generation"])
        watched = next(h for h in self.cp.history() if h["generation"] == r.data["generation"] - 1)
        self.assertEqual(watched["watch"]["outcome"], "superseded")


if __name__ == "__main__":
    unittest.main(verbosity=2)
