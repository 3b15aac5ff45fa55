#!/usr/bin/env bash
# SAM's folded relative-position attention and Grounding DINO's level-summed deformable sampling
# against transformers' own forms, on one lent GPU (issue 18), as data for the README:
#   parts   benchmarks/sam_attention_bench.py (SAM ViT-B encoder alone, batches 1-8) and
#           benchmarks/op_profile.py for sam_mask_b and gdino_t, each form
#   bench   benchmarks/device_gpu_bench.sh with the profile as committed before these forms
#           (`attention: transformers`, `deformable_sampling: transformers`; TAG=transformers) and
#           then as it is now (TAG=forms), two workers x four lanes, 10 and 64 frames, side by side
#   run: benchmarks/device_attention_forms.sh parts|bench|both OUTDIR   (carry [".whl"])
# BENCH_S (260) bounds each bench run; FIRST=forms runs the new forms first in `bench`.
set -u
MODE=$1 OUT=$2
mkdir -p "$OUT"
old=configs/.variant_transformers_forms.yaml  # beside the profile, so its relative paths resolve
sed -e 's/max_boxes: 6}/max_boxes: 6, attention: transformers}/' \
    -e '/model: IDEA-Research\/grounding-dino-tiny/a\      deformable_sampling: transformers' configs/h100x2.yaml > "$old"
[[ $(grep -c -e "attention: transformers" -e "deformable_sampling: transformers" "$old") == 2 ]] \
  || { echo "could not write both forms into $old: has configs/h100x2.yaml changed?" >&2; exit 1; }
if [[ $MODE == parts || $MODE == both ]]; then  # `bench` installs the wheels itself (device_gpu_bench.sh)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:. HF_HUB_OFFLINE=1 YOLO_OFFLINE=1 YOLO_CONFIG_DIR=$PWD/runs/yolo PYTHONUNBUFFERED=1
  timeout 150 python3 benchmarks/sam_attention_bench.py --out "$OUT/sam_attention.json" 2>&1 | tail -n 12
  for form in forms transformers; do
    config=configs/h100x2.yaml; [[ $form == transformers ]] && config=$old
    timeout 100 python3 benchmarks/op_profile.py --config "$config" --only sam_mask_b gdino_t --sizes 224x224 \
      --out-dir "$OUT/op_profile_$form" > "$OUT/op_profile_$form.log" 2>&1
    echo "op_profile $form: rc=$?"; grep -e "^== " -e "Self CUDA time total" "$OUT/op_profile_$form.log" | awk 'NR % 3 != 0'
  done
fi
if [[ $MODE == bench || $MODE == both ]]; then
  order="transformers forms"; [[ ${FIRST:-} == forms ]] && order="forms transformers"
  for form in $order; do
    config=configs/h100x2.yaml; [[ $form == transformers ]] && config=$old
    CONFIG=$config TAG=$form SETTINGS="2:4" NATIVE=off CONC=10,64 BENCH_S=${BENCH_S:-260} \
      bash benchmarks/device_gpu_bench.sh bench "$OUT"
  done
fi
