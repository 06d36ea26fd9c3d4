# Helpers shared by the controller benchmarks (sourced; they use $W, the work directory).

# Peak of a process's open fds, sampled every 50 ms until it ends.
fd_peak() {
  local pid=$1 peak=0 n
  while kill -0 "$pid" 2>/dev/null; do
    n=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
    [ "$n" -le "$peak" ] || peak=$n
    sleep 0.05
  done
  echo "$peak"
}

# measure NAME CMD… → "rss_kb cpu_s wall_s fd_peak rc" (the command runs under /usr/bin/time;
# its output is in $W/NAME.out and $W/NAME.err). A failing command is reported by rc, not fatal.
measure() {
  local name=$1; shift
  /usr/bin/time -f '%M %U %S %e' -o "$W/$name.time" "$@" >"$W/$name.out" 2>"$W/$name.err" &
  local tpid=$! cpid fds=0 rc=0
  sleep 0.2
  cpid=$(pgrep -P "$tpid" | head -1 || true)
  [ -z "$cpid" ] || fds=$(fd_peak "$cpid")
  wait "$tpid" || rc=$?
  # GNU time puts "Command exited with non-zero status N" first: the figures are the last line.
  tail -n 1 "$W/$name.time" | awk -v f="$fds" -v rc="$rc" '{ printf "%s %.2f %s %s %s\n", $1, $2 + $3, $4, f, rc }'
}

# tarmac_binaries: sets TARMAC (a release build unless given) and HOST_BIN, the tarmac-host the
# bootstrap ships: the portable build when TARMAC_PORTABLE_BIN_DIR is set (scripts/build-portable.sh
# prints it), else the one next to $TARMAC. Exits when HOST_BIN is missing.
tarmac_binaries() {
  if [ -z "${TARMAC:-}" ]; then
    cargo build --release -q --bins
    TARMAC=$PWD/target/release/tarmac
  fi
  HOST_BIN=${TARMAC_PORTABLE_BIN_DIR:+$TARMAC_PORTABLE_BIN_DIR/tarmac-host}
  HOST_BIN=${HOST_BIN:-$(dirname "$TARMAC")/tarmac-host}
  [ -x "$HOST_BIN" ] || {
    echo "error: $HOST_BIN is missing${TARMAC_PORTABLE_BIN_DIR:+ (TARMAC_PORTABLE_BIN_DIR is set)}" >&2
    echo "hint: run scripts/build-portable.sh" >&2
    exit 1
  }
}
