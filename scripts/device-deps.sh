#!/usr/bin/env bash
# Downloads the Debian packages r1 builds against (the list of scripts/setup.sh, plus their runtime
# libraries) as .deb files into .device-deps/, for the GPU machine, which has no Debian registry:
# the device tool carries the folder there and scripts/device-check.sh unpacks it. ~13 MB.
#   bash scripts/device-deps.sh && (device tool) run "bash scripts/device-check.sh" carry=[".device-deps"]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/.device-deps"
pkgs=(libboost1.81-dev libboost-json1.81-dev libboost-json1.81.0 libboost-container1.81-dev libboost-container1.81.0
      libtomlplusplus-dev libtomlplusplus3 doctest-dev
      libcli11-dev libfmt-dev libfmt9 libpcre2-dev libpcre2-8-0 libutf8proc-dev libutf8proc2 libgloo-dev
      libseccomp-dev libseccomp2)
mkdir -p "$dir"
cd "$dir"
rm -rf ./*.deb root  # root/: what device-check.sh unpacks; it must not travel (64 MiB limit)
apt-get download "${pkgs[@]}" 2>&1 | grep -v "^W: Download is performed unsandboxed" || true
n=$(ls ./*.deb | wc -l)
[[ "$n" -eq "${#pkgs[@]}" ]] || { echo "device-deps: got $n of ${#pkgs[@]} packages" >&2; exit 1; }
echo "device-deps: $n packages, $(du -sh . | cut -f1) in $dir"
