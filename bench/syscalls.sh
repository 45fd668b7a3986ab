#!/bin/bash
# Write and read system calls per request across a gateway and a worker (bench/hot-path.ts: both
# in one process, dev executor, examples/hello), counted by strace while wrk sends requests at c=1.
# Counts do not depend on the machine's load (timings do). Needs strace and wrk (Debian packages).
#   bash bench/syscalls.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-6}
out=$(mktemp -d)
trap 'kill -TERM $pid 2>/dev/null || true; rm -rf "$out"' EXIT
node_modules/.bin/node bench/hot-path.ts > "$out/url" 2> "$out/err" &
pid=$!
for _ in $(seq 1 120); do [ -s "$out/url" ] && break; sleep 1; done
url=$(head -1 "$out/url")
strace -f -c -e trace=write,writev,sendmsg,sendto,read,readv,recvfrom -p "$pid" -o "$out/strace" &
spid=$!
sleep 1
wrk -t1 -c1 -d"${secs}s" "$url" > "$out/wrk"
kill -INT "$spid"; wait "$spid" 2>/dev/null || true
requests=$(grep -o '[0-9]* requests in' "$out/wrk" | cut -d' ' -f1)
echo "requests: $requests (wrk -t1 -c1 -d${secs}s, load average $(cut -d' ' -f1-3 /proc/loadavg))"
awk -v n="$requests" '$NF ~ /^(write|writev|sendmsg|sendto|read|readv|recvfrom)$/ { printf "%-9s %7d calls  %6.2f per request\n", $NF, $4, $4 / n }' "$out/strace"
