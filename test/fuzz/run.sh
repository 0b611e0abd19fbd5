#!/usr/bin/env bash
# Builds the libFuzzer targets (test/fuzz/CMakeLists.txt, clang-14, ASan +
# UBSan) and runs each, one at a time, for FUZZ_SECONDS (default 12) on a
# copy of its seed corpus, so that runs never grow the committed corpus.
# Fails on any crash, sanitizer report or failed property check; prints each
# target's executions. Crashing inputs are kept in build/fuzz/artifacts/;
# replay one with build/fuzz/fuzz_<target> FILE.
#
#   bash test/fuzz/run.sh                     every target, 12 s each (a minute in all)
#   FUZZ_SECONDS=300 bash test/fuzz/run.sh sse   one target, 5 minutes
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${FUZZ_SECONDS:-12}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(client_frame sse jwt jwt_claims http_checks jwks)
build=build/fuzz

cmake -S test/fuzz -B "$build" -DCMAKE_CXX_COMPILER="${FUZZ_CXX:-clang++-14}" >/dev/null
cmake --build "$build" -j"$(nproc)" -- -s >/dev/null

work=$(mktemp -d /tmp/rws-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
export UBSAN_OPTIONS="print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

failed=()
for target in "${targets[@]}"; do
  cp -r "test/fuzz/corpus/$target" "$work/$target"
  mkdir -p "$build/artifacts/$target"
  # -max_len: tokens are refused above 8 kB, and longer frames or streams
  # only slow the search down.
  args=(-max_total_time="$seconds" -print_final_stats=1 -timeout=10 -max_len=8192
        -artifact_prefix="$build/artifacts/$target/")
  [ -f "test/fuzz/dict/$target.dict" ] && args+=(-dict="test/fuzz/dict/$target.dict")
  status=ok
  "$build/fuzz_$target" "${args[@]}" "$work/$target" >"$work/$target.log" 2>&1 || status=FAILED
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$target.log" | tail -n 1)
  printf '%-13s %-6s %12s executions in %s s (corpus %d -> %d inputs)\n' "$target" "$status" \
    "${executions:-?}" "$seconds" "$(ls "test/fuzz/corpus/$target" | wc -l)" "$(ls "$work/$target" | wc -l)"
  if [ "$status" != ok ]; then
    failed+=("$target")
    # The report: from the first sanitizer or property line to the end.
    sed -n '/ERROR: \|runtime error\|FUZZ_CHECK\|==[0-9]*==\|deadly signal/,$p' "$work/$target.log" | head -n 80 >&2
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]} (inputs in $build/artifacts/)" >&2
  exit 1
fi
