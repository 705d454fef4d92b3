#!/usr/bin/python3
"""A valid snapshot in snapshot_fuzz.cc's input layout (header, 2 count bytes, VIP and backend
records, table entries), so the fuzzer starts from inputs validation accepts. Layouts:
dataplane/shm/abi.h. Usage: snapshot_seed.py OUT_FILE"""
import struct
import sys

settings = (bytes(range(16)) + bytes([10, 10, 3, 2]) + bytes(16) + bytes([2, 0, 0, 0, 3, 1]) +
            bytes([0, 64]) + struct.pack("<HH", 6080, 1500) + bytes([1, 0, 0, 0]) +
            struct.pack("<IIII", 300, 15, 30, 100) + bytes(12))
assert len(settings) == 80
header = struct.pack("<QQIIIIQ", 1, 0, 1, 2, 251, 0, 0) + settings + bytes(8)
assert len(header) == 128
vip = (bytes([10, 0, 0, 1]) + bytes(12) + struct.pack("<HBBBBH", 80, 6, 4, 0, 0, 0) +
       struct.pack("<IIIIQ", 0, 2, 0, 251, 0) + b"web".ljust(16, b"\0"))
assert len(vip) == 64
backends = b"".join(bytes([10, 0, 1, i + 1]) + bytes(12) + struct.pack("<BBHIH", 4, 0, i, 1, 0) +
                    bytes(6) for i in range(2))
table = b"".join(struct.pack("<H", i % 2) for i in range(251))
with open(sys.argv[1], "wb") as f:
    f.write(header + bytes([1, 2]) + vip + backends + table)
