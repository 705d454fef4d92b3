"""apply -> ack -> record; refusals that leave the running generation alone (invalid config,
guards, the data plane's rejection); no data plane; rollback; the socket's permissions.

The data plane is FakeDataplane (harness.py): with fulcrumd these tests run unchanged once
RealDataplane replaces it."""

import os
import stat
import unittest

import harness
from harness import backend, config, vip

THREE = [backend("10.10.2.11"), backend("10.10.2.12"), backend("10.10.2.13")]


def web(backends=THREE, **fields):
    fields.setdefault("guards", {"max_backend_share": 0.5, "max_moved_fraction": 0.5})
    return config([vip("web", backends=backends, **fields)])


class ApplyRollback(unittest.TestCase):
    def setUp(self):
        self.cp = harness.ControlPlane(self, "apply")
        self.dp = harness.FakeDataplane(self.cp).start()
        self.cp.serve(self.cp.write(web(), "a.yaml"))
        harness.wait_for(lambda: self.cp.status()["dataplane"]["acked_generation"] == 1,
                         what="the first generation's ack")

    def apply(self, text, *flags, name="next.yaml"):
        return self.cp.ctl("apply", self.cp.write(text, name), *flags)

    def test_apply_is_acknowledged_and_recorded_with_who_and_what(self):
        four = THREE + [backend("10.10.2.14")]
        r = self.apply(web(four))
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.data["generation"], 2)
        self.assertEqual(r.data["result"], "acked")
        self.assertEqual(self.cp.status()["dataplane"]["acked_generation"], 2)
        [newest, first] = self.cp.history()
        self.assertEqual((newest["generation"], newest["cause"]), (2, "apply"))
        self.assertEqual(newest["who"]["uid"], os.getuid())
        self.assertEqual(newest["who"]["user"], "root")
        self.assertEqual(newest["result"], "acked")
        self.assertTrue(newest["current"])
        self.assertEqual(newest["plan_summary"]["vips"][0]["change"], "changed")
        self.assertGreater(newest["plan_summary"]["vips"][0]["moved_fraction"], 0.2)
        self.assertEqual(first["cause"], "initial")
        full = self.cp.ctl("history", 2).data["record"]
        self.assertIn("10.10.2.14", full["config_yaml"])

    def test_an_invalid_config_is_refused_and_the_generation_stays(self):
        r = self.apply(web([backend("10.10.2.11", weight=0)]))
        self.assertEqual(r.rc, 1, r)
        self.assertEqual(r.data["errors"][0]["path"], "vips[0].backends[0].weight")
        # The server re-validates what it is sent: a client that skipped validation is refused
        # the same way.
        self.assertEqual(self.cp.generation(), 1)
        self.assertEqual(len(self.cp.history()), 1)

    def test_a_plan_beyond_a_guard_needs_force(self):
        skewed = web([backend("10.10.2.11", weight=100), backend("10.10.2.12"),
                      backend("10.10.2.13")])
        r = self.apply(skewed)
        self.assertEqual(r.rc, 3, r)
        self.assertIn("max_backend_share", r.json["message"])
        self.assertEqual(self.cp.generation(), 1)
        forced = self.apply(skewed, "--force")
        self.assertEqual(forced.rc, 0, forced)
        self.assertTrue(self.cp.history()[0]["forced"])

    def test_the_data_planes_rejection_leaves_the_running_generation(self):
        self.dp.traffic(reject=True)
        r = self.apply(web(THREE + [backend("10.10.2.14")]))
        self.assertEqual(r.rc, 4, r)
        self.assertIn("rejected generation 2", r.json["message"])
        self.assertIn("told to reject", r.json["message"])
        s = self.cp.status()
        self.assertEqual(s["controlplane"]["current"]["generation"], 1)
        self.assertEqual(len(s["vips"][0]["backends"]), 3)
        self.assertEqual(s["dataplane"]["acked_generation"], 1)
        self.assertIn("rejected", [a["kind"] for a in s["alerts"]])
        self.assertEqual(self.cp.history()[0]["result"], "rejected")
        # A rejected generation is no rollback target, and the next apply works.
        self.dp.traffic(reject=False)
        again = self.apply(web(THREE + [backend("10.10.2.14")]))
        self.assertEqual(again.rc, 0, again)
        self.assertEqual(again.data["generation"], 3)

    def test_without_a_data_plane_apply_says_so_and_it_applies_when_one_starts(self):
        self.dp.stop()
        harness.wait_for(lambda: not self.cp.status()["dataplane"]["attached"], timeout=10,
                         what="the data plane to count as gone")
        r = self.apply(web(THREE + [backend("10.10.2.14")]))
        self.assertEqual(r.rc, 5, r)
        self.assertIn("no data plane is attached", r.json["message"])
        self.assertEqual(r.data["result"], "no_dataplane")
        self.dp.start()
        harness.wait_for(lambda: self.cp.status()["dataplane"]["acked_generation"] == 2,
                         what="the restarted data plane to acknowledge generation 2")

    def test_an_identical_config_is_no_change(self):
        r = self.apply(web())
        self.assertEqual(r.rc, 0, r)
        self.assertIn("no changes", r.data["message"])
        self.assertEqual(self.cp.generation(), 1)

    def test_rollback_restores_the_previous_config_in_one_step(self):
        self.assertEqual(self.apply(web(THREE + [backend("10.10.2.14")])).rc, 0)
        self.assertEqual(len(self.cp.vip_status("web")["backends"]), 4)
        r = self.cp.ctl("rollback")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual((r.data["generation"], r.data["rollback_of"]), (3, 1))
        s = self.cp.status()
        self.assertEqual(len(s["vips"][0]["backends"]), 3)
        self.assertEqual(s["dataplane"]["acked_generation"], 3)
        newest = self.cp.history()[0]
        self.assertEqual((newest["cause"], newest["rollback_of"]), ("rollback", 1))
        # A second rollback undoes the first (the change before 3 is 2).
        self.assertEqual(self.cp.ctl("rollback").data["rollback_of"], 2)
        self.assertEqual(len(self.cp.vip_status("web")["backends"]), 4)

    def test_rollback_to_a_named_generation_and_to_an_unknown_one(self):
        self.assertEqual(self.apply(web(THREE + [backend("10.10.2.14")]), name="b.yaml").rc, 0)
        self.assertEqual(self.apply(web(THREE[:2]), "--force", name="c.yaml").rc, 0)
        r = self.cp.ctl("rollback", 1)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(len(self.cp.vip_status("web")["backends"]), 3)
        missing = self.cp.ctl("rollback", 99)
        self.assertEqual(missing.rc, 9, missing)
        self.assertIn("no generation 99", missing.json["message"])

    def test_read_commands_speak_json(self):
        for args in (["status"], ["history"], ["stats"], ["lookup", "web", "tcp", "192.0.2.1", 5],
                     ["plan", self.cp.write(web(), "p.yaml")]):
            r = self.cp.ctl(*args)
            self.assertEqual(r.rc, 0, (args, r))
            self.assertIsInstance(r.json, dict, args)
            self.assertIn("data", r.json)

    @unittest.skipUnless(os.geteuid() == 0, "switching to another user (setpriv) needs root")
    def test_the_socket_is_0660_and_checks_the_peers_credentials(self):
        mode = stat.S_IMODE(os.stat(self.cp.socket).st_mode)
        self.assertEqual(mode, 0o660)
        # uid 65534 in group root passes the file mode but not the server's own check.
        r = self.cp.ctl("status", as_user=(65534, 0))
        self.assertEqual(r.rc, 8, r)
        self.assertIn("uid 65534", r.json["message"])
        # uid 65534 in its own group does not even get through the file mode.
        r = self.cp.ctl("status", as_user=(65534, 65534))
        self.assertEqual(r.rc, 8, r)
        self.assertIn("Permission denied", r.json["message"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
