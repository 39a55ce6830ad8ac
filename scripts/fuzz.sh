#!/usr/bin/env bash
# Fuzzes the decoders with libFuzzer, AddressSanitizer and LeakSanitizer on.
#   usage: scripts/fuzz.sh [SECONDS_PER_TARGET (default 60)] [TARGET ...]
#   targets: frame-streams dnstap dns-parser json-encoder resolution-map pdns transactions (default: all)
#   FUZZ_RUNS=N in the environment: stop each target after N executions instead (no time limit).
#   FUZZ_MAX_LEN=N: the largest input tried (default 8192 bytes).
# Builds Sources/DnstapFuzzEntry with -sanitize=fuzzer,address on this package's code, in the
# release build's own directory (the C dependencies, BoringSSL's above all, are the release
# build's; the Swift modules are compiled again: CI's fuzz stage went from 703 to 502 s; a release
# build after it compiles the package's modules back, about a minute), links it with libFuzzer's
# main into .build/fuzz, then runs each target for the given time, starting from the committed
# seeds in Fuzz/corpus/TARGET and the corpus grown by earlier runs (.build/fuzz/corpus/TARGET).
# A crash, a timeout (an input taking over 10 s) or a leak stops that target, leaves the input in
# .build/fuzz/findings/ and makes the script fail; such an input goes into Fuzz/findings/TARGET/,
# which the unit tests replay, before the fix.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame-streams dnstap dns-parser json-encoder resolution-map pdns transactions)
build=.build/fuzz
# DNSTAP_FUZZ_BUILD=1 gives this package's targets -sanitize=fuzzer,address (Package.swift); the
# dependencies stay uninstrumented, so libFuzzer watches only the code under test. (SwiftPM's own
# `--sanitize fuzzer --sanitize address` would not do: swiftc keeps only the last -sanitize= it is
# given, which leaves Swift code with AddressSanitizer and no coverage at all.)
export DNSTAP_FUZZ_BUILD=1
swift_flags=(-c release)
mkdir -p "$build"

swift build "${swift_flags[@]}" --product DnstapFuzzEntry
bin=$(swift build "${swift_flags[@]}" --show-bin-path)
toolchain=$(dirname "$(dirname "$(command -v swift)")")
# libFuzzer brings main(); the entry library brings LLVMFuzzerTestOneInput and the code under test.
"$toolchain/bin/clang" -fsanitize=fuzzer,address -o "$build/dnstap-fuzz" "$bin/libDnstapFuzzEntry.so" \
  -Wl,-rpath,"$bin" -Wl,-rpath,"$toolchain/lib/swift/linux"

mkdir -p "$build/findings" "$build/logs"
summary=()
failed=0
for target in "${targets[@]}"; do
  [ -d "Fuzz/corpus/$target" ] || { echo "fuzz: no such target: $target" >&2; exit 2; }
  mkdir -p "$build/corpus/$target"
  log="$build/logs/$target.log"
  echo "fuzz: $target for ${FUZZ_RUNS:-${seconds}s} $([ -n "${FUZZ_RUNS:-}" ] && echo executions)"
  status=0
  limit=(-max_total_time="$seconds")
  [ -n "${FUZZ_RUNS:-}" ] && limit=(-runs="$FUZZ_RUNS")
  DNSTAP_FUZZ_TARGET=$target "$build/dnstap-fuzz" \
    "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -max_len="${FUZZ_MAX_LEN:-8192}" -print_final_stats=1 \
    -artifact_prefix="$build/findings/$target-" "$build/corpus/$target" "Fuzz/corpus/$target" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  peak=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  corpus=$(ls "$build/corpus/$target" | wc -l)
  crashes=$(grep -c 'ERROR: libFuzzer: deadly signal\|ERROR: AddressSanitizer\|fuzz check failed' "$log" || true)
  timeouts=$(grep -c 'ERROR: libFuzzer: timeout' "$log" || true)
  leaks=$(grep -c 'ERROR: LeakSanitizer' "$log" || true)
  if [ "$status" != 0 ]; then
    failed=1
    echo "fuzz: $target FAILED (exit $status); the log: $log; the input: $(ls -t "$build/findings/$target-"* 2>/dev/null | head -1)" >&2
    grep -m5 'fuzz check failed\|ERROR:\|SUMMARY' "$log" >&2 || tail -20 "$log" >&2
  fi
  summary+=("$(printf '%-15s %12s executions %8s/s  peak RSS %5s MB  corpus %5s  crashes %s  timeouts %s  leaks %s' \
    "$target" "${runs:-?}" "${rate:-?}" "${peak:-?}" "$corpus" "$crashes" "$timeouts" "$leaks")")
done
printf '\n%s\n' "fuzz summary (${FUZZ_RUNS:-${seconds}s} a target):"
printf '  %s\n' "${summary[@]}"
exit $failed
