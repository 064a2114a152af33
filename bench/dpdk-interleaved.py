#!/usr/bin/env python3
# Part of ringwork: docs/PERFORMANCE.md, "virtio-net: ringwork vs DPDK". Needs dpdk-testpmd
# (package dpdk) and `cargo build --release -p ringwork-cli`.
#
# One of our sides and the DPDK<->DPDK pair, set up side by side and run in turns of a few
# seconds, so that both are measured under the same conditions of this shared VM (the DPDK
# pair alone moves between about 5.3 and 11.5 Mpps from one 2-second turn to the next).
#
# side "device":
#   cpu0: ringwork serve net --loopback (polling)   | DPDK vhost PMD testpmd "B" (io fwd)
#   cpu1: DPDK virtio-user testpmd "A" -> ours       | DPDK virtio-user testpmd "C" -> B
#   measured: Rx-pps of the virtio-user testpmd (A or C)
# side "driver":
#   cpu0: DPDK vhost PMD testpmd "D" (io fwd)        | DPDK vhost PMD testpmd "B" (io fwd)
#   cpu1: ringwork bench net -> D (busy-polling)     | DPDK virtio-user testpmd "C" -> B
#   measured: Rx-pps of the vhost testpmd (D or B)
#
# Only one pair forwards at a time: testpmd's `stop` parks its forwarding lcore, our
# device's worker goes to sleep once its polling window passes with nothing to do, and our
# driver runs as one `ringwork bench net` per turn. Each turn starts with `tx_first 32`
# (from the vhost side in DPDK turns, from the virtio-user side against our device) or
# bench's default injection of 32 bursts of 32 (what rings cannot hold is dropped), and
# testpmd runs with --no-flush-rx so that `start` keeps what is in flight. After a warm-up
# (0.5 s; 1 s for our driver, which includes starting `bench` and connecting) each turn
# reads Rx-pps over SECONDS from testpmd's `show port stats`, which times the interval
# between two calls itself.
#
# usage: dpdk-interleaved.py device|driver PACKED(0|1) TURNS SECONDS [serve options...]
#   A_A=1 in the environment puts DPDK in our place (a second vhost PMD for the device side,
#   a second virtio-user testpmd for the driver side): a calibration of the method.
#   Prints one line per pair of turns, then the median of the ratios of each of our turns
#   to the mean of its two DPDK neighbours, with a 95% bootstrap interval.
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time

side = sys.argv[1]
if side not in ("device", "driver"):
    sys.exit("usage: dpdk-interleaved.py device|driver PACKED(0|1) TURNS SECONDS [serve options...]")
packed = sys.argv[2]
turns = int(sys.argv[3])
secs = float(sys.argv[4])
serve_opts = sys.argv[5:] or ["--poll-us", "100"]
here = os.path.dirname(os.path.abspath(__file__))
ringwork = os.environ.get("R", os.path.join(here, "..", "target", "release", "ringwork"))
S1, S2 = "/tmp/rw-il-ours.sock", "/tmp/rw-il-vhost.sock"
PREFIXES = ["rwilA", "rwilB", "rwilC", "rwilD"]
# A_A=1: a second DPDK pair takes our device's place, to calibrate what the method reads
# when both sides are the same.
A_A = os.environ.get("A_A") == "1"
WARM = 0.5


