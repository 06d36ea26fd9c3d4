#!/usr/bin/env bash
# Activation benchmark for tarmac-host (release build).
#
#  1. Extraction: `tarmac-host add` of a 30-package / ~5,000-file set (hash + decompress +
#     untar + per-file sha256 + syncfs + rename) against the floor `zstd -dc | tar -x` of
#     the same archives (with and without a final `sync`).
#  2. Activation on a scratch root (--rooted-systemd --no-systemd): first activation of the
#     set, a switch where all 30 packages change, and a rollback — median of $ROUNDS rounds,
#     with the flip itself (rename of `current` + fsync) as reported by tarmac-host.
#  3. Service downtime during a switch on a real systemd host (a one-host lab, skipped with
#     NO_LAB=1): a changed service and an unchanged one each append a timestamp every 5 ms;
#     the longest gap across the switch is the downtime each saw.
#
# Usage: bench/activation.sh            (needs root for the lab part)
# Output: a Markdown section on stdout, also written to bench/results/activation.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
LAB=${LAB_NAME:-benchact}
OUT=bench/results/activation.md
mkdir -p bench/results

cargo build --release -q -p tarmac-host --bin tarmac-host --example labctl
# The portable build when TARMAC_PORTABLE_BIN_DIR is set (scripts/build-portable.sh), else
# the release build just made.
BIN=${TARMAC_PORTABLE_BIN_DIR:+$TARMAC_PORTABLE_BIN_DIR/tarmac-host}
BIN=${BIN:-$PWD/target/release/tarmac-host}
[ -x "$BIN" ] || { echo "error: $BIN is missing" >&2; echo "hint: run scripts/build-portable.sh" >&2; exit 1; }
LABCTL=$PWD/target/release/examples/labctl
W=$(mktemp -d /var/tmp/tarmac-bench.XXXXXX)
lab_up=0
cleanup() {
    if [ "$lab_up" = 1 ]; then "$LABCTL" down "$LAB" >/dev/null 2>&1 || true; fi
    rm -rf "$W"
}
trap cleanup EXIT

# --- package set ------------------------------------------------------------------------
# 30 packages x 2 versions; ~166 files each (bin, lib/<name>/…, etc, a unit); contents are
# slices of the machine's shared libraries (compress like real binaries), 1–60 KiB each.
python3 - "$W" <<'EOF'
import os, random, sys, pathlib, json
w = pathlib.Path(sys.argv[1])
random.seed(42)
corpus = b""
for d in ["/usr/lib/x86_64-linux-gnu", "/usr/bin"]:
    for f in sorted(os.listdir(d)):
        p = os.path.join(d, f)
        if os.path.isfile(p) and not os.path.islink(p) and len(corpus) < 64 << 20:
            try:
                corpus += open(p, "rb").read()
            except OSError:
                pass
def content(n):
    o = random.randrange(0, len(corpus) - n)
    return corpus[o:o + n]
for v in (1, 2):
    for i in range(30):
        name = f"pkg{i:02d}"
        d = w / "src" / f"v{v}" / f"{name}--{v}"
        (d / "bin").mkdir(parents=True)
        (d / "lib" / name).mkdir(parents=True)
        (d / "etc").mkdir()
        (d / "systemd").mkdir()
        (d / "pkginfo.json").write_text(json.dumps({"environment": {f"PKG{i:02d}_VERSION": str(v)}}))
        t = d / "bin" / f"{name}-tool"
        t.write_bytes(content(40000)); t.chmod(0o755)
        for j in range(162):
            (d / "lib" / name / f"f{j:03d}.so").write_bytes(content(random.randrange(1024, 60 * 1024)))
        (d / "etc" / f"{name}.conf").write_text(f"version={v}\n")
        (d / "systemd" / f"bench-{name}.service").write_text(
            f"[Service]\nExecStart=/bin/sleep infinity\nEnvironment=V={v}\n")
# The probe packages for the downtime measurement.
for name, versions in (("probe", (1, 2)), ("steady", (1,))):
    for v in versions:
        d = w / "src" / "probe" / f"{name}--{v}"
        (d / "bin").mkdir(parents=True); (d / "systemd").mkdir()
        (d / "pkginfo.json").write_text("{}")
        s = d / "bin" / name
        s.write_text(f"#!/bin/bash\nwhile :; do date +%s%N >> /run/{name}.log; sleep 0.005; done\n"); s.chmod(0o755)
        (d / "systemd" / f"bench-{name}.service").write_text(
            f"[Service]\nExecStart=/opt/tarmac/packages/{name}--{v}/bin/{name}\n")
