#!/usr/bin/env bash
# Installs the Debian packages Tarmac's build, lab and tests need (idempotent, quick when present).
set -euo pipefail
need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
# The lab's hosts get sshd from their own image; this machine needs the client side, the
# container and namespace tools, bubblewrap for sandboxed builds, and Chromium + ChromeDriver
# for the web GUI's browser test; python3 + python3-venv for scripts/build-portable.sh (zig
# comes from PyPI into a venv of its own); patchelf for self-contained packages (the builder
# points ELF files at their bundled libraries) and gcc + libc6-dev + binutils for its tests;
# nftables for the lab's egress audit (`nft` run inside the lab's namespaces).
for p in openssh-client systemd-container debootstrap debian-archive-keyring bubblewrap iproute2 nftables \
         zstd xz-utils curl ca-certificates chromium chromium-driver python3 python3-venv \
         patchelf gcc libc6-dev binutils; do
  have "$p" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v rustfmt >/dev/null || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
