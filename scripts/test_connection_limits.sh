#!/usr/bin/env bash
# Checks the connection cap from outside, against the built binary (the brief's test script):
#   - with -max-connections N, N + 5 clients connect and do the Frame Streams handshake:
#     exactly N get ACCEPT, 5 are closed at once;
#   - each rejection is logged ("connection rejected: at the connection cap") and counted;
#   - when one accepted client ends its stream, a new client gets its slot;
#   - on SIGTERM the exit summary reports rejected=5 and the process exits 0.
# usage: scripts/test_connection_limits.sh [BINARY]   (default .build/debug/dnstap-forwarder)
set -euo pipefail
binary=${1:-.build/debug/dnstap-forwarder}
[ -x "$binary" ] || { echo "no binary at $binary (swift build first)" >&2; exit 1; }
cap=${CAP:-5}
dir=$(mktemp -d /tmp/dtf-limits.XXXXXX)
sock=$dir/dnstap.sock
log=$dir/forwarder.log
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; echo "--- forwarder log:" >&2; cat "$log" >&2; exit 1; }

"$binary" -unix-socket "$sock" -max-connections "$cap" -stats-interval 0 >"$dir/out.jsonl" 2>"$log" &
pid=$!
# Wait for the "listening" log line (the listener is bound once it is written).
for _ in $(seq 300); do grep -q "listening for dnstap" "$log" && break; kill -0 $pid || fail "exited early"; sleep 0.1; done
grep -q "listening for dnstap" "$log" || fail "never started listening"

python3 - "$sock" "$cap" <<'PY' || fail "client checks failed"
import socket, struct, sys
path, cap = sys.argv[1], int(sys.argv[2])
CT = b"protobuf:dnstap.Dnstap"
def control(kind, types=()):
    body = struct.pack(">I", kind) + b"".join(struct.pack(">II", 1, len(t)) + t for t in types)
    return struct.pack(">II", 0, len(body)) + body
def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data
def handshake():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    try:
        s.sendall(control(4, [CT]))
        head = recv_exact(s, 8)
    except (BrokenPipeError, ConnectionResetError):
        head = None
    if head is None:
        s.close()
        return None
    body = recv_exact(s, struct.unpack(">II", head)[1])
    assert body is not None and struct.unpack(">I", body[:4])[0] == 1, "expected ACCEPT"
    assert CT in body, "ACCEPT must carry the dnstap content type"
    s.sendall(control(2, [CT]))
    return s
results = [handshake() for _ in range(cap + 5)]
accepted = [s for s in results if s is not None]
print(f"accepted={len(accepted)} rejected={len(results) - len(accepted)}")
assert len(accepted) == cap, f"expected {cap} accepted"
# End one stream cleanly: STOP, wait for FINISH and the close; then a new client must get in.
first = accepted.pop(0)
first.sendall(control(3))
head = recv_exact(first, 8)
assert head is not None, "expected FINISH"
body = recv_exact(first, struct.unpack(">II", head)[1])
assert struct.unpack(">I", body)[0] == 5, "expected FINISH"
assert first.recv(1) == b"", "expected the receiver to close after FINISH"
late = handshake()  # the slot is freed before FINISH is sent, so no retry is needed
assert late is not None, "a freed slot was not reused"
print("slot reused")
for s in accepted + [late]:
    s.close()
PY

rejections=$(grep -c "connection rejected: at the connection cap" "$log" || true)
[ "$rejections" -ge 1 ] || fail "no rejection was logged"
grep "connection rejected" "$log" | head -1 | grep -q "max_connections=$cap" || fail "the rejection log line does not name the cap"
kill -TERM $pid
status=0; wait $pid || status=$?; pid=
[ $status = 0 ] || fail "exit status $status after SIGTERM"
grep "stopped:" "$log" | grep -q " rejected=5 " || fail "the exit summary does not count 5 rejections"
[ ! -e "$sock" ] || fail "socket file left behind"
echo "test_connection_limits: ok (cap $cap: $cap accepted, 5 rejected and logged ($rejections log lines), slot reused, clean exit)"
