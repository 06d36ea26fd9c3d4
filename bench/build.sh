#!/bin/bash
# Benchmarks of `tarmac build` on the reference distribution (dist/reference):
#   - cold build with an empty source cache (includes `apt-get download` of the .debs),
#   - cold build with the .debs cached (sandboxed builds + packing only),
#   - warm build (nothing changed: the cache-hit path),
#   - bootstrap creation (packages built; archive + manifest), against
#     `tar -c | zstd -T0` of the same content at the same level,
#   - bootstrap decompression + extraction of every package (the host's path, via the
#     unpack_bootstrap example), against `zstd -d | tar -x` of the same bytes,
#   - package compression: `tarmac` packing of the largest package against
#     `tar -c | zstd -T0 -12` (same level) and `xz -6` (what pkgpanda used).
# Prints a markdown section and writes it to bench/results/build.md.
# Needs: release builds (made here), bwrap, zstd, xz, apt-get (network to the Debian mirror
# for the first cold run only).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

echo "building release binaries…" >&2
cargo build --release -q -p tarmac -p tarmac-host
cargo build --release -q -p tarmac-build --example unpack_bootstrap
tarmac=$root/target/release/tarmac
unpack=$root/target/release/examples/unpack_bootstrap

W=$(mktemp -d /tmp/tarmac-bench-build.XXXXXX)
trap 'rm -rf "$W"' EXIT
# The portable tarmac-host when TARMAC_PORTABLE_BIN_DIR is set (scripts/build-portable.sh).
cp "${TARMAC_PORTABLE_BIN_DIR:-target/release}/tarmac-host" "$W/tarmac-host"
export TARMAC_HOST_BIN=$W/tarmac-host

ns() { date +%s%N; }
secs() { echo "scale=3; ($2 - $1) / 1000000000" | bc; }
# run CMD… quietly; print seconds
timed() {
  local s e
  s=$(ns)
  "$@" >"$W/last.log" 2>&1 || { cat "$W/last.log" >&2; return 1; }
  e=$(ns)
  secs "$s" "$e"
}
best_of() { # n cmd… -> fastest seconds
  local n=$1 best='' t
  shift
  for _ in $(seq "$n"); do
    t=$(timed "$@")
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc)" = 1 ]; then best=$t; fi
  done
  echo "$best"
}
mibps() { echo "scale=1; $1 / 1048576 / $2" | bc; }

build() { # out cache
  "$tarmac" build --tree dist/reference --out "$1" --cache "$2" --output json
}

echo "cold build, empty source cache…" >&2
t_cold_fetch=$(timed build "$W/out-cold1" "$W/cache")
echo "cold build, .debs cached…" >&2
t_cold=$(timed build "$W/out-cold2" "$W/cache")
echo "warm build…" >&2
t_warm=$(best_of 5 build "$W/out-cold2" "$W/cache")

