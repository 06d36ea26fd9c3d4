#!/bin/bash
# Rebuilds docs/benchmarks.md from the latest bench/results/* written by the bench scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
r=bench/results
sec() { [ -f "$r/$1" ] && sed -e '/^#\{2,3\} /d' "$r/$1" || echo "_not measured yet: run bench/$2_"; }
{
cat <<'HEAD'
# Benchmarks

All figures measured on the project's standard machine (2 cores, 24 GiB, Debian 12), with the
scripts under `bench/` (each writes `bench/results/*`; `bench/report.sh` rebuilds this page).
Each section names its script and the peer measured in the same run. Timings vary by roughly
±30 % between runs on this shared machine, and several were taken while other lab work loaded it.

## Lab (issue 2) — `bench/lab-scale.sh`

Target: ≥ 100 systemd hosts up in < 60 s, ≥ 500 plain hosts; teardown leaves nothing.

HEAD
sec lab-scale.md lab-scale.sh
cat <<'T'

## Activation (issue 3) — `bench/activation.sh`

Target: the flip itself < 10 ms; extraction against `zstd -d | tar -x` of the same bytes as the
floor. tarmac-host hashes the archive and every extracted file (for `verify`), syncs and renames
before exposing a package; the floor does none of that.

T
sec activation.md activation.sh
cat <<'T'

## Package builder and bootstrap (issue 4) — `bench/build.sh`

pkgpanda used single-threaded xz preset 6; Tarmac uses zstd with deterministic output.

T
sec build.md build.sh
cat <<'T'

## Configuration (issue 5) — `bench/genconf.sh`

| | reference sample (3 masters, 2 agents) | 10,000 agents |
|---|---|---|
| validate | 0.35 ms | 51 ms |
| render | 0.17 ms | 25 ms |
| genconf with a small fake build | 340 ms (median) | 540 ms |
| genconf with the real reference build (~160 MB of artifacts hashed and copied) | 0.83 s | 1.06 s |

Raw output: `bench/results/genconf.txt`.

## SSH fan-out (issue 6) — `bench/fanout.sh`

T
sec fanout.md fanout.sh
cat <<'T'

## Deploy (issue 7) — `bench/deploy.sh`

T
sec deploy.md deploy.sh
cat <<'T'

Ansible: ansible-core from PyPI, default linear strategy without pipelining, on lab hosts made with
`tarmac lab up --extra-packages python3` (its modules need Python on the targets).

## Upgrade (issue 9) — `bench/upgrade.sh`

T
sec upgrade.md upgrade.sh
cat <<'T'

The change is config-only (`etcd_snapshot_count`): etcd watches `etc/etcd`, so every master's
etcd restarts. The probe tries each master in turn (1 s timeout per request), so a write fails
only when no member can commit it, i.e. when quorum is lost.
T
if [ -f "$r/notes.md" ]; then echo; cat "$r/notes.md"; fi
} > docs/benchmarks.md
