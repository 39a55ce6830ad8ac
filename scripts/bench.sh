#!/usr/bin/env bash
# CPU per message, throughput and peak memory of dnstap-forwarder, side by side with the reference
# peers, on the same replay in the same run. Every receiver writes JSON lines to a pipe (counted by
# wc, which is not counted) or, for fstrm_capture, frames to /dev/null:
#   fstrm_capture -w /dev/null   libfstrm's receiver: stores frames without decoding (the I/O floor),
#                                on the unix socket and on TCP (fstrm_capture-tcp)
#   dnstap -u SOCK -j            golang-dnstap decoding to JSON (the usual collector); -tcp: dnstap -l
#   dnstap-forwarder             JSON lines on the unix socket, resolution map on
#   map-off                      the same with -resolution-map-size 0: what the map costs
#   forwarder-tcp                the same over TCP (fstrm_replay -a/-p)
#   forwarder-tls                over TCP with mutual TLS: fstrm_replay → stunnel4 (client mode, the
#                                README's recipe, its CPU not counted) → the forwarder's TLS listener
#   forwarder-16                 16 fstrm_replay at once on the unix socket, each sending 1/16 of the
#                                capture (scripts/bench/split-capture.py): many connections
#   transactions                 dnstap-forwarder with -transactions (one event per query and its
#                                response); its events and bytes are printed next to plain's
# The headline is CPU (user + system, from time(1): the whole run, drain included) per message,
# also split into its user and system parts; each receiver's line also has the rate (the replay's
# messages over the sender's time: fstrm_replay waits for FINISH, so sender time = intake time),
# peak RSS, the sender's CPU per message, and the events that came out. Ratios are taken within each
# run, then their median.
# Then: the event encoder's cost per message alone (encoder-bench: one thread, no I/O); resident
# memory with 500 idle connections open, and with 200 connections that have each taken a burst of
# 3,000 frames and gone idle; the resolution map's memory per entry; HEC throughput, and memory
# with HEC stalled; last, CPU per message at a live rate (scripts/bench/live-rate.sh).
#
#   usage: scripts/bench.sh [--runs N] [--repeat R] [--capture FILE] [--pin]
#   (defaults: 3 runs, the capture sent 2 times per run; the capture is made once with a real
#   Unbound under dnsperf load by scripts/bench/make-capture.sh and kept in .build/bench/)
#   --pin: every receiver on CPU 1 and every sender (and stunnel4) on CPU 0 (taskset), so that the
#   two do not trade cores mid-run: steadier figures on a shared VM; each receiver then has one core.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=3; repeat=2; capture=.build/bench/capture.fstrm; rpin=(); spin=()
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --capture) capture=$2; shift 2 ;;
    --pin) rpin=(taskset -c 1); spin=(taskset -c 0); shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
