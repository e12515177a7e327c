#!/usr/bin/env bash
# Install carried wheels and .debs on a bare GPU box with no network (how the H100 numbers in
# benchmarks/results/ were taken). STAGE holds the wheels (flash-attn-4, nvidia-cutlass-dsl*, quack,
# tvm-ffi, brotli) and lrzip's .debs. Source it: `. benchmarks/device_install.sh /root/stage`.
stage=${1:-/root/stage}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$stage"/*.whl || return 1
for deb in "$stage"/*.deb; do dpkg -x "$deb" /tmp/deb; done
export PYTHONPATH=/tmp/site:/tmp/site/nvidia_cutlass_dsl/python_packages:/tmp/site/nvidia_cutlass_dsl/dsl_packages:$PWD
export PATH=/tmp/deb/usr/bin:$PATH
export LD_LIBRARY_PATH=/tmp/deb/lib/x86_64-linux-gnu:/tmp/deb/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
export PYTHONUNBUFFERED=1
