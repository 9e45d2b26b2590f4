#!/usr/bin/env bash
# Train the bundled 128x128 grayscale phantom prior on one GPU (about 15 minutes on an H100: 14 steps/s compiled, 10000 steps, ~3 min set-up).
#
#   OUT=/some/folder bash benchmarks/train_default_prior.sh [extra `diffrecon train` options]
#
# Writes $OUT/prior/ (config.json, diffusion_pytorch_model.safetensors in fp16, card.json, and the
# resumable checkpoint/), and $OUT/train_default_prior.json: loss vs step, steps/s, the settings
# and the GPU name (torch.cuda.get_device_name()). Interrupted? Run it again with --resume.
# Needs torch with CUDA and diffusers (pip install -e .[diffusers]). STEPS overrides the step count.
set -euo pipefail
: "${OUT:?set OUT to the folder that receives the prior and its log}"
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU: this script trains on a GPU")'

"$PYTHON" -m diffrecon.training \
    --data phantoms --n-images 20000 --size 128 \
    --channels 64,128,128,128 --layers-per-block 2 \
    --steps "${STEPS:-10000}" --batch-size 64 --lr 2e-4 --seed 0 \
    --device cuda --checkpoint-every 5000 --out "$OUT/prior" "$@"

cp "$OUT/prior/training_log.json" "$OUT/train_default_prior.json"
echo "Prior in $OUT/prior; log in $OUT/train_default_prior.json"