scripts/install-test-deps.sh >/dev/null
swift build -c release --product dnstap-forwarder 2>&1 | tail -1
swift build -c release --product hec-bench-receiver 2>&1 | tail -1
swift build -c release --product resolution-map-bench 2>&1 | tail -1
swift build -c release --product encoder-bench 2>&1 | tail -1
forwarder=$(swift build -c release --show-bin-path)/dnstap-forwarder
map_bench=$(swift build -c release --show-bin-path)/resolution-map-bench
encoder_bench=$(swift build -c release --show-bin-path)/encoder-bench
hec_receiver=$(swift build -c release --show-bin-path)/hec-bench-receiver
mkdir -p "$(dirname "$capture")"
[ -s "$capture" ] || scripts/bench/make-capture.sh "$capture" >/dev/null
messages=$(( $(python3 scripts/bench/count-frames.py "$capture") * repeat ))
work=$(mktemp -d /tmp/dtf-bench.XXXXXX)
receiver_pid=; hec_pid=
cleanup() {
  [ -n "$receiver_pid" ] && kill "$receiver_pid" 2>/dev/null
  [ -n "$hec_pid" ] && kill "$hec_pid" 2>/dev/null
  [ -n "$tunnel_pid" ] && kill "$tunnel_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
replay_args=(); for _ in $(seq "$repeat"); do replay_args+=(-r "$capture"); done
# Every forwarder run: quiet, and its admin API on an ephemeral port (on, as in production).
fwd=(-stats-interval 0 -log-level warn -admin-listen 127.0.0.1:0)
# Certificates for the TLS runs (a CA, the forwarder's for 127.0.0.1, a sender's), as the README makes them.
tls=$work/tls; mkdir -p "$tls"
(
  cd "$tls"; ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
  openssl req -x509 $ec -keyout ca.key -out ca.crt -days 2 -subj "/CN=bench CA"
  for n in server sender; do
    openssl req -new $ec -keyout $n.key -out $n.csr -subj "/CN=$n"
    [ $n = server ] && echo "subjectAltName=DNS:bench-forwarder,IP:127.0.0.1" > $n.ext || echo "subjectAltName=DNS:bench-sender" > $n.ext
    openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile $n.ext -out $n.crt
  done
) >/dev/null 2>&1
tunnel_pid=
# wait_port PORT: until something listens on 127.0.0.1:PORT.
wait_port() { for _ in $(seq 200); do ss -Hltn "sport = :$1" | grep -q . && return; sleep 0.05; done; }

# run_once NAME: start the receiver on $work/s.sock (or a TCP port), replay, stop it; prints
# "msgs_per_s peak_kib receiver_cpu sender_cpu events receiver_user receiver_system", CPU (user +
# system, then each) in microseconds a message.
run_once() {
  local name=$1 sock=$work/s.sock; rm -f "$sock" "$work/wc"
  local port; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  local timed=(/usr/bin/time -f "%M %U %S" -o "$work/rss" "${rpin[@]}") target=(-u "$sock")
  # The capture's responses carry the time it was made: a year-long TTL floor keeps them mapping
  # (instead of being skipped as expired), so the map does its full work on every response.
  local ttl=(-resolution-ttl-min 8760h -resolution-ttl-max 8760h)
  case $name in
    fstrm_capture) "${timed[@]}" fstrm_capture -t protobuf:dnstap.Dnstap -u "$sock" -w /dev/null 2>/dev/null & ;;
    fstrm_capture-tcp)
      "${timed[@]}" fstrm_capture -t protobuf:dnstap.Dnstap -a 127.0.0.1 -p "$port" -w /dev/null 2>/dev/null &
      target=(-a 127.0.0.1 -p "$port") ;;
    golang-dnstap) "${timed[@]}" dnstap -u "$sock" -j 2>/dev/null > >(wc -l > "$work/wc") & ;;
    golang-dnstap-tcp)
      "${timed[@]}" dnstap -l "127.0.0.1:$port" -j 2>/dev/null > >(wc -l > "$work/wc") &
      target=(-a 127.0.0.1 -p "$port") ;;
    dnstap-forwarder|transactions|forwarder-16)
      local join=(); [ "$name" = transactions ] && join=(-transactions)
      "${timed[@]}" "$forwarder" "${fwd[@]}" -unix-socket "$sock" "${join[@]}" "${ttl[@]}" \
        2>"$work/fwd.log" > >(wc -lc > "$work/wc") & ;;
    map-off)
      "${timed[@]}" "$forwarder" "${fwd[@]}" -unix-socket "$sock" -resolution-map-size 0 2>"$work/fwd.log" > >(wc -lc > "$work/wc") & ;;
    forwarder-tcp|forwarder-tls)
      local secure=()
      [ "$name" = forwarder-tls ] && secure=(-tls-cert-file "$tls/server.crt" -tls-key-file "$tls/server.key" -tls-client-ca-file "$tls/ca.crt")
      "${timed[@]}" "$forwarder" "${fwd[@]}" -unix-socket "" -tcp-listen "127.0.0.1:$port" "${secure[@]}" "${ttl[@]}" \
        2>"$work/fwd.log" > >(wc -lc > "$work/wc") &
      [ "$name" = forwarder-tcp ] && target=(-a 127.0.0.1 -p "$port") ;;
  esac
  receiver_pid=$!
  case $name in
    *-tcp|forwarder-tls) wait_port "$port" ;;
    *) for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done ;;
  esac
  if [ "$name" = forwarder-tls ]; then
    printf 'foreground = yes\npid =\n[dnstap]\nclient = yes\naccept = %s\nconnect = 127.0.0.1:%s\ncert = %s\nkey = %s\nCAfile = %s\nverifyChain = yes\ncheckHost = bench-forwarder\n' \
      "$sock" "$port" "$tls/sender.crt" "$tls/sender.key" "$tls/ca.crt" > "$work/stunnel.conf"
    "${spin[@]}" stunnel4 "$work/stunnel.conf" 2>"$work/stunnel.log" & tunnel_pid=$!
    for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done
  fi
  local t0 t1; t0=$(date +%s.%N)
  if [ "$name" = forwarder-16 ]; then
    local senders=() part
    for part in $(seq 0 15); do
      local part_args=(); for _ in $(seq "$repeat"); do part_args+=(-r "$work/part.$part.fstrm"); done
      /usr/bin/time -f "%U %S" -o "$work/sender.$part" "${spin[@]}" fstrm_replay -t protobuf:dnstap.Dnstap "${target[@]}" "${part_args[@]}" &
      senders+=($!)
    done
    wait "${senders[@]}"
    for part in $(seq 0 15); do tail -1 "$work/sender.$part"; done | awk '{ u += $1; s += $2 } END { print u, s }' > "$work/sender"
  else
    /usr/bin/time -f "%U %S" -o "$work/sender" "${spin[@]}" fstrm_replay -t protobuf:dnstap.Dnstap "${target[@]}" "${replay_args[@]}"
  fi
  t1=$(date +%s.%N)
  if [ -n "$tunnel_pid" ]; then kill "$tunnel_pid" 2>/dev/null; wait "$tunnel_pid" 2>/dev/null || true; tunnel_pid=; fi
  # SIGINT to time(1)'s child that is the receiver (the pipe's wc is one too). golang-dnstap and
  # fstrm_capture stop on SIGINT.
  local command=$forwarder
  case $name in fstrm_capture*) command=fstrm_capture ;; golang-dnstap*) command=dnstap ;; esac
  pkill -INT -P "$receiver_pid" -f "^$command " 2>/dev/null || true
  wait "$receiver_pid" 2>/dev/null || true; receiver_pid=
  # The pipe's reader has the count once the receiver has exited.
  local events=-
  if [ "${name#fstrm_capture}" = "$name" ]; then
    for _ in $(seq 100); do [ -s "$work/wc" ] && break; sleep 0.05; done
    events=$(awk '{ print $1 }' "$work/wc")
    [ "$name" = dnstap-forwarder ] || [ "$name" = transactions ] && cat "$work/wc" >> "$work/volume.$name"
  fi
  awk -v n="$messages" -v a="$t0" -v b="$t1" -v r="$(tail -1 "$work/rss")" -v s="$(tail -1 "$work/sender")" -v e="$events" \
    'BEGIN { split(r, x, " "); split(s, y, " "); printf "%.0f %d %.2f %.2f %s %.2f %.2f\n", n / (b - a), x[1], (x[2] + x[3]) * 1e6 / n, (y[1] + y[2]) * 1e6 / n, e, x[2] * 1e6 / n, x[3] * 1e6 / n }'
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "capture: $capture, $messages messages per run ($repeat x), $runs runs, $(nproc) cores$([ ${#rpin[@]} -gt 0 ] && echo ', receivers pinned to CPU 1, senders to CPU 0')"
python3 scripts/bench/split-capture.py "$capture" 16 "$work/part" >/dev/null
# Medians of the runs; CPU: user + system microseconds a message, the receiver's (and its user and
# system parts: what the kernel's side costs, e.g. many senders' colder socket data) and the senders'.
printf '%-18s %10s %11s %36s %10s %14s %10s %10s\n' receiver "CPU us/msg" "user/system" "msgs/s (each run)" median "peak RSS MiB" "sender" "events"
# Interleaved: each run sends the replay to every receiver in turn, so that the ratios compare
# receivers measured minutes apart at most (this VM's speed drifts).
receivers=(fstrm_capture golang-dnstap dnstap-forwarder map-off fstrm_capture-tcp golang-dnstap-tcp forwarder-tcp forwarder-tls forwarder-16 transactions)
declare -A results
for _ in $(seq "$runs"); do
  for name in "${receivers[@]}"; do results[$name]+="$(run_once "$name")"$'\n'; done
