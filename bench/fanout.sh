#!/usr/bin/env bash
# Fan-out benchmark: `tarmac exec` against Ansible, pyinfra and OpenSSH `xargs -P50`, all in
# one run on the same lab of N hosts (default 150, plain mode: sshd only).
#
#   1. cold:   first contact + `true` on every host (no connection open beforehand)
#   2. warm:   a second `true` on every host over the connections the tool keeps
#              (tarmac: round 2 of `--repeat 2`; Ansible and OpenSSH: ControlPersist
#              masters from step 1; pyinfra: time(two `true` ops) - time(one))
#   3. upload: a SIZE_MB file to every host (tarmac and pyinfra connect fresh; Ansible and
#              OpenSSH reuse their masters; tarmac's warm figure is round 2)
#
# Every tool verifies host keys against the lab's known_hosts and logs in with the lab key.
# Ansible runs `-m raw` (lab hosts have no Python, so neither `command` nor `copy` can run;
# its upload is not measured). Ansible forks and pyinfra/OpenSSH parallelism are 50.
# Needs root (the lab). Ansible and pyinfra are pip-installed into $VENV from PyPI.
#
# Usage: bench/fanout.sh   (env: N=150 SIZE_MB=50 LAB=fanout P=50 KEEP_LAB=1 TARMAC=<prebuilt binary>)
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-150}
SIZE_MB=${SIZE_MB:-50}
LAB=${LAB:-fanout}
VENV=${VENV:-/tmp/tarmac-bench-venv}
P=${P:-50}
WORK=$(mktemp -d /tmp/tarmac-fanout.XXXXXX)

if [ "$(id -u)" -ne 0 ]; then
  echo "error: the benchmark needs root (it brings up a lab)" >&2
  exit 1
fi

log() { printf '== %s\n' "$*" >&2; }

if [ -n "${TARMAC:-}" ]; then
  T=$TARMAC
else
  log "building tarmac (release)"
  cargo build --release -q -p tarmac
  T=$PWD/target/release/tarmac
fi

if [ ! -x "$VENV/bin/pyinfra" ] || [ ! -x "$VENV/bin/ansible" ]; then
  log "installing ansible-core and pyinfra into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check ansible-core pyinfra
fi
ANSIBLE_VERSION=$("$VENV/bin/ansible" --version 2>/dev/null | head -1 || true)
PYINFRA_VERSION=$("$VENV/bin/pyinfra" --version 2>/dev/null || true)
SSH_VERSION=$(ssh -V 2>&1)

log "bringing up lab $LAB with $N plain hosts"
"$T" lab down --name "$LAB" >/dev/null 2>&1 || true
cleanup() {
  if [ -z "${KEEP_LAB:-}" ]; then "$T" lab down --name "$LAB" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
"$T" lab up --name "$LAB" --mode plain --masters 3 --agents $((N - 3)) >/dev/null

DIR=/var/lib/tarmac-lab/$LAB
G=$DIR/genconf
KEY=$DIR/id_ed25519
KH=$DIR/known_hosts
CTL=tm-$LAB-ctl
awk -F'[ ,]' '{print $1}' "$KH" >"$WORK/hosts"
HOSTS=$(wc -l <"$WORK/hosts")
in_ctl() { ip netns exec "$CTL" "$@"; }

# Seconds (3 decimals) taken by a command; its output goes to $WORK/last.log.
timed() {
  local s e
  s=$EPOCHREALTIME
  if ! "$@" >"$WORK/last.log" 2>&1; then
    echo "command failed: $*" >&2
    tail -20 "$WORK/last.log" >&2
    echo "FAIL"
    return 0
  fi
  e=$EPOCHREALTIME
  awk -v s="$s" -v e="$e" 'BEGIN { printf "%.2f", e - s }'
}
sub() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "FAIL" || b == "FAIL") print "FAIL"; else printf "%.2f", a - b }'; }

dd if=/dev/urandom of="$WORK/payload.bin" bs=1M count="$SIZE_MB" status=none
clean_uploads() { in_ctl xargs -P "$P" -I{} ssh -F "$DIR/ssh_config" -o ControlMaster=no -o ControlPath=none root@{} 'rm -f /tmp/payload-*' <"$WORK/hosts" >/dev/null 2>&1 || true; }

# ---------------------------------------------------------------- tarmac
log "tarmac exec"
# Cold: a fresh process, first contact with every host (whole process: start to exit).
TK_COLD=$(timed in_ctl "$T" exec --genconf-dir "$G" -q -- true)
# Warm: round 2 of `--repeat 2`, over the connections round 1 opened.
TK_REP=$(timed in_ctl "$T" exec --genconf-dir "$G" -q --repeat 2 -- true)
round() { grep "^round $1/" "$WORK/last.log" | grep -o 'in [0-9.]*s$' | tr -d 'ins '; }
TK_R1=$(round 1)
TK_WARM=$(round 2)
# Upload: round 1 connects and uploads; round 2 uploads again over the same connections.
TK_UP_ALL=$(timed in_ctl "$T" exec --genconf-dir "$G" -q --repeat 2 --upload "$WORK/payload.bin:/tmp/payload-tarmac" -- true)
TK_UP_COLD=$(round 1)
TK_UP_WARM=$(round 2)
clean_uploads

