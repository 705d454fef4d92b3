"""What the namespace suites (e2e, scaleout) and the demo share: running a command, running one
inside a test-bed namespace, and waiting for a process the bed's shell started to be gone."""
import subprocess
import time


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
