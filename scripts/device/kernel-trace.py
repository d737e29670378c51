#!/usr/bin/env python3
"""Per-kernel timeline of decode steps on the device, from an instrumented build.

  git apply scripts/device/kernel-trace.patch && cargo build --release   # then `git checkout crates/`
  quarrel bench -m MODEL --device cuda -p 0 -n 200 -r 1 --warmup 0      # on the device; writes /tmp/qtrace*.bin
  python3 scripts/device/kernel-trace.py

The patch makes block 0 of every kernel record %globaltimer when its dependency wait returns (with the launch
shape, as a label), and thread 0 of every block its exit time (atomicMax per kernel); the backend writes both
arrays to /tmp when it is dropped. The script finds the period of a decode step in the launch shapes, averages
each position over the steps, and prints per launch shape: wait to next wait (what the kernel adds to a step),
wait to last exit (its work) and last exit to the next wait (the boundary). The instrumentation itself slows a
step by about 8 %. Shapes read gGRIDXxGRIDY bTHREADS (smollm2-135m: g60 Q/K/V, g9 attention, g72 output and down
projections, g192 gate/up, g1584 the output head).
"""
import struct, sys, collections
b = open('/tmp/qtrace.bin', 'rb').read()
v = struct.unpack('<65536Q', b)
e = struct.unpack('<32768Q', open('/tmp/qtrace_e.bin', 'rb').read())
ev = [(v[2*i], v[2*i+1], e[i]) for i in range(32768) if v[2*i]]
ids = [x[1] for x in ev]
n = len(ev)
mid = n // 2
P = next(p for p in range(50, 600) if all(ids[i] == ids[i + p] for i in range(mid - 2000, mid - 2000 + 3 * p)))
start = P * 2
m = (n - start) // P - 1
tot = [0.0] * P; work = [0.0] * P
for s in range(m):
    base = start + s * P
    for j in range(P):
        a, b_ = ev[base + j], ev[base + j + 1]
        tot[j] += b_[0] - a[0]
        work[j] += (a[2] - a[0]) if a[2] > a[0] else 0
tot = [x / m / 1000 for x in tot]; work = [x / m / 1000 for x in work]
k = max(range(P), key=lambda j: tot[j])
order = [(k + 1 + j) % P for j in range(P)]
def lab(i):
    x = ids[start + i]
    return f"g{x >> 32}x{(x >> 16) & 0xffff} b{x & 0xffff}"
print('period', P, 'steps', m, 'step us', round(sum(tot), 1), 'work us', round(sum(work), 1))
agg = collections.OrderedDict()
for j in order:
    a = agg.setdefault(lab(j), [0, 0.0, 0.0])
    a[0] += 1; a[1] += tot[j]; a[2] += work[j]
for l, (c, t, w) in agg.items():
    print(f"{l:24s} n={c:3d} start->next {t/c:6.3f}  start->end {w/c:6.3f}  end->next {(t-w)/c:6.3f}  sum {t:7.1f}")
print('step order:', [(lab(j), round(tot[j], 2), round(work[j], 2)) for j in order[:8]], '...', [(lab(j), round(tot[j], 2), round(work[j], 2)) for j in order[-5:]])
