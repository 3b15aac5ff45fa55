#!/usr/bin/env bash
# The L1 detector's recipe on one GPU at once, as three processes sharing the card:
# - two detectors, each trained without one half of the sources and scoring that half's rows:
#   every training row gets a vote from a detector that never saw its source (a new camera), the
#   votes `roadwork fit` pools and the leave-one-source-out check reads;
# - the detector on every row, which the profile ships.
# Each caps its training at BUDGET_S seconds (training/finetune_detector.py --time-budget-s).
# Then, on the CPU:
#   python -m training.finetune_detector package --out OUT/l1_rcnn.pt --votes OUT/half_a.loso.jsonl --votes OUT/half_b.loso.jsonl
#
#   benchmarks/train_detector_parallel.sh DATA OUT [BUDGET_S]
set -u
DATA=$1 OUT=$2 BUDGET=${3:-450}
HALF_A=pp_nightwork,rf_trafficcones,roadcone_web,camvid,dawn_fog,vtti_wz,vtti_nds
HALF_B=gtsdb,tracon,ind_barricade,idd_lite
export OMP_NUM_THREADS=2 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
mkdir -p "$OUT"
run() {
  local name=$1; shift
  python3 -m training.finetune_detector train --data "$DATA" --device cuda --workers 3 --epochs 40 \
    --time-budget-s "$BUDGET" "$@" > "$OUT/$name.log" 2>&1 &
}
run half_a --without "$HALF_A" --name half_a --out "$OUT/half_a.pt"
run half_b --without "$HALF_B" --name half_b --out "$OUT/half_b.pt"
run final --out "$OUT/l1_rcnn.pt"
wait
tail -n 4 "$OUT"/*.log
