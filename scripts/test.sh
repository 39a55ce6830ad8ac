#!/usr/bin/env bash
# The test command: installs what the tests need, builds, runs every test (unit and integration
# against real fstrm_replay and five real resolvers), checks the connection cap from outside the
# binary, proves the Dockerfile's runtime stage in a debootstrap root, then the robustness checks:
# the soak (floods, slow peers, churn, a low fd limit, a resolver killed with SIGKILL), every fuzz
# target for a minute, and the whole suite again under ThreadSanitizer and AddressSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
swift build --build-tests
swift test --skip-build 2>&1 | tee .build/test-output.txt
scripts/test_connection_limits.sh .build/debug/dnstap-forwarder
scripts/test-container-runtime.sh
# The release binary the container check just built (the image's own build).
scripts/soak.sh "$(swift build -c release --show-bin-path)/dnstap-forwarder"
scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
scripts/sanitizers.sh thread address
# One closing line over everything that ran: the Swift tests, the cap and container checks, the
# soak, the fuzzers and the two sanitizer runs (each of those fails the script if it fails).
passed=$(sed -n 's/.*Test run with \([0-9]*\) tests.* passed.*/\1/p' .build/test-output.txt | tail -1)
echo "$((passed + 6)) passed, 0 failed"
