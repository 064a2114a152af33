#!/bin/bash
# Part of ringwork: docs/PERFORMANCE.md, "virtio-net: ringwork vs DPDK". Needs dpdk-testpmd
# (package dpdk) and `cargo build --release -p ringwork-cli`.
# DPDK<->DPDK baseline: vhost testpmd (cpu0) + virtio-user testpmd (cpu1), io fwd, 64B.
# usage: dpdk-pair.sh packed(0|1) seconds
# testpmd leaves its EAL runtime directories behind; remove them when done.
trap 'for d in vhost virtio; do rm -rf "/var/run/dpdk/$d" "${XDG_RUNTIME_DIR:-/nonexistent}/dpdk/$d"; done' EXIT
P=${1:-0}; T=${2:-10}
S=/tmp/vh0.sock; rm -f $S
(sleep 8; echo "start tx_first 32"; sleep $T; echo "show port stats all"; sleep 1; echo "show port stats all"; sleep 1; echo quit) | \
  nice -n -19 dpdk-testpmd --no-huge -m 1024 --no-pci --file-prefix=vhost --lcores 0@0,1@0 \
   --vdev net_vhost0,iface=$S,queues=1 -- -i --nb-cores=1 --forward-mode=io > /tmp/dpdk-vhost.log 2>&1 &
VH=$!
sleep 2
(sleep 2; echo start; sleep $((T+12)); echo quit) | \
  nice -n -19 dpdk-testpmd --no-huge -m 1024 --no-pci --file-prefix=virtio --lcores 0@1,1@1 \
   --vdev net_virtio_user0,mac=00:01:02:03:04:05,path=$S,queues=1,packed_vq=$P \
   -- -i --nb-cores=1 --forward-mode=io > /tmp/dpdk-virtio.log 2>&1
wait $VH
grep -E "Rx-pps|Tx-pps" /tmp/dpdk-vhost.log | tail -4