def cleanup_runtime_dirs():
    for p in PREFIXES:
        for base in ("/var/run/dpdk", os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/nonexistent"), "dpdk")):
            shutil.rmtree(os.path.join(base, p), ignore_errors=True)


class Testpmd:
    def __init__(self, name, cpu, vdev):
        self.log = f"/tmp/rw-il-{name}.log"
        self.out = open(self.log, "w")
        self.p = subprocess.Popen(
            ["nice", "-n", "-19", "stdbuf", "-o0", "dpdk-testpmd", "--no-huge", "-m", "1024", "--no-pci",
             f"--file-prefix=rwil{name}", "--lcores", f"0@{cpu},1@{cpu}", "--vdev", vdev,
             "--", "-i", "--nb-cores=1", "--forward-mode=io", "--no-flush-rx"],
            stdin=subprocess.PIPE, stdout=self.out, stderr=subprocess.STDOUT, text=True)

    def cmd(self, c, wait=0.3):
        self.p.stdin.write(c + "\n")
        self.p.stdin.flush()
        time.sleep(wait)

    def text(self):
        with open(self.log) as f:
            return f.read()

    def wait_ready(self, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            if "testpmd>" in self.text():
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.1)
        sys.exit(f"testpmd {self.log} did not come up:\n{self.text()[-2000:]}")

    def rx_pps(self):
        """Rx-pps over the interval since the previous `show port stats`."""
        before = len(self.text())
        self.cmd("show port stats all", 0.05)
        # The main lcore shares its CPU with the polling one: give it time.
        for _ in range(100):
            m = re.findall(r"Rx-pps:\s+(\d+)\s+Rx-bps", self.text()[before:])
            if m:
                return int(m[-1])
            time.sleep(0.05)
        sys.exit(f"no Rx-pps in {self.log}")

    def quit(self):
        try:
            self.cmd("stop", 0.5)
            self.cmd("quit", 1.0)
            self.p.wait(timeout=10)
        except Exception:
            self.p.kill()


def wait_socket(path):
    for _ in range(100):
        if os.path.exists(path):
            return
        time.sleep(0.05)
    sys.exit(f"{path} did not appear")


def turn_of_dpdk(b, c):
    """One turn of the DPDK pair: B (vhost) and C (virtio-user)."""
    c.cmd("start", 0.1)
    b.cmd("start tx_first 32", WARM)
    meter = c if side == "device" else b
    meter.rx_pps()
    time.sleep(secs)
    pps = meter.rx_pps()
    c.cmd("stop", 0.3)
    b.cmd("stop", 0.3)
    return pps


def turn_of_ours(a, d):
    """One turn of our side (or, with A_A, of the second DPDK pair)."""
    if side == "device":
        # a: virtio-user testpmd on our device (or on the second vhost PMD d)
        if d is not None:
            a.cmd("start", 0.1)
            d.cmd("start tx_first 32", WARM)
        else:
            a.cmd("start tx_first 32", WARM)
        a.rx_pps()
        time.sleep(secs)
        pps = a.rx_pps()
        a.cmd("stop", 0.3)
        if d is not None:
            d.cmd("stop", 0.3)
        return pps
    # driver side: d is the vhost PMD; a is None (ours) or a virtio-user testpmd (A_A)
    bench = None
    if a is not None:
        a.cmd("start", 0.1)
        d.cmd("start tx_first 32", WARM)
    else:
        d.cmd("start", 0.1)
        ring = "--packed" if packed == "1" else "--split"
        bench = subprocess.Popen(
            ["nice", "-n", "-19", "taskset", "-c", "1", ringwork, "bench", "net", "--socket-path",
             S1, ring, "--time", f"{secs + 2 * WARM + 1.5:.1f}s", "--quiet", "--json"],
            stdout=open("/tmp/rw-il-bench.json", "w"), stderr=open("/tmp/rw-il-bench.err", "w"))
        time.sleep(2 * WARM)
    d.rx_pps()
    time.sleep(secs)
    pps = d.rx_pps()
    if bench is not None:
        if bench.wait(timeout=30) != 0:
            sys.exit(f"bench net failed: {open('/tmp/rw-il-bench.err').read()[-2000:]}")
    else:
        a.cmd("stop", 0.3)
    d.cmd("stop", 0.3)
    return pps


def main():
    cleanup_runtime_dirs()
    for s in (S1, S2):
        if os.path.exists(s):
            os.unlink(s)
    pmds = []
    ours = None
    a = d = None
    try:
        virtio = "net_virtio_user0,mac=00:01:02:03:04:0{},path={},queues=1,packed_vq=" + packed
        if side == "device":
            if A_A:
                # Calibration: a second DPDK vhost PMD in our place.
                d = Testpmd("D", 0, f"net_vhost0,iface={S1},queues=1")
                pmds.append(d)
                d.wait_ready()
            else:
                ours = subprocess.Popen(
                    ["nice", "-n", "-19", "taskset", "-c", "0", ringwork, "serve", "net",
                     "--loopback", "--workers", "device", "--socket-path", S1] + serve_opts,
                    stdout=subprocess.DEVNULL, stderr=open("/tmp/rw-il-ours.log", "w"))
            wait_socket(S1)
            a = Testpmd("A", 1, virtio.format(5, S1))
            pmds.append(a)
            a.wait_ready()
        else:
            d = Testpmd("D", 0, f"net_vhost0,iface={S1},queues=1")
            pmds.append(d)
            d.wait_ready()
            wait_socket(S1)
            if A_A:
                # Calibration: a second DPDK virtio-user in our place.
                a = Testpmd("A", 1, virtio.format(5, S1))
                pmds.append(a)
                a.wait_ready()
        b = Testpmd("B", 0, f"net_vhost0,iface={S2},queues=1")
        pmds.append(b)
        b.wait_ready()
        wait_socket(S2)
        c = Testpmd("C", 1, virtio.format(6, S2))
        pmds.append(c)
        c.wait_ready()
        time.sleep(1)
        ours_pps, dpdk_pps = [], []
        # d o d o ... d: every turn of ours has a DPDK turn on each side.
        for t in range(2 * turns + 1):
            if t % 2 == 0:
                dpdk_pps.append(turn_of_dpdk(b, c))
            else:
                ours_pps.append(turn_of_ours(a, d))
                i = len(ours_pps) - 1
                print(f"turn {i + 1}: dpdk {dpdk_pps[i] / 1e6:.2f} Mpps, ours {ours_pps[i] / 1e6:.2f} Mpps",
                      flush=True)
        ratios = [o / ((dpdk_pps[i] + dpdk_pps[i + 1]) / 2) for i, o in enumerate(ours_pps)]
        print(f"last dpdk turn {dpdk_pps[-1] / 1e6:.2f} Mpps")
        print("ratios (ours / mean of neighbouring DPDK turns):",
              " ".join(f"{r:.2f}" for r in ratios))
        # 95% interval of the median, by bootstrap (fixed seed: the same turns give the same).
        rng = random.Random(1)
        meds = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(10000))
        print(f"{side} packed={packed}{' A/A' if A_A else ''}: median {statistics.median(ratios):.3f}"
              f" (95% bootstrap interval {meds[250]:.3f}-{meds[9750]:.3f})"
              f"  min {min(ratios):.3f}  max {max(ratios):.3f}"
              f"  below 0.7: {sum(r < 0.7 for r in ratios)} of {len(ratios)}"
              f"  ours median {statistics.median(ours_pps) / 1e6:.2f} Mpps"
              f"  dpdk median {statistics.median(dpdk_pps) / 1e6:.2f} Mpps")
    finally:
        for p in reversed(pmds):
            p.quit()
        if ours is not None:
            ours.terminate()
            ours.wait()
        cleanup_runtime_dirs()
        for s in (S1, S2):
            if os.path.exists(s):
                os.unlink(s)


main()
