#!/usr/bin/env bash
# The test command: installs what the tests need, builds, runs every test (unit and integration
# against real fstrm_replay and Unbound), then checks the connection cap from outside the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
swift build --build-tests
swift test --skip-build 2>&1 | tee .build/test-output.txt
scripts/test_connection_limits.sh .build/debug/dnstap-forwarder
# One closing line over everything that ran: the Swift tests plus the external cap check.
passed=$(sed -n 's/.*Test run with \([0-9]*\) tests.* passed.*/\1/p' .build/test-output.txt | tail -1)
echo "$((passed + 1)) passed, 0 failed"
