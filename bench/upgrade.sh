#!/usr/bin/env bash
# Upgrade benchmark (issue 9): deploy the reference distribution on 3 masters + $AGENTS
# agents (a systemd lab), then change an etcd setting (a config-only change: etcd restarts
# on every master) and upgrade the cluster two ways, in one run, while a probe on an agent
# writes and reads an etcd key every 100 ms (put + range on the first master that answers):
#   1. tarmac upgrade     rolling: masters one at a time gated on etcd quorum, agents in
#                         batches of $BATCH, confirm-or-revert on every host
#   2. all at once        the pkgpanda way: every host fetches the new package list and
#                         runs `tarmac-host setup` at the same time (ssh -P$AGENTS+3), no
#                         ordering, no gate
# Reports each upgrade's wall time and the longest interval the probe saw writes failing.
#
# Usage: AGENTS=50 BATCH=10% bench/upgrade.sh   (root; writes bench/results/upgrade.md)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "upgrade.sh needs root" >&2; exit 1; }
AGENTS=${AGENTS:-50}
BATCH=${BATCH:-10%}
LAB=${LAB_NAME:-benchupg}
OUT=bench/results/upgrade.md
mkdir -p bench/results
if [ -z "${TARMAC:-}" ]; then
  cargo build --release -q --bins
  TARMAC=$PWD/target/release/tarmac
fi
T=$TARMAC
# The tarmac-host the bootstrap ships: the portable build when TARMAC_PORTABLE_BIN_DIR is set
# (scripts/build-portable.sh prints it), else the one next to $TARMAC.
HOST_BIN=${TARMAC_PORTABLE_BIN_DIR:+$TARMAC_PORTABLE_BIN_DIR/tarmac-host}
HOST_BIN=${HOST_BIN:-$(dirname "$TARMAC")/tarmac-host}
[ -x "$HOST_BIN" ] || { echo "error: $HOST_BIN is missing${TARMAC_PORTABLE_BIN_DIR:+ (TARMAC_PORTABLE_BIN_DIR is set)}" >&2; echo "hint: run scripts/build-portable.sh" >&2; exit 1; }
W=$(mktemp -d /var/tmp/tarmac-bench-upgrade.XXXXXX)
SERVER=
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
  "$T" lab down --name "$LAB" >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT

echo "quickstart: 3 masters + $AGENTS agents…" >&2
"$T" quickstart --keep --name "$LAB" --masters 3 --agents "$AGENTS" --public-agents 0 --dir "$W/qs" \
  --host-binary "$HOST_BIN" \
  >"$W/quickstart.log" 2>&1 || { tail -30 "$W/quickstart.log" >&2; exit 1; }
G=$W/qs/genconf
LD=/var/lib/tarmac-lab/$LAB
rssh() { "$T" lab ssh --name "$LAB" "$1" "$2"; }
set_snapshot() {
  grep -v '^etcd_snapshot_count:' "$G/config.yaml" > "$W/c" && echo "etcd_snapshot_count: $1" >> "$W/c" && cp "$W/c" "$G/config.yaml"
  "$T" genconf --genconf-dir "$G" --build-dir "$W/qs/build" --public-key "$W/qs/keys/quickstart.pub" >/dev/null
}

MASTERS=$(awk '/^master_list:/{f=1;next} /^[a-z_]+:/{f=0} f && /- /{print $2}' "$G/config.yaml")
HOSTS=$(awk '/^(master|agent|public_agent)_list:/{f=1;next} /^[a-z_]+:/{f=0} f && /- /{print $2}' "$G/config.yaml")
PUBLIC=$(awk '/^public_agent_list:/{f=1;next} /^[a-z_]+:/{f=0} f && /- /{print $2}' "$G/config.yaml")
NHOSTS=$(echo "$HOSTS" | wc -w)
EPS=$(for m in $MASTERS; do printf 'http://%s:2379 ' "$m"; done)
PROBE='i=0; while true; do i=$((i+1)); v=$(printf %s $i | base64); ok=0; for ep in '"$EPS"'; do if curl -fsS -m 1 -X POST $ep/v3/kv/put -d "{\"key\":\"cHJvYmU=\",\"value\":\"$v\"}" >/dev/null 2>&1 && curl -fsS -m 1 -X POST $ep/v3/kv/range -d "{\"key\":\"cHJvYmU=\"}" 2>/dev/null | grep -q "$v"; then ok=1; break; fi; done; echo "$(date +%s.%N) $ok" >> /root/probe.log; sleep 0.1; done'
probe_start() { rssh agent-1 "rm -f /root/probe.log; systemd-run --quiet --unit=upgrade-probe /bin/bash -c $(printf '%q' "$PROBE")"; }
probe_stop() {
  rssh agent-1 "systemctl stop upgrade-probe; cat /root/probe.log" > "$W/probe.log"
  # ticks, longest failing interval (first failed tick to the next success)
  awk '{ n++; if ($2=="0" && s=="") s=$1; if ($2=="1" && s!="") { d=$1-s; if (d>m) m=d; s="" } }
       END { if (s!="") { d=$1-s; if (d>m) m=d }; printf "%d %.3f\n", n, m+0 }' "$W/probe.log"
}
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }

# 1. tarmac upgrade (rolling, quorum-aware).
set_snapshot 20000
probe_start
start=$(date +%s.%N)
"$T" lab exec --name "$LAB" -- "$T" upgrade --genconf-dir "$G" --batch "$BATCH" >"$W/upgrade.log" 2>&1 \
  || { tail -40 "$W/upgrade.log" >&2; exit 1; }
end=$(date +%s.%N)
read -r ticks1 longest1 < <(probe_stop)
secs1=$(secs "$start" "$end")
echo "tarmac upgrade: ${secs1}s, longest failing interval ${longest1}s ($ticks1 ticks)" >&2

