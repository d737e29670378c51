#!/bin/bash
# The CUDA issue's speed table on the device: for each synth row, `quarrel bench -o json` (pp512 and tg128, 1 warm-up
# + 5 runs) into $OUT/<preset>-<quant>.json, then the load time and time to first token of a 4,002-token prompt.
#   scripts/device/rows.sh QUARREL ["preset:quant ..."]
# Synth models are written on the device (8B ones deleted after their row, for disk space). Commit the JSON files
# under bench/results/h100/ and summarize them in docs/BENCHMARKS.md.
set -u
B=$1
rows=${2:-"smollm2-135m:f16 smollm2-135m:q8_0 llama3-8b:q4_k llama3-8b:q8_0 llama3-8b:f16"}
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-/tmp/qcache}
OUT=${OUT:-/tmp/rows}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
python3 -c "print(' '.join(['hello'] * 500))" > /tmp/prompt.txt
for row in $rows; do
  p=${row%%:*}; q=${row##*:}; f=/tmp/$p-$q.gguf
  "$B" synth --preset "$p" --quant "$q" -o "$f" 2>&1 | tail -1
  timeout 240 "$B" bench -m "$f" --device cuda -p 512 -n 128 -r 5 -o json > "$OUT/$p-$q.json" 2> /tmp/err.txt ||
    tail -3 /tmp/err.txt
  python3 -c "import json; [print('$p $q', r['n_prompt'], r['n_gen'], round(r['avg_ts'], 1), '+-', round(r['stddev_ts'], 1)) for r in json.load(open('$OUT/$p-$q.json'))]"
  ( /usr/bin/time -f "wall %e s" "$B" run -m "$f" --device cuda --temp 0 -n 1 < /tmp/prompt.txt > /dev/null ) 2>&1 |
    grep -E "prompt:|wall" | tr '\n' ' '
  echo
  case $p in llama3-8b) rm -f "$f";; esac
done
