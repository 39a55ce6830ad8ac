#!/usr/bin/env python3
"""Prints the number of data frames in a Frame Streams file."""
import struct, sys

with open(sys.argv[1], "rb") as f:
    data = f.read()
offset, frames = 0, 0
while offset + 4 <= len(data):
    (length,) = struct.unpack_from(">I", data, offset)
    if length == 0:
        (control,) = struct.unpack_from(">I", data, offset + 4)
        offset += 8 + control
    else:
        frames += 1
        offset += 4 + length
print(frames)
