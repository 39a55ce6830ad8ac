#!/usr/bin/env bash
# Floods, slow peers, churn, a low fd limit and a resolver killed mid-stream, against the release
# binary (loopback and temp unix sockets only; about 2 minutes). See scripts/soak/soak.py.
#   usage: scripts/soak.sh [BINARY]     (default: builds and uses the release binary)
# Needs python3 and unbound (scripts/install-test-deps.sh installs both).
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-}
if [ -z "$binary" ]; then
  swift build -c release --product dnstap-forwarder
  binary="$(swift build -c release --show-bin-path)/dnstap-forwarder"
fi
exec python3 scripts/soak/soak.py "$binary" config/unbound-loopback.conf.template
