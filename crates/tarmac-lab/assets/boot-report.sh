#!/bin/sh
# Tarmac lab: wait for the end of the boot, then record `systemctl is-system-running`
# and the failed units in /var/lib/tarmac-lab-host/boot-state (read by `tarmac lab up`).
state=$(systemctl is-system-running --wait 2>/dev/null)
failed=$(systemctl list-units --failed --plain --no-legend --no-pager 2>/dev/null | cut -d' ' -f1 | tr '\n' ' ')
mkdir -p /var/lib/tarmac-lab-host
printf '%s %s\n' "${state:-unknown}" "$failed" > /var/lib/tarmac-lab-host/boot-state.tmp
mv /var/lib/tarmac-lab-host/boot-state.tmp /var/lib/tarmac-lab-host/boot-state
exit 0
