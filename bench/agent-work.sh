#!/bin/bash
# Agent deploy work, before and after role-aware extraction (issue 18): what one host spends
# taking the reference distribution into its store — read every pinned archive, verify it,
# keep it, and extract it — measured with `tarmac-host fetch` of the genconf package list
# from the serve directory (file:// repository, so no network in the figure).
#   before  --extract-all: every package extracted (the behaviour until now)
#   after   the default: only packages the host's roles use are extracted; the others stay
#           verified archives (etcd and prometheus on an agent)
# For roles agent and master, $ROUNDS rounds each (median): CPU seconds (user + sys), bytes
# the process wrote (write_bytes, GNU time's %O × 512), bytes the store holds, wall time.
# Activation after the fetch (links, units) is the same in both and is measured in
# bench/activation.sh. Prints a markdown table and writes $OUT (bench/results/agent-work.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
OUT=${OUT:-bench/results/agent-work.md}
mkdir -p bench/results
# shellcheck source=bench/lib.sh
. bench/lib.sh  # the scripts run from the repository root (cd above)
tarmac_binaries
W=$(mktemp -d /var/tmp/tarmac-bench-agent.XXXXXX)
trap 'rm -rf "$W"' EXIT

echo "building the reference distribution…" >&2
"$TARMAC" keygen --dir "$W/keys" --name bench >/dev/null
"$TARMAC" build --tree dist/reference --out "$W/build" --sign-key "$W/keys/bench.key" \
  --host-binary "$HOST_BIN" >"$W/build.log" 2>&1 || { tail -20 "$W/build.log" >&2; exit 1; }
G=$W/genconf
mkdir -p "$G"
cat >"$G/config.yaml" <<'EOF'
cluster_name: bench
bootstrap_url: http://10.0.0.254:8080
master_list: [10.0.0.1, 10.0.0.2, 10.0.0.3]
agent_list: [10.0.1.1]
EOF
printf '#!/bin/sh\necho 10.0.0.1\n' >"$G/ip-detect"
"$TARMAC" genconf --genconf-dir "$G" --build-dir "$W/build" --public-key "$W/keys/bench.pub" >"$W/genconf.log" 2>&1 \
  || { tail -20 "$W/genconf.log" >&2; exit 1; }
SERVE=$G/serve
LIST=$SERVE/package_lists/$(cat "$SERVE/cluster-package-list.latest").package_list.json
archives=$(find "$SERVE/packages" -name '*.tar.zst' -printf '%s\n' | awk '{ s += $1 } END { print s }')

# one ROLE MODE → "cpu_s write_bytes store_bytes wall_s"
one() {
  local role=$1 mode=$2 r=$W/host
  rm -rf "$r"
  mkdir -p "$r/etc/roles" "$r/opt"
  : >"$r/etc/roles/$role"
  local flags=()
  [ "$mode" = before ] && flags=(--extract-all)
  sync
  # GNU time: %O is the file system outputs (the process's write_bytes / 512).
  /usr/bin/time -f '%U %S %e %O' -o "$W/time" "$HOST_BIN" "${flags[@]}" --root "$r/opt" --config-dir "$r/etc" \
    --state-dir-root "$r/state" --rooted-systemd --no-systemd --no-users \
    fetch --repository-url "file://$SERVE" --package-list "$LIST" >"$W/fetch.out" 2>&1 \
    || { cat "$W/fetch.out" >&2; exit 1; }
  local store
  store=$(du -sb "$r/opt/packages" | cut -f1)
  # GNU time puts "Command exited…" first on a failure: the figures are the last line.
  tail -n 1 "$W/time" | awk -v s="$store" '{ printf "%.2f %d %d %.2f\n", $1 + $2, $4 * 512, s, $3 }'
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

rows=()
declare -A res
for role in agent master; do
  for mode in before after; do
    : >"$W/r.txt"
    for _ in $(seq "$ROUNDS"); do one "$role" "$mode" >>"$W/r.txt"; done
    cpu=$(cut -d' ' -f1 "$W/r.txt" | median)
    wb=$(cut -d' ' -f2 "$W/r.txt" | median)
    store=$(cut -d' ' -f3 "$W/r.txt" | median)
    wall=$(cut -d' ' -f4 "$W/r.txt" | median)
    res[$role-$mode]="$cpu $wb"
    rows+=("| $role | $mode | $cpu | $(awk -v b="$wb" 'BEGIN { printf "%.0f", b / 1e6 }') | $(awk -v b="$store" 'BEGIN { printf "%.0f", b / 1e6 }') | $wall |")
  done
done
# The floor: `zstd -dc | tar -x` of every archive (nothing verified, nothing kept), then one
# `sync` — what a master's `--extract-all`-free fetch is compared with.
floor_one() {
  local d=$W/floor
  rm -rf "$d"
  mkdir -p "$d"
  sync
  /usr/bin/time -f '%U %S %e %O' -o "$W/time" bash -c '
    for f in "$1"/packages/*/*.tar.zst; do
      o=$2/$(basename "$f" .tar.zst); mkdir -p "$o"; zstd -dcq "$f" | tar -x -C "$o"
    done
    sync' _ "$SERVE" "$d"
  tail -n 1 "$W/time" | awk '{ printf "%.2f %d %.2f\n", $1 + $2, $4 * 512, $3 }'
}
: >"$W/f.txt"
for _ in $(seq "$ROUNDS"); do floor_one >>"$W/f.txt"; done
f_cpu=$(cut -d' ' -f1 "$W/f.txt" | median)
f_wb=$(cut -d' ' -f2 "$W/f.txt" | median)
f_wall=$(cut -d' ' -f3 "$W/f.txt" | median)
rows+=("| (floor) | \`zstd -dc \| tar -x\` of every archive + sync, nothing verified or kept | $f_cpu | $(awk -v b="$f_wb" 'BEGIN { printf "%.0f", b / 1e6 }') | – | $f_wall |")
ratio() { # role field → after / before
  awk -v b="$(cut -d' ' -f"$2" <<<"${res[$1-before]}")" -v a="$(cut -d' ' -f"$2" <<<"${res[$1-after]}")" 'BEGIN { printf "%.2f", a / b }'
}
{
  echo "## Agent deploy work, before and after role-aware extraction"
  echo
  echo "One host takes the reference distribution into its store ($(awk -v b="$archives" 'BEGIN { printf "%.0f", b / 1e6 }') MB of pinned archives, \`tarmac-host fetch\` from a file:// serve directory; median of $ROUNDS; $(nproc) CPUs, $(uname -r))."
  echo "*before*: every package extracted (\`--extract-all\`); *after*: only those the host's roles use."
  echo
  echo "| role | extraction | CPU s | written MB | store MB | wall s |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Agent, after / before: CPU $(ratio agent 1)×, bytes written $(ratio agent 2)× (goal ≤ 0.5×). Master: CPU $(ratio master 1)×, bytes written $(ratio master 2)× (a master uses every package)."
} | tee "$OUT"
