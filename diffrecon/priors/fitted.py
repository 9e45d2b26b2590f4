"""The fitted priors ("gaussian", "gmm") at any image size: fitted once, with progress, and kept on disk.

A fit draws :data:`FIT_PHANTOMS` training phantoms at the image's size; at 512 x 512 that is minutes
of CPU. :func:`fit_steps` does it phantom by phantom, yielding ``(done, total)`` so a front end can
show progress, and stores the fitted tensors (safetensors, written to a temporary file and renamed)
in ``<cache folder>/fitted_priors`` (:func:`diffrecon.priors.acceleration.cache_folder`). Later
runs, in this process or any other, load them in milliseconds. The file name holds everything the
fit depends on (kind, shape, number and first seed of the phantoms, software version).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Iterator

import torch

from .base import Denoiser, PriorCard

#: The tensors each fitted prior is rebuilt from (its constructor's arguments).
STORED = {"gaussian": ("mean", "power"), "gmm": ("weights", "means", "powers")}
_memory: dict[tuple[str, tuple[int, int, int]], Denoiser] = {}
_lock = threading.Lock()  # a plan probe and a run may ask for the same fit from two threads


def cache_file(name: str, shape: tuple[int, int, int]) -> Path:
    from .. import __version__
    from ..phantoms import TRAIN_SEEDS
    from . import FIT_PHANTOMS
    from .acceleration import cache_folder

    c, h, w = shape
    return cache_folder() / "fitted_priors" / f"{name}_{c}x{h}x{w}_{FIT_PHANTOMS}from{TRAIN_SEEDS[0]}_v{__version__}.safetensors"


def cached(name: str, shape: tuple[int, int, int]) -> Denoiser | None:
    """The fitted prior from memory or disk, or None when it must be fitted."""
    key = (name, tuple(shape))
    if key in _memory:
        return _memory[key]
    path = cache_file(name, key[1])
    if not path.is_file():
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
        prior = _build(name, key[1], tensors)
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError):
        return None  # a damaged cache entry is fitted again and overwritten
    _memory[key] = prior
    return prior


def fit_steps(name: str, shape: tuple[int, int, int]) -> Iterator[tuple[int, int]]:
    """Fit ``name`` at ``shape`` phantom by phantom, yielding ``(phantoms done, total)``; stores
    the result in memory and on disk. Yields nothing when it is cached already."""
    from ..phantoms import TRAIN_SEEDS, phantom
    from . import FIT_PHANTOMS

    shape = tuple(int(v) for v in shape)
    with _lock:
        if cached(name, shape) is not None:
            return
        c, h, w = shape
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        images = torch.empty(FIT_PHANTOMS, c, h, w)
        for i in range(FIT_PHANTOMS):
            # non-square shapes are cut from square phantoms of the larger side
            square = torch.from_numpy(phantom(side, TRAIN_SEEDS[0] + i))
            images[i] = square[top:top + h, left:left + w]
            yield i + 1, FIT_PHANTOMS
        prior = _fit_images(name, shape, images)
        _memory[(name, shape)] = prior
        _save(name, prior, cache_file(name, shape))


def load_fitted(name: str, shape: tuple[int, int, int],
                progress: Callable[[int, int], None] | None = None) -> Denoiser:
    """The fitted prior, fitting (and caching) it first if needed; ``progress(done, total)`` per phantom."""
    prior = cached(name, shape)
    if prior is None:
        for done, total in fit_steps(name, shape):
            if progress is not None:
                progress(done, total)
        prior = cached(name, shape)
    return prior


def _card(name: str, shape: tuple[int, int, int]) -> PriorCard:
    from . import GMM_COMPONENTS, _card as card

    if name == "gaussian":
        return card(name, shape, "Stationary Gaussian (Wiener) prior fitted to phantoms; exact denoiser.")
    return card(name, shape, f"{GMM_COMPONENTS}-component Gaussian mixture fitted to phantoms by k-means; exact denoiser.")


def _fit_images(name: str, shape, images: torch.Tensor) -> Denoiser:
    from . import GMM_COMPONENTS
    from .gaussian import StationaryGaussianPrior
    from .gmm import GaussianMixturePrior

    if name == "gaussian":
        return StationaryGaussianPrior.fit(images, _card(name, shape))
    return GaussianMixturePrior.fit(images, GMM_COMPONENTS, card=_card(name, shape))


def _build(name: str, shape, tensors: dict[str, torch.Tensor]) -> Denoiser:
    from .gaussian import StationaryGaussianPrior
    from .gmm import GaussianMixturePrior

    if name == "gaussian":
        prior = StationaryGaussianPrior(tensors["mean"], tensors["power"], _card(name, shape))
    else:
        prior = GaussianMixturePrior(tensors["weights"], tensors["means"], tensors["powers"], _card(name, shape))
    if tuple(prior.image_shape) != tuple(shape):
        raise ValueError(f"cached prior has shape {tuple(prior.image_shape)}, not {tuple(shape)}")
    return prior


def _save(name: str, prior: Denoiser, path: Path) -> None:
    """Atomically: a temporary file in the same folder, then rename. A read-only cache is skipped."""
    from safetensors.torch import save_file

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        state = prior.state_dict()
        save_file({k: state[k].detach().cpu().contiguous() for k in STORED[name]}, str(tmp))
        os.replace(tmp, path)
    except OSError:
        pass  # no cache this time; the fit is still used in memory


def fit_needed(prior: str, shape: tuple[int, int, int]) -> str | None:
    """The fitted prior ``load_prior(prior, shape)`` would have to fit first (not cached), else None.
    ``default`` falls back to the Gaussian where its network cannot denoise this size, or where it
    is not installed (:func:`~diffrecon.priors.prior_for_size`)."""
    from . import default_prior_folder, prior_for_size

    name = str(prior)
    if name == "default":
        name = prior_for_size(name, shape)[0] if default_prior_folder() is not None else "gaussian"
    if name not in STORED:
        return None
    return name if cached(name, tuple(int(v) for v in shape)) is None else None


def fit_events(shape, prior: str, event: Callable) -> Iterator:
    """``event(what, done, total)`` per phantom while ``prior`` is fitted at ``shape`` (nothing when cached)."""
    shape = tuple(int(v) for v in shape)
    name = fit_needed(prior, shape)
    if name is None:
        return
    what = f"Fitting the {name} prior at {shape[1]} × {shape[2]} to phantoms (once; kept on disk)"
    for done, total in fit_steps(name, shape):
        yield event(what, done, total)
