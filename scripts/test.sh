#!/usr/bin/env bash
# The test command: installs what the tests need, builds, runs every test (unit and integration
# against real fstrm_replay and five real resolvers), checks the connection cap from outside the
# binary, proves the Dockerfile's runtime stage in a debootstrap root, then the robustness checks:
# the soak (floods, slow peers, churn, a low fd limit, a resolver killed with SIGKILL, RSS flat over
# millions of messages), every fuzz target for 30 s (under AddressSanitizer), and the whole suite
# again under ThreadSanitizer.
#
# Every stage runs even when one before it failed; the closing line counts the Swift tests and
# each other stage as it ended, and the script fails if anything did. Each stage's output is kept
# in .build/stages/NAME.log; for a stage that failed, its failing lines are printed again at the
# very end (a CI that keeps only the tail of the output still shows why), with each stage's time.
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0
failed=0
failures=()
timings=()
mkdir -p .build/stages

# stage NAME COMMAND...: runs a stage, counting it as it ends.
stage() {
  local name=$1
  shift
  local log=".build/stages/${name// /-}.log" started=$SECONDS
  echo "=== stage: $name"
  if "$@" 2>&1 | tee "$log"; then  # pipefail: the stage's own status
    passed=$((passed + 1))
    echo "=== stage passed: $name"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "=== stage FAILED: $name"
  fi
  timings+=("$(printf '%-18s %5d s' "$name" $((SECONDS - started)))")
}

# why NAME: the lines of a failed stage's log that say what failed.
why() {
  local log=".build/stages/${1// /-}.log"
  echo "--- why $1 failed ($log):"
  grep -E 'FAIL|✘|error:|ERROR|failed|Fatal|fatal' "$log" | grep -v '0 failed\|with 0 failures' | tail -25
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
build_started=$SECONDS
swift build --build-tests || { echo "0 passed, 1 failed"; exit 1; }
timings+=("$(printf '%-18s %5d s' "debug build" $((SECONDS - build_started)))")
echo "=== stage: swift tests"
tests_started=$SECONDS
swift_tests || failures+=("swift tests")
cp .build/test-output.txt ".build/stages/swift-tests.log"
timings+=("$(printf '%-18s %5d s' "swift tests" $((SECONDS - tests_started)))")
stage "connection limits" scripts/test_connection_limits.sh .build/debug/dnstap-forwarder
stage "container runtime" scripts/test-container-runtime.sh
# The release binary the container check just built (the image's own build).
stage "soak" scripts/soak.sh "$(swift build -c release --show-bin-path)/dnstap-forwarder"
# 30 s a target here; the README records the long runs made by hand.
stage "fuzz" scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
# ThreadSanitizer over the whole suite. AddressSanitizer's whole-suite build is run by hand
# (scripts/sanitizers.sh address, recorded in the README): the fuzz stage above already runs every
# decoder and the encoder under AddressSanitizer, and the second instrumented build costs CI
# about 13 minutes. SANITIZERS="thread address" runs both.
stage "sanitizers" scripts/sanitizers.sh ${SANITIZERS:-thread}

echo "=== stage times (the whole run: $SECONDS s)"
printf '  %s\n' "${timings[@]}"
for name in "${failures[@]}"; do why "$name"; done
[ ${#failures[@]} -eq 0 ] || echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
