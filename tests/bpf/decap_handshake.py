#!/usr/bin/python3
"""Sends an encapsulated TCP SYN to the VIP for each encapsulation Fulcrum uses and waits for the
SYN-ACK, which must come from the VIP directly (not encapsulated). Run in the load balancer's
namespace by decap_netns_test.sh.

  decap_handshake.py IFACE SRC_MAC DST_MAC SPORT_BASE [--expect-none] [CASE ...]

Each run needs its own SPORT_BASE: the backend retransmits the SYN-ACKs of earlier runs, which
nothing acknowledges, and those must not count as answers.

Prints one line per case; exits 1 if any case got no (or, with --expect-none, any) SYN-ACK.
"""
import sys
import time

from scapy.all import IP, TCP, UDP, AsyncSniffer, Ether, IPv6, sendp

LB4, BACKEND4, LB6, BACKEND6 = "192.0.2.1", "192.0.2.2", "2001:db8:1::1", "2001:db8:1::2"
CLIENT4, VIP4, CLIENT6, VIP6 = "198.51.100.7", "203.0.113.10", "2001:db8:c::7", "2001:db8:f::10"
GUE_PORT, SERVICE_PORT = 6080, 8080


def gue():
    return UDP(sport=0xC123, dport=GUE_PORT, chksum=0)  # as the data plane sends it


CASES = {  # name: (outer headers, inner family)
    "4in4": (lambda: IP(src=LB4, dst=BACKEND4, flags="DF"), 4),
    "6in6": (lambda: IPv6(src=LB6, dst=BACKEND6), 6),
    "4in6": (lambda: IPv6(src=LB6, dst=BACKEND6), 4),
    "gue4_inner4": (lambda: IP(src=LB4, dst=BACKEND4, flags="DF") / gue(), 4),
    "gue4_inner6": (lambda: IP(src=LB4, dst=BACKEND4, flags="DF") / gue(), 6),
    "gue6_inner4": (lambda: IPv6(src=LB6, dst=BACKEND6) / gue(), 4),
    "gue6_inner6": (lambda: IPv6(src=LB6, dst=BACKEND6) / gue(), 6),
}


def main():
    iface, src_mac, dst_mac, sport_base = sys.argv[1:5]
    rest = sys.argv[5:]
    expect_none = "--expect-none" in rest
    names = [a for a in rest if not a.startswith("--")] or list(CASES)
    failed = 0
    for i, name in enumerate(names):
        outer, family = CASES[name]
        sport = int(sport_base) + i
        client, vip, ip = (CLIENT4, VIP4, IP) if family == 4 else (CLIENT6, VIP6, IPv6)
        syn = ip(src=client, dst=vip) / TCP(sport=sport, dport=SERVICE_PORT, flags="S", seq=1000)

        def is_reply(p, sport=sport, vip=vip, client=client, ip=ip):
            # Direct server return: the first IP header is the VIP's reply itself.
            return (ip in p and TCP in p and p[ip].src == vip and p[ip].dst == client and
                    p[TCP].sport == SERVICE_PORT and p[TCP].dport == sport and
                    p[TCP].flags & 0x12 == 0x12)

        sniffer = AsyncSniffer(iface=iface, lfilter=is_reply, count=1, timeout=3)
        sniffer.start()
        time.sleep(0.3)  # the sniffer's socket must be open before the reply can come
        sendp(Ether(src=src_mac, dst=dst_mac) / outer() / syn, iface=iface, verbose=False)
        sniffer.join()
        got = bool(sniffer.results)
        ok = got != expect_none
        print(f"{name}: {'SYN-ACK from the VIP' if got else 'no SYN-ACK'}"
              f"{'' if ok else '  <-- FAIL'}")
        failed += not ok
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
