#!/bin/bash
# Part of ringwork: docs/PERFORMANCE.md, "virtio-net: ringwork vs DPDK". Instructions the net
# device executes per forwarded 64-byte frame (loopback backend, one thread), counted by
# valgrind's callgrind over bench net_forward: deterministic, unlike timings on a shared VM.
# usage: net-forward-ir.sh [split] [packed]          (needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -q -p ringwork-device --bench net_forward --no-run 2>/dev/null
B=$(realpath "$(ls -t target/release/deps/net_forward-* | grep -v '\.d$' | head -1)")
OUT=$(mktemp -d)
for ring in "${@:-split}"; do
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" \
    "--toggle-collect=*worker::Group as*process" "$B" --bench --profile-time 1 \
    "loopback_64B/$ring" > "$OUT/log" 2>&1
  total=$(grep "Collected" "$OUT/log" | awk '{print $4}' | sort -n | tail -1)
  # Frames: what the bench says it forwarded (all runs, warm-up included, as
  # the instructions are).
  frames=$(grep -oE "net_forward $ring: [0-9]+ frames" "$OUT/log" | awk '{print $3}')
  echo "$ring: $total instructions, $frames frames, $((total / frames)) per frame"
  rm -f "$OUT"/cg.out*
done
rm -rf "$OUT"
