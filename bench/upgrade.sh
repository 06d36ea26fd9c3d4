#!/usr/bin/env bash
# Upgrade benchmark: deploy the reference distribution on 3 masters + $AGENTS agents (a lab),
# change an etcd setting, genconf, then time `tarmac upgrade` while a probe on an agent
# writes and reads an etcd key every 100 ms (put + range on the first master that answers).
# Reports the upgrade's wall time and the longest interval the probe saw failing.
#
# Usage: AGENTS=50 BATCH=10% bench/upgrade.sh   (root; writes bench/results/upgrade.md)
set -euo pipefail
cd "$(dirname "$0")/.."
AGENTS=${AGENTS:-10}
BATCH=${BATCH:-10%}
LAB=${LAB_NAME:-benchupg}
OUT=bench/results/upgrade.md
mkdir -p bench/results
cargo build --release -q -p tarmac
T=$PWD/target/release/tarmac
W=$(mktemp -d /var/tmp/tarmac-bench-upgrade.XXXXXX)
cleanup() { "$T" lab down "$LAB" >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT

"$T" quickstart --keep --name "$LAB" --masters 3 --agents "$AGENTS" --public-agents 0 --dir "$W/qs" >"$W/quickstart.log" 2>&1
G=$W/qs/genconf
rssh() { "$T" lab ssh --name "$LAB" "$1" "$2"; }

grep -v '^etcd_snapshot_count:' "$G/config.yaml" > "$W/c" && echo 'etcd_snapshot_count: 20000' >> "$W/c" && cp "$W/c" "$G/config.yaml"
"$T" genconf --genconf-dir "$G" --build-dir "$W/qs/build" >/dev/null

MASTERS=$(awk '/^master_list:/{f=1;next} /^[a-z_]+:/{f=0} f && /- /{print $2}' "$G/config.yaml")
EPS=$(for m in $MASTERS; do printf 'http://%s:2379 ' "$m"; done)
PROBE='i=0; while true; do i=$((i+1)); v=$(printf %s $i | base64); ok=0; for ep in '"$EPS"'; do if curl -fsS -m 1 -X POST $ep/v3/kv/put -d "{\"key\":\"cHJvYmU=\",\"value\":\"$v\"}" >/dev/null 2>&1 && curl -fsS -m 1 -X POST $ep/v3/kv/range -d "{\"key\":\"cHJvYmU=\"}" 2>/dev/null | grep -q "$v"; then ok=1; break; fi; done; echo "$(date +%s.%N) $ok" >> /root/probe.log; sleep 0.1; done'
rssh agent-1 "rm -f /root/probe.log; systemd-run --quiet --unit=upgrade-probe /bin/bash -c $(printf '%q' "$PROBE")"

start=$(date +%s.%N)
"$T" lab exec --name "$LAB" -- "$T" upgrade --genconf-dir "$G" --batch "$BATCH" >"$W/upgrade.log" 2>&1 || { cat "$W/upgrade.log"; exit 1; }
end=$(date +%s.%N)
rssh agent-1 "systemctl stop upgrade-probe"
rssh agent-1 "cat /root/probe.log" > "$W/probe.log"
read -r ticks longest < <(awk '{ n++; if ($2=="0" && s=="") s=$1; if ($2=="1" && s!="") { d=$1-s; if (d>m) m=d; s="" } } END { printf "%d %.3f\n", n, m+0 }' "$W/probe.log")
secs=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}')
{
  echo "## Upgrade: 3 masters + $AGENTS agents (batch $BATCH)"
  echo
  echo "| upgrade wall time | probe ticks | longest failing interval |"
  echo "|---|---|---|"
  echo "| ${secs} s | $ticks | ${longest} s |"
} | tee "$OUT"
