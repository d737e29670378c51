#!/usr/bin/env bash
# Build dev/llama-ref/llama_ref.cpp (and llama_dump.cpp beside it) against llama.cpp's static libraries and print
# llama_ref's path.
# llama.cpp is found (and built first, if missing: ~20 min on 2 cores) by ../shared/tools/llama-cpp.sh,
# which prints llama.cpp's bin folder; the build folder is its parent, the source folder beside that.
#   dev/llama-ref/build.sh            -> target/llama-ref/llama_ref  (path printed)
#                                        target/llama-ref/llama_dump (every intermediate tensor of a prompt, see
#                                        llama_dump.cpp)
#                                        target/llama-ref/no_amx.so (LD_PRELOAD shim, see no_amx.c)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LOCATOR=$ROOT/../shared/tools/llama-cpp.sh
[ -f "$LOCATOR" ] || { echo "build.sh: $LOCATOR not found" >&2; exit 1; }
BIN=$(bash "$LOCATOR" | tail -n1)
B=$(dirname "$BIN")                  # llama.cpp build folder
S=$(dirname "$B")/src                # llama.cpp source folder
for f in "$B/src/libllama.a" "$B/ggml/src/libggml.a" "$B/ggml/src/libggml-cpu.a" "$B/ggml/src/libggml-base.a" \
         "$S/include/llama.h" "$S/ggml/include/ggml.h"; do
  [ -f "$f" ] || { echo "build.sh: missing $f" >&2; exit 1; }
done
OUT=$ROOT/target/llama-ref
mkdir -p "$OUT"
# Compiles dev/llama-ref/NAME.cpp into $OUT/NAME when it, the shared header or llama.cpp's library is newer.
# Link order: llama, then ggml's front, CPU backend, base. ggml-cpu was built with -fopenmp.
build_tool() {
  local name=$1 exe=$OUT/$1
  if [ ! -x "$exe" ] || [ "$HERE/$name.cpp" -nt "$exe" ] || [ "$HERE/llama_common.h" -nt "$exe" ] ||
     [ "$B/src/libllama.a" -nt "$exe" ]; then
    echo "build.sh: compiling $exe" >&2
    g++ -std=c++17 -O2 -Wall -Wextra -I"$S/include" -I"$S/ggml/include" "$HERE/$name.cpp" -o "$exe.tmp" \
      "$B/src/libllama.a" "$B/ggml/src/libggml.a" "$B/ggml/src/libggml-cpu.a" "$B/ggml/src/libggml-base.a" \
      -fopenmp -lpthread -ldl -lm
    mv "$exe.tmp" "$exe"
  fi
}
build_tool llama_ref
build_tool llama_dump
EXE=$OUT/llama_ref
SHIM=$OUT/no_amx.so
if [ ! -f "$SHIM" ] || [ "$HERE/no_amx.c" -nt "$SHIM" ]; then
  gcc -O2 -shared -fPIC -Wall -Wextra "$HERE/no_amx.c" -o "$SHIM" -ldl
fi
echo "$EXE"
