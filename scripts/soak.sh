#!/usr/bin/env bash
# Floods, slow peers, churn, a low fd limit and a resolver killed mid-stream, against the release
# binary (loopback and temp unix sockets only; about 2 minutes; see scripts/soak/soak.py), then
# memory over millions of messages (scripts/soak/memory.py): RSS flat through stdout (plain and
# with -transactions) and through HEC, and the durable buffer with HEC down, a kill -9 and a restart.
#   usage: scripts/soak.sh [BINARY]     (default: builds and uses the release binary)
#   SOAK_STDOUT_MESSAGES, SOAK_TRANSACTIONS_MESSAGES, SOAK_HEC_MESSAGES, SOAK_SPOOL_MESSAGES: how
#   many (defaults 5M, 10M, 2M, 400k; the README records runs of 20M, 50M and 5M).
# Needs python3, unbound, dnsperf and fstrm-bin (scripts/install-test-deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-}
if [ -z "$binary" ]; then
  swift build -c release --product dnstap-forwarder
  binary="$(swift build -c release --show-bin-path)/dnstap-forwarder"
fi
swift build -c release --product hec-bench-receiver
receiver="$(swift build -c release --show-bin-path)/hec-bench-receiver"
status=0
python3 scripts/soak/soak.py "$binary" config/unbound-loopback.conf.template || status=1

capture=$(mktemp /tmp/dtf-soak-capture.XXXXXX)
trap 'rm -f "$capture"' EXIT
echo "memory: a capture from a real Unbound under dnsperf load"
scripts/bench/make-capture.sh "$capture" 8 >/dev/null
python3 scripts/soak/memory.py "$binary" "$capture" --messages "${SOAK_STDOUT_MESSAGES:-5000000}" --output stdout || status=1
# -transactions: RSS can step up once by up to about 3 MiB after warm-up and stay flat (seen: 55.3 →
# 58.7 MiB at 3.6M of 10M, flat to the end; the next run +0.2): a 5 MiB tolerance over 10M still
# fails a creep like the one fixed (1.3 MiB a million).
python3 scripts/soak/memory.py "$binary" "$capture" --messages "${SOAK_TRANSACTIONS_MESSAGES:-10000000}" --output stdout \
  --flag=-transactions --tolerance-mib 5 || status=1
python3 scripts/soak/memory.py "$binary" "$capture" --messages "${SOAK_HEC_MESSAGES:-2000000}" --output hec --receiver "$receiver" || status=1
python3 scripts/soak/memory.py "$binary" "$capture" --messages "${SOAK_SPOOL_MESSAGES:-400000}" --output spool --receiver "$receiver" || status=1
exit $status
