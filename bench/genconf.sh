#!/usr/bin/env bash
# Time validate-config and genconf for the reference distribution: its sample config and a
# config with 10,000 agents (release build). Writes bench/results/genconf.txt.
# With TARMAC_BENCH_BUILD_DIR=<a `tarmac build` output of dist/reference>, genconf links and
# hashes that real build instead of a small fake one.
set -o errexit -o nounset -o pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
out=bench/results/genconf.txt
{
    echo "# tarmac genconf timings, $(nproc) CPUs, $(uname -r)"
    cargo bench -q -p tarmac-genconf --bench genconf_time 2>/dev/null
} | tee "$out"
