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
