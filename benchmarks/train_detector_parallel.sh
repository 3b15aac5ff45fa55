#!/usr/bin/env bash
# The L1 detector's recipe on one GPU at once, as processes sharing the card:
# - per seed in SEEDS (default 0), two detectors, each trained without one half of the sources and
#   scoring that half's rows: every training row gets a vote from a detector that never saw its
#   source (a new camera), the votes `roadwork fit` pools and the leave-one-source-out check reads;
# - the detector on every row (seed: the first of SEEDS), which a profile would ship.
# Each caps its training at BUDGET_S seconds (training/finetune_detector.py --time-budget-s); any
# further arguments go to every process (e.g. `--arch yolo --start yolov8n_coco.pt`).
# Then, on the CPU, per seed:
#   python -m training.finetune_detector package --out OUT/l1.pt --votes OUT/half_a_s0.loso.jsonl --votes OUT/half_b_s0.loso.jsonl
#
#   [SEEDS="0 1"] [EPOCHS=40] [WORKERS=3] benchmarks/train_detector_parallel.sh DATA OUT [BUDGET_S] [ARGS...]
set -u
DATA=$1 OUT=$2 BUDGET=${3:-450}
shift $(($# < 3 ? $# : 3))
SEEDS=${SEEDS:-0} EPOCHS=${EPOCHS:-40} WORKERS=${WORKERS:-3}
HALF_A=pp_nightwork,rf_trafficcones,roadcone_web,camvid,dawn_fog,vtti_wz,vtti_nds
HALF_B=gtsdb,tracon,ind_barricade,idd_lite
export OMP_NUM_THREADS=2 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
mkdir -p "$OUT"
run() {
  local name=$1; shift
  python3 -m training.finetune_detector train --data "$DATA" --device cuda --workers "$WORKERS" --epochs "$EPOCHS" \
    --time-budget-s "$BUDGET" "$@" > "$OUT/$name.log" 2>&1 &
}
for s in $SEEDS; do
  run "half_a_s$s" --without "$HALF_A" --name half_a --out "$OUT/half_a_s$s.pt" --seed "$s" "$@"
  run "half_b_s$s" --without "$HALF_B" --name half_b --out "$OUT/half_b_s$s.pt" --seed "$s" "$@"
done
first=${SEEDS%% *}
run final --out "$OUT/l1.pt" --seed "$first" "$@"
wait
tail -n 3 "$OUT"/*.log
