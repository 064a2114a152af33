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
  # Frames: calls of the receive path's one-buffer fill, one per frame.
  frames=$(callgrind_annotate --tree=caller "$OUT"/cg.out* 2>/dev/null \
    | grep -A1 -E "< .*RxWorker as ringwork_device::model::QueueWorker>::process \([0-9,]+x\)" \
    | grep -B1 "\* .*RxWorker::fill_one" | grep -oE "\([0-9,]+x\)" | tr -d '(),x' | head -1)
  echo "$ring: $total instructions, $frames frames, $((total / frames)) per frame"
  rm -f "$OUT"/cg.out*
done
rm -rf "$OUT"
