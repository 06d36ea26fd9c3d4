#!/bin/bash
# Controller cost per host on real lab hosts (issue 18): `tarmac exec` and `tarmac preflight`
# against N plain lab hosts (each its own network namespace, IP and sshd; no systemd), against
# the OpenSSH client fanned out with xargs to the same hosts in the same run.
#
# Per host: the controller's peak memory (max RSS), CPU (user + sys), the peak of its open file
# descriptors, and the journal and log bytes the stage leaves. Plain hosts have no systemd, so
# preflight's systemd checks fail on every host: the stage still runs every check on every host
# (what is measured is the controller's cost), and its exit status is recorded, not required.
#
# Sizes: N (default 1000). Parallelism: P (default 500; also the OpenSSH fan-out).
# Env: TARMAC (a built binary; default: cargo build --release). Needs root (the lab).
# PERF=1 also profiles the preflight with `perf record -g` (its CPU figure then includes perf's
# overhead) and writes the top of the report to bench/results/controller-lab-perf.txt.
# Prints a markdown section and writes it to bench/results/controller-lab.md.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
P=${P:-500}
NAME=${NAME:-bench-ctl}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ -z "${TARMAC:-}" ]; then
  echo "building the release binary…" >&2
  cargo build --release -q -p tarmac --bin tarmac
  TARMAC=$PWD/target/release/tarmac
fi
W=$(mktemp -d /tmp/tarmac-bench-ctl-lab.XXXXXX)
trap '"$TARMAC" lab down --name "$NAME" >/dev/null 2>&1 || true; rm -rf "$W"' EXIT

echo "building the reference distribution (for preflight's genconf)…" >&2
"$TARMAC" keygen --dir "$W/keys" --name bench >/dev/null
"$TARMAC" build --tree dist/reference --out "$W/build" --sign-key "$W/keys/bench.key" >"$W/build.log" 2>&1 \
  || { tail -20 "$W/build.log" >&2; exit 1; }

echo "lab up: $N plain hosts…" >&2
"$TARMAC" lab down --name "$NAME" >/dev/null 2>&1 || true
s=$(date +%s.%N)
"$TARMAC" lab up --name "$NAME" --mode plain --masters 3 --agents $((N - 3)) >"$W/up.log" 2>&1 \
  || { tail -20 "$W/up.log" >&2; exit 1; }
up_s=$(awk -v s="$s" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
LD=/var/lib/tarmac-lab/$NAME
G=$LD/genconf
CTL=$(ip netns list | awk '{print $1}' | grep -x "tm-$NAME-ctl" || true)
[ -n "$CTL" ] || { echo "no control namespace tm-$NAME-ctl" >&2; ip netns list | head >&2; exit 1; }
in_ctl() { ip netns exec "$CTL" "$@"; }
sed -i '/^ssh_parallelism:/d' "$G/config.yaml"
echo "ssh_parallelism: $P" >>"$G/config.yaml"
"$TARMAC" genconf --genconf-dir "$G" --build-dir "$W/build" --public-key "$W/keys/bench.pub" >"$W/genconf.log" 2>&1 \
  || { tail -20 "$W/genconf.log" >&2; exit 1; }
grep '^Host [a-z]' "$LD/ssh_config" | cut -d' ' -f2 >"$W/hosts"
[ "$(wc -l <"$W/hosts")" -eq "$N" ] || { echo "expected $N hosts in $LD/ssh_config" >&2; exit 1; }

# shellcheck source=bench/lib.sh
. bench/lib.sh  # the scripts run from the repository root (cd above)
bytes() { { du -sb "$G/state" "$G/logs" 2>/dev/null || true; } | awk '{s += $1} END {print s + 0}'; }
per() { awk -v a="$1" -v n="$N" -v m="$2" 'BEGIN { printf "%.2f", a * m / n }'; }

echo "tarmac exec…" >&2
b0=$(bytes)
read -r e_rss e_cpu e_wall e_fd e_rc < <(measure exec ip netns exec "$CTL" "$TARMAC" exec --genconf-dir "$G" --parallel "$P" --quiet -- true)
# exec's own summary line: how many hosts answered.
e_sum=$(grep -E '^[0-9]+ hosts:' "$W/exec.out" | tail -n 1 || true)
[ "$e_rc" -eq 0 ] || { echo "exec exited $e_rc: $e_sum" >&2; tail -n 20 "$W/exec.err" >&2; }
b1=$(bytes)
echo "tarmac preflight…" >&2
perf=()
[ -z "${PERF:-}" ] || perf=(perf record -q -F 999 -g -o "$W/perf.data" --)
read -r p_rss p_cpu p_wall p_fd p_rc < <(measure preflight ip netns exec "$CTL" "${perf[@]}" "$TARMAC" preflight --genconf-dir "$G")
if [ -n "${PERF:-}" ]; then
  mkdir -p bench/results
  perf report -i "$W/perf.data" --stdio --no-children -g none --percent-limit 0.7 --sort dso,symbol 2>/dev/null | grep -v "^$" | head -n 80 >bench/results/controller-lab-perf.txt || true
  echo "profile: bench/results/controller-lab-perf.txt" >&2
fi
b2=$(bytes)
checked=$(grep -c 'check(s) failed\|✓' "$W/preflight.err" 2>/dev/null || true)
echo "OpenSSH…" >&2
read -r o_rss o_cpu o_wall o_fd o_rc < <(measure openssh ip netns exec "$CTL" bash -c "xargs -P $P -I{} ssh -q -F '$LD/ssh_config' -o BatchMode=yes -o ControlMaster=no -o ControlPath=none {} true <'$W/hosts'")
[ "$o_rc" -eq 0 ] || { echo "OpenSSH fan-out exited $o_rc" >&2; tail -n 20 "$W/openssh.err" >&2; }

out=$(
  echo "## Controller cost per host on $N plain lab hosts ($(date -u +%Y-%m-%d))"
  echo
  echo "\`tarmac lab up --mode plain\` of $N hosts took ${up_s} s. Each host is its own network namespace"
  echo "with its own sshd; the controller runs in the lab's control namespace. preflight serves the"
  echo "bootstrap and runs install.sh --preflight-only on every host (exit $p_rc: plain hosts have no systemd,"
  echo "so those checks fail; $checked host lines reported). exec: exit $e_rc, '$e_sum'; the OpenSSH"
  echo "fan-out exited $o_rc. The OpenSSH row counts every ssh process."
  echo
  echo "| hosts | what | wall | memory per host / total | CPU per host | fd peak | journal+log per host |"
  echo "|---|---|---|---|---|---|---|"
  echo "| $N | tarmac exec true (P $P) | ${e_wall} s | $(per "$e_rss" 0.001) MB/$((e_rss / 1024)) MB | $(per "$e_cpu" 1000) ms | $e_fd | $(per $((b1 - b0)) 1) B |"
  echo "| $N | tarmac preflight (P $P) | ${p_wall} s | $(per "$p_rss" 0.001) MB/$((p_rss / 1024)) MB | $(per "$p_cpu" 1000) ms | $p_fd | $(per $((b2 - b1)) 1) B |"
  echo "| $N | OpenSSH xargs -P $P ssh true (all processes) | ${o_wall} s | peak of one: $((o_rss / 1024)) MB | $(per "$o_cpu" 1000) ms | – | – |"
)
mkdir -p bench/results
echo "$out" | tee bench/results/controller-lab.md
