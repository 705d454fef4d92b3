"""What the control-plane process tests share: a `fulcrumctl serve` of their own (unique shm
prefix, socket, state directory and ports, all removed when the test ends, also when it fails),
configs, the fulcrumctl client, loopback HTTP/TCP backends, and the data plane.

The data plane is FakeDataplane (tests/controlplane/fake_dataplane.cc): it copies, validates and
acknowledges snapshots exactly as fulcrumd does (the same ConfigReader) and writes the stats
segment the way fulcrumd's lcores will (each synthetic flow's backend is
table[HashToSlot(FlowHash(tuple, key), size)]). To run a scenario against the real data plane,
give RealDataplane the same four methods (start, traffic, stop, flows): fulcrumd on net_ring or
net_pcap ports, with a packet generator for traffic(), and tcpdump-read output for flows().
"""

import http.server
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
import urllib.request

FULCRUMCTL = os.environ.get("FULCRUMCTL", "")
FAKE_DATAPLANE = os.environ.get("FAKE_DATAPLANE", "")

HASH_KEY = "0123456789abcdef0123456789abcdef"
_counter = [0]


def unique(name):
    _counter[0] += 1
    return f"{name}-{os.getpid()}-{_counter[0]}"


def config(vips, dataplane=None, watch=None):
    """A config as YAML text (JSON is YAML), with a valid dataplane section by default."""
    dp = {"source_ipv4": "10.10.3.2", "gateway_mac": "02:00:00:00:03:01", "hash_key": HASH_KEY}
    dp.update(dataplane or {})
    doc = {"dataplane": dp, "vips": vips}
    if watch is not None:
        doc["watch"] = watch
    return json.dumps(doc, indent=1) + "\n"


def vip(name, address="10.10.0.100", port=80, backends=(), **fields):
    v = {"name": name, "address": address, "port": port, "backends": list(backends)}
    v.update(fields)
    return v


def backend(address, **fields):
    b = {"address": address}
    b.update(fields)
    return b


class Result:
    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err
        self.json = None
        # --json output: progress lines (one compact object each), then the result.
        self.progress = []
        rest = []
        for line in out.splitlines():
            if line.startswith('{"progress":'):
                self.progress.append(json.loads(line)["progress"])
            else:
                rest.append(line)
        try:
            self.json = json.loads("\n".join(rest)) if "".join(rest).strip() else None
        except json.JSONDecodeError:
            pass

    @property
    def data(self):
        return (self.json or {}).get("data", {})

    def __repr__(self):
        return f"rc={self.rc}\nstdout:\n{self.out}\nstderr:\n{self.err}"


