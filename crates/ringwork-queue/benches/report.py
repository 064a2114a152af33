#!/usr/bin/env python3
"""Markdown tables from the criterion results of `cargo bench -p ringwork-queue`.

Usage: python3 crates/ringwork-queue/benches/report.py [target/criterion]

For each benchmark it reads criterion's estimate (`slope`, with its 95%
confidence interval; one iteration is one chain, so the unit is ns/chain)
and, from the raw samples, the fastest-decile time per chain (p10), which is
less disturbed by other processes on a shared machine. Ratios are given for
both.
"""

import json
import os
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"


def load(group, impl, case):
    d = os.path.join(ROOT, group, impl, case, "new")
    try:
        est = json.load(open(os.path.join(d, "estimates.json")))
        sample = json.load(open(os.path.join(d, "sample.json")))
    except FileNotFoundError:
        return None
    e = est.get("slope") or est["mean"]
    per = sorted(t / i for i, t in zip(sample["iters"], sample["times"]))
    return {
        "est": e["point_estimate"],
        "lo": e["confidence_interval"]["lower_bound"],
        "hi": e["confidence_interval"]["upper_bound"],
        "p10": per[len(per) // 10],
    }


def cell(r):
    if r is None:
        return "n/a"
    return f"{r['est']:.1f} ({r['lo']:.1f}–{r['hi']:.1f})"


def p10(r):
    return "n/a" if r is None else f"{r['p10']:.1f}"


def ratio(a, b, key):
    if a is None or b is None:
        return "n/a"
    return f"{a[key] / b[key]:.2f}×"


CASES = ["1-desc", "4-desc", "4-desc-indirect"]

print("### Device side, split ring: ringwork vs virtio-queue (ns per chain)\n")
print("ringwork over `TestMemory` and over its own `mmap::GuestMemoryMmap`;")
print("virtio-queue over vm-memory's `GuestMemoryMmap`.\n")
print("| chain | ringwork | ringwork (mmap) | virtio-queue | virtio-queue / ringwork | virtio-queue / ringwork (mmap) |")
print("|---|---:|---:|---:|---:|---:|")
for c in CASES:
    o = load("device_split", "ringwork", c)
    m = load("device_split", "ringwork-mmap", c)
    v = load("device_split", "virtio-queue", c)
    print(f"| {c} | {cell(o)} | {cell(m)} | {cell(v)} | {ratio(v, o, 'est')} | {ratio(v, m, 'est')} |")
print("\nFastest decile (p10) of the per-sample times, same runs:\n")
print("| chain | ringwork p10 | ringwork (mmap) p10 | virtio-queue p10 | virtio-queue / ringwork | virtio-queue / ringwork (mmap) |")
print("|---|---:|---:|---:|---:|---:|")
for c in CASES:
    o = load("device_split", "ringwork", c)
    m = load("device_split", "ringwork-mmap", c)
    v = load("device_split", "virtio-queue", c)
    print(f"| {c} | {p10(o)} | {p10(m)} | {p10(v)} | {ratio(v, o, 'p10')} | {ratio(v, m, 'p10')} |")

print("\n### Device side, ringwork: packed vs split (ns per chain)\n")
print("| chain | split | packed | packed / split | split p10 | packed p10 | ratio (p10) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for c in CASES:
    s = load("device_split", "ringwork", c)
    p = load("device_packed", "ringwork", c)
    print(f"| {c} | {cell(s)} | {cell(p)} | {ratio(p, s, 'est')} | {p10(s)} | {p10(p)} | {ratio(p, s, 'p10')} |")

print("\n### add_used alone (ns per call, 1-descriptor chains)\n")
print("| implementation | ns | p10 | virtio-queue / this |")
print("|---|---:|---:|---:|")
v = load("add_used", "virtio-queue", "split")
for impl, case in [("ringwork", "split"), ("ringwork", "packed"), ("virtio-queue", "split")]:
    r = load("add_used", impl, case)
    print(f"| {impl} {case} | {cell(r)} | {p10(r)} | {ratio(v, r, 'est')} |")

print("\n### Variants, ringwork, 1-descriptor chains (ns per chain)\n")
print("| variant | ns | p10 |")
print("|---|---:|---:|")
for case in [
    "split-1-desc-pop-by-value",
    "split-1-desc-event-idx",
    "packed-1-desc-pop-by-value",
    "packed-1-desc-event-idx",
]:
    r = load("device_variants", "ringwork", case)
    print(f"| {case} | {cell(r)} | {p10(r)} |")
