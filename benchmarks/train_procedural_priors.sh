#!/usr/bin/env bash
# Train the three procedural priors (large / medium / small: widths 64,128,128,128 / 32,64,64,64 /
# 16,32,32,32, about 1, 1/4 and 1/16 of the compute per evaluation) side by side on one GPU.
#
#   OUT=/some/folder [TIME_LIMIT=330] [INIT=FOLDER] bash benchmarks/train_procedural_priors.sh
#
# Data: N_IMAGES (default 12000) images of the procedural mixture (diffrecon/training/procedural.py)
# at IMAGE_SIZE (default 256), generated once into CACHE (default /tmp/diffrecon-data) and shared by
# the three runs; each step trains on random 128 x 128 patches (a quarter of each batch: whole
# images resized to 128). The networks have no attention, so they run at any size (multiple of 8).
# Each run stops after TIME_LIMIT seconds of training (one machine call is limited) and writes its
# prior, checkpoint and training_log.json into WORK/<name> (default WORK=/tmp/diffrecon-priors).
# Calling the script again continues: with --resume where WORK/<name>/checkpoint exists (same
# machine), else from INIT/<name> (the fp16 EMA weights of an earlier call, --init-from: fresh
# optimizer, the card counts both calls' steps). Logs: $OUT/train_<name>.log.
set -euo pipefail
: "${OUT:?set OUT to the folder that receives the logs}"
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
N=${N_IMAGES:-12000}; IMG=${IMAGE_SIZE:-256}; LIMIT=${TIME_LIMIT:-330}
CACHE=${CACHE:-/tmp/diffrecon-data}; WORK=${WORK:-/tmp/diffrecon-priors}
mkdir -p "$OUT" "$WORK"
start=$(date +%s)
"$PYTHON" -m diffrecon.training.procedural "$N" "$IMG" "$CACHE"
echo "data: $N images of ${IMG}x${IMG} in $(( $(date +%s) - start )) s"
for spec in large:64,128,128,128 medium:32,64,64,64 small:16,32,32,32; do
    name=${spec%%:*}; channels=${spec#*:}
    if [ -d "$WORK/$name/checkpoint" ]; then mode=(--resume)
    elif [ -n "${INIT:-}" ] && [ -d "$INIT/$name" ]; then mode=(--init-from "$INIT/$name")
    else mode=(); fi
    "$PYTHON" -m diffrecon.cli train --data procedural --n-images "$N" --image-size "$IMG" --size 128 \
        --channels "$channels" --layers-per-block 2 --no-attention --steps "${STEPS:-100000}" --batch-size 64 \
        --lr 2e-4 --seed 0 --device cuda --checkpoint-every 1000000 --time-limit "$LIMIT" \
        --data-cache "$CACHE" --out "$WORK/$name" --no-progress "${mode[@]}" > "$OUT/train_$name.log" 2>&1 &
done
wait
tail -n 2 "$OUT"/train_*.log
