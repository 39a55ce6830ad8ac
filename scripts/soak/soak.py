#!/usr/bin/env python3
"""Soak and abuse checks against the built binary (scripts/soak.sh runs this).

Loopback and temp unix sockets only; every loop is bounded in count and time. Phases:
  flood    10,000 connection attempts in bursts against a cap of 100, while 50 steady senders
           stream: the process stays up, the steady senders lose no frame, every rejection counted.
  slow     silent, a byte a second (before and after the handshake), stopped mid-frame, READY
           without START: each closed by its timeout, counted by reason, no slot held.
  churn    20,000 short sessions (sequential, then 8 in parallel): open fds and RSS back at the
           baseline afterwards.
  fdlimit  a second forwarder under `ulimit -n 256` flooded with 600 TCP connections: accept
           errors logged at a bounded rate, no busy loop, and it serves again once the flood ends.
  kill9    a real Unbound sending dnstap is killed with SIGKILL mid-stream and restarted: the
           broken stream is counted, its whole frames kept, the new connection accepted.
  tls      a forwarder with mutual TLS and a cap of 40: 6 senders with client certificates stream
           while 1,700 hostile connections arrive (garbage before the handshake, TLS without a
           certificate, plain Frame Streams, ClientHellos that stop halfway, bursts past the cap):
           every hostile one refused or closed by the handshake timeout and counted, the senders
           lose no frame and are named by their certificates, no slot or fd held afterwards.
Prints the figures and exits non-zero if any check failed.
"""
import json
import os
import resource
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

CONTENT_TYPE = b"protobuf:dnstap.Dnstap"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
failures = []
figures = []


def check(condition, what):
    print(("  ok   " if condition else "  FAIL ") + what, flush=True)
    if not condition:
        failures.append(what)


def figure(name, value):
    figures.append((name, value))


# --- Frame Streams and dnstap bytes -------------------------------------------------------------

def control(kind, content_type=True):
    payload = struct.pack(">I", kind)
    if content_type:
        payload += struct.pack(">II", 1, len(CONTENT_TYPE)) + CONTENT_TYPE
    return struct.pack(">II", 0, len(payload)) + payload


