#!/bin/bash
# Part of ringwork: docs/PERFORMANCE.md, "vhost-user block: ringwork vs qemu-storage-daemon".
# 4k random reads from `ringwork bench blk` (frontend waiting for interrupts) against our null
# block backend with different polling options, and qemu-storage-daemon's null-co, one after
# the other; prints IOPS and IOPS per backend CPU-second for each.
# usage: blk-vs-qsd.sh SECONDS "Q:D ..." VARIANT...
#   VARIANT: qsd, or ours[:serve options with commas], e.g. ours ours:--poll-us,50
#   example: blk-vs-qsd.sh 5 "1:32 2:32" ours ours:--poll-max-us,50 qsd
# Needs qemu-storage-daemon (package qemu-system-common) and
# `cargo build --release -p ringwork-cli`.
set -euo pipefail
T=$1; QD=$2; shift 2
R=${R:-$(dirname "$0")/../target/release/ringwork}
S=/tmp/blk-vs-qsd.sock
IMG=/dev/shm/blk-vs-qsd.img
truncate -s 1G $IMG
trap 'rm -f $IMG $S' EXIT
for qd in $QD; do
  q=${qd%:*}; d=${qd#*:}
  for v in "$@"; do
    rm -f $S
    if [ "$v" = qsd ]; then
      qemu-storage-daemon --blockdev driver=null-co,node-name=null,size=1073741824,read-zeroes=on \
        --export type=vhost-user-blk,id=e,node-name=null,addr.type=unix,addr.path=$S,num-queues=2,writable=on \
        >/dev/null 2>&1 & P=$!
    else
      opts=${v#ours}; opts=${opts#:}
      # shellcheck disable=SC2086
      $R serve blk --engine null --image $IMG --queues 2 --socket-path $S ${opts//,/ } 2>/dev/null & P=$!
    fi
    for _ in $(seq 100); do [ -S $S ] && break; sleep 0.05; done
    $R bench blk --socket-path $S --rw randread --bs 4k --time "${T}s" --iodepth "$d" --queues "$q" \
      --backend-pid $P --json --quiet 2>/dev/null | python3 -c "
import json, sys
j = json.load(sys.stdin)
print('q$q d$d %-28s IOPS %9.0f  per backend CPU-s %9.0f' % ('$v', j['iops'], j['iops_per_backend_cpu_s']))"
    kill $P; wait $P 2>/dev/null || true
  done
done
