#!/bin/bash
# Relay benchmark (issue 18): deploy the reference distribution onto N systemd lab hosts
# (3 masters + N-3 agents; default N=100) with the bootstrap node's egress limited to RATE
# (default 200mbit: tc tbf on the lab bridge br0 in the control namespace, which is where the
# installer's artifact server sends from; host-to-host traffic is bridged port to port and
# never passes that qdisc), three ways, in one run:
#   1. tarmac deploy, no relay          every host pulls from the bootstrap node
#   2. tarmac deploy, relay_fanout K    (default K=10) hosts pull from peers in a K-ary tree
#   3. the HTTP-pull floor               every host runs `curl | zstd -d | tar -x` of every
#                                        package from the same server at the same limit
#                                        (OpenSSH fan-out, xargs -P P; nothing verified)
# Between variants the cluster is uninstalled and checked clean. Also records the bootstrap
# node's bytes sent per variant (br0 tx counter). Prints a markdown table and writes $OUT
# (default bench/results/relay.md). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "relay.sh needs root" >&2; exit 1; }
N=${N:-100}
K=${K:-10}
RATE=${RATE:-200mbit}
P=${PARALLEL:-50}
OUT=${OUT:-bench/results/relay.md}
# shellcheck source=bench/lib.sh
. bench/lib.sh  # the scripts run from the repository root (cd above)
tarmac_binaries
W=$(mktemp -d /tmp/tarmac-bench-relay.XXXXXX)
LAB=bench-relay
trap '"$TARMAC" lab down --name $LAB >/dev/null 2>&1 || true; if [ -n "${KEEP:-}" ]; then echo "kept: $W" >&2; else rm -rf "$W"; fi' EXIT
ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }

echo "building the reference distribution…" >&2
"$TARMAC" keygen --dir "$W/keys" --name bench >/dev/null
"$TARMAC" build --tree dist/reference --out "$W/build" --sign-key "$W/keys/bench.key" \
  --host-binary "$HOST_BIN" >"$W/build.log" 2>&1 || { tail -20 "$W/build.log" >&2; exit 1; }

"$TARMAC" lab down --name $LAB >/dev/null 2>&1 || true
echo "lab of $N systemd hosts…" >&2
# zstd for the floor's `curl | zstd -d | tar -x` (the default image has no zstd: tarmac-host
# decompresses by itself); the first `up` with it builds and caches that image.
"$TARMAC" lab up --name $LAB --masters 3 --agents $((N - 3)) --extra-packages zstd >"$W/lab.log" 2>&1 || { tail -20 "$W/lab.log" >&2; exit 1; }
LD=/var/lib/tarmac-lab/$LAB
G=$W/genconf
mkdir -p "$G"
cp "$LD/genconf/config.yaml" "$LD/genconf/ip-detect" "$G/"
sed -i '/^ssh_parallelism:/d' "$G/config.yaml"
echo "ssh_parallelism: $P" >>"$G/config.yaml"
CTL=tm-$LAB-ctl
genconf() { "$TARMAC" genconf --genconf-dir "$G" --build-dir "$W/build" --public-key "$W/keys/bench.pub" >"$W/genconf.log" 2>&1 || { tail -20 "$W/genconf.log" >&2; exit 1; }; }
genconf
grep '^Host [a-z]' "$LD/ssh_config" | cut -d' ' -f2 >"$W/hosts"
SSH_OPTS=(-F "$LD/ssh_config" -o BatchMode=yes -o ControlMaster=no -o ControlPath=none)
uninstall() {
  ip netns exec "$CTL" "$TARMAC" uninstall --yes --genconf-dir "$G" >"$W/u.log" 2>&1 || { tail -20 "$W/u.log" >&2; exit 1; }
  ip netns exec "$CTL" xargs -P "$P" -I{} ssh "${SSH_OPTS[@]}" {} \
    'for p in /opt/tarmac /etc/tarmac /var/lib/tarmac-push; do [ ! -e $p ] || { echo "$(hostname): $p left"; exit 1; }; done; rm -rf /var/tmp/floor' <"$W/hosts" >&2 \
    || { echo "uninstall left files behind" >&2; exit 1; }
}
tx() { ip netns exec "$CTL" cat /sys/class/net/br0/statistics/tx_bytes; }
mb() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) / 1e6 }'; }

