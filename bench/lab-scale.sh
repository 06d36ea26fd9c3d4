#!/bin/bash
# Benchmark of the lab at scale: `tarmac lab up` / `down` of
#   - SYSTEMD_N (100) systemd hosts (every host boots systemd; up waits until each reports
#     `systemctl is-system-running` and answers SSH),
#   - PLAIN_N (500) plain hosts (tiny init + sshd),
# plus one SSH login (`hostname`, host-key checking on, 16 in parallel) to every host,
# the memory the hosts use, and a check that `down` left no namespace or cgroup behind.
# The root image is built (or found in the cache) first and not timed.
# Prints a markdown section and writes it to bench/results/lab-scale.md.
# Needs: root. Env: TARMAC (a built binary; default: cargo build --release), SYSTEMD_N, PLAIN_N.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "lab-scale.sh needs root" >&2; exit 1; }
SYSTEMD_N=${SYSTEMD_N:-100}
PLAIN_N=${PLAIN_N:-500}
if [ -z "${TARMAC:-}" ]; then
  echo "building the release binary…" >&2
  cargo build --release -q -p tarmac
  TARMAC=$PWD/target/release/tarmac
fi
W=$(mktemp -d /tmp/tarmac-bench-lab.XXXXXX)

ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }
used_mb() { free -m | awk '/^Mem:/ { print $3 }'; }

echo "warming the root image cache (not timed)…" >&2
"$TARMAC" lab up --name bench-warm --masters 1 --agents 0 >"$W/warm.log" 2>&1 || { cat "$W/warm.log" >&2; exit 1; }
"$TARMAC" lab down --name bench-warm >/dev/null 2>&1

rows=()
trap 'rm -rf "$W"; "$TARMAC" lab down --name bench-sd >/dev/null 2>&1; "$TARMAC" lab down --name bench-plain >/dev/null 2>&1' EXIT
run() { # name mode n
  local name=$1 mode=$2 n=$3 s e up down ssh_s mem0 mem1 ok states left
  "$TARMAC" lab down --name "$name" >/dev/null 2>&1 || true
  mem0=$(used_mb)
  echo "$name: up of $n $mode hosts…" >&2
  s=$(ns)
  "$TARMAC" lab up --name "$name" --mode "$mode" --masters 3 --agents $((n - 3)) >"$W/$name.up" 2>&1 \
    || { cat "$W/$name.up" >&2; "$TARMAC" lab down --name "$name" >&2; exit 1; }
  e=$(ns); up=$(secs "$s" "$e")
  mem1=$(used_mb)
  "$TARMAC" lab status --name "$name" --json >"$W/$name.json"
  states=$( (grep -o '"boot_state": "[a-z]*' "$W/$name.json" || true) | cut -d'"' -f4 | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $2; sep=", "}')
  [ -n "$states" ] || states="n/a (no systemd)"
  echo "$name: ssh hostname on every host…" >&2
  s=$(ns)
  ok=$("$TARMAC" lab exec --name "$name" -- sh -c '
      grep "^Host [a-z]" "$TARMAC_LAB_DIR/ssh_config" | cut -d" " -f2 |
      xargs -P 16 -I{} ssh -F "$TARMAC_LAB_DIR/ssh_config" -o ControlMaster=no -o ControlPath=none {} hostname' | wc -l)
  e=$(ns); ssh_s=$(secs "$s" "$e")
  echo "$name: down…" >&2
  s=$(ns)
  "$TARMAC" lab down --name "$name" >"$W/$name.down" 2>&1 || { cat "$W/$name.down" >&2; exit 1; }
  e=$(ns); down=$(secs "$s" "$e")
  left=$( (ip netns list | grep -c "^tm-$name-") || true)
  if [ -d "/sys/fs/cgroup/unified/tarmac-lab/$name" ] || [ -d "/sys/fs/cgroup/tarmac-lab/$name" ]; then
    left="$left + cgroup"
  fi
  rows+=("| $n | $mode | $up | $states | $ok/$n in $ssh_s | $down | $((mem1 - mem0)) | $left |")
}

[ "$SYSTEMD_N" -gt 0 ] && run bench-sd systemd "$SYSTEMD_N"
[ "$PLAIN_N" -gt 0 ] && run bench-plain plain "$PLAIN_N"

{
  echo "### Lab scale ($(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, kernel $(uname -r))"
  echo
  echo "| hosts | mode | \`lab up\` (s) | boot states | ssh \`hostname\` to every host (16 parallel, s) | \`lab down\` (s) | memory used (MB) | netns left |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee "$W/out.md"
mkdir -p bench/results
cp "$W/out.md" bench/results/lab-scale.md
