#!/bin/bash
# Part of ringwork: docs/PERFORMANCE.md, issue #2's tables. Instructions the device side of a
# virtqueue executes per chain (pop, visit every byte, add_used), counted by valgrind's callgrind
# over `cargo bench -p ringwork-queue --bench queue`: deterministic, unlike timings on a shared VM.
# usage: queue-ir.sh [BENCH_ID...]   e.g. device_split/ringwork/1-desc device_packed/ringwork/1-desc
#                                    (default: ringwork's split and packed, all three shapes)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -q -p ringwork-queue --bench queue --no-run 2>/dev/null
B=$(realpath "$(ls -t target/release/deps/queue-* | grep -v '\.d$' | head -1)")
OUT=$(mktemp -d)
ids=("$@")
if [ ${#ids[@]} -eq 0 ]; then
  for s in 1-desc 4-desc 4-desc-indirect; do
    ids+=("device_split/ringwork/$s" "device_packed/ringwork/$s")
  done
fi
for id in "${ids[@]}"; do
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" \
    "--toggle-collect=*timed_consume*" "$B" --bench --profile-time 1 "^$id\$" > "$OUT/log" 2>&1
  total=$(grep "Collected" "$OUT/log" | awk '{print $4}' | sort -n | tail -1)
  chains=$(grep -oE "queue [^ ]+: [0-9]+ chains" "$OUT/log" | awk '{s += $3} END {print s}')
  echo "$id: $total instructions, $chains chains, $((total / chains)) per chain"
  rm -f "$OUT"/cg.out*
done
rm -rf "$OUT"