out=$W/out-cold2
archive=$(ls "$out"/bootstrap/*.bootstrap.tar.zst)
npkg=$(ls "$out"/packages/*/*.tar.zst | wc -l)
pkg_bytes=$(cat "$out"/packages/*/*.tar.zst | wc -c)
archive_bytes=$(stat -c %s "$archive")

echo "bootstrap creation…" >&2
t_boot=$(best_of 3 bash -c "rm -rf '$out/bootstrap' && $(printf '%q' "$tarmac") build --tree dist/reference --out '$out' --cache '$W/cache' --output json")
# the same content, staged as files
stage=$W/stage
mkdir -p "$stage"
zstd -d -q -c "$archive" | tar -x -C "$stage"
tar_bytes=$(tar -c -C "$stage" . | wc -c)
t_boot_peer=$(best_of 3 bash -c "tar -c -C '$stage' . | zstd -T0 -3 -q -c > '$W/peer.tar.zst'")

echo "bootstrap decompression…" >&2
t_unpack=$(best_of 3 bash -c "rm -rf '$W/u1' && $(printf '%q' "$unpack") '$archive' '$W/u1'")
t_unpack_peer=$(best_of 3 bash -c "rm -rf '$W/u2' && mkdir -p '$W/u2/outer' && zstd -d -q -c '$archive' | tar -x -C '$W/u2/outer' && for p in '$W'/u2/outer/packages/*.tar.zst; do d='$W/u2/'\$(basename \"\$p\" .tar.zst); mkdir -p \"\$d\"; zstd -d -q -c \"\$p\" | tar -x -C \"\$d\"; done")
t_zstd_d=$(best_of 3 bash -c "zstd -d -q -c '$archive' > /dev/null")
extracted_bytes=$(du -sb "$W/u1" | cut -f1)

echo "package compression…" >&2
big=$(ls -S "$out"/packages/*/*.tar.zst | head -1)
bigdir=$W/big
mkdir -p "$bigdir"
zstd -d -q -c "$big" | tar -x -C "$bigdir"
big_raw=$(tar -c -C "$bigdir" . | wc -c)
t_big_ours=$(best_of 3 bash -c "rm -f '$out'/packages/prometheus/*.tar.zst && $(printf '%q' "$tarmac") build --tree dist/reference --out '$out' --cache '$W/cache' --output json prometheus")
t_big_peer=$(best_of 3 bash -c "tar -c -C '$bigdir' . | zstd -T0 -12 -q -c > '$W/big.tar.zst'")
t_big_xz=$(timed bash -c "tar -c -C '$bigdir' . | xz -6 -c > '$W/big.tar.xz'")
big_ours_bytes=$(stat -c %s "$big")
big_peer_bytes=$(stat -c %s "$W/big.tar.zst")
big_xz_bytes=$(stat -c %s "$W/big.tar.xz")

mkdir -p bench/results
{
  echo "## Package builder (\`bench/build.sh\`)"
  echo
  echo "Reference distribution: $npkg packages, $(echo "scale=1; $pkg_bytes/1048576" | bc) MiB of packages; bootstrap archive $(echo "scale=1; $archive_bytes/1048576" | bc) MiB; $(nproc) cores; release build."
  echo
  echo "| what | tarmac | peer (same content) |"
  echo "|---|---|---|"
  echo "| cold build, empty source cache (incl. apt-get download of 4 .debs) | ${t_cold_fetch} s | – |"
  echo "| cold build, .debs cached (5 sandboxed builds + packing + bootstrap + manifest) | ${t_cold} s | – |"
  echo "| warm build, nothing changed (ids, cache hits, manifest) | ${t_warm} s | – |"
  echo "| bootstrap creation ($(echo "scale=1; $tar_bytes/1048576" | bc) MiB tar, zstd -3) | ${t_boot} s ($(mibps "$tar_bytes" "$t_boot") MiB/s, incl. manifest) | \`tar -c \| zstd -T0 -3\`: ${t_boot_peer} s ($(mibps "$tar_bytes" "$t_boot_peer") MiB/s) |"
  echo "| bootstrap unpack: verify + extract every package ($(echo "scale=1; $extracted_bytes/1048576" | bc) MiB out) | ${t_unpack} s ($(mibps "$extracted_bytes" "$t_unpack") MiB/s) | \`zstd -d \| tar -x\` (outer + each package): ${t_unpack_peer} s ($(mibps "$extracted_bytes" "$t_unpack_peer") MiB/s); \`zstd -d\` outer only: ${t_zstd_d} s |"
  echo "| pack largest package ($(basename "$(dirname "$big")"), $(echo "scale=1; $big_raw/1048576" | bc) MiB tar), zstd -12 | ${t_big_ours} s incl. sandboxed build → $(echo "scale=1; $big_ours_bytes/1048576" | bc) MiB | \`tar \| zstd -T0 -12\`: ${t_big_peer} s → $(echo "scale=1; $big_peer_bytes/1048576" | bc) MiB; \`xz -6\` (pkgpanda): ${t_big_xz} s → $(echo "scale=1; $big_xz_bytes/1048576" | bc) MiB |"
} | tee bench/results/build.md
