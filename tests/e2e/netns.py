"""What the namespace suites (e2e, scaleout) and the demo share: running a command, running one
inside a test-bed namespace, HTTP load from the client, and waiting for a process the bed's
shell started to be gone."""
import json
import os
import subprocess
import time

HTTP_LOAD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "http_load.py")


class Bed:
    """Commands for the test bed whose namespaces are named PREFIX-NAME, run with ENV."""

    def __init__(self, prefix, env):
        self.prefix = prefix
        self.env = env

    def sh(self, *args, check=True, timeout=120, **kw):
        out = subprocess.run(list(args), env=self.env, check=False, timeout=timeout, text=True,
                             capture_output=True, **kw)
        if check and out.returncode != 0:
            raise AssertionError("%s: exit %d\n%s%s" % (" ".join(args), out.returncode,
                                                        out.stdout, out.stderr))
        return out

    def ns(self, name, *args, **kw):
        return self.sh("ip", "netns", "exec", "%s-%s" % (self.prefix, name), *args, **kw)

    def load(self, *args, background=False):
        """http_load.py in the client namespace: its JSON report, or the running process (for
        finish()) when `background`."""
        cmd = ["ip", "netns", "exec", self.prefix + "-c", "/usr/bin/python3", HTTP_LOAD, *args]
        if background:
            return subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        return json.loads(self.sh(*cmd, timeout=300).stdout)


def finish(proc):
    """The report of a load started in the background."""
    out, err = proc.communicate(timeout=300)
    if proc.returncode != 0:
        raise AssertionError("load failed: %s" % err)
    return json.loads(out)


def read_pid(path):
    with open(path) as f:
        return int(f.read())


def wait_gone(pid, timeout=5):
    """The process was started by a shell that has exited: it is not our child, and it may
    linger as a zombie (PID 1 of a container need not reap); gone means no longer running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.02)
    raise AssertionError("pid %d did not die" % pid)
