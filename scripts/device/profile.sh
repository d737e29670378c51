#!/bin/bash
# Where a decode step's time goes on the device: Nsight Compute's duration and DRAM bytes per kernel, summed by
# kernel name over a few decode steps (`quarrel run -n 8` on MODEL, the first SKIP launches skipped).
#   scripts/device/profile.sh QUARREL MODEL [SKIP] [COUNT]
# ncu's defaults (cold caches, base clocks) give stable proportions, not absolute times; add
# `--cache-control none --clock-control none` to FLAGS for warm caches and boost clocks.
set -u
bin=$1; model=$2; skip=${3:-400}; count=${4:-300}
FLAGS="--metrics gpu__time_duration.sum,dram__bytes_read.sum --csv"
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-/tmp/qcache}
ncu $FLAGS --launch-skip "$skip" --launch-count "$count" "$bin" run -m "$model" --ctx 512 --device cuda --temp 0 \
  -p hi -n 8 2>/dev/null > /tmp/ncu.csv
awk -F'","' 'NR>1 {n=$5; gsub(/\(.*/,"",n); v=$NF; gsub(/[",]/,"",v);
  if ($0 ~ /gpu__time_duration/) {t[n]+=v; c[n]++} else {b[n]+=v}}
  END {for (k in t) printf "%9.1f us %4d %8.2f MB %6.2f TB/s  %s\n", t[k]/1000, c[k], b[k]/1e6, b[k]/t[k]/1000, k}' \
  /tmp/ncu.csv | sort -rn | head -20
