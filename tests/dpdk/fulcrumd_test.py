#!/usr/bin/python3
"""fulcrumd as a process: start-up failures, --help, pcap replay through the real pipeline,
a restart that picks up the published snapshot alone, clean shutdown on SIGTERM, and the TAP
exception path to the kernel (root).

Paths come from meson: FULCRUMD, TEST_WRITER, STATS_DUMP. Every test uses its own shm prefix,
DPDK file prefix and temporary directory, and removes them."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from scapy.all import ARP, ICMP, IP, TCP, Ether, Raw, rdpcap, wrpcap

FULCRUMD = os.environ.get("FULCRUMD", "build/dataplane/fulcrumd")
TEST_WRITER = os.environ.get("TEST_WRITER", "build/tests/tools/fulcrum-test-writer")
STATS_DUMP = os.environ.get("STATS_DUMP", "build/tests/tools/fulcrum-stats-dump")
VIP = "10.10.0.100"
BACKENDS = ["10.10.2.11", "10.10.2.12", "10.10.2.13"]

_counter = [0]


def snapshot():
    return {"settings": {"source_v4": "10.10.3.2"},
            "vips": [{"name": "web", "address": VIP, "port": 80, "id": 0,
                      "backends": [{"address": b, "id": i} for i, b in enumerate(BACKENDS)]}]}


class Instance:
    """A temporary directory, an shm prefix and a DPDK file prefix of one test."""

    def __init__(self):
        _counter[0] += 1
        self.name = "fulcrumd-test-%d-%d" % (os.getpid(), _counter[0])
        self.dir = tempfile.mkdtemp(prefix=self.name)
        self.snapshot = os.path.join(self.dir, "snapshot.json")
        with open(self.snapshot, "w") as f:
            json.dump(snapshot(), f)

    def eal(self, lcores="0,1", *vdevs):
        args = ["-l", lcores, "--no-huge", "-m", "256", "--no-pci", "--no-shconf",
                "--file-prefix=" + self.name, "--log-level=error"]
        return args + ["--vdev=" + v for v in vdevs]

    def fulcrumd(self, eal, opts, **kw):
        return subprocess.run([FULCRUMD] + eal + ["--", "--shm-prefix", self.name] + opts,
                              capture_output=True, text=True, timeout=60, **kw)

    def writer(self, timeout_ms=20000):
        return subprocess.Popen([TEST_WRITER, "--shm-prefix", self.name, "--snapshot",
                                 self.snapshot, "--ack-timeout-ms", str(timeout_ms)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stats(self):
        out = subprocess.run([STATS_DUMP, "--shm-prefix", self.name], capture_output=True,
                             text=True, check=True)
        return json.loads(out.stdout)

    def path(self, name):
        return os.path.join(self.dir, name)

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree("/var/run/dpdk/" + self.name, ignore_errors=True)
        for seg in ("config", "stats"):
            try:
                os.unlink("/dev/shm/%s.%s" % (self.name, seg))
            except FileNotFoundError:
                pass


class FulcrumdTest(unittest.TestCase):
    def setUp(self):
        self.i = Instance()
        self.addCleanup(self.i.close)

    def test_help_lists_every_option_with_its_default(self):
        out = subprocess.run([FULCRUMD, "--", "--help"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0)
        for option, default in [("--shm-prefix", "fulcrum"), ("--tap", "fulcrum0"),
                                ("--flow-capacity", "1048576"), ("--burst", "64"),
                                ("--rx-desc", "1024"), ("--exit-when-idle", "-1"),
                                ("--idle-sleep-us", "0")]:
            self.assertIn(option, out.stdout)
            self.assertIn(default, out.stdout)
        for flag in ("--no-tap", "--promiscuous", "--wait-for-snapshot"):
            self.assertIn(flag, out.stdout)

    def test_start_up_failures_exit_1_with_a_clear_message(self):
        cases = [
            (["--definitely-not-an-eal-flag"], [], "EAL initialisation failed"),
            (self.i.eal("0,1"), ["--no-tap"], "no DPDK ports"),
            (self.i.eal("0", "net_null0"), ["--no-tap"], "at least two lcores"),
            (self.i.eal("0,1", "net_null0"), ["--no-tap", "--burst", "0"], "--burst"),
            (self.i.eal("0,1", "net_null0"), ["--no-tap", "--bogus"], "--bogus"),
        ]
        for eal, opts, message in cases:
            with self.subTest(message=message):
                out = self.i.fulcrumd(eal, opts)
                self.assertEqual(out.returncode, 1, out.stderr)
                self.assertIn(message, out.stderr)

    def test_a_config_segment_of_another_build_is_refused_at_start(self):
        with open("/dev/shm/%s.config" % self.i.name, "wb") as f:
            f.write(b"\0" * 4096)  # another size: not this build's layout
        out = self.i.fulcrumd(self.i.eal("0,1", "net_null0"), ["--no-tap"])
        self.assertEqual(out.returncode, 1)
        self.assertIn("config segment", out.stderr)
        self.assertIn("another build", out.stderr)

    def replay(self, pkts, opts=(), writer_first=True):
        wrpcap(self.i.path("in.pcap"), pkts)
        pcap = "net_pcap0,rx_pcap=%s,tx_pcap=%s" % (self.i.path("in.pcap"),
                                                   self.i.path("out.pcap"))
        writer = self.i.writer() if writer_first else None
        time.sleep(0.2)
        out = self.i.fulcrumd(self.i.eal("0,1", pcap),
                              ["--no-tap", "--exit-when-idle", "300"] + list(opts))
        if writer is not None:
            _, err = writer.communicate(timeout=30)
            self.assertEqual(writer.returncode, 0, err)
        self.assertEqual(out.returncode, 0, out.stderr)
        return rdpcap(self.i.path("out.pcap")), out

    def test_a_pcap_replays_through_the_pipeline_and_spreads_evenly(self):
        syns = [Ether(dst="02:00:00:00:00:aa") / IP(src="198.51.%d.%d" % (n // 250, n % 250 + 1),
                                                    dst=VIP, flags="DF") /
                TCP(sport=1024 + n, dport=80, flags="S") for n in range(3000)]
        other = [Ether() / ARP(pdst="10.10.3.2"),
                 Ether() / IP(src="198.51.100.1", dst="10.10.3.2") / TCP(dport=22),
                 Ether(bytes(Ether() / IP(src="198.51.100.1", dst=VIP, len=60) / TCP())[:40])]
        out, _ = self.replay(syns + other)
        self.assertEqual(len(out), 3000)
        per_backend = {}
        for sent, got in zip(syns, out):
            self.assertIn(got[IP].dst, BACKENDS)
            self.assertEqual(got[IP].src, "10.10.3.2")
            self.assertEqual(got[IP].proto, 4)
            self.assertEqual(bytes(got[IP].payload), bytes(sent[IP]),
                             "the inner packet is the client's, byte for byte")
            per_backend[got[IP].dst] = per_backend.get(got[IP].dst, 0) + 1
        for backend, n in per_backend.items():
            self.assertAlmostEqual(n, 1000, delta=100, msg=backend)
        stats = self.i.stats()
        self.assertEqual(stats["generation_in_use"], 1)
        self.assertEqual(stats["counters"]["rx_packets"], 3003)
        self.assertEqual(stats["counters"]["tx_packets"], 3000)
        self.assertEqual(stats["counters"]["new_flows"], 3000)
        self.assertEqual(stats["drops"]["kernel_full"], 2, "no TAP: counted, not forwarded")
        self.assertEqual(stats["drops"]["malformed"], 1)
        self.assertEqual(stats["parse"]["ipv4_total_length_beyond_frame"], 1)
        self.assertEqual(sum(b["new_flows"] for b in stats["backends"].values()), 3000)
        self.assertEqual(stats["ports"][0]["rx_packets"], 3003)

    def test_a_restarted_data_plane_uses_the_published_snapshot_without_the_writer(self):
        writer = self.i.writer(timeout_ms=200)
        _, err = writer.communicate(timeout=10)
        self.assertEqual(writer.returncode, 4)  # nobody acknowledged: the writer is gone now
        self.assertIn("no data plane is attached", err)
        pkt = Ether() / IP(src="198.51.100.9", dst=VIP) / TCP(sport=999, dport=80, flags="S")
        out, log = self.replay([pkt], writer_first=False)
        self.assertEqual(len(out), 1)
        self.assertIn(out[0][IP].dst, BACKENDS)
        self.assertIn("generation 1 in use", log.stderr)

    def test_sigterm_stops_it_cleanly(self):
        writer = self.i.writer()
        proc = subprocess.Popen([FULCRUMD] + self.i.eal("0,1", "net_null0") +
                                ["--", "--shm-prefix", self.i.name, "--no-tap"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, err = writer.communicate(timeout=30)
        self.assertEqual(writer.returncode, 0, err)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("fulcrumd: stopped", err)
        self.assertGreater(self.i.stats()["counters"]["rx_packets"], 0, "net_null delivered")

    def test_dpdk_telemetry_shows_the_counters(self):
        import socket
        writer = self.i.writer()
        proc = subprocess.Popen([FULCRUMD] + self.i.eal("0,1", "net_null0") +
                                ["--", "--shm-prefix", self.i.name, "--no-tap"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        _, err = writer.communicate(timeout=30)
        self.assertEqual(writer.returncode, 0, err)
        path = "/var/run/dpdk/%s/dpdk_telemetry.v2" % self.i.name
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.connect(path)
        json.loads(sock.recv(16384))  # the greeting
        sock.send(b"/fulcrum/stats")
        stats = json.loads(sock.recv(65536))["/fulcrum/stats"]
        sock.send(b"/fulcrum/vip,0")
        vip = json.loads(sock.recv(65536))["/fulcrum/vip"]
        sock.close()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
        self.assertEqual(stats["generation_in_use"], 1)
        self.assertGreater(stats["rx_packets"], 0)
        self.assertIn("drop_malformed", stats)
        self.assertIn("new_flows", vip)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to create a TAP interface")
    def test_the_kernel_answers_arp_and_ping_through_the_tap(self):
        tap = "ftap%d" % (os.getpid() % 100000)
        mac = "02:00:00:00:00:c1"
        host, peer = "10.199.0.1", "10.199.0.2"
        arp = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mac, psrc=peer, pdst=host)
        wrpcap(self.i.path("in.pcap"), [arp])
        pcap = "net_pcap0,rx_pcap=%s,tx_pcap=%s" % (self.i.path("in.pcap"),
                                                   self.i.path("out.pcap"))
        proc = subprocess.Popen([FULCRUMD] + self.i.eal("0,1", pcap) +
                                ["--", "--shm-prefix", self.i.name, "--tap", tap,
                                 "--exit-when-idle", "1500"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        for _ in range(100):
            if subprocess.run(["ip", "link", "show", tap], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        subprocess.run(["ip", "addr", "add", host + "/24", "dev", tap], check=True)
        subprocess.run(["ip", "link", "set", tap, "up"], check=True)
        writer = self.i.writer()  # the snapshot lets RX start (--exit-when-idle waits for one)
        _, err = writer.communicate(timeout=30)
        self.assertEqual(writer.returncode, 0, err)
        _, err = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, 0, err)
        replies = [p for p in rdpcap(self.i.path("out.pcap")) if ARP in p and p[ARP].op == 2]
        self.assertTrue(replies, "the kernel's ARP reply left through the port")
        self.assertEqual(replies[0][ARP].psrc, host)
        self.assertEqual(replies[0][ARP].pdst, peer)
        stats = self.i.stats()
        self.assertGreaterEqual(stats["counters"]["to_kernel"], 1)
        self.assertGreaterEqual(stats["counters"]["from_kernel"], 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