done
for name in "${receivers[@]}"; do
  rates=$(printf '%s' "${results[$name]}" | awk '{print $1}')
  rss=$(printf '%s' "${results[$name]}" | awk '{print $2}' | sort -n | tail -1)
  cpu=$(printf '%s' "${results[$name]}" | awk '{print $3}' | median)
  sender=$(printf '%s' "${results[$name]}" | awk '{print $4}' | median)
  events=$(printf '%s' "${results[$name]}" | awk '{print $5}' | sort -u | paste -sd/)
  user=$(printf '%s' "${results[$name]}" | awk '{print $6}' | median)
  system=$(printf '%s' "${results[$name]}" | awk '{print $7}' | median)
  printf '%-18s %10s %11s %36s %10s %14s %10s %10s\n' "$name" "$cpu" "$user/$system" "$(echo "$rates" | paste -sd,)" "$(echo "$rates" | median)" "$(mib "$rss")" "$sender" "$events"
done
# CPU a message, per-run ratios (same run), then their medians: next to the I/O floor and
# golang-dnstap on each transport, and what each feature costs next to plain.
# field_ratios A B FIELD: each run's ratio of a field of run_once's line (1: rate, 3: CPU, 6: user,
# 7: system).
field_ratios() { paste <(printf '%s' "${results[$1]}" | awk -v f="$3" '{print $f}') <(printf '%s' "${results[$2]}" | awk -v f="$3" '{print $f}') | awk '{ printf "%.2f\n", $1 / $2 }'; }
cpu_ratios() { field_ratios "$1" "$2" 3; }
for pair in "dnstap-forwarder fstrm_capture" "dnstap-forwarder golang-dnstap" "forwarder-tcp fstrm_capture-tcp" \
  "forwarder-tcp golang-dnstap-tcp" "forwarder-tcp dnstap-forwarder" "forwarder-tls forwarder-tcp" "transactions dnstap-forwarder" \
  "forwarder-16 dnstap-forwarder" "dnstap-forwarder map-off"; do
  set -- $pair
  each=$(cpu_ratios "$1" "$2")
  printf 'CPU/msg %s / %s: each run %s, median %s\n' "$1" "$2" "$(echo "$each" | paste -sd' ')" "$(echo "$each" | median)"
