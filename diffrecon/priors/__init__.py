"""Priors: denoisers ``x0_hat = denoiser(x, sigma)`` and the one function that builds them by name.

``load_prior`` knows three names and otherwise reads a prior folder (card.json, config.json,
diffusion_pytorch_model.safetensors; see :mod:`.diffusers_vp`) or a checkpoint file of a
guided-diffusion, EDM or score-SDE NCSN++ network (:mod:`.formats`):

- ``"gaussian"``: :class:`StationaryGaussianPrior` fitted to phantoms from TRAIN_SEEDS;
- ``"gmm"``: :class:`GaussianMixturePrior`, k-means groups of the same phantoms;
- ``"default"``: the bundled prior folder ``diffrecon/resources/priors/default`` when it is
  installed, else ``"gaussian"``;
- ``"procedural"``, ``"procedural-medium"``, ``"procedural-small"``: the bundled priors of that
  name, trained on the procedural mixture (:mod:`diffrecon.training.procedural`), fully
  convolutional, about 1, 1/4 and 1/16 of the compute per evaluation (see their card.json).

A network prior runs at any image size (:mod:`.patches`): the whole image through a fully
convolutional network (mode native or padded), else overlapping patches of its trained size
(mode patches).

The network adapter needs diffusers, which is optional: it is imported only when a folder loads.
"""
from __future__ import annotations

import copy
import hashlib
from importlib import resources
from pathlib import Path

import torch

from ..errors import InputError
from .base import Denoiser, PriorCard, sigma_as_batch
from . import consistency  # noqa: F401 - registers consistency-model cards with load_diffusers_prior
from .diffusers_vp import VPEpsilonDenoiser, load_diffusers_prior, save_diffusers_prior
from .formats import CHECKPOINT_SUFFIXES, PICKLE_SUFFIXES, load_checkpoint_prior
from .gaussian import StationaryGaussianPrior
from .gmm import GaussianMixturePrior

__all__ = [
    "Denoiser", "PriorCard", "sigma_as_batch", "StationaryGaussianPrior", "GaussianMixturePrior",
    "VPEpsilonDenoiser", "save_diffusers_prior", "load_diffusers_prior", "load_prior",
    "prior_weight_hash", "prior_size_mode", "prior_for_size", "PRIOR_NAMES", "DEFAULT_IMAGE_SHAPE", "FIT_PHANTOMS",
]

BUNDLED_PRIORS = ("procedural", "procedural-medium", "procedural-small")
PRIOR_NAMES = ("default", "gaussian", "gmm", *BUNDLED_PRIORS)
DEFAULT_IMAGE_SHAPE = (1, 128, 128)
FIT_PHANTOMS = 256  # phantoms per fitted prior: enough for a stable power spectrum per group
GMM_COMPONENTS = 4

def _card(name: str, shape: tuple[int, int, int], description: str) -> PriorCard:
    c, h, w = shape
    return PriorCard(
        name=name, resolution=(h, w), channels=c, value_range=(0.0, 1.0), sigma_min=0.002,
        sigma_max=80.0, schedule={"kind": "ve"},
        training_data=f"{FIT_PHANTOMS} procedural phantoms (diffrecon.phantoms, TRAIN_SEEDS "
                      f"{0}..{FIT_PHANTOMS - 1}) at {h}x{w}, {c} channel(s) as copies",
        description=description,
    )


def _fit(name: str, shape: tuple[int, int, int]) -> Denoiser:
    from .fitted import load_fitted

    return copy.deepcopy(load_fitted(name, shape))  # callers may move it to a device; the cache stays on CPU


