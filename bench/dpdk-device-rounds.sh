#!/bin/bash
# Part of ringwork: docs/PERFORMANCE.md, "virtio-net: ringwork vs DPDK". Alternates the
# DPDK<->DPDK pair (dpdk-pair.sh) and our device against DPDK's virtio-user
# (dpdk-ours-device.sh), printing each round's ratio from the two runs next to each other.
# usage: dpdk-device-rounds.sh packed(0|1) rounds seconds [serve options]
P=$1; N=$2; T=$3; shift 3
D=$(dirname "$0")
for r in $(seq "$N"); do
  a=$(bash "$D/dpdk-pair.sh" "$P" "$T" 2>&1 | grep Rx-pps | tail -1 | awk '{print $2}')
  b=$(bash "$D/dpdk-ours-device.sh" "$P" "$T" "$@" 2>&1 | grep Rx-pps | tail -1 | awk '{print $2}')
  echo "round $r dpdk $a ours $b ratio $(awk -v a="$a" -v b="$b" 'BEGIN { if (a > 0) printf "%.3f", b / a; else print "-" }')"
done