done
# Where a feature's extra goes: its user and system time next to plain's.
for pair in "forwarder-tls forwarder-tcp" "forwarder-16 dnstap-forwarder"; do
  set -- $pair
  user=$(field_ratios "$1" "$2" 6); system=$(field_ratios "$1" "$2" 7)
  printf 'user/msg %s / %s: each run %s, median %s; system/msg: each run %s, median %s\n' "$1" "$2" \
    "$(echo "$user" | paste -sd' ')" "$(echo "$user" | median)" "$(echo "$system" | paste -sd' ')" "$(echo "$system" | median)"
done
# Rates (messages/s), per-run ratios.
ratios() { field_ratios "$1" "$2" 1; }
for pair in "dnstap-forwarder golang-dnstap" "dnstap-forwarder fstrm_capture"; do
  set -- $pair
  each=$(ratios "$1" "$2")
  printf 'rate %s / %s: each run %s, median %s\n' "$1" "$2" "$(echo "$each" | paste -sd' ')" "$(echo "$each" | median)"
done
# -transactions: what it writes next to one event per message (medians of the runs' counts).
volume() { awk -v f="$2" '{ print $f }' "$work/volume.$1" | median; }
awk -v pe="$(volume dnstap-forwarder 1)" -v pb="$(volume dnstap-forwarder 2)" -v te="$(volume transactions 1)" -v tb="$(volume transactions 2)" \
  'BEGIN { printf "-transactions: events %d -> %d (%.2f), bytes %d -> %d (%.2f), %.0f -> %.0f bytes an event\n", pe, te, te / pe, pb, tb, tb / pb, pb / pe, tb / te }'
"$encoder_bench" "$capture"
"$encoder_bench" "$capture" --transactions
"$encoder_bench" "$capture" --pending
"$map_bench" --entries 1000000

