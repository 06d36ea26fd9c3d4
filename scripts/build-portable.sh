#!/usr/bin/env bash
# Builds the portable release binaries `tarmac` and `tarmac-host`: linked by zig against a
# glibc 2.17 baseline (cargo-zigbuild's `x86_64-unknown-linux-gnu.2.17` target), so they run on
# any x86_64 Linux with glibc >= 2.17 (RHEL/CentOS 7, Debian 9+, Ubuntu 16.04+), not only on the
# newer glibc of the build machine. This is the `tarmac-host` the bootstrap ships.
#
# Idempotent: installs the pinned tools only when they are missing or have another version:
#   * zig from PyPI (`ziglang`), into a Python venv of its own under $TARMAC_TOOLS_DIR, so it
#     works with Debian's externally-managed Python (PEP 668) without --break-system-packages and
#     never touches the system's or the user's site-packages; needs `python3 -m venv`
#     (Debian: python3-venv, installed by scripts/prereqs.sh).
#   * cargo-zigbuild from crates.io (`cargo install --locked`), into $TARMAC_TOOLS_DIR/cargo.
#
# Prints the directory of the binaries on its last line of stdout (all progress goes to stderr),
# so callers can do `bin_dir=$(scripts/build-portable.sh)`.
#
# Environment: TARMAC_TOOLS_DIR (default /var/cache/tarmac-tools), CARGO_TARGET_DIR (default
# ./target), PYTHON (default /usr/bin/python3, else python3 on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

ZIGLANG_VERSION=0.14.1
CARGO_ZIGBUILD_VERSION=0.24.1
GLIBC_BASELINE=2.17
TRIPLE=x86_64-unknown-linux-gnu

TOOLS=${TARMAC_TOOLS_DIR:-/var/cache/tarmac-tools}
VENV=$TOOLS/ziglang-$ZIGLANG_VERSION
CARGO_TOOLS=$TOOLS/cargo
# Debian's own python3 when present (stable path for the venv), else the first on PATH.
if [ -z "${PYTHON:-}" ]; then [ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3 || PYTHON=python3; fi

log() { echo "build-portable: $*" >&2; }
die() { echo "error: $1" >&2; [ -n "${2:-}" ] && echo "hint: $2" >&2; exit 1; }

[ "$(uname -m)" = x86_64 ] || die "portable builds are made on x86_64 only (this is $(uname -m))"
command -v cargo >/dev/null || die "cargo is not on PATH" "install Rust with rustup"
mkdir -p "$TOOLS"

# --- zig (PyPI ziglang) in its own venv ----------------------------------------------------
zig_ok() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m ziglang version 2>/dev/null | grep -qx "$ZIGLANG_VERSION"
}
if ! zig_ok; then
  command -v "$PYTHON" >/dev/null || die "$PYTHON is missing" "apt-get install python3 python3-venv (scripts/prereqs.sh does)"
  log "installing ziglang==$ZIGLANG_VERSION into $VENV"
  # A venv records its own path, so it is made in place; a half-made one fails zig_ok next
  # time and is made again from scratch.
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" ||
    die "$PYTHON -m venv failed" "apt-get install python3-venv (scripts/prereqs.sh does)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    "ziglang==$ZIGLANG_VERSION" >&2
  zig_ok || die "zig $ZIGLANG_VERSION does not run from $VENV"
fi
# cargo-zigbuild finds zig through $CARGO_ZIGBUILD_ZIG_PATH (or `python3 -m ziglang`): point it at
# the venv's zig explicitly so no other zig on PATH is picked up.
ZIG_BIN=$("$VENV/bin/python" -c 'import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')
[ -x "$ZIG_BIN" ] || die "no zig binary at $ZIG_BIN"
export CARGO_ZIGBUILD_ZIG_PATH=$ZIG_BIN

# --- cargo-zigbuild (crates.io) ------------------------------------------------------------
zigbuild_ok() {
  [ -x "$CARGO_TOOLS/bin/cargo-zigbuild" ] &&
    "$CARGO_TOOLS/bin/cargo-zigbuild" --version 2>/dev/null | grep -q " $CARGO_ZIGBUILD_VERSION\$"
}
if ! zigbuild_ok; then
  log "installing cargo-zigbuild $CARGO_ZIGBUILD_VERSION into $CARGO_TOOLS (a few minutes, once)"
  # Its own temporary target dir, not the project's.
  env -u CARGO_TARGET_DIR cargo install --quiet --locked --root "$CARGO_TOOLS" \
    cargo-zigbuild --version "$CARGO_ZIGBUILD_VERSION" >&2
  zigbuild_ok || die "cargo-zigbuild $CARGO_ZIGBUILD_VERSION does not run from $CARGO_TOOLS/bin"
fi
export PATH=$CARGO_TOOLS/bin:$PATH

# --- the build -----------------------------------------------------------------------------
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$PWD/$TARGET_DIR ;; esac
export CARGO_TARGET_DIR=$TARGET_DIR
log "cargo zigbuild --release --target $TRIPLE.$GLIBC_BASELINE -p tarmac -p tarmac-host"
cargo zigbuild --release --locked --target "$TRIPLE.$GLIBC_BASELINE" -p tarmac -p tarmac-host >&2

OUT=$TARGET_DIR/$TRIPLE/release
for b in tarmac tarmac-host; do
  [ -x "$OUT/$b" ] || die "the build did not produce $OUT/$b"
done
log "portable binaries (glibc >= $GLIBC_BASELINE): $OUT/tarmac $OUT/tarmac-host"
echo "$OUT"
