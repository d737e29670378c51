#!/usr/bin/env bash
# Fetch NVIDIA's NVRTC (the CUDA runtime compiler, a CPU-only library) from the Python package registry so that
# quarrel's CUDA kernels can be compiled — and their compile checked by the tests — on a machine without a GPU or
# a CUDA toolkit. Prints the folder holding libnvrtc.so.13.
#
# Lands in ${XDG_CACHE_HOME:-~/.cache}/quarrel/nvrtc/13.0.88/
set -euo pipefail
VERSION=13.0.88
SHA=ad9b6d2ead2435f11cbb6868809d2adeeee302e9bb94bcf0539c7a40d80e8575
DIR=${XDG_CACHE_HOME:-$HOME/.cache}/quarrel/nvrtc/$VERSION
if [ -f "$DIR/libnvrtc.so.13" ]; then echo "$DIR"; exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "downloading nvidia-cuda-nvrtc $VERSION..." >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check --only-binary=:all: \
  --platform manylinux_2_12_x86_64 -d "$tmp" "nvidia-cuda-nvrtc==$VERSION" >&2
whl=$(ls "$tmp"/nvidia_cuda_nvrtc-*.whl)
[ "$(sha256sum "$whl" | cut -d' ' -f1)" = "$SHA" ] || { echo "checksum mismatch for $whl" >&2; exit 1; }
python3 -m zipfile -e "$whl" "$tmp/x"
mkdir -p "$DIR"
cp "$tmp"/x/nvidia/cu13/lib/libnvrtc.so.13 "$tmp"/x/nvidia/cu13/lib/libnvrtc-builtins.so.13.0 "$DIR/"
echo "$DIR"