# Memory a connection: 500 idle handshaken connections (then a replay on top), and 200 connections
# that have each taken a burst of 3,000 frames (one after the other) and gone idle.
# hold COUNT BURST FLAG: opens COUNT connections, each sending BURST frames of the capture after
# its handshake, touches FLAG once all are open, and keeps them open until FLAG is removed.
hold() {
  python3 - "$sock" "$1" "$2" "$3" "$capture" <<'PY' &
import os, socket, struct, sys, time
path, count, burst, flag, capture = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
CT = b"protobuf:dnstap.Dnstap"
def control(kind):
    body = struct.pack(">III", kind, 1, len(CT)) + CT
    return struct.pack(">II", 0, len(body)) + body
frames, data, offset = [], open(capture, "rb").read() if burst else b"", 0
while offset + 4 <= len(data) and len(frames) < burst:
    (length,) = struct.unpack_from(">I", data, offset)
    if length == 0:
        offset += 8 + struct.unpack_from(">I", data, offset + 4)[0]
    else:
        frames.append(data[offset:offset + 4 + length]); offset += 4 + length
payload = b"".join(frames)
held = []
for _ in range(count):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(path)
    s.sendall(control(4)); s.recv(64); s.sendall(control(2) + payload); held.append(s)
    if burst: time.sleep(0.05)  # one burst at a time: what a connection keeps, not a peak of all
time.sleep(1 if burst else 0)
open(flag, "w").close()
while os.path.exists(flag):
    time.sleep(0.1)
PY
  holder=$!
  for _ in $(seq 600); do [ -e "$3" ] && break; sleep 0.1; done
}
per_connection() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.1f", (b - a) / n }'; }
sock=$work/m.sock; rm -f "$sock"
"$forwarder" "${fwd[@]}" -unix-socket "$sock" -max-connections 600 >/dev/null 2>"$work/mem.log" &
receiver_pid=$!
for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done
rss() { awk '/VmRSS/ { print $2 }' "/proc/$receiver_pid/status"; }
before=$(rss)
hold 500 0 "$work/hold"
open500=$(rss)
fstrm_replay -t protobuf:dnstap.Dnstap -u "$sock" "${replay_args[@]}"
after_replay=$(rss)
rm -f "$work/hold"; wait "$holder" 2>/dev/null || true
kill -TERM "$receiver_pid"; wait "$receiver_pid" 2>/dev/null || true; receiver_pid=
echo "RSS MiB: idle $(mib "$before"), with 500 connections open $(mib "$open500") ($(per_connection "$before" "$open500" 500) KiB a connection), after a replay on top $(mib "$after_replay")"
"$forwarder" "${fwd[@]}" -unix-socket "$sock" -max-connections 600 >/dev/null 2>"$work/mem.log" &
receiver_pid=$!
for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done
before=$(rss)
hold 200 3000 "$work/hold"
bursts=$(rss)
rm -f "$work/hold"; wait "$holder" 2>/dev/null || true
kill -TERM "$receiver_pid"; wait "$receiver_pid" 2>/dev/null || true; receiver_pid=
echo "RSS MiB: idle $(mib "$before"), 200 connections idle after a burst of 3,000 frames each $(mib "$bursts") ($(per_connection "$before" "$bursts" 200) KiB a connection)"

# Splunk HEC: the same replay into the forwarder sending to a local HEC-compatible receiver
# (hec-bench-receiver: decompresses and counts, answers success), gzip on. The time runs from the
# replay's start until the receiver has every event.
hec_flags=(-batch-size 1000 -buffer-size 20000 -hec-max-in-flight 4)
# Sets hec_pid and port (not in a subshell, so the pid stays known).
start_hec_receiver() {
  "$hec_receiver" "$@" >"$work/hec.out" 2>&1 &
  hec_pid=$!
  for _ in $(seq 200); do grep -q "listening port=" "$work/hec.out" 2>/dev/null && break; sleep 0.05; done
  port=$(sed -n 's/listening port=//p' "$work/hec.out")
}
# hec_run EXPECTED FLAGS...: one replay into HEC through the forwarder (with FLAGS), until the
# receiver has EXPECTED events; prints "events_per_s bytes_per_s peak_kib bytes wire_bytes" (bytes:
# the request bodies decompressed, what Splunk ingests with the envelopes; wire: as sent, gzip).
hec_run() {
  local expected=$1; shift
  start_hec_receiver --expect "$expected"
  sock=$work/h.sock; rm -f "$sock"
  /usr/bin/time -f %M -o "$work/rss" "$forwarder" "${fwd[@]}" -unix-socket "$sock" "$@" \
    -output-type hec -hec-url "http://127.0.0.1:$port/services/collector" -hec-token bench "${hec_flags[@]}" >/dev/null 2>"$work/hec-fwd.log" &
  receiver_pid=$!
  for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done
  t0=$(date +%s.%N)
  fstrm_replay -t protobuf:dnstap.Dnstap -u "$sock" "${replay_args[@]}"
  # Every event in, or at most 5 minutes (a count that never comes is reported, not waited for).
  for _ in $(seq 3000); do kill -0 "$hec_pid" 2>/dev/null || break; sleep 0.1; done
  kill "$hec_pid" 2>/dev/null && echo "HEC receiver: $expected events expected, not all came" >&2
  wait "$hec_pid" 2>/dev/null || true; hec_pid=
  t1=$(date +%s.%N)
  pkill -TERM -P "$receiver_pid" 2>/dev/null || true
  wait "$receiver_pid" 2>/dev/null || true; receiver_pid=
  local got; got=$(grep '^events=' "$work/hec.out")
  awk -v a="$t0" -v b="$t1" -v r="$(tail -1 "$work/rss")" -v g="$got" 'BEGIN {
    split(g, f, /[ =]/); printf "%.0f %.0f %d %d %d\n", f[2] / (b - a), f[4] / (b - a), r, f[4], f[6] }'
}
hec_plain=(); hec_joined=()
# -transactions writes as many events as the pipe runs above counted.
joined_events=$(volume transactions 1)
for _ in $(seq "$runs"); do
  hec_plain+=("$(hec_run "$messages")")
  hec_joined+=("$(hec_run "$joined_events" -transactions)")