def wait_for(predicate, timeout=15.0, interval=0.05, what="condition"):
    """Polls `predicate` until it returns something true; returns that value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class ControlPlane:
    """One `fulcrumctl serve` with everything of its own; cleaned up with the test."""

    def __init__(self, test, name):
        self.test = test
        self.dir = tempfile.mkdtemp(prefix=f"fulcrum-cp-{name}-")
        os.chmod(self.dir, 0o755)  # other users reach the socket only through its own mode
        self.prefix = unique(f"fcp-{name}")
        self.socket = os.path.join(self.dir, "ctl.sock")
        self.state = os.path.join(self.dir, "state")
        self.proc = None
        self.logs = []
        self.dataplane = None
        test.addCleanup(self.cleanup)

    def write(self, text, name="config.yaml"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def serve(self, config_path=None, args=(), env=None, stats_interval="100ms", wait=True):
        log = open(os.path.join(self.dir, f"serve-{len(self.logs)}.log"), "w")
        self.logs.append(log.name)
        cmd = [FULCRUMCTL, "--socket", self.socket, "serve", "--state-dir", self.state,
               "--shm-prefix", self.prefix, "--metrics", "127.0.0.1:0",
               "--stats-interval", stats_interval]
        if config_path:
            cmd += ["--config", config_path]
        cmd += list(args)
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=full_env)
        log.close()  # the child has its own descriptor
        if wait:
            wait_for(lambda: self.proc.poll() is not None or self.ping(), timeout=20,
                     what="fulcrumctl serve to answer")
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.log()}")
        return self.proc

    def log(self):
        out = ""
        for path in self.logs:
            with open(path) as f:
                out += f"--- {path}\n" + f.read()
        return out

    def ping(self):
        try:
            return self.ctl("status", timeout=5).rc == 0
        except subprocess.TimeoutExpired:
            return False

    def ctl(self, *args, json_out=True, as_user=None, env=None, timeout=60):
        cmd = [FULCRUMCTL, "--socket", self.socket]
        if json_out:
            cmd.append("--json")
        cmd += [str(a) for a in args]
        if as_user is not None:
            uid, gid = as_user
            cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"] + cmd
        full_env = dict(os.environ)
        full_env.update(env or {})
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)
        return Result(p.returncode, p.stdout, p.stderr)

    def status(self):
        r = self.ctl("status")
        assert r.rc == 0, r
        return r.data

    def vip_status(self, name):
        for v in self.status()["vips"]:
            if v["name"] == name:
                return v
        raise AssertionError(f"no VIP {name} in status")

    def generation(self):
        cp = self.status()["controlplane"]
        return cp.get("current", {}).get("generation", 0)

    def history(self):
        r = self.ctl("history", "--limit", "1000")
        assert r.rc == 0, r
        return r.data["generations"]

    def metrics(self):
        port = self.status()["controlplane"]["metrics_port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.headers.get("Content-Type"), r.read().decode()

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)
        code = self.proc.returncode if self.proc is not None else None
        self.proc = None
        return code

    def kill(self):
        return self.stop(signal.SIGKILL)

    def unlink_shm(self, which="config"):
        try:
            os.unlink(f"/dev/shm/{self.prefix}.{which}")
        except FileNotFoundError:
            pass

    def cleanup(self):
        if self.dataplane is not None:
            self.dataplane.stop()
        try:
            self.kill()
        except Exception:  # the test's own failure matters more than cleanup's
            pass
        for name in os.listdir("/dev/shm"):
            if name.startswith(self.prefix + "."):
                try:
                    os.unlink(os.path.join("/dev/shm", name))
                except OSError:
                    pass
        if os.environ.get("FULCRUM_KEEP_TEST_DIRS"):
            print(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


class FakeDataplane:
    """fulcrumd's shared-memory side, with synthetic traffic (see the module docstring)."""

    def __init__(self, cp, lcores=2):
        self.cp = cp
        self.lcores = lcores
        self.control = os.path.join(cp.dir, "dataplane-control.json")
        self.proc = None
        self.state = {"rate": {}, "drops_pps": 0, "reject": False, "packets_per_flow": 10}
        self._write()
        cp.dataplane = self

    def _write(self):
        tmp = self.control + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f)
        os.rename(tmp, self.control)

    def start(self):
        log = open(os.path.join(self.cp.dir, "dataplane.log"), "a")
        self.proc = subprocess.Popen(
            [FAKE_DATAPLANE, "--shm-prefix", self.cp.prefix, "--control", self.control,
             "--lcores", str(self.lcores)], stdout=log, stderr=log)
        log.close()
        return self

    def traffic(self, rate=None, drops_pps=None, reject=None):
        """New flows per second by VIP name; drops per second; reject new snapshots."""
        if rate is not None:
            self.state["rate"] = rate
        if drops_pps is not None:
            self.state["drops_pps"] = drops_pps
        if reject is not None:
            self.state["reject"] = reject
        self._write()
        time.sleep(0.15)  # the data plane re-reads its control file every 100 ms

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def flows(self, n, seed=1):
        """n random flows per VIP with the backend the data plane picks for each."""
        p = subprocess.run([FAKE_DATAPLANE, "--shm-prefix", self.cp.prefix, "--dump-flows",
                            str(n), "--seed", str(seed)], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 0, p.stderr
        return [json.loads(line) for line in p.stdout.splitlines()]


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class HttpBackend:
    """A real HTTP server on a loopback address whose answer the test controls: 'ok' (200),
    'fail' (503), 'slow' (answers after `slow_s`), 'flap' (alternates 200 and 503 per
    request); stop() closes its socket (connection refused), start() opens it again."""

    def __init__(self, test, host):
        self.host = host
        self.port = free_port(host)
        self.mode = "ok"
        self.slow_s = 2.0
        self.requests = 0
        self._flip = False
        self._lock = threading.Lock()
        self.server = None
        test.addCleanup(self.stop)
        self.start()

    def start(self):
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with owner._lock:
                    owner.requests += 1
                    mode = owner.mode
                    if mode == "flap":
                        owner._flip = not owner._flip
                        mode = "ok" if owner._flip else "fail"
                if mode == "slow":
                    time.sleep(owner.slow_s)
                code = 200 if mode in ("ok", "slow") else 503
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the prober gave up (timeout) and reset the connection

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server((self.host, self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class TcpBackend:
    """A listening TCP socket on a loopback address (the kernel completes the handshake; that is
    all a tcp check needs); stop() closes it."""

    def __init__(self, test, host):
        self.host = host
        self.port = free_port(host)
        self.sock = None
        test.addCleanup(self.stop)
        self.start()

    def start(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.host, self.port))
        self.sock.listen(128)
        sock = self.sock

        def accept():  # keeps the accept queue from filling with probes' connections
            while True:
                try:
                    conn, _ = sock.accept()
                    conn.close()
                except OSError:
                    return

        threading.Thread(target=accept, daemon=True).start()

    def stop(self):
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
            self.sock = None


def backend_status(vip_status, name):
    for b in vip_status["backends"]:
        if b["name"] == name:
            return b
    raise AssertionError(f"no backend {name} in {vip_status['name']}")
