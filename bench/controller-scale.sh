#!/bin/bash
# Controller cost per host (issue 18): `tarmac exec` and `tarmac preflight` against N simulated
# SSH hosts, against the OpenSSH client fanned out with xargs to the same hosts in the same run.
#
# The hosts are one russh server (crates/tarmac-ssh/examples/sim_fleet.rs) answering on
# 127.x.y.z:2222 for every address (all of 127/8 is routed to lo): every host is a real SSH
# connection (key exchange, public-key login, channels, uploads) with nothing behind it, so
# what is measured is the controller alone: peak memory (max RSS), CPU (user + sys), the peak of
# its open file descriptors, and the journal and log bytes it leaves, each per host.
#
# Sizes: NS (default "1000 10000"). Parallelism: P (default 500; also the OpenSSH fan-out).
# Env: TARMAC (a built binary; default: cargo build --release), SIM (the simulator, likewise). Needs nothing from the lab and
# no root; the simulator needs `ulimit -n` above 2·P (raised here when allowed).
# Prints a markdown section and writes it to bench/results/controller-scale.md.
set -euo pipefail
cd "$(dirname "$0")/.."
NS=${NS:-1000 10000}
P=${P:-500}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ -z "${TARMAC:-}" ]; then
  echo "building the release binaries…" >&2
  cargo build --release -q -p tarmac --bin tarmac
  TARMAC=$PWD/target/release/tarmac
fi
if [ -z "${SIM:-}" ]; then
  cargo build --release -q -p tarmac-ssh --example sim_fleet
  SIM=$PWD/target/release/examples/sim_fleet
fi
W=$(mktemp -d /tmp/tarmac-bench-ctl.XXXXXX)
cleanup() { [ -z "${SIM_PID:-}" ] || kill "$SIM_PID" 2>/dev/null || true; }
trap cleanup EXIT

ssh-keygen -q -t ed25519 -N '' -f "$W/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$W/id_ed25519"
# Bound to every address so that all of 127/8 reaches it; it refuses logins from anything
# but loopback.
"$SIM" "$W/host_key" 0.0.0.0:2222 >"$W/sim.out" 2>"$W/sim.err" &
SIM_PID=$!
for _ in $(seq 50); do grep -q '^ready' "$W/sim.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^ready' "$W/sim.out" || { cat "$W/sim.err" >&2; exit 1; }

echo "building the reference distribution (for preflight's genconf)…" >&2
"$TARMAC" keygen --dir "$W/keys" --name bench >/dev/null
"$TARMAC" build --tree dist/reference --out "$W/build" --sign-key "$W/keys/bench.key" >"$W/build.log" 2>&1 \
  || { tail -20 "$W/build.log" >&2; exit 1; }

# n distinct loopback addresses, one per line: 127.1.0.1, 127.1.0.2, …
hosts_file() { # n → one address per line, distinct
  python3 - "$1" <<'PY'
import sys
n = int(sys.argv[1])
out = []
i = 0
while len(out) < n:
    a, b, c = 1 + i // 65025, (i // 255) % 255, i % 255 + 1
    out.append(f"127.{a}.{b}.{c}")
    i += 1
print("\n".join(out))
PY
}

# shellcheck source=bench/lib.sh
. bench/lib.sh  # the scripts run from the repository root (cd above)

rows=()
for n in $NS; do
  G=$W/g$n/genconf
  mkdir -p "$G"
  hosts_file "$n" >"$W/hosts-$n"
  {
    echo "cluster_name: bench-ctl"
    echo "bootstrap_url: http://127.0.0.1:18080"
    echo "ssh_user: root"
    echo "ssh_port: 2222"
    echo "ssh_key_path: $W/id_ed25519"
    echo "ssh_host_key_policy: off"
    echo "ssh_parallelism: $P"
    echo "master_list:"; head -3 "$W/hosts-$n" | sed 's/^/- /'
    echo "agent_list:"; tail -n +4 "$W/hosts-$n" | sed 's/^/- /'
  } >"$G/config.yaml"
  printf '#!/bin/sh\necho 127.0.0.1\n' >"$G/ip-detect"
  "$TARMAC" genconf --genconf-dir "$G" --build-dir "$W/build" --public-key "$W/keys/bench.pub" >"$W/genconf-$n.log" 2>&1 \
    || { tail -20 "$W/genconf-$n.log" >&2; exit 1; }

  before=$(du -sb "$G/state" 2>/dev/null | cut -f1 || echo 0)
  read -r e_rss e_cpu e_wall e_fd e_rc < <(measure "exec-$n" "$TARMAC" exec --genconf-dir "$G" --parallel "$P" --quiet -- true)
  after=$(du -sb "$G/state" "$G/logs" 2>/dev/null | awk '{s += $1} END {print s + 0}')
  e_bytes=$((after - before))
  before=$after
  read -r p_rss p_cpu p_wall p_fd p_rc < <(measure "preflight-$n" "$TARMAC" preflight --genconf-dir "$G" --push)
  after=$(du -sb "$G/state" "$G/logs" 2>/dev/null | awk '{s += $1} END {print s + 0}')
  p_bytes=$((after - before))
  # The peer: the OpenSSH client, one process per host, P at a time, same hosts, same command.
  read -r o_rss o_cpu o_wall o_fd o_rc < <(measure "openssh-$n" bash -c "xargs -P $P -I{} ssh -q -p 2222 -i $W/id_ed25519 -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ControlMaster=no root@{} true <'$W/hosts-$n'")
  for rc in "$e_rc" "$p_rc" "$o_rc"; do
    [ "$rc" -eq 0 ] || { echo "a measured stage failed at $n hosts (exit $rc); see $W" >&2; exit 1; }
  done
  per() { awk -v a="$1" -v n="$n" -v m="$2" 'BEGIN { printf "%.2f", a * m / n }'; }
  rows+=("| $n | tarmac exec true (P $P) | ${e_wall} s | $(per "$e_rss" 0.001) MB/$((e_rss / 1024)) MB | $(per "$e_cpu" 1000) ms | $e_fd | $(per "$e_bytes" 1) B |")
  rows+=("| $n | tarmac preflight --push (P $P) | ${p_wall} s | $(per "$p_rss" 0.001) MB/$((p_rss / 1024)) MB | $(per "$p_cpu" 1000) ms | $p_fd | $(per "$p_bytes" 1) B |")
  rows+=("| $n | OpenSSH xargs -P $P ssh true (all processes) | ${o_wall} s | peak of one: $((o_rss / 1024)) MB | $(per "$o_cpu" 1000) ms | – | – |")
done

out=$(
  echo "## Controller cost per host (simulated SSH fleet, $(date -u +%Y-%m-%d))"
  echo
  echo "One russh server answers as every host (127.x.y.z:2222); each host is a real SSH connection."
  echo "Memory is the controller's peak RSS, per host and total; CPU is user + sys per host for the"
  echo "whole stage; fds is the peak of the controller's open file descriptors; bytes are the journal"
  echo "and logs the stage left, per host. The OpenSSH row counts every ssh process (/usr/bin/time of xargs)."
  echo
  echo "| hosts | what | wall | memory per host / total | CPU per host | fd peak | journal+log per host |"
  echo "|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
)
mkdir -p bench/results
echo "$out" | tee bench/results/controller-scale.md
rm -rf "$W"