done
# column N LINE...: field N of each line.
column() { local n=$1; shift; printf '%s\n' "$@" | awk -v n="$n" '{ print $n }'; }
hec_line() {
  printf 'events/s delivered %s (median %s), bytes/s %s (median %s); peak RSS %s MiB; bytes a run %s (gzip on the wire %s)' \
    "$(column 1 "$@" | paste -sd,)" "$(column 1 "$@" | median)" "$(column 2 "$@" | paste -sd,)" "$(column 2 "$@" | median)" \
    "$(mib "$(column 3 "$@" | sort -n | tail -1)")" "$(column 4 "$@" | median)" "$(column 5 "$@" | median)"
}
echo "HEC (${hec_flags[*]}): $(hec_line "${hec_plain[@]}")"
echo "HEC -transactions: $(hec_line "${hec_joined[@]}")"
awk -v p="$(column 4 "${hec_plain[@]}" | median)" -v t="$(column 4 "${hec_joined[@]}" | median)" \
  -v pw="$(column 5 "${hec_plain[@]}" | median)" -v tw="$(column 5 "${hec_joined[@]}" | median)" \
  'BEGIN { printf "HEC bytes with -transactions / plain: %.3f (on the wire, gzip: %.3f)\n", t / p, tw / pw }'

# HEC stalled (the receiver never answers): memory must stay bounded by the buffer settings.
start_hec_receiver --stall
sock=$work/s2.sock; rm -f "$sock"
"$forwarder" "${fwd[@]}" -unix-socket "$sock" -log-level error -shutdown-timeout 1s \
  -output-type hec -hec-url "http://127.0.0.1:$port/services/collector" -hec-token bench "${hec_flags[@]}" >/dev/null 2>&1 &
receiver_pid=$!
for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done
fstrm_replay -t protobuf:dnstap.Dnstap -u "$sock" "${replay_args[@]}" 2>/dev/null &
replay_pid=$!
samples=()
for _ in 1 2 3 4 5 6; do sleep 1; samples+=("$(mib "$(rss)")"); done
kill "$replay_pid" 2>/dev/null || true; wait "$replay_pid" 2>/dev/null || true
kill -TERM "$receiver_pid"; wait "$receiver_pid" 2>/dev/null || true; receiver_pid=
kill "$hec_pid" 2>/dev/null || true; wait "$hec_pid" 2>/dev/null || true; hec_pid=
echo "HEC stalled: RSS MiB each second while the replay pushes: ${samples[*]} (buffer ${hec_flags[*]})"

# CPU a message at a live rate: a real Unbound answering dnsperf at a steady 5,000 queries/s, its
# dnstap to each receiver in turn (where a receiver pays for each wake-up, which a replay at full
# speed hides in large reads).
scripts/bench/live-rate.sh --runs "$runs" --forwarder "$forwarder"
