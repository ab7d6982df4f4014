#!/usr/bin/env bash
# Wheels the GPU machine lacks (it has torch 2.11, lightning, transformers, tokenizers; Python 3.12, x86-64),
# fetched here into .whl/ (git-ignored) at the versions this project's venv runs. antlr4 (omegaconf's
# parser) and DeepSpeed ship as sdists only: built here into pure-Python wheels (DeepSpeed's ops compile
# just in time there).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
PY=${PY:-.venv/bin/python}
spec() { echo "$1==$("$PY" -m pip show "$1" | awk '/^Version:/{print $2}')"; }
binary=()
for p in hydra-core omegaconf soundfile cffi pycparser soxr braceexpand hjson pydantic pydantic-core \
         annotated-types typing-inspection; do binary+=("$(spec "$p")"); done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${binary[@]}"
DS_BUILD_OPS=0 "$PY" -m pip wheel -q --no-deps -w .whl "$(spec antlr4-python3-runtime)" "$(spec deepspeed)"
du -sh .whl
