#!/usr/bin/env bash
# CPU per message at a live rate, as a sidecar pays it: a real Unbound on loopback sends its dnstap
# as it answers dnsperf at a steady rate (not a replay at full speed), to each receiver in turn:
#   fstrm_capture -w /dev/null   libfstrm's receiver, no decoding (the I/O floor)
#   golang-dnstap                dnstap -u SOCK -j, JSON lines to a pipe
#   dnstap-forwarder             JSON lines to a pipe, resolution map on (as shipped)
# At a steady rate a receiver wakes for each small batch the resolver writes, so what it costs per
# wake-up counts here, where a replay at full speed hides it in large reads.
# CPU is the receiver's user + system time (/proc/PID/stat) from just before dnsperf starts until
# Unbound has stopped and flushed (so the last messages are in), divided by the messages received
# (the forwarder's and golang-dnstap's lines, fstrm_capture's frame count). Runs are interleaved;
# medians, and each run's ratios.
#
#   usage: scripts/bench/live-rate.sh [--qps N] [--seconds S] [--runs R] [--forwarder PATH]
#   (defaults: 5000 queries/s, so 10,000 messages/s; 15 s; 3 runs; the release build)
set -euo pipefail
cd "$(dirname "$0")/../.."
qps=5000; seconds=15; runs=3; forwarder=
while [ $# -gt 0 ]; do
  case $1 in
    --qps) qps=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --forwarder) forwarder=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -z "$forwarder" ]; then
  swift build -c release --product dnstap-forwarder 2>&1 | tail -1
  forwarder=$(swift build -c release --show-bin-path)/dnstap-forwarder
fi
# The resolver, zone and queries of the capture (scripts/bench/make-capture.sh).
source scripts/bench/bench-unbound.sh
bench_workdir live
bench_unbound_setup "$work"
port=$bench_port

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# run_once NAME: prints "messages cpu_us_per_message".
run_once() {
  local name=$1 sock=$work/tap.sock; rm -f "$sock" "$work/count" "$work/receiver.log"
  case $name in
    fstrm_capture) fstrm_capture -t protobuf:dnstap.Dnstap -u "$sock" -w /dev/null 2>"$work/receiver.log" & ;;
    golang-dnstap) dnstap -u "$sock" -j 2>/dev/null > >(wc -l > "$work/count") & ;;
    dnstap-forwarder)
      "$forwarder" -stats-interval 0 -log-level warn -admin-listen 127.0.0.1:0 -unix-socket "$sock" \
        2>"$work/receiver.log" > >(wc -l > "$work/count") & ;;
  esac
  receiver_pid=$!
  for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done
  bench_unbound_start "$work"
  local before after
  before=$(cpu_ticks "$receiver_pid")
  dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries.txt" -Q "$qps" -l "$seconds" -c 4 >"$work/dnsperf.log" 2>&1
  # Unbound flushes its dnstap queue on a timer, and on exit.
  sleep 1
  kill -TERM "$unbound_pid"; wait "$unbound_pid" 2>/dev/null || true; unbound_pid=
  sleep 0.5
  after=$(cpu_ticks "$receiver_pid")
  kill -INT "$receiver_pid"; wait "$receiver_pid" 2>/dev/null || true; receiver_pid=
  local messages
  if [ "$name" = fstrm_capture ]; then
    # "wrote N frames": the messages and the file's start and stop frames.
    messages=$(sed -n 's/.*(wrote \([0-9]*\) frames.*/\1/p' "$work/receiver.log")
    messages=$((messages - 2))
  else
    for _ in $(seq 100); do [ -s "$work/count" ] && break; sleep 0.05; done
    messages=$(cat "$work/count")
  fi
  awk -v m="$messages" -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%d %.2f\n", m, t / hz * 1e6 / m }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "live rate: a real Unbound at $qps queries/s ($((2 * qps)) dnstap messages/s) for ${seconds}s, $runs runs, $(nproc) cores"
receivers=(fstrm_capture golang-dnstap dnstap-forwarder)
declare -A results
for _ in $(seq "$runs"); do
  for name in "${receivers[@]}"; do results[$name]+="$(run_once "$name")"$'\n'; done
done
printf '%-18s %12s %28s %10s\n' receiver "CPU us/msg" "each run" messages
for name in "${receivers[@]}"; do
  cpu=$(printf '%s' "${results[$name]}" | awk '{ print $2 }')
  printf '%-18s %12s %28s %10s\n' "$name" "$(echo "$cpu" | median)" "$(echo "$cpu" | paste -sd' ')" \
    "$(printf '%s' "${results[$name]}" | awk '{ print $1 }' | median)"
done
ratio() { paste <(printf '%s' "${results[$1]}" | awk '{ print $2 }') <(printf '%s' "${results[$2]}" | awk '{ print $2 }') | awk '{ printf "%.2f\n", $1 / $2 }'; }
for pair in "dnstap-forwarder fstrm_capture" "dnstap-forwarder golang-dnstap"; do
  set -- $pair
  each=$(ratio "$1" "$2")
  printf 'CPU/msg %s / %s at a live rate: each run %s, median %s\n' "$1" "$2" "$(echo "$each" | paste -sd' ')" "$(echo "$each" | median)"
done
