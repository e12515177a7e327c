#!/usr/bin/env bash
# Install a stage folder written by benchmarks/device_stage.py on a bare GPU box with no network (how
# the GPU numbers in benchmarks/results/ are taken). STAGE holds the lock's wheels (flash-attn-4, the
# CuTe DSL with its CUDA 13 libraries, quack, tvm-ffi, brotli, jsonschema, nox and their requirements),
# some cut into NAME.partNN pieces, lrzip's .debs and SHA256SUMS of the whole files.
# Source it: `. benchmarks/device_install.sh /root/stage`.
stage=${1:-/root/stage}
whole=/tmp/stage-whole
rm -rf "$whole" && mkdir -p "$whole" || return 1
find "$stage" -maxdepth 1 -type f \( -name '*.whl' -o -name '*.deb' -o -name SHA256SUMS \) -exec cp {} "$whole"/ \; || return 1
# Pieces sort by their two-digit suffix, so the glob joins them in order.
for first in "$stage"/*.part00; do
  [ -e "$first" ] || continue
  name=$(basename "${first%.part00}")
  cat "${first%.part00}".part?? > "$whole/$name" || return 1
done
(cd "$whole" && sha256sum --quiet -c SHA256SUMS) || { echo "device_install: $stage: a file differs from SHA256SUMS (stage it again)" >&2; return 1; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$whole"/*.whl || return 1
for deb in "$whole"/*.deb; do [ -e "$deb" ] && dpkg -x "$deb" /tmp/deb; done
export PYTHONPATH=/tmp/site:/tmp/site/nvidia_cutlass_dsl/python_packages:/tmp/site/nvidia_cutlass_dsl/dsl_packages:$PWD
export PATH=/tmp/site/bin:/tmp/deb/usr/bin:$PATH
export LD_LIBRARY_PATH=/tmp/deb/lib/x86_64-linux-gnu:/tmp/deb/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
export PYTHONUNBUFFERED=1
