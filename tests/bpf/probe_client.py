#!/usr/bin/python3
"""A health probe as the control plane's checker makes one: a TCP socket marked with SO_MARK,
connected to VIP:PORT, a request, an answer. Exits 0 when the answer is "ok".

  probe_client.py MARK ADDRESS PORT
"""
import socket
import struct
import sys

SO_MARK = 36  # <asm-generic/socket.h>


def main():
    mark, address, port = int(sys.argv[1], 0), sys.argv[2], int(sys.argv[3])
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, SO_MARK, struct.pack("I", mark))  # u32, may exceed int
        s.settimeout(3)
        s.connect((address, port))
        s.sendall(b"health?\n")
        answer = s.recv(16)
    print(f"probe {address}:{port} mark {mark:#x}: {answer!r}")
    sys.exit(0 if answer == b"ok\n" else 1)


if __name__ == "__main__":
    main()
