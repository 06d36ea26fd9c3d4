#!/bin/bash
# Deploy benchmark (issue 7): the reference distribution onto N systemd lab hosts
# (3 masters + N-3 agents), for N in $SIZES (default "50 100"), three ways, in one run:
#   1. tarmac deploy      hosts pull from the installer's HTTP server, in parallel
#   2. scp + install.sh   the original DC/OS way: copy the whole bundle to every host with
#                         OpenSSH (xargs -P 50), then run the install script there
#   3. Ansible playbook   copy the bundle with the copy module and run the install script
#                         (bench/deploy-playbook.yml; ansible-core from PyPI in a virtualenv,
#                         forks 50, host-key checking on with the lab's known_hosts)
# Every variant installs the same genconf/serve bundle and ends when every host reports
# tarmac-setup.service done; the cluster is uninstalled (and checked clean) between variants.
# The lab's hosts get python3 (`tarmac lab up --extra-packages python3`): Ansible's modules
# run Python on the targets (python3-minimal lacks json and shutil, which they import).
# The other two variants do not use it.
# Prints a markdown table and writes $OUT (default bench/results/deploy.md). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "deploy.sh needs root" >&2; exit 1; }
SIZES=${SIZES:-"50 100"}
P=${PARALLEL:-50}
VENV=${VENV:-/var/cache/tarmac-bench/venv}
OUT=${OUT:-bench/results/deploy.md}
PLAYBOOK=$PWD/bench/deploy-playbook.yml
# shellcheck source=bench/lib.sh
. bench/lib.sh  # the scripts run from the repository root (cd above)
tarmac_binaries
W=$(mktemp -d /tmp/tarmac-bench-deploy.XXXXXX)
LAB=bench-deploy
# KEEP=1 keeps the work directory (bundle, inventory, per-variant logs) for a look afterwards.
trap '"$TARMAC" lab down --name $LAB >/dev/null 2>&1 || true; if [ -n "${KEEP:-}" ]; then echo "work directory kept: $W" >&2; else rm -rf "$W"; fi' EXIT

if [ ! -x "$VENV/bin/ansible-playbook" ]; then
  echo "installing ansible-core into $VENV…" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q ansible-core >&2
fi

ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }

echo "building the reference distribution…" >&2
"$TARMAC" keygen --dir "$W/keys" --name bench >/dev/null
"$TARMAC" build --tree dist/reference --out "$W/build" --sign-key "$W/keys/bench.key" \
  --host-binary "$HOST_BIN" >"$W/build.log" 2>&1 || { tail -20 "$W/build.log" >&2; exit 1; }

