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

# Postgres refuses to run as root: pg_regress runs as postgres. A checkout
# under /root (mode 0700) is out of that user's reach, so pg_regress gets a
# copy of its inputs (and of the Makefile that names them) in a directory it
# owns, and runs there; its output goes there too.
regress_dir=$(mktemp -d /tmp/rws-regress.XXXXXX)
cp -a --parents Makefile expected test/sql test/specs test/expected test/regress.conf "$regress_dir"
as_postgres=()
if [ "$(id -u)" -eq 0 ]; then
  chown -R postgres "$regress_dir"
  as_postgres=(runuser -u postgres --)
fi
if ! (cd "$regress_dir" && "${as_postgres[@]}" make -s installcheck \
      EXTRA_REGRESS_OPTS="--outputdir=$regress_dir" TEMP_INSTANCE_DIR="$regress_dir/tmp_check"); then
  cat "$regress_dir/regression.diffs" 2>/dev/null || true
  exit 1
fi
rm -rf "$regress_dir"

# The Node suites' dependencies, pinned by their lock files: ws for the Node
# client, playwright-core (without a browser download) to drive Chromium.
# They need Node 18 or newer (Debian 12's nodejs is 18); each suite's .npmrc
# makes npm refuse a package whose engines this Node does not meet.
node_version=$(node -p 'process.versions.node')
if [ "${node_version%%.*}" -lt 18 ]; then
  echo "test/run.sh: Node $node_version is too old; the Node and browser suites need Node 18 or newer" >&2
  exit 1
fi
(cd test/node && npm ci --no-audit --no-fund --loglevel=error)
(cd test/browser && npm ci --no-audit --no-fund --loglevel=error)

# Debian's python3 has Debian's websockets, psycopg2, jwt and pytest. The
# chat page suite leaves its screenshots in test/artifacts/browser. The
# suites run twice: with one worker, then with two on the port
# (resumable_ws.workers, RWS_TEST_WORKERS in test/e2e/harness.py); set -e
# stops at a failing first run, the second's status is the script's.
rm -rf test/artifacts/browser
cd test/e2e
RWS_TEST_WORKERS=1 /usr/bin/python3 -m pytest -v "$@"
RWS_TEST_WORKERS=2 exec /usr/bin/python3 -m pytest -v "$@"
