#!/bin/bash
# Part of ringwork: docs/PERFORMANCE.md, "virtio-net: ringwork vs DPDK". Instructions our net
# driver executes per forwarded 64-byte frame: `ringwork bench net` under valgrind's callgrind
# (counting inside bench's forwarding loop, `run_net`: since the release profile's LTO the
# driver's receive and send calls are inlined into it, so their own names collect nothing; the
# loop's clock checks and the initial injection of 1,024 frames are under 1% of the count)
# against `ringwork serve net --loopback` running natively on the other core. Unlike timings
# on a shared VM, the count barely moves (about 1-2% between runs, with how the frames batch),
# as long as nothing else runs on the machine: empty polls are counted too.
# usage: net-driver-ir.sh [bench net options, e.g. --packed or --copy]
#        (needs valgrind and `cargo build --release -p ringwork-cli`)
set -euo pipefail
cd "$(dirname "$0")/.."
R=${R:-target/release/ringwork}
S=$(mktemp -u /tmp/ringwork-ir-XXXXXX.sock)
OUT=$(mktemp -d)
taskset -c 0 "$R" serve net --loopback --socket-path "$S" --poll-us 1000000 --workers device \
  > "$OUT/serve.log" 2>&1 &
LB=$!
trap 'kill $LB 2>/dev/null; rm -rf "$OUT" "$S"' EXIT
for _ in $(seq 100); do [ -S "$S" ] && break; sleep 0.05; done
taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" \
  '--toggle-collect=*::run_net' \
  "$R" bench net --socket-path "$S" --time 4s --json --quiet "$@" > "$OUT/run.json" 2> "$OUT/log"
total=$(grep Collected "$OUT/log" | awk '{print $4}')
frames=$(grep '"rx_packets"' "$OUT/run.json" | tr -dc 0-9)
echo "${*:-in place, split}: $total instructions, $frames frames, $((total / frames)) per frame"