READY, ACCEPT, START, STOP, FINISH = 4, 1, 2, 3, 5


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def dns_query(name, qid):
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack(">HHHHHH", qid & 0xFFFF, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(">HH", 1, 1)


def data_frame(identity, number):
    message = varint(1 << 3) + varint(5) + field(10, dns_query("q%d.soak.test" % number, number))
    dnstap = field(1, identity.encode()) + varint(15 << 3) + varint(1) + field(14, message)
    return struct.pack(">I", len(dnstap)) + dnstap


def read_exact(sock, count):
    data = b""
    while len(data) < count:
        more = sock.recv(count - len(data))
        if not more:
            return None
        data += more
    return data


def read_control(sock):
    """The type of the next control frame, or None at EOF or reset."""
    try:
        header = read_exact(sock, 8)
        if header is None:
            return None
        _, length = struct.unpack(">II", header)
        payload = read_exact(sock, length)
        return None if payload is None else struct.unpack(">I", payload[:4])[0]
    except (ConnectionResetError, BrokenPipeError, socket.timeout):
        return None


def connect_unix(path, timeout=30):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    return sock


def session(path, identity, frames, first=0):
    """A whole bidirectional session; True when FINISH came back."""
    with connect_unix(path) as sock:
        sock.sendall(control(READY))
        if read_control(sock) != ACCEPT:
            return False
        sock.sendall(control(START) + b"".join(data_frame(identity, first + i) for i in range(frames)) + control(STOP, False))
        return read_control(sock) == FINISH


# --- The forwarder under test ---------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Forwarder:
    def __init__(self, binary, work, name, args, fd_limit=None):
        self.work, self.name = work, name
        self.socket = os.path.join(work, name + ".sock")
        self.admin_port = free_port()
        self.events_path = os.path.join(work, name + ".events")
        self.log_path = os.path.join(work, name + ".log")
        command = [binary, "-unix-socket", self.socket, "-admin-listen", "127.0.0.1:%d" % self.admin_port,
                   "-stats-interval", "0"] + args
        if fd_limit:
            command = ["bash", "-c", 'ulimit -n %d && exec "$@"' % fd_limit, "forwarder"] + command
        self.process = subprocess.Popen(command, stdout=open(self.events_path, "wb"), stderr=open(self.log_path, "wb"))
        self.wait_for(lambda: self.stats() is not None and os.path.exists(self.socket), "the forwarder to listen", 60)

    def stats(self):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/stats" % self.admin_port, timeout=5) as reply:
                return json.load(reply)
        except OSError:
            return None

    def wait_for(self, condition, what, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit("the forwarder exited (%s) while waiting for %s; log: %s" % (self.process.returncode, what, self.log_path))
            try:
                if condition():
                    return
            except (TypeError, KeyError):  # the admin API did not answer (e.g. out of fds)
                pass
            time.sleep(0.05)
        raise SystemExit("timed out waiting for %s" % what)

    def wait_idle(self, out=None):
        """No connection open, and (given) `out` events written."""
        def done():
            stats = self.stats()
            return stats and stats["connections"]["active"] == 0 and (out is None or stats["events"]["out"] >= out)
        self.wait_for(done, "the connections to close and the events to be written", 120)

    def proc(self, what):
        pid = self.process.pid
        if what == "fds":
            return len(os.listdir("/proc/%d/fd" % pid))
        if what == "rss_mib":
            for line in open("/proc/%d/status" % pid):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        if what == "cpu_seconds":
            parts = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
            return (int(parts[11]) + int(parts[12])) / CLOCK_TICKS

    def settled_fds(self, expected=None):
        """The open fds once the admin API's own connection of the last /stats request is closed:
        that socket lingers a moment after the reply, so a count read right after a request can be
        one high. Waits (bounded) until the count is `expected`, or else until it holds still for
        half a second; a leaked descriptor stays and is still counted."""
        deadline = time.monotonic() + 10
        last, since = self.proc("fds"), time.monotonic()
        while time.monotonic() < deadline:
            if expected is not None and last == expected:
                return last
            time.sleep(0.05)
            now = self.proc("fds")
            if now != last:
                last, since = now, time.monotonic()
            elif expected is None and time.monotonic() - since >= 0.5:
                return last
        return last

    def log_lines(self, text):
        return [line for line in open(self.log_path, errors="replace") if text in line]

    def events_by_identity(self):
        counts = {}
        with open(self.events_path, "rb") as events:
            for line in events:
                identity = json.loads(line).get("identity", "")
                counts[identity] = counts.get(identity, 0) + 1
        return counts

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


# --- Phases ---------------------------------------------------------------------------------------

def flood(fwd):
    print("flood: 10,000 attempts in bursts of 200 against a cap of 100, 50 steady senders", flush=True)
    before = fwd.stats()
    flooding = threading.Event()
    flooding.set()
    sent = {}
    errors = []

    def steady(index):
        identity = "steady-%d" % index
        try:
            with connect_unix(fwd.socket) as sock:
                sock.sendall(control(READY))
                if read_control(sock) != ACCEPT:
                    errors.append(identity + ": no ACCEPT")
                    return
                sock.sendall(control(START))
                count = 0
                while flooding.is_set() or count < 200:
                    sock.sendall(b"".join(data_frame(identity, count + i) for i in range(5)))
                    count += 5
                    time.sleep(0.05)  # a steady 100 frames/s a sender, 5,000/s in all
                sock.sendall(control(STOP, False))
                if read_control(sock) != FINISH:
                    errors.append(identity + ": no FINISH")
                sent[identity] = count
        except OSError as error:
            errors.append("%s: %s" % (identity, error))

    steady_threads = [threading.Thread(target=steady, args=(i,)) for i in range(50)]
    for thread in steady_threads:
        thread.start()
    fwd.wait_for(lambda: fwd.stats()["connections"]["active"] >= 50, "the steady senders to connect", 60)

    accepted = rejected = connect_errors = 0
    for _ in range(50):
        burst = []
        for _ in range(200):
            try:
                burst.append(connect_unix(fwd.socket, timeout=30))
            except OSError:
                connect_errors += 1
        for sock in burst:
            try:
                sock.sendall(control(READY))
            except OSError:
                pass
        for sock in burst:
            if read_control(sock) == ACCEPT:
                accepted += 1
            else:
                rejected += 1
            sock.close()
    flooding.clear()
    for thread in steady_threads:
        thread.join()
    total_sent = sum(sent.values())
    fwd.wait_idle(out=before["events"]["out"] + total_sent)
    after = fwd.stats()
    counts = fwd.events_by_identity()
    lost = sum(max(0, n - counts.get(identity, 0)) for identity, n in sent.items())
    server_rejected = after["connections"]["rejected"] - before["connections"]["rejected"]
    check(fwd.process.poll() is None, "the forwarder is still running")
    check(not errors and len(sent) == 50, "all 50 steady senders completed their sessions (%s)" % (errors[:3] or "no errors"))
    check(lost == 0, "steady senders: %d frames sent, %d lost" % (total_sent, lost))
    check(accepted + rejected + connect_errors == 10000, "every attempt accounted: %d accepted, %d rejected, %d connect errors" % (accepted, rejected, connect_errors))
    check(server_rejected == rejected, "the forwarder counted %d rejections, the clients saw %d" % (server_rejected, rejected))
    lines = fwd.log_lines("connection rejected: at the connection cap")
    check(0 < len(lines) < rejected, "rejections logged at a bounded rate: %d lines for %d rejections" % (len(lines), rejected))
    figure("flood: attempts / rejected (counted) / steady frames lost", "10000 / %d (%d) / %d of %d" % (rejected, server_rejected, lost, total_sent))


def slow_peers(fwd):
    print("slow peers: silent, a byte a second (before/after the handshake), cut mid-frame, no START", flush=True)
    before = fwd.stats()["connections"]["closed"]
    results = {}

    def peer(name, setup, trickle=None):
        started = time.monotonic()
        try:
            with connect_unix(fwd.socket, timeout=30) as sock:
                setup(sock)
                if trickle:
                    sock.settimeout(1)
                    for byte in trickle:
                        try:
                            sock.sendall(bytes([byte]))
                            if sock.recv(1) == b"":
                                break
                        except socket.timeout:
                            continue
                        except OSError:
                            break
                    sock.settimeout(30)
                while True:
                    if not sock.recv(4096):
                        break
        except OSError:
            pass
        results[name] = time.monotonic() - started

    def handshake(sock):
        sock.sendall(control(READY))
        read_control(sock)
        sock.sendall(control(START))

    peers = {
        "silent": (lambda s: None, None),
        "trickle-before-handshake": (lambda s: None, control(READY)),
        "trickle-after-handshake": (handshake, struct.pack(">I", 1000) + b"A" * 1000),
        "cut-mid-frame": (lambda s: (handshake(s), s.sendall(data_frame("cut", 1)[:20])), None),
        "ready-without-start": (lambda s: (s.sendall(control(READY)), read_control(s)), None),
    }
    threads = [threading.Thread(target=peer, args=(name,) + spec) for name, spec in peers.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    fwd.wait_idle()
    after = fwd.stats()["connections"]["closed"]
    delta = {reason: after[reason] - before.get(reason, 0) for reason in after}
    for name, seconds in sorted(results.items()):
        check(seconds < 15, "%s closed by the forwarder after %.1f s" % (name, seconds))
    check(len(results) == 5, "all five slow peers were closed")
    check(delta["handshake_timeout"] == 3, "3 closed by the handshake timeout (counted %d)" % delta["handshake_timeout"])
    check(delta["idle_timeout"] == 2, "2 closed by the idle timeout (counted %d)" % delta["idle_timeout"])
    figure("slow peers closed (handshake / idle timeout)", "%d / %d, slowest after %.1f s" % (delta["handshake_timeout"], delta["idle_timeout"], max(results.values())))


def churn(fwd):
    print("churn: 20,000 short sessions (10,000 one after another, 10,000 on 8 threads)", flush=True)
    for i in range(2000):  # warm-up: allocator and thread pools at their working size
        session(fwd.socket, "warm", 3, i * 3)
    fwd.wait_idle(out=fwd.stats()["events"]["queued"])
    out_before = fwd.stats()["events"]["out"]
    fds_before, rss_before = fwd.settled_fds(), fwd.proc("rss_mib")
    started = time.monotonic()
    ok = sum(session(fwd.socket, "churn-seq", 3, i * 3) for i in range(10000))
    results = []

    def worker(index):
        results.append(sum(session(fwd.socket, "churn-par-%d" % index, 3, i * 3) for i in range(1250)))
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ok += sum(results)
    seconds = time.monotonic() - started
    fwd.wait_idle(out=out_before + 60000)
    fds_after, rss_after = fwd.settled_fds(expected=fds_before), fwd.proc("rss_mib")
    check(ok == 20000, "%d of 20,000 sessions completed with FINISH (%.0f sessions/s)" % (ok, 20000 / seconds))
    check(fwd.stats()["events"]["out"] - out_before == 60000, "all 60,000 frames written")
    check(fds_after == fds_before, "open fds back at the baseline: %d before, %d after" % (fds_before, fds_after))
    check(rss_after - rss_before < 16, "RSS back near the baseline: %.1f MiB before, %.1f MiB after" % (rss_before, rss_after))
    figure("churn: 20,000 sessions, fds before/after", "%d / %d" % (fds_before, fds_after))
    figure("churn: RSS before/after (MiB)", "%.1f / %.1f" % (rss_before, rss_after))


def fd_limit(binary, work):
    print("fd limit: ulimit -n 256, 600 TCP connections held for 3 s", flush=True)
    port = free_port()
    fwd = Forwarder(binary, work, "fdlimit", ["-tcp-listen", "127.0.0.1:%d" % port, "-max-connections", "1000",
                                              "-handshake-timeout", "30s"], fd_limit=256)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    held = []
    for _ in range(600):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        held.append(sock)
    # The admin API cannot accept either while the process is out of fds: watch the log instead.
    fwd.wait_for(lambda: fwd.log_lines("cannot accept a connection"), "accept errors under the fd limit", 30)
    cpu_before = fwd.proc("cpu_seconds")
    time.sleep(3)  # a measuring window, not a synchronisation: CPU use while the flood is held
    cpu_percent = (fwd.proc("cpu_seconds") - cpu_before) / 3 * 100
    for sock in held:
        sock.close()
    fwd.wait_for(lambda: fwd.stats() is not None, "the admin API to answer again", 30)
    stats = fwd.stats()
    fwd.wait_idle()
    # Recovery: a whole session over TCP works again.
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(control(READY))
        accepted = read_control(sock) == ACCEPT
        sock.sendall(control(START) + data_frame("after-flood", 1) + control(STOP, False))
        finished = read_control(sock) == FINISH
    fwd.wait_idle(out=1)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    lines = fwd.log_lines("cannot accept a connection")
    check(fwd.process.poll() is None, "the forwarder under the fd limit is still running")
    check(stats["connections"]["accept_errors"] > 0, "accept errors counted: %d" % stats["connections"]["accept_errors"])
    check(0 < len(lines) <= 3, "accept errors logged at a bounded rate: %d lines" % len(lines))
    check(cpu_percent < 25, "no busy loop while out of fds: %.1f %% CPU" % cpu_percent)
    check(accepted and finished, "after the flood a new session is accepted and finished")
    status = fwd.stop()
    check(status == 0, "exit status %d after SIGTERM" % status)
    figure("fd limit 256: accept errors / log lines / CPU while flooded", "%d / %d / %.1f %%" % (stats["connections"]["accept_errors"], len(lines), cpu_percent))


def kill9(fwd, template, work):
    print("kill -9: a real Unbound killed mid-stream, then restarted", flush=True)
    zone = os.path.join(work, "soak.test.zone")
    with open(zone, "w") as f:
        f.write("$TTL 300\n@ IN SOA ns.soak.test. h.soak.test. 1 3600 600 86400 300\n@ IN NS ns\nns IN A 127.0.0.1\n")
        for i in range(500):
            f.write("h%d IN A 10.77.%d.%d\n" % (i, i // 250, i % 250 + 1))
    port = free_port()
    conf = os.path.join(work, "unbound.conf")
    text = open(template).read()
    for key, value in {"PORT": str(port), "DIRECTORY": work, "ZONE": "soak.test", "ZONEFILE": zone,
                       "SOCKET": fwd.socket, "IDENTITY": "soak-unbound"}.items():
        text = text.replace("{{%s}}" % key, value)
    open(conf, "w").write(text)

    def start():
        process = subprocess.Popen(["unbound", "-d", "-c", conf], stderr=open(os.path.join(work, "unbound.log"), "ab"))
        return process

    def ask(names):
        answered = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            for i, name in enumerate(names):
                try:
                    sock.sendto(dns_query(name, i), ("127.0.0.1", port))
                    sock.recvfrom(4096)
                    answered += 1
                except OSError:
                    pass
        return answered

    before = fwd.stats()
    unbound = start()
    fwd.wait_for(lambda: fwd.stats()["connections"]["accepted"] > before["connections"]["accepted"], "Unbound to connect", 30)
    ask(["h0.soak.test"] * 5)  # up and answering
    stop = threading.Event()
    asked = []

    def load():
        while not stop.is_set():
            asked.append(ask(["h%d.soak.test" % (len(asked) % 500)] * 20))
    loader = threading.Thread(target=load)
    loader.start()
    fwd.wait_for(lambda: fwd.stats()["frames"] - before["frames"] > 2000, "dnstap frames to flow", 60)
    unbound.kill()  # SIGKILL mid-stream
    unbound.wait()
    stop.set()
    loader.join()
    fwd.wait_for(lambda: fwd.stats()["connections"]["active"] == 0, "the broken stream to be noticed", 30)
    mid = fwd.stats()
    fwd.wait_idle(out=mid["events"]["queued"])
    mid = fwd.stats()
    broken = sum(mid["connections"]["closed"][r] - before["connections"]["closed"].get(r, 0) for r in ("peer_closed", "io_error"))
    frames = mid["frames"] - before["frames"]
    written = mid["events"]["out"] - before["events"]["out"]

    unbound = start()
    fwd.wait_for(lambda: fwd.stats()["connections"]["accepted"] > mid["connections"]["accepted"], "restarted Unbound to connect", 30)
    answered = ask(["h%d.soak.test" % i for i in range(100)])
    # Unbound sends its dnstap on a timer and drops what is queued when it stops: wait for the events
    # (a query and a response for each answer) before stopping it.
    fwd.wait_for(lambda: fwd.stats()["events"]["out"] >= mid["events"]["out"] + 2 * answered, "the restarted Unbound's events", 60)
    unbound.terminate()
    unbound.wait(timeout=30)
    fwd.wait_idle()
    after = fwd.stats()
    check(fwd.process.poll() is None, "the forwarder is still running")
    check(broken == 1, "the killed stream counted as one broken stream")
    check(written == frames and mid["decode_errors"]["protobuf"] == before["decode_errors"]["protobuf"],
          "every whole frame before the kill was kept: %d frames, %d events, no decode error" % (frames, written))
    check(after["connections"]["accepted"] == mid["connections"]["accepted"] + 1, "the restarted Unbound's connection was accepted")
    check(answered == 100 and after["events"]["out"] - mid["events"]["out"] == 200,
          "after the restart: %d answers, %d events" % (answered, after["events"]["out"] - mid["events"]["out"]))
    figure("kill -9 Unbound: frames before the kill / events kept / reconnected", "%d / %d / %s" % (frames, written, "yes" if after["connections"]["accepted"] > mid["connections"]["accepted"] else "no"))


def make_certificates(work):
    """A CA, a server certificate for 127.0.0.1 and a sender's certificate, with openssl."""
    def openssl(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True)
    d = os.path.join(work, "tls")
    os.makedirs(d)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", d + "/ca.key", "-out", d + "/ca.crt", "-days", "2", "-subj", "/CN=soak CA")
    for name, ext in [("server", "subjectAltName=IP:127.0.0.1"), ("sender", "subjectAltName=DNS:soak-sender.example")]:
        openssl("req", "-new", *ec, "-keyout", "%s/%s.key" % (d, name), "-out", "%s/%s.csr" % (d, name), "-subj", "/CN=" + name)
        with open("%s/%s.ext" % (d, name), "w") as f:
            f.write(ext + "\n")
        openssl("x509", "-req", "-in", "%s/%s.csr" % (d, name), "-CA", d + "/ca.crt", "-CAkey", d + "/ca.key",
                "-CAcreateserial", "-out", "%s/%s.crt" % (d, name), "-days", "2", "-extfile", "%s/%s.ext" % (d, name))
    return d


def tls_abuse(binary, work):
    print("tls: mutual TLS, a cap of 40; 6 senders stream while 1,700 hostile connections arrive", flush=True)
    certs = make_certificates(work)
    port = free_port()
    fwd = Forwarder(binary, work, "tls", [
        "-tcp-listen", "127.0.0.1:%d" % port, "-tls-cert-file", certs + "/server.crt", "-tls-key-file", certs + "/server.key",
        "-tls-client-ca-file", certs + "/ca.crt", "-max-connections", "40", "-handshake-timeout", "2s", "-buffer-size", "10000"])
    try:
        fds_before = fwd.settled_fds()

        def context(with_certificate):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(certs + "/ca.crt")
            ctx.check_hostname = False
            if with_certificate:
                ctx.load_cert_chain(certs + "/sender.crt", certs + "/sender.key")
            return ctx

        def tcp():
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            return sock

        frames, senders = 3000, 6
        delivered = []

        def sender(index):
            ctx = context(True)
            for attempt in range(200):  # the cap can be full of hostile connections: retry
                try:
                    with ctx.wrap_socket(tcp()) as sock:
                        sock.sendall(control(READY))
                        if read_control(sock) != ACCEPT:
                            raise OSError("no ACCEPT")
                        sock.sendall(control(START))
                        for first in range(0, frames, 500):
                            sock.sendall(b"".join(data_frame("tls-%d" % index, first + i) for i in range(500)))
                        sock.sendall(control(STOP, False))
                        if read_control(sock) == FINISH:
                            delivered.append(index)
                            return
                except (OSError, ssl.SSLError):
                    time.sleep(0.05)

        hostile_counts = {"garbage": 0, "no-certificate": 0, "plain": 0, "half-hello": 0, "silent": 0}
        lock = threading.Lock()

        def hostile(kind, count):
            ctx = context(False)
            for _ in range(count):
                try:
                    sock = tcp()
                    if kind == "garbage":
                        sock.sendall(os.urandom(300))
                    elif kind == "no-certificate":
                        try:
                            with ctx.wrap_socket(sock) as tls_sock:
                                tls_sock.sendall(control(READY))
                                read_control(tls_sock)
                        except (OSError, ssl.SSLError):
                            pass
                    elif kind == "plain":
                        sock.sendall(control(READY))
                    try:
                        while sock.recv(4096):
                            pass
                    except OSError:
                        pass
                    sock.close()
                except OSError:
                    pass
                with lock:
                    hostile_counts[kind] += 1

        def burst(kind, first_bytes):
            # Connections opened at once and held (silent, or stopped halfway through a ClientHello)
            # until the forwarder closes them: those inside the cap by the handshake timeout.
            for _ in range(4):
                held = []
                for _ in range(100):
                    try:
                        sock = tcp()
                        if first_bytes:
                            sock.sendall(first_bytes)
                        held.append(sock)
                    except OSError:
                        pass
                for sock in held:
                    try:
                        sock.recv(1)
                    except OSError:
                        pass
                    sock.close()
                with lock:
                    hostile_counts[kind] += len(held)

        before = fwd.stats()["connections"]
        threads = [threading.Thread(target=sender, args=(i,)) for i in range(senders)]
        threads += [threading.Thread(target=hostile, args=(kind, 300)) for kind in ("garbage", "no-certificate", "plain")]
        half_hello = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03])
        threads += [threading.Thread(target=burst, args=("silent", None)), threading.Thread(target=burst, args=("half-hello", half_hello))]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        seconds = time.monotonic() - started
        fwd.wait_idle(out=senders * frames)
        after = fwd.stats()["connections"]
        hostile_total = sum(hostile_counts.values())
        refused = after["rejected"] - before["rejected"]
        timeouts = after["closed"]["handshake_timeout"] - before["closed"].get("handshake_timeout", 0)
        by_reason = {k: after["rejected_by_reason"][k] - before["rejected_by_reason"].get(k, 0) for k in after["rejected_by_reason"]}
        check(fwd.process.poll() is None, "the TLS forwarder stayed up")
        check(sorted(delivered) == list(range(senders)), "all %d mTLS senders finished their sessions" % senders)
        events = fwd.events_by_identity()
        check(all(events.get("tls-%d" % i, 0) >= frames for i in range(senders)),
              "every sender's %d frames written: %s" % (frames, sorted(events.items())))
        named = set()
        with open(fwd.events_path, "rb") as lines:
            for line in lines:
                named.add(json.loads(line).get("sender"))
        check(named == {"soak-sender.example"}, "every event's sender is the certificate's name: %s" % sorted(map(str, named)))
        check(refused + timeouts >= hostile_total,
              "every hostile connection refused or timed out: %d refused + %d timeouts for %d hostile" % (refused, timeouts, hostile_total))
        # In the flood, the cap may be full of held connections the whole time, and then every
        # hostile one is refused at the cap (a fresh CI machine showed exactly that). With the cap
        # free, each kind is refused for its own reason: a TLS client without a certificate, and a
        # plain Frame Streams client (random garbage can look like the start of a record and wait
        # for the handshake timeout instead).
        def reasons():
            return fwd.stats()["connections"]["rejected_by_reason"]
        free_before = reasons()
        for kind in ("no-certificate", "plain"):
            hostile(kind, 2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            free = {k: v - free_before.get(k, 0) for k, v in reasons().items()}
            if free["no_client_certificate"] >= 2 and free["tls_handshake_failed"] >= 2:
                break
            time.sleep(0.05)
        check(free["no_client_certificate"] == 2 and free["tls_handshake_failed"] == 2 and free["connection_cap"] == 0,
              "with the cap free, refused by reason: %s (in the flood: %s)" % (
                  {k: v for k, v in free.items() if v}, {k: v for k, v in by_reason.items() if v}))
        check(after["active"] == 0, "no slot held afterwards")
        fds_after = fwd.settled_fds(expected=fds_before)
        check(fds_after == fds_before, "open fds back at the baseline: %d before, %d after" % (fds_before, fds_after))
        figure("tls: hostile connections (%.0f s)" % seconds, "%d: %s" % (hostile_total, hostile_counts))
        figure("tls: refused by reason / handshake timeouts", "%s / %d" % (by_reason, timeouts))
        figure("tls: RSS after (MiB)", "%.1f" % fwd.proc("rss_mib"))
        check(fwd.stop() == 0, "the TLS forwarder exits 0 after SIGTERM")
    finally:
        if fwd.process.poll() is None:
            fwd.process.kill()


def main():
    binary, template = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="dtf-soak.")
    started = time.monotonic()
    fwd = Forwarder(binary, work, "main", ["-max-connections", "100", "-handshake-timeout", "2s", "-idle-timeout", "3s",
                                           "-buffer-size", "10000", "-batch-size", "500"])
    rss_start = fwd.proc("rss_mib")
    peak = rss_start
    try:
        flood(fwd)
        peak = max(peak, fwd.proc("rss_mib"))
        slow_peers(fwd)
        churn(fwd)
        peak = max(peak, fwd.proc("rss_mib"))
        kill9(fwd, template, work)
        fd_limit(binary, work)
        tls_abuse(binary, work)
        cpu_before = fwd.proc("cpu_seconds")
        time.sleep(5)  # a measuring window: CPU while idle
        idle_cpu = (fwd.proc("cpu_seconds") - cpu_before) / 5 * 100
        check(idle_cpu < 2, "idle CPU %.2f %%" % idle_cpu)
        figure("idle CPU after the soak", "%.2f %%" % idle_cpu)
        peak_status = [line for line in open("/proc/%d/status" % fwd.process.pid) if line.startswith("VmHWM:")]
        figure("main forwarder RSS at start / peak (VmHWM)", "%.1f / %.1f MiB" % (rss_start, int(peak_status[0].split()[1]) / 1024))
        status = fwd.stop()
        check(status == 0, "the main forwarder exits 0 after SIGTERM")
    finally:
        if fwd.process.poll() is None:
            fwd.process.kill()
    print("\nsoak figures (%.0f s):" % (time.monotonic() - started))
    for name, value in figures:
        print("  %-62s %s" % (name, value))
    print("\n%d checks failed" % len(failures) if failures else "\nsoak: all checks passed")
    if failures:
        print("logs in " + work)
        sys.exit(1)
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
