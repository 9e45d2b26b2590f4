"""diffrecon: diffusion-model image reconstruction with uncertainty."""

__version__ = "0.1.0"