# ---------------------------------------------------------------- OpenSSH xargs -P50
log "OpenSSH xargs -P$P"
CP=$WORK/cm
mkdir -p "$CP"
SSHO=(-o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$KH" -i "$KEY" -o ConnectTimeout=10)
ssh_all() { in_ctl xargs -P "$P" -I{} ssh "${SSHO[@]}" "$@" root@{} true <"$WORK/hosts"; }
SSH_COLD=$(timed ssh_all -o ControlMaster=auto -o ControlPath="$CP/%C" -o ControlPersist=120)
SSH_WARM=$(timed ssh_all -o ControlMaster=auto -o ControlPath="$CP/%C" -o ControlPersist=120)
ssh_up() { in_ctl xargs -P "$P" -I{} sh -c "ssh $(printf '%q ' "${SSHO[@]}") -o ControlMaster=auto -o ControlPath=$CP/%C root@{} 'cat > /tmp/payload-ssh' < $WORK/payload.bin" <"$WORK/hosts"; }
SSH_UP=$(timed ssh_up)
in_ctl xargs -P "$P" -I{} ssh -o ControlPath="$CP/%C" -O exit root@{} <"$WORK/hosts" >/dev/null 2>&1 || true
SSH_C25519=$(timed ssh_all -o ControlMaster=no -o KexAlgorithms=curve25519-sha256)
clean_uploads

# ---------------------------------------------------------------- Ansible
log "Ansible ($ANSIBLE_VERSION)"
{
  echo "[lab]"
  cat "$WORK/hosts"
  echo "[lab:vars]"
  echo "ansible_user=root"
  echo "ansible_ssh_private_key_file=$KEY"
  echo "ansible_ssh_common_args='-o UserKnownHostsFile=$KH -o StrictHostKeyChecking=yes'"
} >"$WORK/inventory.ini"
export ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_SSH_CONTROL_PATH_DIR=$WORK/ansible-cp ANSIBLE_LOCAL_TEMP=$WORK/ansible-tmp
export ANSIBLE_NOCOLOR=1 ANSIBLE_PYTHON_INTERPRETER=auto_silent
ans() { in_ctl "$VENV/bin/ansible" all -i "$WORK/inventory.ini" -f "$P" "$@"; }
ANS_COLD=$(timed ans -m raw -a true)
ANS_WARM=$(timed ans -m raw -a true)

# ---------------------------------------------------------------- pyinfra
log "pyinfra ($PYINFRA_VERSION)"
{
  echo "hosts = ["
  sed 's/.*/    "&",/' "$WORK/hosts"
  echo "]"
} >"$WORK/inventory.py"
cat >"$WORK/two.py" <<'EOF'
from pyinfra.operations import server
server.shell(name="one", commands=["true"])
server.shell(name="two", commands=["sh -c 'true; true'"])
EOF
cat >"$WORK/one.py" <<'EOF'
from pyinfra.operations import server
server.shell(name="one", commands=["true"])
EOF
cat >"$WORK/put.py" <<EOF
from pyinfra.operations import files
files.put(name="payload", src="$WORK/payload.bin", dest="/tmp/payload-pyinfra")
EOF
pyi() {
  in_ctl "$VENV/bin/pyinfra" -y --parallel "$P" --user root --key "$KEY" \
    --data ssh_known_hosts_file="$KH" --data ssh_strict_host_key_checking=yes "$WORK/inventory.py" "$@"
}
PY_COLD=$(timed pyi exec -- true)
PY_ONE=$(timed pyi "$WORK/one.py")
PY_TWO=$(timed pyi "$WORK/two.py")
PY_WARM=$(sub "$PY_TWO" "$PY_ONE")
PY_UP=$(timed pyi "$WORK/put.py")
clean_uploads

# ---------------------------------------------------------------- report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "FAIL" || b == "FAIL" || b == 0) print "-"; else printf "%.1f×", a / b }'; }
mkdir -p bench/results
{
  echo "Lab: $HOSTS plain hosts (sshd only), $(nproc) cores shared by the tools and every host's sshd;"
  echo "upload ${SIZE_MB} MB of random bytes; parallelism $P for the peers; host keys verified by every tool."
  echo "Tools: tarmac $("$T" --version | awk '{print $2}'), $ANSIBLE_VERSION, pyinfra ${PYINFRA_VERSION#pyinfra: }, $SSH_VERSION."
  echo
  echo "| tool | cold: first contact + \`true\` (s) | warm: second \`true\` (s) | upload ${SIZE_MB} MB to every host (s) |"
  echo "|---|---|---|---|"
  echo "| **tarmac exec** | **$TK_COLD** | **$TK_WARM** | **$TK_UP_COLD** (warm connections: $TK_UP_WARM) |"
  echo "| OpenSSH \`xargs -P$P\`, default KEX (sntrup761x25519) | $SSH_COLD | $SSH_WARM (ControlMaster) | $SSH_UP (\`cat >\` over the masters) |"
  echo "| OpenSSH \`xargs -P$P\`, curve25519-sha256 | $SSH_C25519 | | |"
  echo "| Ansible \`-m raw -f $P\` | $ANS_COLD | $ANS_WARM (ControlPersist) | n/a (the lab hosts have no Python) |"
  echo "| pyinfra \`--parallel $P\` | $PY_COLD | $PY_WARM (two ops − one op) | $PY_UP (\`files.put\`) |"
  echo
  echo "tarmac cold: $(ratio "$ANS_COLD" "$TK_COLD") faster than Ansible, $(ratio "$PY_COLD" "$TK_COLD") pyinfra, $(ratio "$SSH_C25519" "$TK_COLD") OpenSSH with curve25519, $(ratio "$SSH_COLD" "$TK_COLD") OpenSSH default."
  echo "tarmac cold is a whole \`tarmac exec\` process (start to exit); warm is round 2 of \`--repeat 2\`;"
  echo "its upload streams the file, checks its sha256 on the host, fsyncs and renames it into place"
  echo "(the OpenSSH figure is a bare \`cat > file\`)."
} | tee bench/results/fanout.md
