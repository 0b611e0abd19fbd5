#!/usr/bin/env bash
# Builds the C++ unit tests (the pure units and test/unit/*.cpp, from the
# top-level CMakeLists.txt) with AddressSanitizer and UndefinedBehaviorSanitizer
# in build/sanitize, and runs them: any report fails the run. Debian's GTest
# is not instrumented, which ASan and UBSan do not need.
set -euo pipefail
cd "$(dirname "$0")/../.."

# float-cast-overflow is not part of gcc's -fsanitize=undefined.
flags="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer"
cmake -S . -B build/sanitize -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS="$flags" >/dev/null
cmake --build build/sanitize --target unit_tests -j"$(nproc)" -- -s >/dev/null
ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
UBSAN_OPTIONS="print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}" \
  build/sanitize/unit_tests --gtest_brief=1 "$@"
