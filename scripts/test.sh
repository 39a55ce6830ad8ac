#!/usr/bin/env bash
# The test command: installs what the tests need, builds, runs every test (unit and integration
# against real fstrm_replay and Unbound), then checks the connection cap from outside the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
swift build --build-tests
swift test --skip-build
scripts/test_connection_limits.sh .build/debug/dnstap-forwarder
