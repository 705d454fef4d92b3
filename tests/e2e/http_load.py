#!/usr/bin/python3
"""HTTP load for the e2e suite, run inside the client namespace. The backends answer with their
name ("b1\\n"), so every response says which backend served it.

  http_load.py new URL --connections N [--concurrency C] [--duration S] [--rate R]
      N new connections (or as many as fit in S seconds at about R per second), one request
      each, Connection: close. Prints JSON: ok, failed, by_backend, failures [[t, error]],
      successes [[t, backend]] (t in seconds since the start).
  http_load.py keepalive URL --connections C --duration S [--interval I]
      C connections kept open for S seconds, a request every I seconds on each. Prints JSON:
      per connection the backends it saw and its failures.

A failure is anything but a complete 200 response: refused, reset, timed out, short."""
import argparse
import http.client
import json
import signal
import sys
import threading
import time
from urllib.parse import urlparse


STOP = threading.Event()  # SIGTERM or SIGINT: finish the current requests, report, exit


def one_request(conn):
    conn.request("GET", "/", headers={"Connection": "keep-alive"})
    resp = conn.getresponse()
    body = resp.read().decode().strip()
    if resp.status != 200:
        raise RuntimeError("HTTP %d" % resp.status)
    return body


def new_connections(url, total, concurrency, duration, rate):
    u = urlparse(url)
    start = time.monotonic()
    lock = threading.Lock()
    state = {"next": 0, "ok": 0, "failed": 0, "by_backend": {}, "failures": [], "successes": []}

    def worker():
        while True:
            with lock:
                n = state["next"]
                if ((total and n >= total) or STOP.is_set() or
                        (duration and time.monotonic() - start >= duration)):
                    return
                state["next"] = n + 1
            if rate:
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    STOP.wait(delay)
            t = time.monotonic() - start
            try:
                conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=2)
                body = one_request(conn)
                conn.close()
                with lock:
                    state["ok"] += 1
                    state["by_backend"][body] = state["by_backend"].get(body, 0) + 1
                    state["successes"].append([round(t, 3), body])
            except Exception as e:  # noqa: BLE001 - every failure counts, whatever it is
                with lock:
                    state["failed"] += 1
                    state["failures"].append([round(t, 3), type(e).__name__ + ": " + str(e)])

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for th in threads:
        th.start()
    join(threads)
    del state["next"]
    state["seconds"] = round(time.monotonic() - start, 3)
    return state


def keepalive(url, connections, duration, interval):
    u = urlparse(url)
    start = time.monotonic()
    results = [None] * connections

    def worker(i):
        seen, failures, requests = [], [], 0
        conn = None
        while time.monotonic() - start < duration and not STOP.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=2)
                body = one_request(conn)
                requests += 1
                if not seen or seen[-1] != body:
                    seen.append(body)
            except Exception as e:  # noqa: BLE001
                failures.append([round(time.monotonic() - start, 3), type(e).__name__ + ": " + str(e)])
                conn = None
            time.sleep(interval)
        results[i] = {"backends": seen, "failures": failures, "requests": requests}

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for th in threads:
        th.start()
    join(threads)
    return {"connections": results}


def join(threads):
    # A timed join, so that the main thread runs the signal handler while it waits.
    while any(th.is_alive() for th in threads):
        for th in threads:
            th.join(0.1)


def main():
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: STOP.set())
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["new", "keepalive"])
    p.add_argument("url")
    p.add_argument("--connections", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--duration", type=float, default=0)
    p.add_argument("--rate", type=float, default=0)
    p.add_argument("--interval", type=float, default=0.05)
    a = p.parse_args()
    if a.mode == "new":
        out = new_connections(a.url, a.connections, a.concurrency, a.duration, a.rate)
    else:
        out = keepalive(a.url, a.connections, a.duration, a.interval)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
