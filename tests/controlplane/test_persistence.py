"""The state directory under kill -9: at every point of an apply (deterministic crash points)
and at random moments, the directory stays consistent (every file whole, no temporary left
after the restart), and the restarted server resumes the last generation: adopting what the
segment holds, publishing a recorded generation that never reached it, or republishing when the
segment is gone.

The data plane is FakeDataplane (harness.py); with fulcrumd these run unchanged."""

import glob
import json
import os
import random
import signal
import subprocess
import time
import unittest

import harness
from harness import backend, config, vip


def web(n):
    return config([vip("web", backends=[backend(f"10.10.2.{11 + i}") for i in range(n)],
                       guards={"max_moved_fraction": 1})])


class Persistence(unittest.TestCase):
    def start(self, name):
        self.cp = harness.ControlPlane(self, name)
        self.dp = harness.FakeDataplane(self.cp).start()
        self.cp.serve(self.cp.write(web(3), "three.yaml"))
        harness.wait_for(lambda: self.cp.status()["dataplane"]["acked_generation"] == 1,
                         what="generation 1's ack")

    def assert_state_dir_consistent(self, allow_temporaries=False):
        files = glob.glob(os.path.join(self.cp.state, "generations", "*"))
        for path in files:
            if path.endswith(".tmp"):
                self.assertTrue(allow_temporaries, f"temporary left behind: {path}")
                continue
            with open(path) as f:
                record = json.load(f)  # whole, or it would not parse
            self.assertEqual(os.path.basename(path), f"{record['generation']:020d}.json")
        with open(os.path.join(self.cp.state, "ids.json")) as f:
            ids = json.load(f)
        self.assertIn("backends", ids)

    def backends_running(self):
        return len(self.cp.vip_status("web")["backends"])

    def crash_at(self, point):
        self.start(f"crash-{point.replace('_', '-')}")
        self.cp.stop()
        self.cp.serve(env={"FULCRUM_TEST_CRASH_AT": point})
        r = self.cp.ctl("apply", self.cp.write(web(4), "four.yaml"))
        self.assertEqual(r.rc, 7, r)  # the server died before answering
        self.assertEqual(self.cp.proc.wait(timeout=10), -signal.SIGKILL)
        self.cp.proc = None
        self.assert_state_dir_consistent()
        self.cp.serve()
        self.assert_state_dir_consistent()
        harness.wait_for(lambda: self.cp.status()["dataplane"]["acked_generation"] ==
                         self.cp.status()["controlplane"]["published_generation"],
                         what="the data plane to run what is published")
        return self.cp.generation(), self.backends_running()

    def test_crash_after_the_ids_before_the_record_resumes_the_old_generation(self):
        self.assertEqual(self.crash_at("after_ids"), (1, 3))
        self.assertEqual([h["generation"] for h in self.cp.history()], [1])
        r = self.cp.ctl("apply", self.cp.write(web(4), "again.yaml"))
        self.assertEqual((r.rc, r.data["generation"]), (0, 2))

    def test_crash_after_the_record_before_publishing_publishes_it_at_restart(self):
        self.assertEqual(self.crash_at("after_record"), (2, 4))
        newest = self.cp.history()[0]
        self.assertEqual((newest["generation"], newest["cause"], newest["result"]),
                         (2, "apply", "acked"))

    def test_crash_after_publishing_adopts_what_the_segment_holds(self):
        self.assertEqual(self.crash_at("after_publish"), (2, 4))
        self.assertEqual([h["generation"] for h in self.cp.history()], [2, 1])
        self.assertIn("resumed generation 2", self.cp.log())

    def test_crash_after_the_ack_keeps_the_acknowledged_generation(self):
        self.assertEqual(self.crash_at("after_ack"), (2, 4))
        self.assertEqual(self.cp.history()[0]["result"], "acked")

    def test_kill_9_at_random_moments_of_applies_leaves_a_consistent_state(self):
        self.start("random-kill")
        rng = random.Random(20261201)
        for i in range(8):
            n = 3 + i % 2 + 1  # 4, 5, 4, 5...
            path = self.cp.write(web(n), f"n{i}.yaml")
            client = subprocess.Popen([harness.FULCRUMCTL, "--socket", self.cp.socket, "--json",
                                       "apply", path, "--force"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0, 0.03))
            self.cp.kill()
            client.wait(timeout=20)
            self.assert_state_dir_consistent(allow_temporaries=True)
            self.cp.serve()
            self.assert_state_dir_consistent()
            history = self.cp.history()
            generations = [h["generation"] for h in history]
            self.assertEqual(generations, sorted(set(generations), reverse=True))
            current = next(h for h in history if h["current"])
            self.assertEqual(current["generation"], self.cp.generation())
            full = self.cp.ctl("history", current["generation"]).data["record"]
            running = [{"address": b["name"]} for b in self.cp.vip_status("web")["backends"]]
            self.assertEqual(json.loads(full["config_yaml"])["vips"][0]["backends"], running)
            harness.wait_for(lambda: self.cp.status()["dataplane"]["acked_generation"] ==
                             self.cp.status()["controlplane"]["published_generation"],
                             what="the data plane to run what is published")

    def test_a_clean_restart_resumes_without_a_new_generation(self):
        self.start("restart")
        self.assertEqual(self.cp.ctl("apply", self.cp.write(web(4), "four.yaml")).rc, 0)
        self.cp.stop()
        self.cp.serve()
        self.assertEqual(self.cp.generation(), 2)
        self.assertEqual(self.cp.status()["controlplane"]["published_generation"], 2)
        self.assertEqual(len(self.cp.history()), 2)
        self.assertEqual(self.backends_running(), 4)

    def test_a_restart_republishes_when_the_segment_is_gone(self):
        self.start("segment-gone")
        self.assertEqual(self.cp.ctl("apply", self.cp.write(web(4), "four.yaml")).rc, 0)
        self.cp.stop()
        self.dp.stop()
        self.cp.unlink_shm("config")  # what a reboot does to /dev/shm
        self.cp.unlink_shm("stats")
        self.cp.serve()
        self.assertEqual(self.cp.status()["controlplane"]["published_generation"], 2)
        self.assertEqual(self.backends_running(), 4)
        self.dp.start()
        harness.wait_for(lambda: self.cp.status()["dataplane"]["acked_generation"] == 2,
                         what="the new data plane to acknowledge the republished generation")
        self.assertEqual(self.cp.ctl("rollback").data["rollback_of"], 1)

    def test_history_survives_restarts_of_both_processes(self):
        self.start("both")
        self.assertEqual(self.cp.ctl("apply", self.cp.write(web(4), "four.yaml")).rc, 0)
        self.cp.stop()
        self.dp.stop()
        self.dp.start()
        self.cp.serve()
        self.assertEqual([(h["generation"], h["cause"]) for h in self.cp.history()],
                         [(2, "apply"), (1, "initial")])
        harness.wait_for(lambda: self.cp.status()["dataplane"]["acked_generation"] == 2,
                         what="the restarted data plane to pick up generation 2")

    def test_a_second_server_on_the_same_state_or_prefix_is_refused(self):
        self.start("second")
        other = subprocess.run([harness.FULCRUMCTL, "--socket", self.cp.socket + "2", "serve",
                                "--state-dir", self.cp.state, "--shm-prefix",
                                self.cp.prefix + "x", "--metrics", "off"],
                               capture_output=True, text=True, timeout=20)
        self.assertEqual(other.returncode, 10, other.stderr)
        self.assertIn("in use by another fulcrumctl serve", other.stderr)
        other = subprocess.run([harness.FULCRUMCTL, "--socket", self.cp.socket + "3", "serve",
                                "--state-dir", self.cp.state + "x", "--shm-prefix",
                                self.cp.prefix, "--metrics", "off"],
                               capture_output=True, text=True, timeout=20)
        self.assertEqual(other.returncode, 10, other.stderr)
        self.assertIn("owns shm prefix", other.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
