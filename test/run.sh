#!/usr/bin/env bash
# Runs every test of resumable_ws: builds and installs the extension, then
# the C++ unit tests, pg_regress + isolation (SQL API) and the end-to-end
# suites (real cluster, real WebSocket clients). Run as root on Debian 12; installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh --test
make -s -j"$(nproc)"
make -s install

# The sources are formatted as .clang-format says.
make -s format-check

# C++ unit tests (JWTs, frames, HTTP checks, UUIDs): no Postgres needed;
# then the same with AddressSanitizer and UndefinedBehaviorSanitizer, and
# each libFuzzer target for a few seconds (about a minute in all).
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target unit_tests -j"$(nproc)" >/dev/null
ctest --test-dir build --output-on-failure
bash test/unit/run_sanitized.sh
bash test/fuzz/run.sh

# Postgres refuses to run as root: pg_regress runs as postgres, with its
# output in a directory that user owns.
regress_dir=$(mktemp -d /tmp/rws-regress.XXXXXX)
as_postgres=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres "$regress_dir"
  as_postgres=(runuser -u postgres --)
fi
if ! "${as_postgres[@]}" make -s installcheck \
      EXTRA_REGRESS_OPTS="--outputdir=$regress_dir" TEMP_INSTANCE_DIR="$regress_dir/tmp_check"; then
  cat "$regress_dir/regression.diffs" 2>/dev/null || true
  exit 1
fi
rm -rf "$regress_dir"

# The Node suites' dependencies, pinned by their lock files: ws for the Node
# client, playwright-core (without a browser download) to drive Chromium.
(cd test/node && npm ci --no-audit --no-fund --loglevel=error)
(cd test/browser && npm ci --no-audit --no-fund --loglevel=error)

# Debian's python3 has Debian's websockets, psycopg2, jwt and pytest. The
# chat page suite leaves its screenshots in test/artifacts/browser.
rm -rf test/artifacts/browser
cd test/e2e
exec /usr/bin/python3 -m pytest -v "$@"
