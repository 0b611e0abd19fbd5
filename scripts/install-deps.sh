#!/usr/bin/env bash
# Installs what resumable_ws needs to build and run (and, with --test, to be
# tested and benchmarked), from Debian's packages only. Run as root. Does
# nothing when everything is already there.
#
#   bash scripts/install-deps.sh          build and demo
#   bash scripts/install-deps.sh --test   also the test suites' tools
set -euo pipefail

packages=(
  # build
  g++ make pkg-config
  postgresql-15 postgresql-server-dev-15
  libwebsockets-dev libwebsockets-evlib-uv libuv1-dev libcurl4-openssl-dev
  nlohmann-json3-dev libssl-dev
  # demo
  curl
)
if [ "${1:-}" = "--test" ]; then
  packages+=(
    cmake libgtest-dev clang-format
    # libFuzzer targets (test/fuzz): clang and its sanitizer runtimes
    clang-14 libclang-rt-14-dev
    python3 python3-pytest python3-websockets python3-psycopg2 python3-jwt
    # tokens signed ES256/RS256 (PyJWT's crypto), /metrics parsed by the
    # Prometheus client's own parser, retention scheduled by pg_cron
    python3-cryptography python3-prometheus-client postgresql-15-cron
    # the chat page suite drives Debian's Chromium (test/browser)
    chromium
    # failover through HAProxy (test_failover.py), and deploy/'s Patroni +
    # etcd + HAProxy setup run on loopback (test_patroni.py)
    haproxy patroni etcd-server
  )
fi

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# npm fetches the chat page's Markdown renderer (web/package.json) at build
# time; Node runs the Node client and the browser driver (test/node,
# test/browser): Debian 12's nodejs (18) or newer. test/run.sh checks the
# version, and npm refuses packages whose engines it does not meet
# (test/*/.npmrc).
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing packages: ${missing[*]}; run this as root to install them" >&2
  exit 1
fi
# The demo and the tests make their own clusters: Debian's default one is not needed.
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
  mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
fi
export DEBIAN_FRONTEND=noninteractive
echo "updating the package lists (apt-get update)"
apt-get update -qq
echo "installing ${#missing[@]} Debian packages (this can take several minutes): ${missing[*]}"
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
