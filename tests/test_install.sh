#!/usr/bin/env bash
# `cmake --install` gives an r1 that works outside the source and build trees: run from / with the
# build tree out of reach, the installed r1 finds the embedded demo's config, the tiny models and
# the demo data under PREFIX/share/r1, relative to itself.
#   bash tests/test_install.sh BUILD_DIR
set -euo pipefail
build="$(cd "$1" && pwd)"
prefix="$(mktemp -d /tmp/r1-install.XXXXXX)"
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
test -x "$prefix/bin/r1" && test -x "$prefix/bin/r1-plugin-host"
test -f "$prefix/share/r1/configs/demo.toml" && test -f "$prefix/share/r1/models/tiny/config.json"
cd /
unset R1_SHARE_DIR
out="$("$prefix/bin/r1" generate --prompt-ids 5,6,7 --max-new-tokens 4 --ignore-eos --json)"  # the default model
grep -q '"finish_reason":"length"' <<<"$out"
"$prefix/bin/r1" train --quiet --set train.steps=1 --set eval.limit=4 --run-dir "$prefix/run"  # the embedded demo
grep -q '"step":1' "$prefix/run/metrics.jsonl"
grep -q '"eval/accuracy"' "$prefix/run/metrics.jsonl"
test -f "$prefix/run/model/model.safetensors"
grep -q '^path = ""' <<<"$("$prefix/bin/r1" config show)"  # the default [model] path: the embedded tiny model
echo "installed r1 works from / (prefix $prefix)"
