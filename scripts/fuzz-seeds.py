#!/usr/bin/env python3
"""Makes the fuzz seed corpora in Fuzz/corpus/<target>/ from a real capture and hand-made cases.

    scripts/bench/make-capture.sh /tmp/seed.fstrm 1      # a real Unbound under dnsperf load
    scripts/fuzz-seeds.py /tmp/seed.fstrm Fuzz/corpus

From the capture it takes a few frames of each kind (client query and response; A, AAAA, CNAME
chains, NXDOMAIN); the hand-made cases are the edges: handshakes, oversized and truncated frames,
compression loops, EDNS, invalid UTF-8, unknown enum values. Small on purpose: libFuzzer grows it.
"""
import hashlib
import os
import struct
import sys

CONTENT_TYPE = b"protobuf:dnstap.Dnstap"


def read_frames(path):
    """Data frames of a Frame Streams file (fstrm_capture's output)."""
    data = open(path, "rb").read()
    frames, pos = [], 0
    while pos + 4 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        pos += 4
        if length == 0:
            (clen,) = struct.unpack_from(">I", data, pos)
            pos += 4 + clen
            continue
        frames.append(data[pos:pos + length])
        pos += length
    return frames


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_varint(buf, pos):
    value, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def fields(buf):
    """(field number, wire type, value) of a protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 2:
            length, pos = read_varint(buf, pos)
            value = buf[pos:pos + length]
            pos += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value = buf[pos:pos + size]
            pos += size
        else:
            raise ValueError("wire type %d" % wire)
        yield number, wire, value


def message_of(frame):
    for number, _, value in fields(frame):
        if number == 14:
            return dict((n, v) for n, _, v in fields(value))
    return {}


def control(kind, content_type=True):
    payload = struct.pack(">I", kind)
    if content_type:
        payload += struct.pack(">II", 1, len(CONTENT_TYPE)) + CONTENT_TYPE
    return struct.pack(">II", 0, len(payload)) + payload


def data_frame(payload):
    return struct.pack(">I", len(payload)) + payload


def name(text):
    return b"".join(bytes([len(label)]) + label.encode() for label in text.split(".") if label) + b"\0"


def pick(frames):
    """A few frames of each kind: message type x answer shape."""
    chosen, seen = [], set()
    for frame in frames:
        msg = message_of(frame)
        dns = msg.get(14) or msg.get(10) or b""
        if len(dns) < 12:
            continue
        ancount = struct.unpack_from(">H", dns, 6)[0]
        rcode = dns[3] & 0xF
        qtype = dns[-4:-2] if ancount == 0 else b""
        shape = (msg.get(1), min(ancount, 3), rcode, qtype, b"\xc0" in dns[12:])
        if shape in seen:
            continue
        seen.add(shape)
        chosen.append(frame)
    return chosen[:24]


def write(directory, blob):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, hashlib.sha1(blob).hexdigest()[:16]), "wb") as f:
        f.write(blob)


def main():
    capture, out = sys.argv[1], sys.argv[2]
    frames = pick(read_frames(capture))
    dns_messages = []
    for frame in frames:
        msg = message_of(frame)
        dns_messages += [m for m in (msg.get(10), msg.get(14)) if m]

    # dnstap: real frames, and hand-made ones (unknown enum values, empty, a bare header).
    for frame in frames:
        write(f"{out}/dnstap", frame)
    unknown_type = varint(15 << 3) + varint(1) + varint(14 << 3 | 2) + varint(4) + varint(1 << 3) + varint(200) + varint(2 << 3) + varint(9)
    for blob in (unknown_type, b"", varint(15 << 3) + varint(1), b"\x72\x05\x08\x05\x10\x01"):
        write(f"{out}/dnstap", blob)

    # dns-parser and resolution-map: the DNS messages, and hostile hand-made ones.
    header = struct.pack(">HHHHHH", 0x1234, 0x8180, 1, 2, 0, 1)
    question = name("a.example.test") + struct.pack(">HH", 1, 1)
    loop = struct.pack(">HHHHHH", 1, 0x8180, 1, 1, 0, 0) + b"\xc0\x0c" + struct.pack(">HH", 1, 1)
    forward = struct.pack(">HHHHHH", 1, 0x8180, 1, 0, 0, 0) + b"\xc0\x20" + b"\0" * 24
    cname_loop = (header[:6] + struct.pack(">HHH", 2, 0, 0) + question
                  + b"\xc0\x0c" + struct.pack(">HHIH", 5, 1, 60, 2) + b"\xc0\x0c"
                  + b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([10, 0, 0, 1]))
    chain = (header[:6] + struct.pack(">HHH", 3, 0, 0) + name("WWW.Example.Test") + struct.pack(">HH", 28, 1)
             + b"\xc0\x0c" + struct.pack(">HHI", 5, 1, 300) + struct.pack(">H", len(name("cdn.example.test"))) + name("cdn.example.test")
             + name("cdn.example.test") + struct.pack(">HHIH", 28, 1, 30, 16) + bytes(range(16))
             + name("other.test") + struct.pack(">HHIH", 1, 1, 30, 4) + bytes([192, 0, 2, 1]))
    opt = (header[:6] + struct.pack(">HHH", 1, 0, 1) + question + b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 0, 4)
           + bytes([127, 0, 0, 1]) + b"\0" + struct.pack(">HHIH", 41, 1232, 0x01008000, 4) + struct.pack(">HH", 10, 0))
    hostile = [loop, forward, cname_loop, chain, opt, header[:11], header + b"\x3f" + b"a" * 63,
               header[:4] + b"\xff\xff\xff\xff\xff\xff\xff\xff" + question]
    for blob in dns_messages + hostile:
        write(f"{out}/dns-parser", blob)
    for blob in [m for m in dns_messages if m[2] & 0x80] + [cname_loop, chain, opt]:
        write(f"{out}/resolution-map", blob)

    # json-encoder: field values split by 0xFF (see DnstapFuzzing.runFields).
    sep = b"\xff"
    for dns in dns_messages[:6]:
        write(f"{out}/json-encoder", sep.join([b"\x06\x01\x01", bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]),
                                                b"\xcf\x08", b"\x35", b"\x65\x5f\x00\x00", b"\x00\x01\x00\x00",
                                                b"\x65\x5f\x00\x01", b"\x00\x02\x00\x00", name("example.test"), b"", dns,
                                                b"", b"", b"resolver-1", b"unbound 1.17.1", b""]))
    for weird in (b"\"\\\n\r\t\x00\x01\x7f", b"\xc3\x28\xe2\x82\xf0\x9f\x98", "ünïcødé ✓ 😀".encode(), b"\xed\xa0\x80"):
        write(f"{out}/json-encoder", sep.join([b"\xc8\x09\x0a\x05", weird[:3], weird, weird, weird, b"", b"", b"", b"", weird, weird, weird,
                                                b"RPZ", weird, weird, weird, weird]))

    # frame-streams: two bytes (limit and chunking), then a stream.
    body = b"".join(data_frame(f) for f in frames[:3])
    streams = [
        control(4) + control(2) + body + control(3, False),           # bidirectional
        control(2) + body + control(3, False),                        # unidirectional
        control(2) + data_frame(b"x" * 200) + body,                   # oversized data frame
        control(4) + control(4),                                      # READY twice
        control(2, False),                                            # START without content type
        body,                                                         # data before START
        control(2) + body[:-7],                                       # cut mid-frame
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",                          # garbage
        struct.pack(">II", 0, 0xFFFF) + b"\0" * 8,                    # control frame over the limit
        control(2) + struct.pack(">II", 0, 8) + struct.pack(">II", 9, 0),  # unknown control type
    ]
    for index, stream in enumerate(streams):
        write(f"{out}/frame-streams", bytes([0x20 + index, 0x07 * index]) + stream)


if __name__ == "__main__":
    main()
