#!/usr/bin/env bash
# Proves the Dockerfile's runtime stage without a Docker engine (none runs on these machines):
#   1. builds the binary the way the Dockerfile's build stage does (release, static Swift stdlib);
#   2. makes a minimal Debian root with debootstrap holding only the runtime stage's packages
#      (read from the Dockerfile's last apt-get install line), and the same non-root user;
#   3. runs the binary inside it (chroot, as that user, with the image's environment), drives it
#      with a real fstrm_replay over its unix socket, runs the HEALTHCHECK command inside the root,
#      stops it with SIGTERM and checks every event came out and the exit status is 0.
# The Debian mirror is read from this machine's apt sources. Needs root (debootstrap, chroot).
#   usage: scripts/test-container-runtime.sh        (the root is kept in .build/container-root)
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
fail() { echo "FAIL: $*" >&2; [ -f "${log:-}" ] && { echo "--- forwarder log:" >&2; tail -30 "$log" >&2; }; exit 1; }

command -v debootstrap >/dev/null || $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null
command -v fstrm_replay >/dev/null || fail "fstrm_replay missing (scripts/install-test-deps.sh)"

# The runtime stage's packages, straight from the Dockerfile.
packages=$(grep -o 'apt-get install -y --no-install-recommends [^\\&]*' Dockerfile | tail -1 | cut -d' ' -f5- | xargs)
[ -n "$packages" ] || fail "cannot read the runtime packages from the Dockerfile"
mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $0 ~ /bookworm/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$mirror" ] || fail "no Debian mirror in this machine's apt sources"

# 1. The binary, as the build stage makes it.
swift build -c release --product dnstap-forwarder --static-swift-stdlib 2>&1 | tail -1
binary=$(swift build -c release --show-bin-path)/dnstap-forwarder

# 2. The runtime root (made once; remade when the package list changes).
root=$PWD/.build/container-root
if [ "$(cat "$root/.packages" 2>/dev/null)" != "$packages" ]; then
  $sudo rm -rf "$root"
  echo "debootstrap bookworm (minbase + $packages) from $mirror"
  $sudo debootstrap --variant=minbase --include="${packages// /,}" bookworm "$root" "$mirror" >/dev/null
  $sudo chroot "$root" groupadd --gid 10053 dnstap
  $sudo chroot "$root" useradd --uid 10053 --gid dnstap --no-create-home --shell /usr/sbin/nologin dnstap
  echo "$packages" | $sudo tee "$root/.packages" >/dev/null
fi
$sudo install -D -m 0755 "$binary" "$root/usr/local/bin/dnstap-forwarder"
# /var/run is a symlink to /run in the root: host-side paths go through /run.
$sudo rm -rf "$root/run/dnstap"
$sudo install -d -o 10053 -g 10053 -m 0770 "$root/run/dnstap" "$root/var/lib/dnstap-forwarder" "$root/var/log/dnstap-forwarder"
echo "runtime root: $(du -sh "$root" | cut -f1), binary $(du -h "$binary" | cut -f1); libraries the binary needs:"
$sudo chroot "$root" /usr/bin/env LD_TRACE_LOADED_OBJECTS=1 /usr/local/bin/dnstap-forwarder | awk '{ print "  " $1 }'

# A capture of 2,000 dnstap messages (CLIENT_QUERY for host<i>.container.test), made here.
work=$(mktemp -d /tmp/dtf-container.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && $sudo kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
python3 - "$work/capture.fstrm" 2000 <<'PY'
import struct, sys
path, count = sys.argv[1], int(sys.argv[2])
def varint(n):
    out = b""
    while True:
        byte = n & 0x7F; n >>= 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n: return out
def field(number, wire, payload):
    key = varint(number << 3 | wire)
    return key + (varint(payload) if wire == 0 else varint(len(payload)) + payload)
def name(text):
    return b"".join(bytes([len(l)]) + l.encode() for l in text.split(".")) + b"\0"
CT = b"protobuf:dnstap.Dnstap"
def control(kind):
    body = struct.pack(">III", kind, 1, len(CT)) + CT
    return struct.pack(">II", 0, len(body)) + body
with open(path, "wb") as out:
    out.write(control(2))
    for i in range(count):
        dns = struct.pack(">HHHHHH", i & 0xFFFF, 0x0100, 1, 0, 0, 0) + name(f"host{i}.container.test") + struct.pack(">HH", 1, 1)
        message = field(1, 0, 5) + field(2, 0, 1) + field(3, 0, 1) + field(4, 2, bytes([10, 0, 0, 1])) + field(10, 2, dns)
        frame = field(3, 2, b"container-test") + field(14, 2, message) + field(15, 0, 1)
        out.write(struct.pack(">I", len(frame)) + frame)
    out.write(struct.pack(">III", 0, 4, 3))
PY

# 3. Run it as the image would: the image's user and environment, its socket in the volume.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$work/forwarder.log
$sudo chroot --userspec=10053:10053 "$root" /usr/bin/env -i \
  DNSTAP_UNIX_SOCKET=/var/run/dnstap/dnstap.sock DNSTAP_UNIX_SOCKET_MODE=0660 \
  DNSTAP_ADMIN_LISTEN=127.0.0.1:$port DNSTAP_HEC_BUF_PATH=/var/lib/dnstap-forwarder/spool \
  DNSTAP_OUTPUT_PATH=/var/log/dnstap-forwarder/dnstap.log DNSTAP_STATS_INTERVAL=0 \
  /usr/local/bin/dnstap-forwarder >"$work/events.jsonl" 2>"$log" &
pid=$!
for _ in $(seq 200); do grep -q 'listening for dnstap' "$log" 2>/dev/null && break; sleep 0.05; done
grep -q 'listening for dnstap' "$log" || fail "the forwarder did not start inside the runtime root"
$sudo chroot "$root" curl -fsS "http://127.0.0.1:$port/healthz" | grep -q '"ok"' || fail "the HEALTHCHECK command failed"
fstrm_replay -t protobuf:dnstap.Dnstap -u "$root/run/dnstap/dnstap.sock" -r "$work/capture.fstrm"
$sudo kill -TERM "$pid"
status=0; wait "$pid" || status=$?; pid=
[ "$status" = 0 ] || fail "exit status $status after SIGTERM"
lines=$(wc -l <"$work/events.jsonl")
[ "$lines" = 2000 ] || fail "$lines events out of 2000"
grep -q '"query":"host1999.container.test"' "$work/events.jsonl" || fail "the last event is missing"
grep -q 'stopped: every accepted event was delivered' "$log" || fail "no clean summary"
echo "container runtime: ok (2000 events from fstrm_replay through the runtime root as uid 10053, HEALTHCHECK ok, exit 0)"
