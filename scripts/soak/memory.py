#!/usr/bin/env python3
"""RSS over millions of messages: the check that a leak of a few bytes per write cannot hide from.

Replays a capture again and again in one Frame Streams session into the forwarder, whose output
is stdout (to /dev/null) or HEC (a local receiver that answers every request), samples the
forwarder's RSS against the frames it has taken (from its /stats), and checks that after warm-up
RSS stays within a bound. Loopback and temp unix sockets only; bounded in messages and time.

  usage: memory.py BINARY CAPTURE --messages N [--output stdout|hec|spool] [--receiver HEC_RECEIVER]
                   [--tolerance-mib 3] [--max-rss-mib 120] [--timeout S] [--input dnstap|pdns]
Prints the samples and exits non-zero if RSS grew past the tolerance after warm-up (the first
quarter of the messages), or if not every message came through.

--input pdns: PowerDNS protobuf logging (-pdns-listen) instead of dnstap; CAPTURE is then a directory
of PBDNSMessage files (Fuzz/corpus/pdns: real Recursor and dnsdist messages), sent over one TCP
connection again and again, each with its 16-bit length.

--output spool: the durable HEC buffer. HEC is down (nothing listens on its port) while the
messages go into the spool; the forwarder is killed with SIGKILL, started again with HEC up, and
must deliver every message; RSS must stay under --max-rss-mib while spooling and while draining.
"""
import argparse
import json
import os
import socket
import threading
import subprocess
import sys
import tempfile
import time
import urllib.request


def count_frames(path):
    """Data frames in a Frame Streams file (its control frames skipped)."""
    count = 0
    with open(path, "rb") as capture:
        data = capture.read()
    position = 0
    while position + 4 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        position += 4
        if length == 0:
            control = int.from_bytes(data[position:position + 4], "big")
            position += 4 + control
        else:
            count += 1
            position += length
    return count


