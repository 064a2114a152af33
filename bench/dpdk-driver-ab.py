#!/usr/bin/env python3
# Part of ringwork: docs/PERFORMANCE.md, "virtio-net: ringwork vs DPDK". Needs dpdk-testpmd
# (package dpdk) and `cargo build --release -p ringwork-cli`.
#
# Two settings of our driver compared against one DPDK vhost PMD testpmd (cpu 0, io fwd):
# `ringwork bench net` (cpu 1) runs in turns, A, B, A, B, ..., A, each a fresh process with
# its own options; after a 1.2 s warm-up each turn reads the vhost testpmd's Rx-pps over
# SECONDS. Each B turn is divided by the mean of the A turns on either side; the figure is
# the median of those ratios with a 95% bootstrap interval. Options that change the driver's
# pace are fine here (unlike a per-second switch inside one process, where the frames the
# loop keeps and where they sit carry over from one second to the next).
#
# usage: dpdk-driver-ab.py PACKED(0|1) PAIRS SECONDS "A bench options" "B bench options"
#   e.g. dpdk-driver-ab.py 1 12 2 "" "--withhold 29,0,1"
#   R=path/to/ringwork for both; R_B=path/to/another/ringwork runs B with that build instead
#   (two builds compared: same options, e.g. dpdk-driver-ab.py 1 20 2 "" "").
import os
import random
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time

USAGE = "usage: dpdk-driver-ab.py PACKED(0|1) PAIRS(>=1) SECONDS 'A options' 'B options'"
if len(sys.argv) != 6 or sys.argv[1] not in ("0", "1"):
    sys.exit(USAGE)
packed, pairs, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
if pairs < 1 or secs <= 0:
    sys.exit(USAGE)
opts = {0: shlex.split(sys.argv[4]), 1: shlex.split(sys.argv[5])}
here = os.path.dirname(os.path.abspath(__file__))
ringwork = os.environ.get("R", os.path.join(here, "..", "target", "release", "ringwork"))
binary = {0: ringwork, 1: os.environ.get("R_B", ringwork)}
bench = None
sock, prefix, log = "/tmp/rw-ab-vhost.sock", "rwab", "/tmp/rw-ab-vhost.log"


def cleanup():
    for base in ("/var/run/dpdk", os.path.join(os.environ.get("XDG_RUNTIME_DIR", "/nonexistent"), "dpdk")):
        shutil.rmtree(os.path.join(base, prefix), ignore_errors=True)
    if os.path.exists(sock):
        os.unlink(sock)


cleanup()
tp = subprocess.Popen(
    ["nice", "-n", "-19", "stdbuf", "-o0", "dpdk-testpmd", "--no-huge", "-m", "1024", "--no-pci",
     f"--file-prefix={prefix}", "--lcores", "0@0,1@0", "--vdev", f"net_vhost0,iface={sock},queues=1",
     "--", "-i", "--nb-cores=1", "--forward-mode=io", "--no-flush-rx"],
    stdin=subprocess.PIPE, stdout=open(log, "w"), stderr=subprocess.STDOUT, text=True)


def send(c, wait=0.0):
    tp.stdin.write(c + "\n")
    tp.stdin.flush()
    time.sleep(wait)


def rx_pps():
    before = len(open(log).read())
    send("show port stats all")
    for _ in range(100):
        time.sleep(0.05)
        m = re.findall(r"Rx-pps:\s+(\d+)", open(log).read()[before:])
        if m:
            return int(m[0])
    sys.exit(f"no Rx-pps in {log}")


try:
    for _ in range(200):
        if os.path.exists(sock):
            break
        time.sleep(0.05)
    time.sleep(1.5)
    ring = "--packed" if packed == "1" else "--split"
    seq = []
    for i in range(2 * pairs + 1):
        arm = i % 2
        send("start", 0.1)
        bench = b = subprocess.Popen(
            ["nice", "-n", "-19", "taskset", "-c", "1", binary[arm], "bench", "net", "--socket-path", sock,
             ring, "--time", f"{secs + 2.5}s", "--json", "--quiet"] + opts[arm],
            stdout=open("/tmp/rw-ab-bench.json", "w"), stderr=open("/tmp/rw-ab-bench.err", "w"))
        time.sleep(1.2)
        rx_pps()
        time.sleep(secs)
        v = rx_pps()
        if b.wait(timeout=30) != 0:
            sys.exit("bench net failed: " + open("/tmp/rw-ab-bench.err").read()[-2000:])
        send("stop", 0.3)
        seq.append((arm, v))
        print(f"turn {i + 1} ({'AB'[arm]}): {v / 1e6:.2f} Mpps", flush=True)
    ratios = [seq[i][1] / ((seq[i - 1][1] + seq[i + 1][1]) / 2) for i in range(1, len(seq) - 1, 2)]
    rng = random.Random(1)
    meds = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(10000))
    print(f"A median {statistics.median(v for a, v in seq if a == 0) / 1e6:.2f} Mpps, "
          f"B median {statistics.median(v for a, v in seq if a == 1) / 1e6:.2f} Mpps; "
          f"B / neighbouring A: median {statistics.median(ratios):.3f} "
          f"(95% bootstrap interval {meds[250]:.3f}-{meds[9750]:.3f}), {len(ratios)} pairs")
finally:
    if bench is not None and bench.poll() is None:
        bench.kill()
    try:
        send("quit")
        tp.wait(timeout=15)
    except Exception:
        tp.kill()
    cleanup()
