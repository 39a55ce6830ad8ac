#!/usr/bin/env bash
# The pipeline's floor: what the forwarder costs a message when it decodes nothing, next to
# fstrm_capture (the I/O floor) and to the forwarder as it is, interleaved in the same minutes.
#
# The floor build is the forwarder with scripts/bench/pipeline-floor.patch applied: its encoder
# writes a fixed 655-byte event for every frame (the capture's mean event size) without decoding
# the protobuf or the DNS message, so what is left is everything else a JSON-writing receiver
# does: the socket reads, the frame splitting, the buffer and its hand-offs, and writing the same
# bytes into a pipe. Forwarder minus floor is then what decoding and encoding cost end to end.
# (README, "Performance".)
#
#   usage: scripts/bench/pipeline-floor.sh [--rounds N] [--repeat R] [--pin] [--capture FILE]
#   (defaults: 5 rounds, the capture 4 times a run, unpinned; --pin: receivers on CPU 1, the
#   sender on CPU 0). Needs a clean Sources/ (the patch is applied and taken back; an interrupted
#   run takes it back too) and the capture of scripts/bench.sh (made here when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=5; repeat=4; capture=.build/bench/capture.fstrm; rpin=(); spin=()
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --capture) capture=$2; shift 2 ;;
    --pin) rpin=(taskset -c 1); spin=(taskset -c 0); shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if ! git diff --quiet -- Sources; then echo "Sources/ has uncommitted changes: commit or stash them first" >&2; exit 2; fi
patch=scripts/bench/pipeline-floor.patch
work=$(mktemp -d /tmp/dtf-floor.XXXXXX)
applied=0
cleanup() {
  [ $applied = 1 ] && git apply -R "$patch"
  pkill -P $$ 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
scripts/install-test-deps.sh >/dev/null
bin=$(swift build -c release --show-bin-path)
swift build -c release --product dnstap-forwarder 2>&1 | tail -1
cp "$bin/dnstap-forwarder" "$work/forwarder"
git apply "$patch"; applied=1
swift build -c release --product dnstap-forwarder 2>&1 | tail -1
cp "$bin/dnstap-forwarder" "$work/floor"
git apply -R "$patch"; applied=0
swift build -c release --product dnstap-forwarder 2>&1 | tail -1  # the tree's build as it was
mkdir -p "$(dirname "$capture")"
[ -s "$capture" ] || scripts/bench/make-capture.sh "$capture" >/dev/null
messages=$(( $(python3 scripts/bench/count-frames.py "$capture") * repeat ))
replay=(); for _ in $(seq "$repeat"); do replay+=(-r "$capture"); done

# cpu RECEIVER: CPU (user + system) microseconds a message over one replay, and the lines out.
cpu() {
  local sock=$work/s.sock pid reader
  rm -f "$sock" "$work/out"
  mkfifo "$work/out"
  wc -l < "$work/out" > "$work/lines" & reader=$!
  if [ "$1" = fstrm_capture ]; then
    /usr/bin/time -f "%U %S" -o "$work/time" "${rpin[@]}" fstrm_capture -t protobuf:dnstap.Dnstap -u "$sock" -w /dev/null \
      2>/dev/null > "$work/out" &
  else
    /usr/bin/time -f "%U %S" -o "$work/time" "${rpin[@]}" "$work/$1" -stats-interval 0 -log-level warn \
      -admin-listen 127.0.0.1:0 -unix-socket "$sock" -resolution-ttl-min 8760h -resolution-ttl-max 8760h \
      2>"$work/log" > "$work/out" &
  fi
  pid=$!
  for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done
  "${spin[@]}" fstrm_replay -t protobuf:dnstap.Dnstap -u "$sock" "${replay[@]}" 2>/dev/null
  pkill -INT -P "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  wait "$reader"
  awk -v n="$messages" -v t="$(tail -1 "$work/time")" -v l="$(cat "$work/lines")" \
    'BEGIN { split(t, x, " "); printf "%.3f %d\n", (x[1] + x[2]) * 1e6 / n, l }'
}

echo "capture: $capture, $messages messages a run ($repeat x), $rounds rounds$([ ${#rpin[@]} -gt 0 ] && echo ', receivers on CPU 1, sender on CPU 0')"
printf '%-6s %14s %14s %14s %12s %12s %12s\n' round fstrm_capture floor forwarder floor/fstrm fwd/fstrm "fwd-floor"
results=()
for round in $(seq "$rounds"); do
  read -r a _ <<<"$(cpu fstrm_capture)"
  read -r b lines_floor <<<"$(cpu floor)"
  read -r c lines_fwd <<<"$(cpu forwarder)"
  if [ "$lines_floor" != "$messages" ] || [ "$lines_fwd" != "$messages" ]; then
    echo "round $round: lines out floor=$lines_floor forwarder=$lines_fwd, expected $messages" >&2
    exit 1
  fi
  line=$(awk -v a="$a" -v b="$b" -v c="$c" 'BEGIN { printf "%.2f %.2f %.3f", b / a, c / a, c - b }')
  results+=("$line")
  printf '%-6s %14s %14s %14s %12s %12s %12s\n' "$round" "$a" "$b" "$c" $line
done
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
printf 'medians: floor/fstrm %s, forwarder/fstrm %s, forwarder - floor %s us a message (CPU us a message)\n' \
  "$(printf '%s\n' "${results[@]}" | awk '{print $1}' | median)" \
  "$(printf '%s\n' "${results[@]}" | awk '{print $2}' | median)" \
  "$(printf '%s\n' "${results[@]}" | awk '{print $3}' | median)"
