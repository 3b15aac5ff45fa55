#!/usr/bin/env bash
# A `roadwork train backbone` recipe's networks on one GPU, as processes sharing the card (the
# augmentation runs on the CPU cores, which bound the speed; one 600-s device call holds ~6 networks):
#   loso:  the leave-one-source-out networks (benchmarks/loso_networks.py train), the held-out
#          sources split over three processes (PROCS=2: two); their votes go to
#          OUT/loso_<first source>.jsonl (with --snapshot-epoch E, the same runs' networks after epoch E
#          to OUT/epochE_<first source>.jsonl; with --average-from E, the same runs' last-step weights
#          to OUT/last_step_<first source>.jsonl; with VIEW_STATS=1, the same networks with each
#          view's batch-norm statistics its own, loso_networks.py --view-statistics-out, to
#          OUT/view_stats.jsonl), their logs to OUT/loso.log (one file: the device
#          returns 8 at most) and their networks to OUT/nets_<first source>.tar (3 x 4.6 MB: under
#          the device's 16 MiB a file), holding loso.<held-out>.pt for `python -m training.oof_rescore
#          --nets DIR/loso` (SAVE_NETS=0 keeps them back: three EfficientNet-Lite0 networks are 28 MB;
#          NETS_ONLY=1 trains and keeps them, each with its views' batch-norm statistics, and scores
#          no row: the five scoring passes of an --average-from run with VIEW_STATS=1 took as long as
#          its training, and ran an H100 call past 600 s)
#   folds: 5 group folds (OOF votes, fold networks kept) and the network on every row,
#          python -m training.finetune ... --folds 5 --save-folds -> OUT/net.pt, OUT/net.oof.jsonl
#          (--folds 3 among the recipe arguments overrides the 5; --oof-crops keeps every OOF row's
#          tile crop probabilities, to choose the tile grids from, on the copy's frames;
#          `python -m training.oof_rescore --nets OUT/net --crops` gives them at full size on a CPU)
# TIME_LIMIT=S stops each training process after S seconds, so that what follows (the tars, the
# merged files: the device returns 8 files at most) still runs inside a 600-s device call.
# Extra arguments are the recipe (e.g. --paste-prob 0.3 --erase-prob 0.3 --tiles-batch 8).
#
#   benchmarks/train_backbone_parallel.sh loso|folds DATA OUT [recipe args...]
# DATA and the ImageNet weights travel to the lent GPU as benchmarks/device_carry.sh packs them.
set -u
MODE=$1 DATA=$2 OUT=$3; shift 3
export OMP_NUM_THREADS=2 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
mkdir -p "$OUT"
case "$MODE" in
  loso)
    # three processes (5 loaders each) by default: a run that scores two networks a source
    # (--average-from) took 583 s as two processes on an H100, close to the device's 600-s call, and
    # 383-394 s as three on an H200 (train_loso_average_seed{6,7}_h200.log)
    case "${PROCS:-3}" in
      2) groups="vtti,gtsdb,pp_nightwork idd_lite,camvid,dawn_fog" workers=7 ;;
      3) groups="vtti,gtsdb idd_lite,camvid pp_nightwork,dawn_fog" workers=5 ;;
      *) echo "PROCS must be 2 or 3, got $PROCS" >&2; exit 2 ;;
    esac
    for half in $groups; do
      votes=(--out "$OUT/loso_${half%%,*}.jsonl")
      [[ " $* " =~ " --snapshot-epoch "([0-9]+) ]] && votes+=(--snapshot-out "$OUT/epoch${BASH_REMATCH[1]}_${half%%,*}.jsonl")
      [[ " $* " =~ " --average-from "[1-9] ]] && votes+=(--last-step-out "$OUT/last_step_${half%%,*}.jsonl")
      [ "${VIEW_STATS:-0}" = 1 ] && votes+=(--view-statistics-out "$OUT/view_stats_${half%%,*}.jsonl")
      [ "${NETS_ONLY:-0}" = 1 ] && votes=(--nets-only)
      nets=(); [ "${SAVE_NETS:-1}" = 1 ] && mkdir -p "$OUT/nets_${half%%,*}" && nets=(--save-nets "$OUT/nets_${half%%,*}/loso")
      timeout "${TIME_LIMIT:-0}" python3 benchmarks/loso_networks.py train --data "$DATA" "${votes[@]}" --device cuda \
        --workers "$workers" --held-out "$half" "${nets[@]}" "$@" \
        > "$OUT/loso_${half%%,*}.log" 2>&1 &
    done ;;
  folds)
    timeout "${TIME_LIMIT:-0}" python3 -m training.finetune --data "$DATA" --out "$OUT/net.pt" --device cuda --folds 5 --save-folds \
      --workers 14 "$@" > "$OUT/folds.log" 2>&1 & ;;
  *) echo "mode must be loso or folds, got $MODE" >&2; exit 2 ;;
esac
wait
for nets in "$OUT"/nets_*/; do  # one file a process: the device returns 8 files at most
  [ -d "$nets" ] && tar cf "${nets%/}.tar" -C "$nets" . && rm -r "$nets"
done
if [ "$MODE" = loso ] && [ "${VIEW_STATS:-0}" = 1 ]; then  # the processes' votes as one file
  cat "$OUT"/view_stats_*.jsonl > "$OUT/view_stats.jsonl.tmp" && rm "$OUT"/view_stats_*.jsonl \
    && mv "$OUT/view_stats.jsonl.tmp" "$OUT/view_stats.jsonl"
fi
if [ "$MODE" = loso ]; then  # the processes' logs as one file, each under its name
  tail -n +1 "$OUT"/loso_*.log > "$OUT/loso.log.tmp" && rm "$OUT"/loso_*.log && mv "$OUT/loso.log.tmp" "$OUT/loso.log"
fi
tail -n 3 "$OUT"/*.log
