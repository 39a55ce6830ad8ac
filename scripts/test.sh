#!/usr/bin/env bash
# The test command: installs what the tests need, builds, runs every test (unit and integration
# against real fstrm_replay and five real resolvers), checks the connection cap from outside the
# binary, then proves the Dockerfile's runtime stage in a debootstrap root.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
swift build --build-tests
swift test --skip-build 2>&1 | tee .build/test-output.txt
scripts/test_connection_limits.sh .build/debug/dnstap-forwarder
scripts/test-container-runtime.sh
# One closing line over everything that ran: the Swift tests plus the two script checks.
passed=$(sed -n 's/.*Test run with \([0-9]*\) tests.* passed.*/\1/p' .build/test-output.txt | tail -1)
echo "$((passed + 2)) passed, 0 failed"
