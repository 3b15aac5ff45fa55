#!/usr/bin/env bash
# Wheels the lent GPU machine's image lacks, for benchmarks/device_gpu_bench.sh (carry [".whl"]):
# the pins of .venv, for its Python 3.12, without their needs (the image has the rest). Left out on
# purpose, too large to carry beside the tree: polars (ultralytics imports it only for exports) and
# av (supervision's video reader). About 24 MiB.
#   benchmarks/device_wheels.sh [DIR=.whl] [PIN...]   (add DIR to .git/info/exclude)
# With PINs it fetches those instead (benchmarks/device_carry.sh's training wheels).
set -euo pipefail
DIR=${1:-.whl}
shift $(($# > 0))
PINS=(pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
      ultralytics==8.4.190 ultralytics-thop==2.2.3 ultralytics-platform==0.1.99
      rfdetr==1.11.2 supervision==0.31.2 pyDeprecate==0.9.0 simplejpeg==1.9.0 defusedxml==0.7.1
      ensemble-boxes==1.0.9 rapidocr-onnxruntime==1.4.4 pyclipper==1.4.0 shapely==2.2.0)
(($# > 0)) && PINS=("$@")
for p in "${PINS[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DIR" "$p"
done
du -sh "$DIR"
