#!/usr/bin/env bash
# The whole test suite (unit and integration, real peers included) under ThreadSanitizer and
# AddressSanitizer, each in its own build directory (.build/sanitize-thread, .build/sanitize-address).
# The integration tests start the binary built beside the tests, so it runs instrumented too, and a
# report in it fails the test that checks its exit status.
#   usage: scripts/sanitizers.sh [thread] [address]     (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."
sanitizers=("$@")
[ ${#sanitizers[@]} -gt 0 ] || sanitizers=(thread address)
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
export ASAN_OPTIONS="detect_leaks=0 halt_on_error=1 ${ASAN_OPTIONS:-}"
for sanitizer in "${sanitizers[@]}"; do
  build=.build/sanitize-$sanitizer
  echo "sanitizer: $sanitizer"
  swift build --build-path "$build" --sanitize "$sanitizer" --build-tests
  swift test --build-path "$build" --sanitize "$sanitizer" --skip-build 2>&1 | tee "$build/test-output.txt"
  grep -q "Test run with .* passed" "$build/test-output.txt" || { echo "sanitizer $sanitizer: tests failed" >&2; exit 1; }
  if grep -q "WARNING: ThreadSanitizer\|ERROR: AddressSanitizer" "$build/test-output.txt"; then
    echo "sanitizer $sanitizer: reports above" >&2
    exit 1
  fi
  echo "sanitizer $sanitizer: clean"
done
