#!/usr/bin/python3
"""Fulcrum's main job, on a machine without a NIC: real HTTP traffic from a client through
fulcrumd to three nginx backends, each in its own network namespace (testbed.sh), driven by
fulcrumctl serve. Shows the spread, a backend failure, a drain, a refused config, the
incident refused and rolled back automatically, and a one-command rollback. Run by
scripts/demo (as root); every step checks what it shows and the demo fails if one does not
hold. Takes about a minute."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e_test as e2e  # noqa: E402 - the suite's helpers: one test bed, one way to drive it

BACKENDS = e2e.BACKENDS
NAMES = {b: "b%d" % (i + 1) for i, b in enumerate(BACKENDS)}  # nginx answers with its name
STEPS = 6
failed_checks = []


def step(n, title):
    print("\n[%d/%d] %s" % (n, STEPS, title))


def say(text):
    print("      " + text)


def check(ok, what):
    say(("ok: " if ok else "NOT AS EXPECTED: ") + what)
    if not ok:
        failed_checks.append(what)


def ctl_text(*args):
    out = e2e.ns("lb", os.path.join(e2e.BUILD, "controlplane", "fulcrumctl"), "--socket",
                 e2e.TB_DIR + "/ctl.sock", *args, check=False)
    return out.returncode, (out.stdout + out.stderr).rstrip()


def show(lines, indent="        "):
    for line in lines.splitlines():
        print(indent + line)


def fulcrum_new_flows():
    """New flows per backend name, from the data plane's own counters (the stats segment)."""
    ids = {str(b["id"]): b["name"] for v in e2e.ctl_json("status")["vips"] if v["name"] == "web"
           for b in v["backends"]}
    counters = e2e.stats().get("backends", {})
    return {ids[i]: c["new_flows"] for i, c in counters.items() if i in ids}


def spread_table(before, after, logs, total):
    say("BACKEND     FULCRUM NEW FLOWS  NGINX ACCESS LOG  SHARE")
    for b in BACKENDS:
        flows = after.get(b, 0) - before.get(b, 0)
        served = logs.get(NAMES[b], 0)
        say("%-11s %-18d %-17d %.1f%%" % (b, flows, served, 100.0 * served / max(total, 1)))


