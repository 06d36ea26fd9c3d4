#!/usr/bin/env bash
# The whole Tarmac test suite: installs its own prerequisites, then runs the gates
# (fmt, clippy -D warnings) and every test, including the lab tests on real hosts.
# Needs root (the lab creates network namespaces and boots systemd containers).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "error: the test suite needs root (the lab makes network namespaces and containers)" >&2
  echo "hint: run it as root, e.g. sudo $0" >&2
  exit 1
fi

scripts/prereqs.sh
# An S3-compatible server for the external-store lab test (bootstrap_serve: false): s3s-fs,
# built once from crates.io into a cache of its own (a few minutes the first time).
S3S_FS_ROOT=${TARMAC_S3S_FS_ROOT:-/var/cache/tarmac-tools/s3s-fs}
if [ ! -x "$S3S_FS_ROOT/bin/s3s-fs" ]; then
  echo "== cargo install s3s-fs 0.14.1 (into $S3S_FS_ROOT)"
  cargo install s3s-fs --version 0.14.1 --locked --features binary --root "$S3S_FS_ROOT" --quiet
fi
export TARMAC_S3S_FS="$S3S_FS_ROOT/bin/s3s-fs"

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# A clean clone gains nothing from incremental caches, which are gigabytes in a debug target.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
disk() { echo "== disk ($1): $(df -h --output=avail,pcent "${CARGO_TARGET_DIR:-target}" 2>/dev/null | tail -n1 || df -h . | tail -n1)"; }
mkdir -p "${CARGO_TARGET_DIR:-target}"
disk start
trap 'disk end' EXIT
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo build (binaries used by the lab tests)"
cargo build --workspace --bins
echo "== portable release tarmac + tarmac-host (glibc >= 2.17; scripts/build-portable.sh)"
# The lab and e2e tests ship this tarmac-host into their bootstraps, and tarmac-build's
# `portable` test checks its ELF symbol versions.
TARMAC_PORTABLE_BIN_DIR=$(scripts/build-portable.sh)
export TARMAC_PORTABLE_BIN_DIR
disk "before tests"
echo "== cargo test"
# Lab tests bring up their own uniquely named labs; two test threads keep a 2-core machine sane.
cargo test --workspace --no-fail-fast -- --test-threads "${TARMAC_TEST_THREADS:-2}"
