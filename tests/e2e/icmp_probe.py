#!/usr/bin/python3
"""Inside the client namespace: open a TCP connection to VIP:80, learn which backend serves it,
then send the ICMP frag-needed a router on the client's side would send about the backend's
replies (which come from the VIP). Prints JSON: the backend and the client port.
  icmp_probe.py VIP MTU"""
import json
import socket
import sys

from scapy.all import ICMP, IP, TCP, send  # noqa: E402

vip, mtu = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((vip, 80), timeout=3)
s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
reply = s.recv(4096).decode()
backend = reply.strip().split("\n")[-1].strip()
client, port = s.getsockname()
# The error quotes the packet it is about: the backend's reply, VIP:80 -> client:port.
quoted = IP(src=vip, dst=client, flags="DF", len=1500) / TCP(sport=80, dport=port, flags="A")
send(IP(src=client, dst=vip) / ICMP(type=3, code=4, nexthopmtu=mtu) / bytes(quoted)[:28],
     verbose=False)
print(json.dumps({"backend": backend, "port": port}))
s.close()