def _check_shape(image_shape) -> tuple[int, int, int]:
    if image_shape is None:
        return DEFAULT_IMAGE_SHAPE
    try:
        shape = tuple(int(v) for v in image_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1 or min(shape[1:]) < 8:
        raise InputError(f"Prior image shape {image_shape} is invalid; give (channels, height, width) "
                         "with at least 8 x 8 pixels.")
    return shape


def default_prior_folder() -> Path | None:
    """The bundled prior folder when it is installed (a trained prior is shipped separately)."""
    folder = resources.files("diffrecon").joinpath("resources", "priors", "default")
    return Path(str(folder)) if folder.is_dir() else None


def load_prior(name_or_path: str, image_shape: tuple[int, int, int] | None = None,
               device: str | torch.device = "cpu", *, how: str = "auto", **patch_options) -> Denoiser:
    """The prior called ``name_or_path`` (one of PRIOR_NAMES, or a prior folder) on ``device``,
    as a denoiser of ``image_shape`` ``(C, H, W)``.

    The fitted priors ("gaussian", "gmm") are fitted at that shape. A network prior trained at
    another size runs on the whole image if it is fully convolutional, else on overlapping
    patches of its trained size (:func:`.patches.sized_denoiser`: ``how`` auto | whole |
    patches; ``patch_options`` overlap, margin, max_patches, shift_seed); ``size_info`` and the
    card's ``extra["size"]`` say which. ``image_shape`` None: the network at its card's size.
    """
    name = str(name_or_path)
    if name == "default" and default_prior_folder() is None:
        name = "gaussian"
    if name in ("gaussian", "gmm"):
        prior = _fit(name, _check_shape(image_shape)).to(device)
        prior.size_info = {"mode": "native", "fitted_at": list(prior.image_shape)}
        return prior
    network = _load_network(name, name_or_path, device)
    if image_shape is None:
        image_shape = network.image_shape
    from .patches import sized_denoiser

    return sized_denoiser(network, _check_shape(image_shape), how=how, name=name, **patch_options).to(device)


def prior_size_mode(name_or_path: str, image_shape, *, how: str = "auto") -> str | None:
    """How the prior would denoise images of ``image_shape``: native, padded or patches, read off
    its card and config without building the network (None for a checkpoint file, decided when
    it loads); InputError, one sentence, where it cannot."""
    name = str(name_or_path)
    if name == "default":
        folder = default_prior_folder()
        if folder is None:
            return "native"
    elif name in ("gaussian", "gmm"):
        return "native"
    elif name in BUNDLED_PRIORS:
        folder = Path(str(resources.files("diffrecon").joinpath("resources", "priors", name)))
    elif Path(name).is_dir():
        folder = Path(name)
    else:
        return None
    from .base import read_json
    from .patches import size_mode

    card = PriorCard.load(folder / "card.json")
    config = read_json(folder / "config.json", "Prior config")
    return size_mode(card, config if isinstance(config, dict) else None, _check_shape(image_shape), how=how,
                     name=name)


def prior_for_size(name_or_path: str, image_shape) -> tuple[str, str | None]:
    """The prior to load for images of ``image_shape``: ``name_or_path`` itself, or for
    "default" at a size its network cannot denoise, "gaussian" and the sentence saying why (a
    warning for the run). Other priors refuse such sizes when they load (InputError)."""
    if str(name_or_path) != "default":
        return str(name_or_path), None
    try:
        prior_size_mode("default", image_shape)
    except InputError as err:
        return "gaussian", f"{err} Using the Gaussian prior fitted at this size instead."
    return "default", None


def _load_network(name: str, name_or_path, device) -> Denoiser:
    """The network prior ``name`` at its trained size."""
    if name == "default":
        return load_diffusers_prior(default_prior_folder(), device)
    if name in BUNDLED_PRIORS:
        return load_diffusers_prior(Path(str(resources.files("diffrecon").joinpath("resources", "priors", name))),
                                    device)
    if Path(name).is_dir():
        return load_diffusers_prior(name, device)
    if Path(name).is_file() and Path(name).suffix.lower() in (*CHECKPOINT_SUFFIXES, *PICKLE_SUFFIXES):
        # guided-diffusion (ADM), EDM or score-SDE NCSN++ weights, told apart by their names
        return load_checkpoint_prior(name, device=device)
    raise InputError(f"Prior {name_or_path!r} is neither a known prior, a folder nor a checkpoint; valid are "
                     f"{', '.join(PRIOR_NAMES)}, a prior folder holding card.json, config.json and "
                     "diffusion_pytorch_model.safetensors, or a guided-diffusion, EDM or score-SDE NCSN++ "
                     "checkpoint (.pt, .pth, .safetensors).")


def prior_weight_hash(denoiser: Denoiser) -> str:
    """sha256 (hex) of the weights file a prior was loaded from, else of its tensors (name,
    dtype, shape and bytes, in name order), for provenance."""
    h = hashlib.sha256()
    path = getattr(denoiser, "weights_path", None)
    if path is not None and Path(path).is_file():
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    for key, value in sorted(denoiser.state_dict().items()):
        t = value.detach().to("cpu").contiguous()
        if t.is_complex():
            t = torch.view_as_real(t)
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
