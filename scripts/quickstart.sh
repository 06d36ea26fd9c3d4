#!/usr/bin/env bash
# Runs Tarmac's main job end to end on the built-in lab: installs prerequisites, builds the
# portable Tarmac binaries (scripts/build-portable.sh: glibc >= 2.17, what every host gets),
# then `tarmac quickstart` with them (lab up → build → genconf → preflight → deploy → postflight → status,
# then tears the lab down unless --keep). Extra arguments go to `tarmac quickstart`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "error: the quickstart needs root (the lab makes network namespaces and containers)" >&2
  echo "hint: run it as root, e.g. sudo $0" >&2
  exit 1
fi
scripts/prereqs.sh
bin_dir=$(scripts/build-portable.sh)
# quickstart ships the tarmac-host next to the tarmac it runs: the portable one.
exec "$bin_dir/tarmac" quickstart "$@"
