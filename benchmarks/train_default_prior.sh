#!/usr/bin/env bash
# Train the bundled 128x128 grayscale phantom prior on one GPU (about 15 minutes on an H100: 14 steps/s compiled, 10000 steps, ~3 min set-up).
#
#   OUT=/some/folder bash benchmarks/train_default_prior.sh [extra `diffrecon train` options]
#
# Writes $OUT/prior/ (config.json, diffusion_pytorch_model.safetensors in fp16, card.json, and the
# resumable checkpoint/), and $OUT/train_default_prior.json: loss vs step, steps/s, the settings
# and the GPU name (torch.cuda.get_device_name()). Interrupted? Run it again with --resume.
# Needs torch with CUDA and diffusers (pip install -e .[diffusers]). STEPS overrides the step count;
# every extra argument is passed on to `python -m diffrecon.cli train` (= `diffrecon train`).
#
# Continuing the bundled prior in the next GPU session (its weights start the network and its EMA,
# with a fresh optimizer and step 0; the new card.json says training_steps = the bundled card's
# extra.training_steps + STEPS, and extra.init_from = folder name and sha256 of its weights):
#
#   STEPS=6000 OUT=$OUT bash benchmarks/train_default_prior.sh --init-from diffrecon/resources/priors/default
#
# The architecture options below (--size 128 --channels 64,128,128,128 --layers-per-block 2) match
# the bundled prior; a folder with another architecture is refused.
# Files returned from the GPU machine are limited to 16 MiB each and the fp16 weights are ~17.9 MB,
# so split them there and join them here:
#
# so this script leaves $OUT/weights.part.aa, .ab, ... (split -b 15M) and $OUT/weights.sha256;
# after fetching them, join and check:
#
#   cat weights.part.* > diffusion_pytorch_model.safetensors && sha256sum diffusion_pytorch_model.safetensors
set -euo pipefail
: "${OUT:?set OUT to the folder that receives the prior and its log}"
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU: this script trains on a GPU")'

"$PYTHON" -m diffrecon.cli train \
    --data phantoms --n-images 20000 --size 128 \
    --channels 64,128,128,128 --layers-per-block 2 \
    --steps "${STEPS:-10000}" --batch-size 64 --lr 2e-4 --seed 0 \
    --device cuda --checkpoint-every 5000 --out "$OUT/prior" "$@"

cp "$OUT/prior/training_log.json" "$OUT/train_default_prior.json"
# returned files are limited to 16 MiB each: leave the weights in 15 MiB parts beside the prior
split -b 15M "$OUT/prior/diffusion_pytorch_model.safetensors" "$OUT/weights.part."
sha256sum "$OUT/prior/diffusion_pytorch_model.safetensors" > "$OUT/weights.sha256"
echo "Prior in $OUT/prior; log in $OUT/train_default_prior.json"