rows=()
for n in $SIZES; do
  "$TARMAC" lab down --name $LAB >/dev/null 2>&1 || true
  echo "lab of $n systemd hosts (with python3 for Ansible)…" >&2
  "$TARMAC" lab up --name $LAB --masters 3 --agents $((n - 3)) --extra-packages python3 >"$W/lab.log" 2>&1 || { tail -20 "$W/lab.log" >&2; exit 1; }
  LD=/var/lib/tarmac-lab/$LAB
  G=$W/$n/genconf
  mkdir -p "$G"
  cp "$LD/genconf/config.yaml" "$LD/genconf/ip-detect" "$G/"
  "$TARMAC" genconf --genconf-dir "$G" --build-dir "$W/build" --public-key "$W/keys/bench.pub" >/dev/null
  CTL=$("$TARMAC" lab status --name $LAB --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["ctl_netns"])' 2>/dev/null || echo "tm-$LAB-ctl")
  hosts=$(python3 - "$G/config.yaml" <<'PY'
import sys, re
t = open(sys.argv[1]).read()
out = []
for key in ("master_list", "agent_list", "public_agent_list"):
    m = re.search(r"^%s:\s*\n((?:\s*-\s*.+\n)+)" % key, t, re.M)
    role = {"master_list": "master", "agent_list": "agent", "public_agent_list": "agent_public"}[key]
    if m:
        for line in m.group(1).splitlines():
            out.append(line.strip().lstrip("-").strip().strip("'\"") + " " + role)
print("\n".join(out))
PY
)
  echo "$hosts" > "$W/hosts-$n"
  SSH_OPTS=(-F "$LD/ssh_config" -o BatchMode=yes -o ControlMaster=no -o ControlPath=none)
  # Uninstall, then check that no host has anything of the last variant left (so the next
  # variant starts from the same clean hosts: nothing installed, no bundle to reuse).
  uninstall() {
    ip netns exec "$CTL" "$TARMAC" uninstall --yes --genconf-dir "$G" >"$W/u.log" 2>&1 || { tail -20 "$W/u.log" >&2; exit 1; }
    awk '{print $1}' "$W/hosts-$n" | ip netns exec "$CTL" xargs -P "$P" -I{} \
      ssh "${SSH_OPTS[@]}" {} 'for p in /opt/tarmac /etc/tarmac /var/lib/tarmac-push /etc/systemd/system/tarmac-setup.service; do [ ! -e $p ] || { echo "$(hostname): $p left after uninstall"; exit 1; }; done' >&2 \
      || { echo "uninstall left files behind" >&2; exit 1; }
  }

  # 1. tarmac deploy
  s=$(ns)
  ip netns exec "$CTL" "$TARMAC" deploy --genconf-dir "$G" >"$W/t-$n.log" 2>&1 || { tail -30 "$W/t-$n.log" >&2; exit 1; }
  t_tarmac=$(secs "$s" "$(ns)")
  uninstall

  # 2. scp the bundle + run install.sh on every host (the original way)
  sed "s#^readonly BOOTSTRAP_URL=.*#readonly BOOTSTRAP_URL='file:///var/lib/tarmac-push'#" "$G/serve/install.sh" > "$W/install-push.sh"
  rm -rf "$W/bundle"; cp -r "$G/serve" "$W/bundle"; cp "$W/install-push.sh" "$W/bundle/install.sh"
  # install.sh installs from packages/ (each pinned by sha256); the bootstrap archive repeats
  # them, so no variant copies it.
  rm -f "$W"/bundle/bootstrap/*.bootstrap.tar.zst
  s=$(ns)
  awk '{print $1, $2}' "$W/hosts-$n" | ip netns exec "$CTL" xargs -P "$P" -L 1 bash -c '
    ssh '"${SSH_OPTS[*]}"' "$0" "mkdir -p /var/lib/tarmac-push" &&
    scp -q -r '"${SSH_OPTS[*]}"' '"$W"'/bundle/. "$0:/var/lib/tarmac-push/" &&
    ssh '"${SSH_OPTS[*]}"' "$0" "bash /var/lib/tarmac-push/install.sh $1 >/dev/null"' \
    || { echo "scp variant failed" >&2; exit 1; }
  t_scp=$(secs "$s" "$(ns)")
  uninstall

  # 3. Ansible: copy the bundle and run the script
  {
    echo "[cluster]"
    awk '{print $1, "role=" $2}' "$W/hosts-$n"
    echo "[cluster:vars]"
    echo "ansible_python_interpreter=/usr/bin/python3"
  } > "$W/inventory"
  s=$(ns)
  ip netns exec "$CTL" env ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_SSH_ARGS="-F $LD/ssh_config -o ControlMaster=auto -o ControlPersist=60s" \
    ANSIBLE_LOCAL_TEMP="$W/ansible-tmp" ANSIBLE_SSH_CONTROL_PATH_DIR="$W/ansible-cp" \
    "$VENV/bin/ansible-playbook" -i "$W/inventory" -f "$P" -u root --private-key "$LD/id_ed25519" \
    -e "bundle=$W/bundle" "$PLAYBOOK" >"$W/a-$n.log" 2>&1 \
    || { tail -30 "$W/a-$n.log" >&2; echo "Ansible variant failed" >&2; exit 1; }
  t_ansible=$(secs "$s" "$(ns)")
  uninstall
  rows+=("| $n | $t_tarmac s | $t_scp s | $t_ansible s |")
  "$TARMAC" lab down --name $LAB >/dev/null 2>&1
done

{
  echo "### Deploy of the reference distribution (\`bench/deploy.sh\`)"
  echo
  echo "Bundle: $(du -sh "$W/bundle" | cut -f1) (bootstrap + packages + config packages); every variant ends with tarmac-setup done on every host."
  echo
  echo "| systemd hosts | tarmac deploy (pull over HTTP) | scp + install.sh (xargs -P $P) | Ansible copy + script (forks $P) |"
  echo "|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee "$OUT"