echo "limiting the bootstrap node's egress to $RATE…" >&2
ip netns exec "$CTL" tc qdisc replace dev br0 root tbf rate "$RATE" burst 256kb latency 400ms
ip netns exec "$CTL" tc qdisc show dev br0 >"$W/tc.txt"

# 1. no relay
echo "deploy, no relay…" >&2
b0=$(tx); s=$(ns)
ip netns exec "$CTL" "$TARMAC" deploy --genconf-dir "$G" >"$W/direct.log" 2>&1 || { tail -30 "$W/direct.log" >&2; exit 1; }
t_direct=$(secs "$s" "$(ns)"); mb_direct=$(mb "$b0" "$(tx)")
echo "  no relay: ${t_direct} s, ${mb_direct} MB from the bootstrap node" >&2
uninstall

# 2. relay
echo "deploy, relay_fanout $K…" >&2
echo "relay_fanout: $K" >>"$G/config.yaml"
genconf
b0=$(tx); s=$(ns)
ip netns exec "$CTL" "$TARMAC" deploy --genconf-dir "$G" >"$W/relay.log" 2>&1 || { tail -30 "$W/relay.log" >&2; exit 1; }
t_relay=$(secs "$s" "$(ns)"); mb_relay=$(mb "$b0" "$(tx)")
echo "  relay: ${t_relay} s, ${mb_relay} MB from the bootstrap node" >&2
uninstall
sed -i '/^relay_fanout:/d' "$G/config.yaml"
genconf

# 3. the floor: every host pulls and unpacks every package from the same server, same limit
# (FLOOR=0 skips it).
t_floor="not run"; mb_floor="–"
if [ "${FLOOR:-1}" != 0 ]; then
echo "HTTP-pull floor…" >&2
URL=$(sed -n 's/^bootstrap_url: *//p' "$G/config.yaml")
(cd "$G/serve" && find packages -name '*.tar.zst') >"$W/pkgs"
PKGS=$(tr '\n' ' ' <"$W/pkgs")
ip netns exec "$CTL" "$TARMAC" serve --genconf-dir "$G" >"$W/serve.log" 2>&1 &
SERVE=$!
for _ in $(seq 100); do ip netns exec "$CTL" curl -fs -o /dev/null "$URL/install.sh" && break; sleep 0.1; done
b0=$(tx); s=$(ns)
ip netns exec "$CTL" xargs -P "$P" -I{} ssh "${SSH_OPTS[@]}" {} \
  "set -e; for p in $PKGS; do d=/var/tmp/floor/\$(basename \$p .tar.zst); mkdir -p \$d; curl -fsS $URL/\$p | zstd -dq | tar -x -C \$d; done" <"$W/hosts" \
  || { echo "floor variant failed" >&2; exit 1; }
t_floor=$(secs "$s" "$(ns)"); mb_floor=$(mb "$b0" "$(tx)")
kill "$SERVE" 2>/dev/null || true
ip netns exec "$CTL" xargs -P "$P" -I{} ssh "${SSH_OPTS[@]}" {} 'rm -rf /var/tmp/floor' <"$W/hosts"
t_floor="$t_floor s"; mb_floor="$mb_floor MB"
fi
ip netns exec "$CTL" tc qdisc del dev br0 root || true

speedup=$(awk -v a="$t_direct" -v b="$t_relay" 'BEGIN { printf "%.1f", a / b }')
{
  echo "### Relay vs no relay (\`bench/relay.sh\`, $(date -u +%Y-%m-%d))"
  echo
  echo "$N systemd hosts (3 masters + $((N - 3)) agents), reference distribution, bootstrap node egress limited to $RATE"
  echo "(tc tbf on br0 in the control namespace), SSH parallelism $P. Bootstrap MB = bytes the control"
  echo "namespace sent on the bridge during the run (artifacts + SSH)."
  echo
  echo "| way | wall | bootstrap node sent |"
  echo "|---|---|---|"
  echo "| tarmac deploy, no relay | ${t_direct} s | ${mb_direct} MB |"
  echo "| tarmac deploy, relay_fanout $K | ${t_relay} s | ${mb_relay} MB |"
  echo "| HTTP-pull floor (curl \| zstd -d \| tar -x, xargs -P $P, nothing verified) | ${t_floor} | ${mb_floor} |"
  echo
  echo "Relay speed-up over direct: **${speedup}×** (goal ≥ 3×)."
} | tee "$OUT"
