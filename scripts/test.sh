#!/usr/bin/env bash
# The test command: installs what the tests need, builds, runs every test (unit and integration
# against real fstrm_replay and five real resolvers), checks the connection cap from outside the
# binary, proves the Dockerfile's runtime stage in a debootstrap root, then the robustness checks:
# the soak (floods, slow peers, churn, a low fd limit, a resolver killed with SIGKILL, RSS flat over
# millions of messages), every fuzz target for a minute, and the whole suite again under
# ThreadSanitizer and AddressSanitizer.
#
# Every stage runs even when one before it failed; the closing line counts the Swift tests and
# each other stage as it ended, and the script fails if anything did.
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0
failed=0
failures=()

# stage NAME COMMAND...: runs a stage, counting it as it ends.
stage() {
  local name=$1
  shift
  echo "=== stage: $name"
  if "$@"; then
    passed=$((passed + 1))
    echo "=== stage passed: $name"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "=== stage FAILED: $name"
  fi
}

# The Swift tests count one each, from swift-testing's own closing line.
swift_tests() {
  swift test --skip-build 2>&1 | tee .build/test-output.txt
  local status=${PIPESTATUS[0]}
  local total failing
  total=$(sed -n 's/.*Test run with \([0-9]*\) tests.*/\1/p' .build/test-output.txt | tail -1)
  failing=$(grep -c '^✘ Test "' .build/test-output.txt || true)
  if [ -z "$total" ]; then
    echo "swift test printed no closing line"
    failed=$((failed + 1))
    return 1
  fi
  [ "$status" = 0 ] || [ "$failing" -gt 0 ] || failing=1
  passed=$((passed + total - failing))
  failed=$((failed + failing))
  [ "$status" = 0 ]
}

scripts/install-test-deps.sh || exit 1
swift build --build-tests || { echo "0 passed, 1 failed"; exit 1; }
echo "=== stage: swift tests"
swift_tests || failures+=("swift tests")
stage "connection limits" scripts/test_connection_limits.sh .build/debug/dnstap-forwarder
stage "container runtime" scripts/test-container-runtime.sh
# The release binary the container check just built (the image's own build).
stage "soak" scripts/soak.sh "$(swift build -c release --show-bin-path)/dnstap-forwarder"
stage "fuzz" scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
stage "sanitizers" scripts/sanitizers.sh thread address

[ ${#failures[@]} -eq 0 ] || echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
