"""Training diffusion priors: data, the DDPM loop, checkpoints (the command is :mod:`diffrecon.cli.train`).

    from diffrecon.training import TrainConfig, train
    result = train(TrainConfig(data="phantoms", size=128), "my_prior")
    denoiser = load_diffusers_prior(result.prior_folder)
    more = train(TrainConfig(steps=6000), "my_prior_2", init_from="my_prior")  # continue its weights
"""
from .checkpoint import CHECKPOINT_DIR, load_checkpoint, save_checkpoint
from .data import TrainingData, load_training_data, robust_range
from .init_from import InitSource, read_architecture, read_init_folder
from .loop import (DEFAULT_CHANNELS, DEFAULT_STEPS, LOG_FILE, SCHEDULE, TrainConfig, TrainResult, augment,
                   make_unet, train)

__all__ = [
    "CHECKPOINT_DIR", "DEFAULT_CHANNELS", "DEFAULT_STEPS", "LOG_FILE", "SCHEDULE", "InitSource", "TrainConfig",
    "TrainResult", "TrainingData", "augment", "load_checkpoint", "load_training_data", "make_unet",
    "read_architecture", "read_init_folder", "robust_range", "save_checkpoint", "train",
]
