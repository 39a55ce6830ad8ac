#!/usr/bin/env bash
# Makes a dnstap capture with a real resolver under load: Unbound on loopback answers a generated
# zone (A, AAAA and two-level CNAME chains), dnsperf sends it queries, and fstrm_capture (libfstrm)
# writes the dnstap Unbound sends into a Frame Streams file.
#   usage: scripts/bench/make-capture.sh OUT.fstrm [PASSES]   (default 16 passes of 8001 queries
#   ≈ 256,000 messages, ~35 MB, ~10 s)
set -euo pipefail
out=${1:?usage: make-capture.sh OUT.fstrm [PASSES]}; passes=${2:-16}
work=$(mktemp -d /tmp/dtf-capture.XXXXXX)
unbound_pid=; capture_pid=
cleanup() {
  [ -n "$unbound_pid" ] && kill "$unbound_pid" 2>/dev/null
  [ -n "$capture_pid" ] && kill "$capture_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
awk 'BEGIN {
  print "$TTL 300"; print "@ IN SOA ns.bench.test. hostmaster.bench.test. 1 3600 600 86400 300"
  print "@ IN NS ns"; print "ns IN A 127.0.0.1"
  for (i = 0; i < 2000; i++) { a = int(i / 250); b = i % 250 + 1
    printf "host%d IN A 10.99.%d.%d\nhost%d IN AAAA fd00:99::%d:%d\n", i, a, b, i, a, b
    printf "www%d IN CNAME host%d\ncdn%d IN CNAME www%d\n", i, i, i, i } }' > "$work/bench.test.zone"
awk 'BEGIN { for (i = 0; i < 2000; i++) printf "host%d.bench.test A\nhost%d.bench.test AAAA\nwww%d.bench.test A\ncdn%d.bench.test AAAA\n", i, i, i, i
  print "nx.bench.test A" }' > "$work/queries.txt"
sed -e "s|{{PORT}}|$port|g" -e "s|{{DIRECTORY}}|$work|g" -e "s|{{ZONE}}|bench.test|g" \
    -e "s|{{ZONEFILE}}|$work/bench.test.zone|g" -e "s|{{SOCKET}}|$work/tap.sock|g" -e "s|{{IDENTITY}}|bench-unbound|g" \
    "$(dirname "$0")/../../config/unbound-loopback.conf.template" > "$work/unbound.conf"
fstrm_capture -t protobuf:dnstap.Dnstap -u "$work/tap.sock" -w "$out.partial" 2>"$work/capture.log" &
capture_pid=$!
for _ in $(seq 100); do [ -S "$work/tap.sock" ] && break; sleep 0.1; done
unbound -d -c "$work/unbound.conf" 2>"$work/unbound.log" &
unbound_pid=$!
for _ in $(seq 100); do dig +short +tries=1 +time=1 @127.0.0.1 -p "$port" host0.bench.test A >/dev/null 2>&1 && break; sleep 0.1; done
half=$((passes / 2))
dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries.txt" -n "$half" -c 4 -l 120 | grep -E "Queries (completed|lost)" >&2
dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries.txt" -n "$((passes - half))" -c 4 -l 120 -e | grep -E "Queries (completed|lost)" >&2
sleep 2   # unbound flushes its dnstap queue on a timer
kill -TERM "$unbound_pid"; wait "$unbound_pid" 2>/dev/null || true; unbound_pid=
sleep 1
kill -INT "$capture_pid"; wait "$capture_pid" 2>/dev/null || true; capture_pid=
mv "$out.partial" "$out"
python3 "$(dirname "$0")/count-frames.py" "$out"