def pdns_messages(directory):
    """The PowerDNS messages of a directory, each framed with its 16-bit big-endian length."""
    framed = []
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as message:
            data = message.read()
        if 0 < len(data) < 65536:
            framed.append(len(data).to_bytes(2, "big") + data)
    return framed


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def send_pdns(port, framed, repeats):
    """One connection; the messages `repeats` times, in chunks of whole messages."""
    chunk = b"".join(framed) * max(1, 4096 // len(framed))
    per_chunk = len(framed) * max(1, 4096 // len(framed))
    connection = socket.create_connection(("127.0.0.1", port))
    left = len(framed) * repeats
    while left > 0:
        if left >= per_chunk:
            connection.sendall(chunk)
            left -= per_chunk
        else:
            whole, rest = divmod(left, len(framed))
            connection.sendall(b"".join(framed) * whole + b"".join(framed[:rest]))
            left = 0
    connection.close()


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("capture")
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--output", choices=["stdout", "hec", "spool"], default="stdout")
    parser.add_argument("--max-rss-mib", type=float, default=120)
    # The buffer's high-water mark is memory the process keeps (glibc does not give it back): RSS
    # steps up the first time the buffer holds more events than ever before, up to -buffer-size
    # (about 6 MiB of events at the default 10000). A smaller buffer keeps those steps small next
    # to the tolerance, so what is left to see is growth that does not stop: a leak.
    parser.add_argument("--buffer-size", type=int, default=2000)
    parser.add_argument("--receiver")
    parser.add_argument("--tolerance-mib", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--input", choices=["dnstap", "pdns"], default="dnstap")
    # More forwarder flags, e.g. --flag=-transactions.
    parser.add_argument("--flag", action="append", default=[])
    args = parser.parse_args()

    if args.output == "spool":
        return spool(args)
    framed = pdns_messages(args.capture) if args.input == "pdns" else None
    per_file = len(framed) if framed else count_frames(args.capture)
    repeats = max(1, -(-args.messages // per_file))
    total = per_file * repeats
    work = tempfile.mkdtemp(prefix="dtf-memory.")
    socket_path = work + "/m.sock"
    pdns_port = free_port() if framed else None
    processes = []
    try:
        flags = ["-pdns-listen", "127.0.0.1:%d" % pdns_port] if framed else []
        flags += ["-unix-socket", socket_path, "-admin-listen", "127.0.0.1:0", "-stats-interval", "0", "-log-level", "info",
                 "-buffer-size", str(args.buffer_size)] + args.flag
        if args.output == "hec":
            # No --expect: a request retried after a lost reply is counted twice by the receiver
            # (at-least-once), so its count cannot say when everything arrived; /stats can.
            receiver = subprocess.Popen([args.receiver], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            processes.append(receiver)
            port = int(receiver.stdout.readline().strip().split("=")[1])
            flags += ["-output-type", "hec", "-hec-url", "http://127.0.0.1:%d/services/collector" % port, "-hec-token", "soak",
                      "-batch-size", str(min(1000, args.buffer_size // 4))]
        log = open(work + "/forwarder.log", "w")
        forwarder = subprocess.Popen([args.binary] + flags, stdout=subprocess.DEVNULL, stderr=log)
        processes.append(forwarder)
        admin = None
        deadline = time.monotonic() + 30
        while admin is None and time.monotonic() < deadline:
            text = open(work + "/forwarder.log").read()
            if "admin API listening" in text and os.path.exists(socket_path):
                line = [l for l in text.splitlines() if "admin API listening" in l][0]
                admin = line.split("address=")[1].split()[0].replace("[IPv4]", "").split("/")[-1]
            else:
                time.sleep(0.05)
        if admin is None:
            print("the forwarder did not start; log in " + work)
            return 1
        host, port = admin.rsplit(":", 1)

        def stats():
            with urllib.request.urlopen("http://%s:%s/stats" % (host, port), timeout=10) as reply:
                return json.load(reply)

        def frames():
            return stats()["frames"]

        started = time.monotonic()
        if framed:
            sender = threading.Thread(target=send_pdns, args=(pdns_port, framed, repeats), daemon=True)
            sender.start()
            sender_done = lambda: not sender.is_alive()
        else:
            command = ["fstrm_replay", "-t", "protobuf:dnstap.Dnstap", "-u", socket_path]
            for _ in range(repeats):
                command += ["-r", args.capture]
            sender = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            processes.append(sender)
            sender_done = lambda: sender.poll() is not None
        samples = []  # (frames, rss MiB)
        while time.monotonic() - started < args.timeout:
            done = sender_done()
            samples.append((frames(), rss_mib(forwarder.pid)))
            if done:
                break
            time.sleep(0.5)
        if framed:
            # The sender is done once its bytes are in the kernel; the forwarder may still be reading.
            deadline = time.monotonic() + 60
            while frames() < total and time.monotonic() < deadline:
                samples.append((frames(), rss_mib(forwarder.pid)))
                time.sleep(0.2)
        seconds = time.monotonic() - started
        taken = frames()
        if args.output == "hec":
            deadline = time.monotonic() + 120
            while stats()["events"]["out"] < total and time.monotonic() < deadline:
                time.sleep(0.2)
        forwarder.terminate()
        status = forwarder.wait(timeout=60)
        log.close()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()

    warm = [(f, r) for f, r in samples if f >= total / 4]
    print("%s%s (-buffer-size %d): %d messages (%d x %d) in %.1f s, %.0f msgs/s; exit %d"
          % (args.output, " from PowerDNS protobuf" if framed else "", args.buffer_size, taken, repeats, per_file, seconds, taken / seconds, status))
    step = max(1, len(samples) // int(os.environ.get("MEMORY_SAMPLES_SHOWN", "12")))
    print("  frames / RSS MiB: " + ", ".join("%.1fM %.1f" % (f / 1e6, r) for f, r in samples[::step] + samples[-1:]))
    failed = []
    if taken != total:
        failed.append("the forwarder took %d frames of %d" % (taken, total))
    if status != 0:
        failed.append("exit status %d after SIGTERM (log in %s)" % (status, work))
    if len(warm) < 4:
        failed.append("too few samples after warm-up (%d)" % len(warm))
    else:
        # The baseline is the median of the first samples after warm-up (one sample can catch a
        # request or a write in flight); the peak is the highest sample after it.
        baseline = sorted(r for _, r in warm[:5])[len(warm[:5]) // 2]
        peak = max(r for _, r in warm)
        growth = peak - baseline
        # Least-squares slope of RSS against frames after warm-up, in MiB per million messages.
        n = len(warm)
        mean_f = sum(f for f, _ in warm) / n
        mean_r = sum(r for _, r in warm) / n
        spread = sum((f - mean_f) ** 2 for f, _ in warm)
        slope = (sum((f - mean_f) * (r - mean_r) for f, r in warm) / spread * 1e6) if spread else 0.0
        print("  after warm-up: RSS %.1f -> peak %.1f MiB (+%.2f, tolerance %.1f); slope %.3f MiB per million messages"
              % (baseline, peak, growth, args.tolerance_mib, slope))
        if growth > args.tolerance_mib:
            failed.append("RSS grew %.2f MiB after warm-up" % growth)
    for what in failed:
        print("  FAIL " + what)
    if not failed:
        print("  ok   RSS flat")
        subprocess.run(["rm", "-rf", work])
    return 1 if failed else 0


def start_forwarder(binary, work, name, flags):
    """Starts the forwarder and waits for its admin address; returns (process, admin host:port, log path)."""
    log_path = "%s/%s.log" % (work, name)
    log = open(log_path, "w")
    process = subprocess.Popen([binary] + flags + ["-admin-listen", "127.0.0.1:0", "-stats-interval", "0"],
                               stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        text = open(log_path).read()
        if "admin API listening" in text and "listening for dnstap" in text:
            line = [l for l in text.splitlines() if "admin API listening" in l][0]
            return process, line.split("address=")[1].split()[0].replace("[IPv4]", "").split("/")[-1], log_path
        time.sleep(0.05)
    process.kill()
    raise SystemExit("the forwarder did not start; log in " + log_path)


def stats(admin):
    with urllib.request.urlopen("http://%s/stats" % admin, timeout=10) as reply:
        return json.load(reply)


def spool(args):
    per_file = count_frames(args.capture)
    repeats = max(1, -(-args.messages // per_file))
    total = per_file * repeats
    work = tempfile.mkdtemp(prefix="dtf-spool.")
    import socket
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there: HEC is down
    flags = ["-unix-socket", work + "/s.sock", "-output-type", "hec", "-hec-url", "http://127.0.0.1:%d/services/collector" % port,
             "-hec-token", "soak", "-hec-persistent-buf", "true", "-hec-buf-path", work + "/spool", "-batch-size", "1000",
             "-buffer-size", "20000", "-hec-retry-max-delay", "1s", "-hec-connect-timeout", "1s"]
    failed = []
    processes = []
    try:
        first, admin, _ = start_forwarder(args.binary, work, "first", flags)
        processes.append(first)
        command = ["fstrm_replay", "-t", "protobuf:dnstap.Dnstap", "-u", work + "/s.sock"] + ["-r", args.capture] * repeats
        started = time.monotonic()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=args.timeout)
        peak_spooling = 0.0
        spooled = 0
        while time.monotonic() - started < args.timeout:
            peak_spooling = max(peak_spooling, rss_mib(first.pid))
            spooled = stats(admin)["events"].get("spooled", 0)
            if spooled >= total:
                break
            time.sleep(0.2)
        peak_spooling = max(peak_spooling, rss_mib(first.pid))
        disk = sum(os.path.getsize(os.path.join(work + "/spool", f)) for f in os.listdir(work + "/spool"))
        print("spool: %d of %d events spooled with HEC down in %.1f s, %.0f MiB on disk, peak RSS %.1f MiB"
              % (spooled, total, time.monotonic() - started, disk / 2**20, peak_spooling))
        if spooled < total:
            failed.append("only %d of %d events reached the spool" % (spooled, total))
        first.kill()
        first.wait()

        receiver = subprocess.Popen([args.receiver, "--port", str(port), "--expect", str(total)],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        processes.append(receiver)
        receiver.stdout.readline()
        started = time.monotonic()
        second, admin, log_path = start_forwarder(args.binary, work, "second", flags)
        processes.append(second)
        peak_draining = 0.0
        while receiver.poll() is None and time.monotonic() - started < args.timeout:
            peak_draining = max(peak_draining, rss_mib(second.pid))
            time.sleep(0.2)
        arrived = receiver.poll() == 0
        received = receiver.stdout.read().strip()
        print("spool: after kill -9 and a restart with HEC up: %s in %.1f s, peak RSS while draining %.1f MiB"
              % (received or "receiver did not finish", time.monotonic() - started, peak_draining))
        if not arrived:
            failed.append("not every spooled event arrived at HEC after the restart")
        second.terminate()
        status = second.wait(timeout=60)
        if status != 0:
            failed.append("the second forwarder exited %d (log %s)" % (status, log_path))
        for name, peak in (("spooling", peak_spooling), ("draining", peak_draining)):
            if peak > args.max_rss_mib:
                failed.append("RSS %.1f MiB while %s, over %.0f" % (peak, name, args.max_rss_mib))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for what in failed:
        print("  FAIL " + what)
    if not failed:
        print("  ok   every event delivered, RSS under %.0f MiB" % args.max_rss_mib)
        subprocess.run(["rm", "-rf", work])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
