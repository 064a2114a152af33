#!/bin/bash
# Part of ringwork: docs/PERFORMANCE.md, "virtio-net: ringwork vs DPDK". Needs dpdk-testpmd
# (packages dpdk, dpdk-dev) and `cargo build --release -p ringwork-cli`.
# DRIVER side, io fwd, 64B frames, 1024 frames circulating (32 bursts of 32), same DPDK vhost
# testpmd (net_vhost0, cpu0) as the device in both runs:
#   A) our driver: ringwork bench net (cpu1) injects 32 bursts of 32 and forwards for T s
#   B) DPDK virtio-user testpmd (cpu1) forwarding; vhost side does `start tx_first 32`
# usage: dpdk_ours_drv.sh packed(0|1) seconds      (R=path/to/ringwork, PERF="perf record ... --")
# testpmd leaves its EAL runtime directories behind; remove them when done.
trap 'for d in vhostdrv virtiodrv; do rm -rf "/var/run/dpdk/$d" "${XDG_RUNTIME_DIR:-/nonexistent}/dpdk/$d"; done' EXIT
P=${1:-0}; T=${2:-10}
R=${R:-$(dirname "$0")/../target/release/ringwork}
S=/tmp/vhdrv.sock
if [ "$P" = 1 ]; then RING=--packed; else RING=--split; fi
vhost() {  # vhost testpmd on cpu0, commands from stdin
  nice -n -19 dpdk-testpmd --no-huge -m 1024 --no-pci --file-prefix=vhostdrv --lcores 0@0,1@0 \
    --vdev net_vhost0,iface=$S,queues=1 -- -i --nb-cores=1 --forward-mode=io
}
waitsock() { for i in $(seq 200); do [ -S $S ] && break; sleep 0.05; done; }

# A) ours
rm -f $S
(waitsock; echo start; sleep $((T-1)); echo "show port stats all"; sleep 1; echo "show port stats all"; sleep 3; echo quit) \
  | vhost > /tmp/drv-vhost-ours.log 2>&1 &
VHP=$!
waitsock; sleep 0.2
${PERF:-} nice -n -19 taskset -c 1 $R bench net --socket-path $S $RING --time $T --json ${BENCH_OPTS:-} \
  > /tmp/drv-ours.json 2> /tmp/drv-ours.err
wait $VHP

# B) DPDK virtio-user
rm -f $S
(waitsock; sleep 5; echo "start tx_first 32"; sleep $((T-1)); echo "show port stats all"; sleep 1; echo "show port stats all"; sleep 2; echo quit) \
  | vhost > /tmp/drv-vhost-dpdk.log 2>&1 &
VHP=$!
waitsock
(sleep 3; echo start; sleep $((T+1)); echo "show port stats all"; sleep 1; echo "show port stats all"; sleep 2; echo quit) | \
  nice -n -19 dpdk-testpmd --no-huge -m 1024 --no-pci --file-prefix=virtiodrv --lcores 0@1,1@1 \
   --vdev net_virtio_user0,mac=00:01:02:03:04:05,path=$S,queues=1,packed_vq=$P \
   -- -i --nb-cores=1 --forward-mode=io > /tmp/drv-virtio-dpdk.log 2>&1
wait $VHP

echo "== ring $RING, ${T}s"
echo "-- A ours (bench net):"; grep -E '"(rx_pps|tx_pps|tx_dropped|cpu_s|seconds)"' /tmp/drv-ours.json; cat /tmp/drv-ours.err
echo "   vhost testpmd (1 s window):"; grep -E "Rx-pps|Tx-pps" /tmp/drv-vhost-ours.log | tail -2
echo "-- B DPDK virtio-user (1 s window):"; grep -E "Rx-pps|Tx-pps" /tmp/drv-virtio-dpdk.log | tail -2
echo "   vhost testpmd (1 s window):"; grep -E "Rx-pps|Tx-pps" /tmp/drv-vhost-dpdk.log | tail -2
