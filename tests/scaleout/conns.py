#!/usr/bin/python3
"""Keep-alive HTTP connections driven from stdin, run inside the client namespace.

  conns.py URL N
      opens N connections and sends one request on each, then prints one JSON line: per
      connection [source port, backend or null, error or null] (nginx answers "bN").
      Each line "again" on stdin sends one more request on every connection and prints the same
      kind of line; "quit" (or end of input) closes them all.
"""
import concurrent.futures
import http.client
import json
import sys
from urllib.parse import urlparse


def request(conn):
    try:
        conn.request("GET", "/", headers={"Connection": "keep-alive"})
        resp = conn.getresponse()
        body = resp.read().decode().strip()
        if resp.status != 200:
            return None, "HTTP %d" % resp.status
        return body, None
    except Exception as e:  # any failure is a result to report, not a crash
        return None, "%s: %s" % (type(e).__name__, e)


def main():
    u = urlparse(sys.argv[1])
    n = int(sys.argv[2])
    conns, ports = [], []
    for _ in range(n):
        c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=3)
        try:
            c.connect()
            ports.append(c.sock.getsockname()[1])
        except OSError:
            ports.append(None)
        conns.append(c)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=64)

    def round_():
        results = list(pool.map(request, conns))
        print(json.dumps([[p, b, e] for p, (b, e) in zip(ports, results)]), flush=True)

    round_()
    for line in sys.stdin:
        if line.strip() == "again":
            round_()
        else:
            break
    for c in conns:
        c.close()


if __name__ == "__main__":
    main()
