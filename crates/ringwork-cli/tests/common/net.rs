//! Guest-side shell snippets of the network tests: bringing eth0 up and
//! moving a file with busybox nc.

/// Shell: brings eth0 up as `addr`/24 with `mtu`, then waits (up to a
/// minute) until `peer` answers a ping, then pings it three times (with
/// packets as large as the MTU allows, unfragmented).
pub fn net_up(addr: &str, peer: &str, mtu: u32) -> String {
    let size = mtu - 28;
    format!(
        r#"
wait_for /sys/class/net/eth0 10
info mac "$(cat /sys/class/net/eth0/address)"
info features "$(cat /sys/class/net/eth0/device/features)"
check set-mtu ip link set eth0 mtu {mtu}
info mtu "$(cat /sys/class/net/eth0/mtu)"
check link-up ip link set eth0 up
check addr ip addr add {addr}/24 dev eth0
check carrier test "$(cat /sys/class/net/eth0/carrier)" = 1
check peer-reachable eval 'i=0; until ping -c 1 -W 1 {peer} >/dev/null 2>&1; do i=$((i+1)); [ $i -ge 120 ] && exit 1; sleep 0.5; done'
check ping ping -c 3 -W 2 {peer}
check ping-full-size ping -c 3 -W 2 -s {size} {peer}
"#
    )
}

/// Shell: listens on `port` (stdin held open on a fifo, so that nc does
/// not half-close the connection before the peer is done) into `out`; the
/// listener's pid is in $L.
pub fn listen(port: u16, out: &str) -> String {
    format!(
        r#"
mkfifo /tmp/hold-{port}; exec 7<>/tmp/hold-{port}
nc -l -p {port} <&7 > {out} &
L=$!
"#
    )
}

/// Shell: sends `input` to `host`:`port`, retrying for a minute while
/// nobody listens.
pub fn send(name: &str, input: &str, host: &str, port: u16) -> String {
    format!(
        r#"check {name} eval 'i=0; until nc {host} {port} < {input}; do i=$((i+1)); [ $i -ge 120 ] && exit 1; sleep 0.5; done'
"#
    )
}
