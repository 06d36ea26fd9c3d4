#!/usr/bin/env bash
# Runs Tarmac's main job end to end on the built-in lab: installs prerequisites, builds Tarmac,
# then `tarmac quickstart` (lab up → build → genconf → preflight → deploy → postflight → status,
# then tears the lab down unless --keep). Extra arguments go to `tarmac quickstart`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "error: the quickstart needs root (the lab makes network namespaces and containers)" >&2
  echo "hint: run it as root, e.g. sudo $0" >&2
  exit 1
fi
scripts/prereqs.sh
cargo build --release --bins
exec target/release/tarmac quickstart "$@"
