#!/usr/bin/env bash
# The evaluation of the bundled prior (benchmarks/evaluate_prior.py) with one process per task,
# side by side on one GPU, merged into $OUT/evaluate (evaluate.json, evaluate.md, samples_grid.png).
#
#   OUT=/some/folder bash benchmarks/evaluate_parallel.sh [extra evaluate_prior.py options]
#
# A solver step on a 128x128 prior at 4 samples keeps an H100 busy for a fraction of its time,
# so seven processes finish in about the time of the slowest task. Each process keeps its own
# time budget (BUDGET seconds, default 420; tuning grids are cut to fit, the test set always
# runs). TASKS picks the tasks (default all seven); WORK keeps the per-task folders and logs;
# GPUS (e.g. "0 1") deals the tasks out to those GPUs in turn (default: all on the visible one).
set -uo pipefail
: "${OUT:?set OUT to the folder that receives evaluate/}"
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK" "$OUT/evaluate"
TASKS=${TASKS:-"ct ct_limited mri_x4 mri_x8 inpaint deblur sr"}
BUDGET=${BUDGET:-420}
read -r -a gpus <<< "${GPUS:-}"
grid=8
folders=()
i=0
for t in $TASKS; do
    if [ ${#gpus[@]} -gt 0 ]; then export CUDA_VISIBLE_DEVICES=${gpus[$((i % ${#gpus[@]}))]}; fi
    i=$((i + 1))
    OMP_NUM_THREADS=2 "$PYTHON" benchmarks/evaluate_prior.py --tasks "$t" --time-budget "$BUDGET" \
        --grid-samples "$grid" --out "$WORK/$t" "$@" > "$WORK/$t.log" 2>&1 &
    grid=0  # one samples grid is enough
    folders+=("$WORK/$t")
done
wait
"$PYTHON" benchmarks/evaluate_prior.py --merge "${folders[@]}" --out "$OUT/evaluate"
status=$?
for t in $TASKS; do echo "== $t"; tail -n 2 "$WORK/$t.log"; done > "$OUT/evaluate/logs.txt"
exit $status
