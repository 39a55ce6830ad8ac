#!/usr/bin/env python3
"""Splits a Frame Streams file into N files of consecutive data frames (each with the original's
START and STOP control frames), for N senders replaying one capture at once.

    usage: split-capture.py IN.fstrm N OUT_PREFIX    (writes OUT_PREFIX.0.fstrm ... OUT_PREFIX.N-1.fstrm)
"""
import struct, sys

path, parts, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path, "rb") as f:
    data = f.read()
offset, start, stop, frames = 0, None, None, []
while offset + 4 <= len(data):
    (length,) = struct.unpack_from(">I", data, offset)
    if length == 0:
        (control,) = struct.unpack_from(">I", data, offset + 4)
        frame = data[offset:offset + 8 + control]
        (kind,) = struct.unpack_from(">I", frame, 8)
        if kind == 2:  # START
            start = frame
        elif kind == 3:  # STOP
            stop = frame
        offset += 8 + control
    else:
        frames.append(data[offset:offset + 4 + length])
        offset += 4 + length
if start is None or not frames:
    sys.exit(f"{path}: no START control frame or no data frames")
stop = stop or struct.pack(">III", 0, 4, 3)
each = -(-len(frames) // parts)
for part in range(parts):
    with open(f"{prefix}.{part}.fstrm", "wb") as out:
        out.write(start)
        out.write(b"".join(frames[part * each:(part + 1) * each]))
        out.write(stop)
print(len(frames))
