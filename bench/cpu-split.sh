#!/bin/bash
# `bash bench/cpu-split.sh <url> <connections> <seconds>`: runs wrk against a running devnet
# (`npm start`) and splits the CPU the machine spent per request between the devnet's Node process,
# gVisor (every process of user nobody: the Sentries, their ptrace stubs and gofers), the Hardhat
# chain, and the whole machine (/proc/stat). Run it on a quiet machine: other work counts too.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: bash bench/cpu-split.sh <url> <connections> <seconds>" >&2; exit 2; }
HZ=$(getconf CLK_TCK)
ticks () { local t=0 s; for p in $("$@" 2>/dev/null || true); do s=$(sed 's/.*) //' /proc/$p/stat 2>/dev/null | awk '{print $12+$13}'); t=$((t + ${s:-0})); done; echo $t; }
machine () { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
D0=$(ticks pgrep -f "peerhost.ts devnet"); G0=$(ticks pgrep -u nobody); H0=$(ticks pgrep -f hardhat); M0=$(machine)
OUT=$(wrk -c"$2" -t"$([ "$2" -ge 2 ] && echo 2 || echo 1)" -d"$3"s --timeout 5s -s "$(dirname "$0")/wrk-status-codes.lua" "$1")
D1=$(ticks pgrep -f "peerhost.ts devnet"); G1=$(ticks pgrep -u nobody); H1=$(ticks pgrep -f hardhat); M1=$(machine)
RPS=$(echo "$OUT" | awk '/Requests\/sec/{print $2}')
echo "c=$2, $3 s: $RPS req/s; $(echo "$OUT" | grep '^status' || true)"
awk -v rps="$RPS" -v s="$3" -v hz="$HZ" -v d=$((D1-D0)) -v g=$((G1-G0)) -v h=$((H1-H0)) -v m=$((M1-M0)) 'BEGIN {
  n = rps * s; f = 1000 / hz / n
  printf "CPU ms per request: devnet Node %.2f, gVisor %.2f, chain %.2f, machine %.2f (two cores give %.2f per request at this rate)\n", d*f, g*f, h*f, m*f, 2000 / rps }'
