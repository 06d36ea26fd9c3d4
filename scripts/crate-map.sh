#!/usr/bin/env bash
# Regenerate the crate map in ARCHITECTURE.md ("Crate map and who may depend on whom") from
# `cargo metadata --format-version 1 --no-deps`, then print it. The generator is the test
# crates/tarmac/tests/crate_map.rs, which also fails (in `cargo test`) when the table is stale
# or a dependency rule listed under it is broken.
set -euo pipefail
cd "$(dirname "$0")/.."
TARMAC_UPDATE_CRATE_MAP=1 cargo test -q -p tarmac --test crate_map >/dev/null
sed -n '/^## Crate map and who may depend on whom$/,/^```$/p' ARCHITECTURE.md | sed '1,/^```text$/d;$d'