def main():
    start = time.monotonic()
    print("Fulcrum demo: client -> router -> fulcrumd (DPDK, af_packet vdev) -> 3 nginx backends")
    print("(IPIP-encapsulated; the backends answer the client directly). Namespaces %s-*." % e2e.TB)
    e2e.tb("down", check=False)
    e2e.tb("up", "3")
    e2e.tb("start-fulcrumd")
    e2e.GATEWAY_MAC[0] = e2e.tb("router-mac").stdout.strip()
    config_path = e2e.write_config(e2e.config())
    e2e.tb("start-ctl", config_path, "--metrics", "off", "--stats-interval", "200ms")
    e2e.E2E.wait_healthy()

    step(1, "3000 new HTTP connections from the client to VIP %s:80" % e2e.VIP)
    e2e.reset_logs()
    before = fulcrum_new_flows()
    result = e2e.load("new", e2e.URL, "--connections", "3000", "--concurrency", "16")
    after = fulcrum_new_flows()
    logs = e2e.backend_counts()
    spread_table(before, after, logs, result["ok"])
    say("%d answered, %d failed, %.0f connections/s" %
        (result["ok"], result["failed"], result["ok"] / result["seconds"]))
    check(result["failed"] == 0 and all(abs(logs.get(NAMES[b], 0) - 1000) <= 100 for b in BACKENDS),
          "every connection answered, every backend within 10% of a third")
    time.sleep(0.5)
    say("fulcrumctl status (rates over the last 2 s):")
    show("\n".join(line for line in ctl_text("status")[1].splitlines()
                   if line.startswith(("VIP", "  BACKEND", "  10.", "alerts"))))

    step(2, "A backend fails: nginx on %s is stopped under load (150 new connections/s)" % BACKENDS[1])
    proc = e2e.load("new", e2e.URL, "--duration", "7", "--rate", "150", "--concurrency", "8",
                    background=True)
    time.sleep(1.5)
    e2e.tb("stop-nginx", "2")
    stopped = time.monotonic()
    e2e.E2E.wait_healthy(expect=[BACKENDS[0], BACKENDS[2]], timeout=10)
    detected = time.monotonic() - stopped
    result = e2e.finish(proc)
    last_failure = max([f[0] for f in result["failures"]], default=None)
    late = [s for s in result["successes"] if s[0] > 1.5 + detected + 0.5]
    say("health check marked it down %.1f s after the stop (interval 500 ms, fall 2)" % detected)
    say("%d of %d connections failed, all before the check caught it (last at %s s); after it, "
        "%d connections, %d to %s" % (result["failed"], result["ok"] + result["failed"],
                                      last_failure, len(late),
                                      sum(1 for s in late if s[1] == "b2"), BACKENDS[1]))
    check(all(f[0] < 1.5 + detected + 0.3 for f in result["failures"]) and
          not any(s[1] == "b2" for s in late), "no failure and no connection to it once detected")
    e2e.tb("start-nginx", "2")
    e2e.E2E.wait_healthy()
    back = e2e.load("new", e2e.URL, "--connections", "600", "--concurrency", "8")
    say("nginx restarted: 600 new connections spread %s" % dict(sorted(back["by_backend"].items())))
    check(back["failed"] == 0 and back["by_backend"].get("b2", 0) > 120, "its share came back")

    step(3, "Drain: fulcrumctl backend drain web %s" % BACKENDS[2])
    keep = e2e.load("keepalive", e2e.URL, "--connections", "30", "--duration", "4", background=True)
    time.sleep(1.5)
    say(ctl_text("backend", "drain", "web", BACKENDS[2])[1])
    fresh = e2e.load("new", e2e.URL, "--connections", "300", "--concurrency", "8")
    kept = e2e.finish(keep)
    say(ctl_text("backend", "undrain", "web", BACKENDS[2])[1])
    on_drained = [c for c in kept["connections"] if c["backends"] == ["b3"]]
    broken = [c for c in kept["connections"] if c["failures"] or len(c["backends"]) != 1]
    say("300 new connections while drained: %s" % dict(sorted(fresh["by_backend"].items())))
    say("%d keep-alive connections on %s kept being served (%d requests), %d broke" %
        (len(on_drained), BACKENDS[2], sum(c["requests"] for c in on_drained), len(broken)))
    check(fresh["by_backend"].get("b3", 0) == 0 and fresh["failed"] == 0 and not broken,
          "new connections avoided it, established ones stayed")

    step(4, "A broken config is refused before it reaches the data plane")
    gen = e2e.generation()
    bad = e2e.config(weights=[1, 0, 1]).replace('"health_check"', '"helth_check"')
    code, text = ctl_text("apply", e2e.write_config(bad, "broken.yaml"))
    show(text)
    check(code == 1 and e2e.generation() == gen,
          "exit %d, still generation %d: nothing was published" % (code, gen))

    step(5, "The incident: weight 100 on %s (capacity 80 connections/s), 1 on the others" %
         BACKENDS[0])
    incident = json.loads(e2e.config(weights=[100, 1, 1]))
    incident["vips"][0]["backends"][0]["capacity_cps"] = 80
    incident["vips"][0]["guards"] = {"max_backend_share": 0.5}
    path = e2e.write_config(json.dumps(incident, indent=1), "incident.yaml")
    code, text = ctl_text("plan", path)
    say("fulcrumctl plan incident.yaml (exit %d):" % code)
    show("\n".join(line for line in text.splitlines() if "FAIL" in line or "REFUSED" in line))
    check(code == 3, "plan refuses it")
    proc = e2e.load("new", e2e.URL, "--duration", "9", "--rate", "200", "--concurrency", "8",
                    background=True)
    time.sleep(1.5)
    say("forced anyway: fulcrumctl apply incident.yaml --force --watch 8s")
    t0 = time.monotonic()
    code, text = ctl_text("apply", path, "--force", "--watch", "8s")
    took = time.monotonic() - t0
    result = e2e.finish(proc)
    show(text.splitlines()[-1] if text else "")
    say("rolled back %.1f s after the apply; %d of %d connections failed" %
        (took, result["failed"], result["ok"] + result["failed"]))
    check(code == 6 and result["failed"] == 0, "the overload was seen and undone automatically")

    step(6, "One-command rollback: a fourth backend is added by mistake, then undone")
    e2e.tb("add-backend", "4")
    code, text = ctl_text("apply", e2e.write_config(e2e.config(backends=BACKENDS + ["10.10.2.14"]),
                                                    "four.yaml"))
    say(text.splitlines()[-1])
    code, text = ctl_text("rollback")
    say("fulcrumctl rollback: " + text.splitlines()[-1])
    e2e.E2E.wait_healthy(expect=BACKENDS)
    result = e2e.load("new", e2e.URL, "--connections", "300", "--concurrency", "8")
    say("300 new connections: %s" % dict(sorted(result["by_backend"].items())))
    check(code == 0 and result["failed"] == 0 and "b4" not in result["by_backend"],
          "back to the three backends")
    say("fulcrumctl history --limit 4:")
    show(ctl_text("history", "--limit", "4")[1])

    e2e.tb("down", check=False)
    print("\n%s in %.0f s. The whole test suite: scripts/test" %
          ("All shown as expected" if not failed_checks else
           "%d step(s) NOT as expected" % len(failed_checks), time.monotonic() - start))
    return 1 if failed_checks else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        e2e.tb("down", check=False)