# 2. Every host at once: new list into the setup flags, `tarmac-host setup`.
set_snapshot 30000
LIST=$(cat "$G/serve/cluster-package-list.latest")
"$T" lab exec --name "$LAB" -- "$T" serve --genconf-dir "$G" >"$W/serve.log" 2>&1 &
SERVER=$!
sleep 1
URL=$(cat "$LD/genconf/config.yaml" | awk '/^bootstrap_url:/{print $2}' | tr -d "'\"")
# The new config package's secret files (etcd_snapshot_count changed, so its id changed) are
# not in its archive: `tarmac upgrade` and `tarmac deploy` upload them over SSH before the
# switch (tarmac-installer secrets::deliver, Secrets::for_role), and `tarmac-host setup`
# refuses to activate the package without them. Do the same here, before the timed part
# (it touches no running service): for every setup_ package of the new list that has secret
# files, its .key and the files of the host's role (or of every role), from
# genconf/secrets/<id>/ to /etc/tarmac/secrets/<id>/, root, files 0600, new directories 0700.
secret_files() { # ROLE -> <id>/<path> lines below $G/secrets
  python3 - "$G/secrets/manifest.json" "$G/serve/package_lists/$LIST.package_list.json" "$1" <<'EOF'
import json, sys
manifest = json.load(open(sys.argv[1]))["packages"]
for e in json.load(open(sys.argv[2])):
    pid = e["id"] if isinstance(e, dict) else e
    if not pid.split("--", 1)[-1].startswith("setup_"):
        continue
    if pid not in manifest:
        sys.exit(f"{sys.argv[1]} does not list the config package {pid} (stale genconf/secrets)")
    mine = [f["path"] for f in manifest[pid]["files"] if f.get("role") in (None, sys.argv[3])]
    for p in [".key"] + mine if mine else []:
        print(f"{pid}/{p}")
EOF
}
for h in $HOSTS; do
  role=agent
  echo "$MASTERS" | grep -qx "$h" && role=master
  echo "$PUBLIC" | grep -qx "$h" && role=agent_public
  files=$(secret_files "$role")
  [ -n "$files" ] || continue
  # shellcheck disable=SC2086 # one <id>/<path> per word
  tar -C "$G/secrets" --owner=0 --group=0 --mode=u=rw,go= -cf - $files \
    | "$T" lab exec --name "$LAB" -- ssh -F "$LD/ssh_config" -l root "$h" \
        "[ -d /etc/tarmac ] || mkdir -p -m 0755 -- /etc/tarmac; umask 077 && mkdir -p -- /etc/tarmac/secrets && tar -C /etc/tarmac/secrets --no-same-owner -xf -" \
      >>"$W/secrets.log" 2>&1 || { echo "delivering the secret files to $h failed:" >&2; tail -20 "$W/secrets.log" >&2; exit 1; }
done
CMD="curl -fsS $URL/package_lists/$LIST.package_list.json -o /etc/tarmac/setup-flags/cluster-package-list.new && mv -f /etc/tarmac/setup-flags/cluster-package-list.new /etc/tarmac/setup-flags/cluster-package-list && /opt/tarmac/tarmac-host --wait setup"
probe_start
start=$(date +%s.%N)
echo "$HOSTS" | tr ' ' '\n' | grep . | "$T" lab exec --name "$LAB" -- xargs -P "$NHOSTS" -I{} \
  ssh -F "$LD/ssh_config" -l root {} "$CMD" >"$W/allatonce.log" 2>&1 || { tail -40 "$W/allatonce.log" >&2; exit 1; }
end=$(date +%s.%N)
read -r ticks2 longest2 < <(probe_stop)
secs2=$(secs "$start" "$end")
echo "all at once: ${secs2}s, longest failing interval ${longest2}s ($ticks2 ticks)" >&2
# Both ways end on the same cluster state: once the checks pass again (postflight polls),
# the installer's audit shows no drift.
"$T" lab exec --name "$LAB" -- "$T" postflight --genconf-dir "$G" >"$W/postflight.log" 2>&1 \
  || { echo "postflight after the all-at-once upgrade failed:" >&2; tail -20 "$W/postflight.log" >&2; exit 1; }
# The all-at-once switch bypassed the installer, so the cluster ledger's target is still the
# rolling upgrade's list and `status` would report every host as drifted. `tarmac upgrade`
# now finds every host already on the new list (unchanged: nothing is switched) and records
# that list as the target, as it does after any upgrade.
"$T" lab exec --name "$LAB" -- "$T" upgrade --genconf-dir "$G" --batch "$BATCH" >"$W/record.log" 2>&1 \
  || { echo "recording the all-at-once upgrade in the ledger failed:" >&2; tail -20 "$W/record.log" >&2; exit 1; }
"$T" lab exec --name "$LAB" -- "$T" status --genconf-dir "$G" >"$W/status.log" 2>&1 \
  || { echo "status after the all-at-once upgrade shows drift:" >&2; grep -v ' none$' "$W/status.log" | tail -20 >&2; exit 1; }

{
  echo "## Upgrade: 3 masters + $AGENTS agents, config-only change (etcd restarts on every master)"
  echo
  echo "| way | wall time | probe ticks | longest failing interval |"
  echo "|---|---|---|---|"
  echo "| tarmac upgrade (rolling, batch $BATCH, confirm-or-revert) | ${secs1} s | $ticks1 | ${longest1} s |"
  echo "| all hosts at once (list + \`tarmac-host setup\`, pkgpanda-style) | ${secs2} s | $ticks2 | ${longest2} s |"
} | tee "$OUT"
