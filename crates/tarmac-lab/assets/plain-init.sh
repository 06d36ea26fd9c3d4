#!/bin/bash
# PID 1 of a plain-mode Tarmac lab host (the lab has mounted its root, /proc, /sys, /dev,
# /run and /tmp): run sshd, reap orphans, stop everything on TERM.
trap 'kill -TERM -1 2>/dev/null; exit 0' TERM INT
/usr/sbin/sshd -D -e 2>>/var/log/sshd.log &
while :; do sleep 3600 & wait $!; done
