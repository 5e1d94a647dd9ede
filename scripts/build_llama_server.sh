#!/usr/bin/env bash
# Build llama.cpp's OpenAI-compatible `llama-server` from the llama-cpp-python sdist on PyPI
# (PyPI ships llama.cpp only as source, under vendor/llama.cpp) into a cache folder keyed by
# version; a second run finds the binary and does nothing. The tests' llama-server fixture and
# the remote-engine benchmarks use it.
#
#   scripts/build_llama_server.sh            # build if missing, print the binary's path
#   LLAMA_CPP_PYTHON_VERSION=0.3.36 PYTHON=.venv/bin/python JOBS=2 scripts/build_llama_server.sh
#
# The build is portable (GGML_NATIVE=OFF with AVX2/FMA/F16C/BMI2): the default native build
# crashes on some CPUs of the CI kind. About 10 minutes on 2 cores.
set -euo pipefail

VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
PYTHON="${PYTHON:-python3}"
JOBS="${JOBS:-2}"
if [[ -n "${LIQUID_CACHE_DIR:-}" ]]; then
  CACHE_ROOT="$LIQUID_CACHE_DIR"
else
  CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/liquid-stack"
fi
DEST_DIR="$CACHE_ROOT/llama-server/$VERSION"
BIN="$DEST_DIR/llama-server"

if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$DEST_DIR"
# One build at a time per cache folder (two `make install` runs, or parallel helpers).
exec 9>"$DEST_DIR/.build.lock"
flock 9
if [[ -x "$BIN" ]]; then
  echo "$BIN"
  exit 0
fi

for tool in cmake c++ cc; do
  command -v "$tool" >/dev/null || { echo "build_llama_server: '$tool' is not installed (apt-get install cmake build-essential)" >&2; exit 1; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/llama-server-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
echo "build_llama_server: downloading llama-cpp-python==$VERSION sdist" >&2
"$PYTHON" -m pip download --quiet --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$WORK"
tar -xzf "$WORK"/llama_cpp_python-"$VERSION".tar.gz -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
[[ -f "$SRC/CMakeLists.txt" ]] || { echo "build_llama_server: no vendor/llama.cpp in the sdist of $VERSION" >&2; exit 1; }

echo "build_llama_server: building llama-server $VERSION with $JOBS jobs (about 10 minutes on 2 cores)" >&2
cmake -S "$SRC" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >"$WORK/cmake.log" 2>&1 \
  || { tail -40 "$WORK/cmake.log" >&2; exit 1; }
cmake --build "$SRC/build" --target llama-server -j "$JOBS" >"$WORK/build.log" 2>&1 \
  || { tail -60 "$WORK/build.log" >&2; exit 1; }

BUILT="$(find "$SRC/build" -type f -name llama-server -perm -u+x | head -1)"
[[ -n "$BUILT" ]] || { echo "build_llama_server: the build made no llama-server binary" >&2; exit 1; }
install -m 0755 "$BUILT" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
"$BIN" --version >&2 || true
echo "$BIN"
