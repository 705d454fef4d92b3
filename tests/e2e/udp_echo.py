#!/usr/bin/python3
"""A UDP service on a backend: answers every datagram with the backend's name, from the VIP.
  udp_echo.py NAME ADDRESS PORT"""
import socket
import sys

name, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
family = socket.AF_INET6 if ":" in address else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.bind((address, port))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(name.encode() + b" " + data, peer)
