"""fulcrumctl without a server: validate and plan, exit codes, JSON, and the plan's numbers
against a computation of their own (weights from the config, slots summed by hand)."""

import json
import os
import subprocess
import unittest

import harness
from harness import backend, config, vip


def run(*args):
    p = subprocess.run([harness.FULCRUMCTL] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=60)
    return harness.Result(p.returncode, p.stdout, p.stderr)


class CliOffline(unittest.TestCase):
    def setUp(self):
        self.cp = harness.ControlPlane(self, "cli")

    def test_validate_accepts_a_good_config(self):
        path = self.cp.write(config([vip("web", backends=[backend("10.10.2.11")])]))
        r = run("--json", "validate", path)
        self.assertEqual(r.rc, 0, r)
        self.assertTrue(r.data["ok"])
        self.assertEqual(r.data["vips"], 1)

    def test_validate_reports_every_error_with_its_path_and_exit_1(self):
        bad = config([vip("web", port=0, backends=[backend("10.10.2.300", weight=0)],
                          table_size=65536)], dataplane={"gateway_mac": "zz"})
        r = run("--json", "validate", self.cp.write(bad))
        self.assertEqual(r.rc, 1, r)
        paths = {e["path"] for e in r.data["errors"]}
        self.assertTrue({"dataplane.gateway_mac", "vips[0].port", "vips[0].table_size",
                         "vips[0].backends[0].address", "vips[0].backends[0].weight"} <= paths,
                        paths)
        text = run("validate", self.cp.write(bad, "bad.yaml"))
        self.assertEqual(text.rc, 1)
        self.assertIn("bad.yaml:", text.out)
        self.assertIn("5 errors", text.out)

    def test_validate_of_a_missing_file_fails(self):
        r = run("validate", os.path.join(self.cp.dir, "nope.yaml"))
        self.assertEqual(r.rc, 1, r)
        self.assertIn("No such file", r.err)

    def test_usage_errors_exit_2_and_help_exits_0(self):
        self.assertEqual(run("apply").rc, 2)
        self.assertEqual(run("frobnicate").rc, 2)
        self.assertEqual(run("--help").rc, 0)

    def test_plan_numbers_agree_with_an_independent_computation(self):
        weights = {"10.10.2.11": 3, "10.10.2.12": 1, "10.10.2.13": 1, "10.10.2.14": 5}
        table = 65537
        text = config([vip("web", table_size=table,
                           backends=[backend(a, weight=w) for a, w in weights.items()],
                           guards={"max_backend_share": 0.45})])
        r = run("--socket", os.path.join(self.cp.dir, "none.sock"), "--json", "plan",
                self.cp.write(text))
        self.assertEqual(r.rc, 3, r)  # 10.10.2.14 has half the weight: above 0.45
        self.assertIn("planned against an empty state", r.json["message"])
        plan = r.data["plan"]
        self.assertEqual(plan["against_generation"], 0)
        [v] = plan["vips"]
        self.assertEqual(v["change"], "added")
        total_weight = sum(weights.values())
        self.assertEqual(sum(b["slots"] for b in v["backends"]), table)
        for b in v["backends"]:
            want = weights[b["name"]] / total_weight
            self.assertAlmostEqual(b["weight_share"], want, places=12)
            self.assertAlmostEqual(b["table_share"], b["slots"] / table, places=12)
            # Each backend owns floor or ceil of its proportional slots.
            self.assertLessEqual(abs(b["slots"] - table * want), 1.0, b)
        share_guard = next(g for g in v["guards"] if g["guard"] == "max_backend_share")
        self.assertFalse(share_guard["ok"])
        self.assertAlmostEqual(share_guard["value"], max(weights.values()) / total_weight)
        self.assertEqual(plan["violations"],
                         ["web: max_backend_share: 10.10.2.14 would get 50.00% of new flows "
                          "(limit 45.00%)"])

    def test_plan_of_a_config_within_its_guards_exits_0(self):
        text = config([vip("web", backends=[backend("10.10.2.11"), backend("10.10.2.12"),
                                            backend("10.10.2.13")],
                           guards={"max_backend_share": 0.4})])
        r = run("--socket", os.path.join(self.cp.dir, "none.sock"), "plan", "--offline",
                self.cp.write(text))
        self.assertEqual(r.rc, 0, r)
        self.assertIn("guards: all pass", r.out)
        self.assertIn("33.33%", r.out)

    def test_plan_of_a_broken_config_exits_1(self):
        r = run("plan", "--offline", self.cp.write("vips: 3\n"))
        self.assertEqual(r.rc, 1, r)


if __name__ == "__main__":
    unittest.main(verbosity=2)
