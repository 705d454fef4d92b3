"""backend drain | undrain | weight: each a new generation through the same plan and guards;
a drained backend gets no new flows; overrides outlive an apply of the file; draining the last
active backend is refused.

Traffic from FakeDataplane (harness.py). "Drain keeps existing flows" is the data plane's
property and is tested with fulcrumd (its flow table), not here."""

import time
import unittest

import harness
from harness import backend, backend_status, config, vip

THREE = [backend("10.10.2.11"), backend("10.10.2.12"), backend("10.10.2.13")]


def web(backends=THREE):
    return config([vip("web", backends=backends,
                       guards={"max_backend_share": 0.6, "max_moved_fraction": 0.5})],
                  watch={"window_ms": 1000})


class BackendOps(unittest.TestCase):
    def setUp(self):
        self.cp = harness.ControlPlane(self, "backend")
        self.dp = harness.FakeDataplane(self.cp).start()
        self.cp.serve(self.cp.write(web()))
        self.dp.traffic(rate={"web": 3000})

    def backend(self, name):
        return backend_status(self.cp.vip_status("web"), name)

    def test_a_drained_backend_gets_no_new_flows_until_undrained(self):
        r = self.cp.ctl("backend", "drain", "web", "10.10.2.12")
        self.assertEqual(r.rc, 0, r)
        b = self.backend("10.10.2.12")
        self.assertEqual((b["state"], b["published"], b["slots"]), ("draining", "draining", 0))
        self.assertTrue(b["overridden"])
        newest = self.cp.history()[0]
        self.assertEqual((newest["cause"], newest["reason"]), ("drain", "backend drain 10.10.2.12"))
        time.sleep(1.3)  # a whole window after the drain
        b = self.backend("10.10.2.12")
        self.assertEqual(b["observed_flow_share"], 0.0)
        self.assertAlmostEqual(self.backend("10.10.2.11")["observed_flow_share"], 0.5, delta=0.06)
        r = self.cp.ctl("backend", "undrain", "web", "10.10.2.12")
        self.assertEqual(r.rc, 0, r)
        b = self.backend("10.10.2.12")
        self.assertEqual((b["state"], b["overridden"]), ("active", False))
        self.assertAlmostEqual(b["expected_share"], 1 / 3, places=3)

    def test_weight_goes_through_the_guards(self):
        r = self.cp.ctl("backend", "weight", "web", "10.10.2.11", 2)
        self.assertEqual(r.rc, 0, r)
        self.assertAlmostEqual(self.backend("10.10.2.11")["expected_share"], 0.5, places=3)
        refused = self.cp.ctl("backend", "weight", "web", "10.10.2.11", 100)
        self.assertEqual(refused.rc, 3, refused)
        self.assertIn("max_backend_share", refused.json["message"])
        self.assertEqual(self.backend("10.10.2.11")["weight"], 2)
        forced = self.cp.ctl("backend", "weight", "web", "10.10.2.11", 100, "--force")
        self.assertEqual(forced.rc, 0, forced)
        self.assertEqual(self.backend("10.10.2.11")["weight"], 100)
        self.assertEqual(self.cp.ctl("backend", "weight", "web", "10.10.2.11", 0).rc, 2)

    def test_overrides_outlive_an_apply_of_the_file(self):
        self.assertEqual(self.cp.ctl("backend", "drain", "web", "10.10.2.11").rc, 0)
        r = self.cp.ctl("apply", self.cp.write(web(THREE + [backend("10.10.2.14")]), "four.yaml"))
        self.assertEqual(r.rc, 0, r)
        b = self.backend("10.10.2.11")
        self.assertEqual((b["state"], b["overridden"]), ("draining", True))
        self.assertEqual(len(self.cp.vip_status("web")["backends"]), 4)

    def test_draining_the_last_active_backend_is_refused(self):
        self.assertEqual(self.cp.ctl("apply", self.cp.write(web(THREE[:1]), "one.yaml"),
                                     "--force").rc, 0)
        r = self.cp.ctl("backend", "drain", "web", "10.10.2.11")
        self.assertEqual(r.rc, 3, r)
        self.assertIn("eligible_backends", r.json["message"])

    def test_unknown_vips_and_backends_are_not_found(self):
        self.assertEqual(self.cp.ctl("backend", "drain", "nope", "10.10.2.11").rc, 9)
        self.assertEqual(self.cp.ctl("backend", "drain", "web", "10.10.9.9").rc, 9)
        self.assertEqual(self.cp.ctl("backend", "drain", "web", "not-an-address").rc, 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
