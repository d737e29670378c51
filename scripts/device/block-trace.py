#!/usr/bin/env python3
"""Per-warp timeline of decode steps on the device, from the block-trace build.

  git apply scripts/device/block-trace.patch && cargo build --release   # then revert the seven files it touches
  quarrel bench -m MODEL --device cuda -p 0 -n 200 -r 1 --warmup 0     # on the device; writes /tmp/qblk.bin
  python3 scripts/device/block-trace.py [HEAD_LABEL [TAG]]              # HEAD_LABEL: the output head's grid, g1584

The patch makes lane 0 of every warp of every kernel record, in a ring per SM (%smid): %gridid, %globaltimer at its
dependency wait's call (at the kernel's entry instead for the four kernels of a fused layer: Q/K/V, attention, FFN
input and output, whose work before the wait matters) and return and at its exit, %clock64 at the wait's return and
at its exit, up to four %clock64 marks inside the kernel (qb_mark: the load loop's end and the warp sums of the
products; in the attention, m0-m3 its last key tile's scores, softmax and values, and the merge of its warps; the
FFN input's copy of x + acc as m0), and its block, SM and launch shape. The backend writes the rings
to /tmp/qblk.bin when it is dropped; the script keeps the launches every SM still holds, splits them into decode
steps at the output head, and prints per kernel, averaged over steps and layers (µs):
  early  share of warps that entered (or reached the wait) before the predecessor's last warp exited
  lead   predecessor's last exit minus this kernel's median entry (or arrival at the wait)
  bound  first wait return minus the predecessor's last exit (the boundary)
  skew   last minus first wait return
  m0-m3  median time from the wait to each mark; wmed/w90/wmax the wait-to-exit time of the warps
  span   first wait return to last exit; tot  first wait return to the next kernel's
With $OUT set it also pickles one step's raw records there. The stamps slow a step by about 25 %.
"""
import array, collections, statistics as st, sys
a = array.array('Q'); a.frombytes(open('/tmp/qblk.bin', 'rb').read())
SMS, CAP, RW = 160, 16384, 12
recs = []
earliest = []
for sm in range(SMS):
    base = sm * CAP * RW
    ts = []
    for i in range(CAP):
        o = base + i * RW
        if a[o]:
            recs.append(tuple(a[o:o + RW])); ts.append(a[o + 1])
    if ts: earliest.append(min(ts))
cut = max(earliest) + 20000  # ns: keep what every SM still holds
L = collections.defaultdict(list)
for r in recs:
    L[r[0]].append(r)
groups = []
for gid, rs in L.items():  # a graph node keeps its gridid from replay to replay: split by time
    rs.sort(key=lambda r: r[2])
    cur = [rs[0]]
    for r in rs[1:]:
        if r[2] - cur[-1][2] > 30000:
            groups.append(cur); cur = []
        cur.append(r)
    groups.append(cur)
launches = []
for rs in groups:
    if min(r[1] for r in rs) < cut: continue
    shp = rs[0][7]
    lab = f"g{shp >> 32}x{(shp >> 16) & 0xffff} b{shp & 0xffff}"
    launches.append(dict(lab=lab, t0=[r[1] for r in rs], t1=[r[2] for r in rs], t2=[r[3] for r in rs],
                         cyc=[(r[5] - r[4]) for r in rs], marks=[[(r[8 + i] - r[4]) if r[8 + i] else None for r in rs] for i in range(4)], raw=rs, blocks=len({r[6] >> 16 for r in rs}), warps=len(rs)))
launches.sort(key=lambda l: min(l['t1']))
heads = [i for i, l in enumerate(launches) if l['lab'].startswith(sys.argv[1] if len(sys.argv) > 1 else 'g1584')]
print('launches', len(launches), 'heads', len(heads), 'labels', collections.Counter(l['lab'] for l in launches).most_common(12))
steps = [launches[heads[i] + 1:heads[i + 1] + 1] for i in range(len(heads) - 1)]
P = collections.Counter(len(s) for s in steps).most_common(1)[0][0]
steps = [s for s in steps if len(s) == P]
print('steps', len(steps), 'kernels a step', P)
def q(xs, f): xs = sorted(xs); return xs[min(len(xs) - 1, int(f * len(xs)))]
rows = []
for j in range(P):
    acc = collections.defaultdict(float)
    for si, s in enumerate(steps):
        l = s[j]; prev = s[j - 1] if j > 0 else (steps[si - 1][-1] if si > 0 else None)
        nxt = s[j + 1] if j + 1 < P else (steps[si + 1][0] if si + 1 < len(steps) else None)
        if prev is None or nxt is None: continue
        pe = max(prev['t2'])
        acc['n'] += 1
        acc['early'] += sum(t < pe for t in l['t0']) / len(l['t0'])
        acc['lead'] += (pe - st.median(l['t0'])) / 1e3
        acc['bound'] += (min(l['t1']) - pe) / 1e3
        acc['skew'] += (max(l['t1']) - min(l['t1'])) / 1e3
        acc['wmed'] += st.median(l['cyc']) / 1980
        acc['w90'] += q(l['cyc'], 0.9) / 1980
        acc['wmax'] += max(l['cyc']) / 1980
        acc['span'] += (max(l['t2']) - min(l['t1'])) / 1e3
        acc['tot'] += (min(nxt['t1']) - min(l['t1'])) / 1e3
        for i in range(4):
            ms = [m for m in l['marks'][i] if m is not None]
            if ms: acc[f'm{i}'] += st.median(ms) / 1980
    n = acc.pop('n', 0) or 1
    rows.append((steps[0][j]['lab'], steps[0][j]['blocks'], steps[0][j]['warps'], {k: v / n for k, v in acc.items()}))
keys = ['early', 'lead', 'bound', 'skew', 'm0', 'm1', 'm2', 'm3', 'wmed', 'w90', 'wmax', 'span', 'tot']
print(f"{'pos':>4} {'kernel':22s} {'blk':>5} {'warps':>5} " + ' '.join(f"{k:>6s}" for k in keys))
agg = collections.OrderedDict()
for j, (lab, b, w, d) in enumerate(rows):
    if j < 10 or j > P - 8: print(f"{j:4d} {lab:22s} {b:5d} {w:5d} " + ' '.join(f"{d.get(k, 0):6.2f}" for k in keys))
    g = agg.setdefault(lab, [0, collections.defaultdict(float), b, w])
    g[0] += 1
    for k in keys: g[1][k] += d.get(k, 0)
print('by kernel (mean over its positions); times in us, early = share of warps entered before the predecessor ended')
for lab, (c, d, b, w) in agg.items():
    print(f"n={c:3d} {lab:22s} {b:5d} {w:5d} " + ' '.join(f"{d[k] / c:6.2f}" for k in keys))
print('step us', sum(d.get('tot', 0) for _, _, _, d in rows))
import os, pickle
if os.environ.get('OUT'):
    mid = len(steps) // 2
    pickle.dump([[dict((k, v) for k, v in l.items() if k in ('lab', 'raw')) for l in s] for s in steps[mid:mid + 1]],
                open(os.environ['OUT'] + '/steps-' + (sys.argv[2] if len(sys.argv) > 2 else 'x') + '.pkl', 'wb'))
