#!/usr/bin/env bash
# Makes a dnstap capture with a real resolver under load: Unbound on loopback answers a generated
# zone (A, AAAA and two-level CNAME chains), dnsperf sends it queries, and fstrm_capture (libfstrm)
# writes the dnstap Unbound sends into a Frame Streams file.
#   usage: scripts/bench/make-capture.sh OUT.fstrm [PASSES]   (default 16 passes of 8001 queries
#   ≈ 256,000 messages, ~35 MB, ~10 s)
set -euo pipefail
out=${1:?usage: make-capture.sh OUT.fstrm [PASSES]}; passes=${2:-16}
source "$(dirname "$0")/bench-unbound.sh"
bench_workdir capture
bench_unbound_setup "$work"
port=$bench_port
fstrm_capture -t protobuf:dnstap.Dnstap -u "$work/tap.sock" -w "$out.partial" 2>"$work/capture.log" &
receiver_pid=$!
for _ in $(seq 100); do [ -S "$work/tap.sock" ] && break; sleep 0.1; done
bench_unbound_start "$work"
half=$((passes / 2))
dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries.txt" -n "$half" -c 4 -l 120 | grep -E "Queries (completed|lost)" >&2
dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries.txt" -n "$((passes - half))" -c 4 -l 120 -e | grep -E "Queries (completed|lost)" >&2
sleep 2   # unbound flushes its dnstap queue on a timer
kill -TERM "$unbound_pid"; wait "$unbound_pid" 2>/dev/null || true; unbound_pid=
sleep 1
kill -INT "$receiver_pid"; wait "$receiver_pid" 2>/dev/null || true; receiver_pid=
mv "$out.partial" "$out"
python3 "$(dirname "$0")/count-frames.py" "$out"