EOF
for set in v1 v2 probe; do
    mkdir -p "$W/arch/$set"
    for d in "$W"/src/$set/*; do
        tar --sort=name --owner=0 --group=0 --numeric-owner -C "$d" -cf - . | zstd -q -3 -o "$W/arch/$set/$(basename "$d").tar.zst"
    done
done
files=$(find "$W/src/v1" -type f | wc -l)
raw=$(du -sb "$W/src/v1" | cut -f1)
comp=$(cat "$W"/arch/v1/*.tar.zst | wc -c)
ids() { for f in "$W"/arch/$1/*.tar.zst; do basename "$f" .tar.zst; done; }

now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
H() { "$BIN" --root "$W/root" --config-dir "$W/etc" --state-dir-root "$W/state" --rooted-systemd --no-systemd --no-users "$@"; }
mkdir -p "$W/etc/roles"; touch "$W/etc/roles/master"

# --- 1. extraction ------------------------------------------------------------------------
# Wall time and CPU time (user+sys, all processes): the machine is shared, CPU time is the
# steadier comparison.
timed() { /usr/bin/time -f "%e %U %S" -o "$W/time" bash -c "$1" >/dev/null; read -r w u s < "$W/time"; echo "$(python3 -c "print(int($w*1000), int(($u+$s)*1000))")"; }
sync
read -r add_ms add_cpu < <(timed "for f in $W/arch/v1/*.tar.zst; do $BIN --root $W/root --no-systemd add \$f; done")
read -r floor_ms floor_cpu < <(timed "for f in $W/arch/v1/*.tar.zst; do d=$W/floor/\$(basename \$f); mkdir -p \$d; zstd -dcq \$f | tar -x -C \$d; done")
read -r sync_ms _ < <(timed "sync")
floor_sync_ms=$(( floor_ms + sync_ms ))
rm -rf "$W/floor"
for f in "$W"/arch/v2/*.tar.zst; do H add "$f" >/dev/null; done
mbps() { python3 -c "print(round($raw / 1e6 / ($1 / 1000), 1))"; }

# --- 2. activation, switch, rollback -----------------------------------------------------
mapfile -t V1 < <(ids v1); mapfile -t V2 < <(ids v2)
first=$(H --json activate "${V1[@]}" | json "['total_ms']")
: > "$W/sw"; : > "$W/rb"
pick() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d['total_ms'], d['flip_us'])"; }
for _ in $(seq "$ROUNDS"); do
    H --json activate "${V2[@]}" | pick >> "$W/sw"
    H --json rollback | pick >> "$W/rb"
done
sw_ms=$(cut -d' ' -f1 "$W/sw" | median); sw_flip=$(cut -d' ' -f2 "$W/sw" | median)
rb_ms=$(cut -d' ' -f1 "$W/rb" | median); rb_flip=$(cut -d' ' -f2 "$W/rb" | median)
max_flip=$(cat "$W/sw" "$W/rb" | cut -d' ' -f2 | sort -n | tail -1)
gens=$(H generations | wc -l)
H verify >/dev/null

# --- 3. downtime on a systemd host --------------------------------------------------------
down_section="(skipped: NO_LAB=1)"
if [ "${NO_LAB:-0}" != 1 ]; then
    "$LABCTL" up "$LAB" >/dev/null
    lab_up=1
    R() { "$LABCTL" ssh "$LAB" master-1 "$*"; }
    put() { "$LABCTL" ssh "$LAB" master-1 "mkdir -p \$(dirname $2) && cat > $2 && chmod ${3:-644} $2" < "$1"; }
    put "$BIN" /usr/local/bin/tarmac-host 755
    R "mkdir -p /etc/tarmac/roles && touch /etc/tarmac/roles/master"
    for f in "$W"/arch/v1/*.tar.zst "$W"/arch/v2/*.tar.zst "$W"/arch/probe/*.tar.zst; do
        put "$f" "/tmp/arch/$(basename "$f")"
    done
    R "for f in /tmp/arch/*.tar.zst; do tarmac-host add \$f >/dev/null; done"
    R "tarmac-host activate ${V1[*]} probe--1 steady--1 >/dev/null"
    : > "$W/lab"
    for round in $(seq 3); do
        for target in "${V2[*]} probe--2 steady--1" "${V1[*]} probe--1 steady--1"; do
            R "rm -f /run/probe.log /run/steady.log; sleep 0.5"
            j=$(R "tarmac-host --json activate $target")
            R "sleep 0.5"
            gap_p=$(R "cat /run/probe.log" | python3 -c "import sys; t=[int(x) for x in sys.stdin.read().split()]; print(round(max(b-a for a,b in zip(t,t[1:]))/1e6,1))")
            gap_s=$(R "cat /run/steady.log" | python3 -c "import sys; t=[int(x) for x in sys.stdin.read().split()]; print(round(max(b-a for a,b in zip(t,t[1:]))/1e6,1))")
            echo "$j" | python3 -c "import json,sys; d=json.load(sys.stdin); p=d['phases_ms']; print(d['total_ms'], d['flip_us'], d['downtime_ms'], '$gap_p', '$gap_s', len(d['stopped']), p['stop'], p['units'], p['reload'], p['start'])" >> "$W/lab"
        done
    done
    R "tarmac-host verify >/dev/null && tarmac-host uninstall >/dev/null"
    l_total=$(cut -d' ' -f1 "$W/lab" | median); l_flip=$(cut -d' ' -f2 "$W/lab" | median)
    l_down=$(cut -d' ' -f3 "$W/lab" | median); l_gp=$(cut -d' ' -f4 "$W/lab" | median)
    l_gp_max=$(cut -d' ' -f4 "$W/lab" | sort -n | tail -1); l_gs=$(cut -d' ' -f5 "$W/lab" | sort -n | tail -1)
    l_stopped=$(cut -d' ' -f6 "$W/lab" | head -1)
    l_ph=$(for k in 7 8 9 10; do cut -d' ' -f$k "$W/lab" | median; done | paste -sd' ')
    read -r p_stop p_units p_reload p_start <<< "$l_ph"
    down_section="| switch of 30 changed packages + 1 unchanged (32 units, $l_stopped stopped), median of $(wc -l < "$W/lab") | |
|---|---|
| whole \`tarmac-host activate\` | ${l_total} ms |
| the flip (rename + fsync of \`current\`) | ${l_flip} µs |
| stop → \`start tarmac.target\` returned (tarmac-host's own figure) | ${l_down} ms |
| … of which \`systemctl stop\` (31 units) / unit swap / \`daemon-reload\` / \`start tarmac.target\` | ${p_stop} / ${p_units} / ${p_reload} / ${p_start} ms |
| longest gap seen by a **changed** service (5 ms probe), median / worst | ${l_gp} / ${l_gp_max} ms |
| longest gap seen by an **unchanged** service, worst | ${l_gs} ms |"
fi

report="### Activation (\`bench/activation.sh\`)

Set: 30 packages, $files files, $(( raw / 1000000 )) MB unpacked, $(( comp / 1000000 )) MB as .tar.zst (level 3).

| extraction of the whole set | wall (CPU user+sys) | throughput (unpacked) |
|---|---|---|
| \`tarmac-host add\` ×30 (sha256 of archive and of every file, safe untar, syncfs, rename) | ${add_ms} ms (CPU ${add_cpu} ms) | $(mbps "$add_ms") MB/s |
| floor: \`zstd -dc \| tar -x\` ×30, no sync | ${floor_ms} ms (CPU ${floor_cpu} ms) | $(mbps "$floor_ms") MB/s |
| floor + one \`sync\` | ${floor_sync_ms} ms | $(mbps "$floor_sync_ms") MB/s |

| activation on a scratch root (no systemctl), median of $ROUNDS | total | flip |
|---|---|---|
| first activation (generation 1) | ${first} ms | |
| switch: all 30 packages change | ${sw_ms} ms | ${sw_flip} µs |
| rollback to the previous generation | ${rb_ms} ms | ${rb_flip} µs |
| worst flip of all rounds | | ${max_flip} µs |

Service downtime on a real systemd host (lab, one master):

$down_section
"
echo "$report" | tee "$OUT"
