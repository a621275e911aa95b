#!/usr/bin/env bash
# Installs everything r1.cpp needs on a fresh Debian 12 machine, then configures and builds it.
# Idempotent: a second run checks, finds everything in place, and only rebuilds what changed.
#   R1_DEPS_DIR   where LibTorch is unpacked (default ~/.cache/r1cpp)
#   R1_BUILD_DIR  build folder (default build)
#   R1_NO_BUILD=1 install dependencies only
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../deps.env
source "$root/deps.env"
deps="${R1_DEPS_DIR:-$HOME/.cache/r1cpp}"
build="${R1_BUILD_DIR:-$root/build}"
log() { printf '[setup] %s\n' "$*" >&2; }

# 1. Debian packages.
pkgs=(build-essential cmake ninja-build ccache python3 python3-pip python3-venv unzip
      libboost1.81-dev libboost-json1.81-dev libtomlplusplus-dev doctest-dev libcli11-dev libfmt-dev
      bubblewrap libpcre2-dev libutf8proc-dev libgloo-dev libseccomp-dev libprotobuf-dev protobuf-compiler
      clang libclang-rt-14-dev clang-format git)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. LibTorch from the PyPI wheel: unpack torch/{lib,include,share} only; no Python install.
torch_dir="$deps/torch-$TORCH_VERSION"
if [[ ! -f "$torch_dir/.complete" ]]; then
  log "fetching torch==$TORCH_VERSION wheel from PyPI into $torch_dir"
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
      -d "$tmp" "torch==$TORCH_VERSION"
  rm -rf "$torch_dir.partial" && mkdir -p "$torch_dir.partial"
  (cd "$torch_dir.partial" && unzip -q "$tmp"/torch-*.whl 'torch/lib/*' 'torch/include/*' 'torch/share/*' 'torch/version.py')
  # Runtime libraries that libtorch_cuda.so links and /usr/local/cuda lacks.
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" \
      "nvidia-cusparselt-cu13==$CUSPARSELT_VERSION" "nvidia-nvshmem-cu13==$NVSHMEM_VERSION" \
      "nvidia-cufile==$CUFILE_VERSION"
  mkdir -p "$torch_dir.partial/extra"
  for w in "$tmp"/nvidia_*.whl; do
    (cd "$tmp" && unzip -q -o "$w" 'nvidia/*/lib/*.so*')
  done
  find "$tmp/nvidia" -name '*.so*' -exec cp -a {} "$torch_dir.partial/extra/" \;
  touch "$torch_dir.partial/.complete"
  rm -rf "$torch_dir" && mv "$torch_dir.partial" "$torch_dir"
fi
log "LibTorch $TORCH_VERSION at $torch_dir"

[[ "${R1_NO_BUILD:-0}" == 1 ]] && exit 0

# 3. Configure (once) and build.
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DR1_DEPS_DIR="$deps" >&2
fi
cmake --build "$build" >&2
