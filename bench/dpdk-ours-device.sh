#!/bin/bash
# Part of ringwork: docs/PERFORMANCE.md, "virtio-net: ringwork vs DPDK". Needs dpdk-testpmd
# (package dpdk) and `cargo build --release -p ringwork-cli`.
# Our device (cpu0) + DPDK virtio-user testpmd (cpu1), io fwd, 64B, tx_first 32 from the virtio side.
# usage: dpdk-ours-device.sh packed(0|1) seconds [extra serve args]
# testpmd leaves its EAL runtime directories behind; remove them when done.
trap 'for d in virtio2; do rm -rf "/var/run/dpdk/$d" "${XDG_RUNTIME_DIR:-/nonexistent}/dpdk/$d"; done' EXIT
P=${1:-0}; T=${2:-10}; shift 2
R=${R:-$(dirname "$0")/../target/release/ringwork}
S=/tmp/vh1.sock; rm -f $S
${PERF:-} nice -n -19 taskset -c 0 $R serve net --loopback --workers device --socket-path $S "$@" 2>/tmp/ours-dev.log & OURS=$!
for i in $(seq 50); do [ -S $S ] && break; sleep 0.05; done
(sleep 3; echo "start tx_first 32"; sleep $T; echo "show port stats all"; sleep 2; echo "show port stats all"; sleep 1; echo quit) | \
  nice -n -19 dpdk-testpmd --no-huge -m 1024 --no-pci --file-prefix=virtio2 --lcores 0@1,1@1 \
   --vdev net_virtio_user0,mac=00:01:02:03:04:05,path=$S,queues=1,packed_vq=$P \
   -- -i --nb-cores=1 --forward-mode=io > /tmp/dpdk-virtio2.log 2>&1
kill $OURS; wait $OURS 2>/dev/null
grep -E "Rx-pps|Tx-pps" /tmp/dpdk-virtio2.log | tail -2
grep -E "RX-packets|TX-packets" /tmp/dpdk-virtio2.log | tail -2
