#!/usr/bin/env bash
# The production profile's GPU measurements on one lent GPU, in one device call (issues 16 and 18):
#   bench    `roadwork bench --gpu` on configs/h100x2.yaml (random weights, one GPU, early exit off,
#            L0-L2 in worker processes) at 1, 4, 10 and 64 concurrent frames, 3 bursts each, once
#            per value of WORKERS (workers per device) and LANES (lanes per worker), side by side in
#            one call
#   recipe   benchmarks/recipe_steps.py at full size: both L0 heads and one epoch of each detector
#            family, on the small train subset in SUBSET
# The lent machine's image lacks pydantic, ultralytics, rfdetr and rapidocr: they travel as wheels
# (.whl, `benchmarks/device_wheels.sh`). Each part has its own time limit, so one that runs long
# leaves the rest their time; every result file is written as it goes (`complete: false` if cut).
#
# MPS=1 runs the bench under the CUDA Multi-Process Service (started here, stopped after), so the
# worker processes' kernels can share the GPU at once instead of taking turns.
# WORKERS ("1 2"), LANES ("1": runtime.lanes_per_worker, e.g. "1 2"), CONC (1,4,10,64), FRAME (e.g.
# 1920x1080: full-resolution frames instead of 224-px ones), TRANSPORTS ("pipe", or "pipe shared-memory": runtime.frame_transport, each run
# in turn), SETTINGS (workers:lanes pairs, e.g. "1:1 2:2", instead of every WORKERS x LANES pair), SCALES ("on", or "on off": voters' input_long_side, or frames to the models as they
# came, `--no-input-scale`), NATIVE ("on", or "off": `--no-native`, no per-model cost or loop, ~50 s
# less a run), BENCH_S (280 s per bench run) and RECIPE_S (560 s) change it. CONFIG (a profile under configs/,
# configs/h100x2.yaml by default) with TAG (a name part for its files) benches a variant of the profile;
# RUNTIME (one `key: value` line, e.g. "start_early: [L2]") adds that key to a copy of CONFIG's runtime section.
#   run: benchmarks/device_gpu_bench.sh bench|recipe|both OUTDIR [SUBSET]     (carry [".whl", ".carry/sub"])
set -u
MODE=$1 OUT=$2 SUBSET=${3:-.carry/sub}
CONFIG=${CONFIG:-configs/h100x2.yaml} TAG=${TAG:-}
if [[ -n ${RUNTIME:-} ]]; then  # beside CONFIG, so its relative paths still resolve
  grep -q "^  ${RUNTIME%%:*}:" "$CONFIG" && { echo "$CONFIG already sets ${RUNTIME%%:*}: edit a copy instead" >&2; exit 1; }
  variant=$(dirname "$CONFIG")/.variant_$(basename "$CONFIG")
  sed "s/^runtime:\$/runtime:\n  $RUNTIME/" "$CONFIG" > "$variant" && grep -qxF "  $RUNTIME" "$variant" || { echo "no runtime: section in $CONFIG" >&2; exit 1; }
  CONFIG=$variant
fi
WORKERS=${WORKERS:-1 2} LANES=${LANES:-1} SETTINGS=${SETTINGS:-} TRANSPORTS=${TRANSPORTS:-pipe} SCALES=${SCALES:-on} CONC=${CONC:-1,4,10,64} BENCH_S=${BENCH_S:-280} RECIPE_S=${RECIPE_S:-560}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:. HF_HUB_OFFLINE=1 YOLO_OFFLINE=1 YOLO_CONFIG_DIR=$PWD/runs/yolo PYTHONUNBUFFERED=1
mkdir -p "$OUT" runs/yolo
roadwork() { python3 -c 'import sys; from roadwork.cli import app; sys.argv[0] = "roadwork"; app()' "$@"; }
if [[ ${MPS:-0} == 1 ]]; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p /tmp/mps /tmp/mps-log && nvidia-cuda-mps-control -d || exit 1
  trap 'echo quit | nvidia-cuda-mps-control' EXIT
  echo "MPS on"
fi
if [[ -z $SETTINGS ]]; then
  for w in $WORKERS; do for l in $LANES; do SETTINGS+="$w:$l "; done; done
fi
if [[ $MODE == bench || $MODE == both ]]; then
  for sc in $SCALES; do
    for t in $TRANSPORTS; do
      for setting in $SETTINGS; do
        w=${setting%%:*} l=${setting##*:}
        name=gpu_bench_1gpu_workers${w}$([[ $l != 1 ]] && echo _lanes$l)${FRAME:+_$FRAME}_$t$([[ $sc == off ]] && echo _unscaled)${TAG:+_$TAG}
        flag=$([[ $sc == off ]] && echo --no-input-scale || echo --input-scale)
        timeout "$BENCH_S" bash -c "$(declare -f roadwork); roadwork bench --gpu --random-weights --config $CONFIG \
          --single-gpu --no-early-exit --bursts 3 --concurrency $CONC --workers-per-device $w --lanes-per-worker $l \
          ${FRAME:+--frame $FRAME} --frame-transport $t $flag $([[ ${NATIVE:-on} == off ]] && echo --no-native) --out $OUT/$name.json" > "$OUT/$name.log" 2>&1
        echo "bench workers=$w lanes=$l transport=$t input-scale=$sc: rc=$?"; tail -n 4 "$OUT/$name.log"
      done
    done
  done
fi
if [[ $MODE == recipe || $MODE == both ]]; then
  timeout "$RECIPE_S" python3 benchmarks/recipe_steps.py --data "$SUBSET" --limit 96 --device cuda:0 \
    --out "$OUT/recipe_steps.json" > "$OUT/recipe.log" 2>&1
  echo "recipe: rc=$?"; grep '^\[recipe\]' "$OUT/recipe.log" | tail -n 20
fi
