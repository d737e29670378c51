#!/bin/bash
# Decode speed of several quarrel binaries side by side on the device (same card, same synth models), for kernel
# A/B work: build each variant here, copy it (stripped) to DIR/quarrel-NAME, carry DIR with the device tool, run
#   scripts/device/ab.sh DIR "NAME1 NAME2 ..." ["preset:quant ..."]
# The first variant also writes the synth models. Prints tg128 tok/s per model and variant.
set -u
dir=$1
variants=$2
rows=${3:-"smollm2-135m:f16 smollm2-135m:q8_0 llama3-8b:q4_k llama3-8b:q8_0 llama3-8b:f16"}
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-/tmp/qcache}
first=${variants%% *}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for row in $rows; do
  p=${row%%:*}; q=${row##*:}; f=/tmp/$p-$q.gguf
  [ -f "$f" ] || "$dir/quarrel-$first" synth --preset "$p" --quant "$q" -o "$f" >/dev/null 2>&1
  echo -n "$p $q:"
  for v in $variants; do
    r=$(timeout 120 "$dir/quarrel-$v" bench -m "$f" --device cuda -p 0 -n 128 -r 3 2>&1 | grep tg128 | awk -F'|' '{print $8}')
    echo -n "  $v $r"
  done
  echo
  case $p in llama3-8b) rm -f "$f";; esac
done
