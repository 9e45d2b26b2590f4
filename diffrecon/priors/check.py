"""What a prior file or folder holds, and what its card must still say (``diffrecon prior check``).

:func:`check_prior` reads a diffusers ``UNet2DModel`` folder or a guided-diffusion, EDM or
score-SDE NCSN++ checkpoint without running anything but the loader itself (weights from
safetensors, or from ``.pt`` only through ``torch.load(weights_only=True)``), and reports the
architecture found, how it becomes a denoiser, the card's declarations, the fields a card must
still declare, and whether the prior loads.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, printable
from .base import PriorCard, read_json
from .formats import CHECKPOINT_SUFFIXES, NETWORKS, PICKLE_SUFFIXES

#: What a card says that no weight file can: each is asked for when absent.
CARD_NEEDS = {
    "resolution": "resolution [height, width] the network was trained at",
    "value_range": "value_range [low, high] of the training images in their units (e.g. [-1, 1], or HU)",
    "schedule": "schedule (kind vp_linear with beta_start, beta_end, timesteps, or vp_cosine)",
    "training_data": "training_data: what the network was trained on (modality, anatomy, count)",
}


@dataclass
class PriorReport:
    """``format``: what the path is; ``found``: facts read; ``card_needs``: what the card must
    still say; ``loads``: whether :func:`diffrecon.priors.load_prior` accepts it; ``error``: why not."""

    path: Path
    format: str
    found: list[str] = field(default_factory=list)
    card_needs: list[str] = field(default_factory=list)
    loads: bool = False
    error: str | None = None

    def text(self) -> str:
        lines = [f"{self.path}: {self.format}"] + [f"  found: {f}" for f in self.found]
        lines += [f"  the card must still say: {n}" for n in self.card_needs]
        lines.append("  loads: yes" if self.loads else f"  loads: no ({self.error})")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"path": str(self.path), "format": self.format, "found": self.found, "card_needs": self.card_needs,
                "loads": self.loads, "error": self.error}


def _count(state) -> str:
    n = sum(int(v.numel()) for v in state.values())
    return f"{n:,} parameters in {len(state)} tensors"


def _card_facts(card: dict, report: PriorReport, source: str) -> None:
    for key in ("resolution", "channels", "value_range", "schedule", "training_data"):
        if card.get(key) not in (None, "", {}):
            report.found.append(f"{source} {key}: {printable(json.dumps(card[key]))[:100]}")
    report.card_needs += [need for key, need in CARD_NEEDS.items() if card.get(key) in (None, "", {}, [])]


def _loads(report: PriorReport, load) -> None:
    try:
        denoiser = load()
    except InputError as err:
        report.error = str(err)
        return
    report.loads = True
    c = denoiser.card
    how = getattr(denoiser, "parameterisation", None) or (
        "consistency function of a VP epsilon network" if getattr(denoiser, "is_consistency_model", False)
        else "VP epsilon prediction")
    report.found.append(f"as loaded: {c.channels} channel(s) at {c.resolution[0]}x{c.resolution[1]}, value range "
                        f"{list(c.value_range)}, sigma {c.sigma_min:.3g}..{c.sigma_max:.3g}, {how}")


def _check_folder(folder: Path) -> PriorReport:
    from .diffusers_vp import WEIGHTS_FILE, is_score_ve, load_diffusers_prior

    report = PriorReport(folder, "a diffusers UNet2DModel prior folder")
    config = None
    config_path = folder / "config.json"
    if config_path.is_file():
        config = read_json(config_path, "Prior config")
        if isinstance(config, dict):
            out, inc = config.get("out_channels"), config.get("in_channels")
            report.found.append(f"config.json: {printable(config.get('_class_name', 'UNet2DModel'))[:40]}, sample_size "
                                f"{config.get('sample_size')}, in/out channels {inc}/{out}, block_out_channels "
                                f"{config.get('block_out_channels')}, layers_per_block {config.get('layers_per_block')}")
            if isinstance(inc, int) and out == 2 * inc:
                report.found.append("learned variances: the first half of the output channels is the noise estimate")
    if (folder / WEIGHTS_FILE).is_file():
        report.found.append(f"{WEIGHTS_FILE}: {(folder / WEIGHTS_FILE).stat().st_size:,} bytes")
    else:
        checkpoints = sorted(p.name for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
        if checkpoints:
            report.format = "a folder holding checkpoint files"
            report.found.append(f"checkpoints: {', '.join(checkpoints[:5])}; check one of them by its path")
    card_path = folder / "card.json"
    card = read_json(card_path, "Prior card") if card_path.is_file() else {}
    if not isinstance(card, dict):
        card = {}
    if not card_path.is_file():
        report.card_needs.append("card.json is missing: name, channels, sigma_min, sigma_max and the fields below")
    _card_facts(card, report, "card.json")
    if isinstance(config, dict) and is_score_ve(config):  # no beta schedule; sigma_min/max are the SDE's
        report.found.append("a VE score network (time_embedding_type fourier): its card's sigma_min and sigma_max "
                            "must be the SDE's")
        report.card_needs = [n for n in report.card_needs if not n.startswith("schedule")]
    _loads(report, lambda: load_diffusers_prior(folder))
    return report


def _check_checkpoint(path: Path) -> PriorReport:
    from .adm import read_checkpoint
    from .formats import checkpoint_format, unwrap_state

    report = PriorReport(path, "a checkpoint")
    try:
        obj = read_checkpoint(path, "Prior checkpoint")
    except InputError as err:
        report.error = str(err)
        return report
    kind = checkpoint_format(obj)
    if kind == "ncsnpp":
        return _check_ncsnpp(path, obj, report)
    state = unwrap_state(obj)
    if not isinstance(state, dict) or not state or not all(hasattr(v, "numel") for v in state.values()):
        report.error = f"Prior checkpoint {path} does not hold a state dict of tensors."
        return report
    report.found.append(_count(state))
    return _check_edm(path, dict(state), report) if kind == "edm" else _check_adm(path, dict(state), report)


def _side_card(path: Path, report: PriorReport) -> dict:
    from .adm_layout import sidecar_card

    try:
        side = sidecar_card(path)
    except InputError as err:
        report.found.append(f"card: {err}")
        return {}
    if side is None:
        report.card_needs.append(f"no card beside it: put {path.name}.card.json (or card.json) next to it")
        return {}
    report.found.append(f"card: {side[0].name}")
    return side[1]


def _needs(card: dict, report: PriorReport, wanted: dict[str, str]) -> None:
    """Report the card's declarations of ``wanted`` and ask for those it lacks (``wanted`` maps a
    field, or ``extra.KEY``, to the sentence that asks for it)."""
    extra = card.get("extra") if isinstance(card.get("extra"), dict) else {}
    for key, need in wanted.items():
        value = extra.get(key[6:]) if key.startswith("extra.") else card.get(key)
        if value in (None, "", {}, []):
            report.card_needs.append(need)
        else:
            report.found.append(f"card {key}: {printable(json.dumps(value))[:100]}")


def _check_edm(path: Path, state: dict, report: PriorReport) -> PriorReport:
    from .edm import edm_layout, load_edm_prior, strip_prefix

    report.format = "an EDM network (Karras et al. 2022)"
    try:
        config = edm_layout(strip_prefix(state), path)
    except InputError as err:
        report.error = str(err)
        return report
    arch = type(config).__name__[:-6]
    if arch == "SongUNet":
        arch += " (NCSN++)" if config.embedding_type == "fourier" else " (DDPM++)"
    report.found.append(f"layout: {arch}, {config.in_channels} channel(s) at {config.img_resolution}x"
                        f"{config.img_resolution}, model_channels {config.model_channels}, channel_mult "
                        f"{list(config.channel_mult)}, num_blocks {config.num_blocks}, attention at "
                        f"{list(config.attn_resolutions)}, augment_dim {config.augment_dim}")
    _needs(_side_card(path, report), report, {
        "extra.edm": "extra.edm.precond: the preconditioning it was trained with, edm (EDMPrecond), ve or vp "
                     "(the weights do not show it; edm with sigma_data 0.5 assumed)",
        "value_range": "value_range [low, high] of the training images in their units ([-1, 1] assumed, EDM's)",
        "training_data": CARD_NEEDS["training_data"]})
    _loads(report, lambda: load_edm_prior(path, state=state))
    return report


def _check_ncsnpp(path: Path, obj, report: PriorReport) -> PriorReport:
    from .ncsnpp import ema_state, load_ncsnpp_prior

    report.format = "a score-SDE NCSN++ checkpoint (Song et al. 2021)"
    try:
        state = ema_state(obj, path)
    except InputError as err:
        report.error = str(err)
        return report
    report.found.append(_count(state))
    shadow = obj.get("ema", {}).get("shadow_params") if isinstance(obj, dict) and isinstance(obj.get("ema"), dict) \
        else None
    report.found.append("EMA weights (ema.shadow_params) used" if shadow is not None else "no EMA weights: the "
                        "state dict as it is")
    conv, freqs = state.get("all_modules.3.weight"), state.get("all_modules.0.W")
    if conv is not None and freqs is not None:
        attention = sum(k.endswith("NIN_0.W") for k in state)
        report.found.append(f"layout: {int(conv.shape[1])} channel(s), nf {int(conv.shape[0])}, Fourier noise "
                            f"embedding of {int(freqs.shape[0])} frequencies, {attention} attention blocks")
    _needs(_side_card(path, report), report, {
        "resolution": CARD_NEEDS["resolution"],
        "extra.ncsnpp": "extra.ncsnpp: the training config's model fields ch_mult, num_res_blocks, attn_resolutions, "
                        "progressive, progressive_input (and data.centered as centered); score-SDE's CIFAR-10 VE "
                        "values (1,2,2,2), 4, (16,), none, residual assumed",
        "sigma_max": "sigma_min and sigma_max: the VE SDE's model.sigma_min and model.sigma_max (0.01 and 50 assumed)",
        "value_range": "value_range [low, high] of the training images in their units ([0, 1] assumed)",
        "training_data": CARD_NEEDS["training_data"]})
    _loads(report, lambda: load_ncsnpp_prior(path, obj=obj))
    return report


def _check_adm(path: Path, state: dict, report: PriorReport) -> PriorReport:
    from .adm import ADM_PRESETS, match_preset
    from .adm_layout import layout_from_weights, load_adm_prior, sidecar_card

    layout = layout_from_weights(state)
    if layout is None:
        report.error = (f"Prior checkpoint {path} holds none of the networks read here: {NETWORKS}; diffusers "
                        "UNet2DModel weights go in a prior folder with config.json")
        return report
    report.format = "a guided-diffusion (ADM) checkpoint"
    report.found.append(
        f"layout: {layout['in_channels']} channel(s), model_channels {layout['model_channels']}, channel_mult "
        f"{list(layout['channel_mult'])}, num_res_blocks {layout['num_res_blocks']}, attention at down-sampling "
        f"{list(layout['attention_ds'])}, learn_sigma {layout['learn_sigma']}, resblock_updown "
        f"{layout['resblock_updown']}, use_scale_shift_norm {layout['use_scale_shift_norm']}")
    if "label_emb.weight" in state:
        report.found.append("class-conditional (label_emb): not supported")
    preset = match_preset(state)
    name = next((n for n, make in ADM_PRESETS.items() if preset is not None and dataclasses.replace(
        make(), in_channels=preset.in_channels, learn_sigma=preset.learn_sigma) == preset), None)
    if name:
        report.found.append(f"matches the preset {name} (256x256)")
    side = sidecar_card(path)
    card = side[1] if side else {}
    if side:
        report.found.append(f"card: {side[0].name}")
    elif not name:
        report.card_needs.append(f"no card beside it: put {path.name}.card.json (or card.json) next to it")
    _card_facts(card, report, "card")
    if name:  # a preset supplies the resolution and guided-diffusion's schedule; the rest stays open
        report.card_needs = [n for n in report.card_needs if not n.startswith(("resolution", "schedule"))]
    adm = card.get("extra", {}).get("adm_config", {}) if isinstance(card.get("extra"), dict) else {}
    if layout["attention_ds"] and not name and not any(k in adm for k in ("num_head_channels", "num_heads")):
        report.card_needs.append("extra.adm_config.num_head_channels (or num_heads): attention heads do not show in "
                                 "the weights (64 channels per head assumed)")
    if not card.get("value_range"):
        report.card_needs = [n if not n.startswith("value_range") else n + "; [-1, 1] assumed"
                             for n in report.card_needs]
    _loads(report, lambda: load_adm_prior(path, state=state))
    return report


def check_prior(path) -> PriorReport:
    """A :class:`PriorReport` of the prior folder or checkpoint at ``path``; a path that is neither
    is reported (never raised) so that a command can print it."""
    path = Path(path)
    if path.is_dir():
        return _check_folder(path)
    if path.is_file() and path.suffix.lower() in CHECKPOINT_SUFFIXES:
        return _check_checkpoint(path)
    if path.is_file() and path.name == "card.json":
        try:
            PriorCard.load(path)
        except InputError as err:
            return PriorReport(path, "a prior card", error=str(err))
        return _check_folder(path.parent)
    if path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES:
        from .edm import pickle_refusal

        return PriorReport(path, "a Python pickle", error=str(pickle_refusal(path)))
    what = "a file with another suffix" if path.is_file() else "missing"
    return PriorReport(path, what, error=f"{path} is neither a prior folder (card.json, config.json, "
                       "diffusion_pytorch_model.safetensors) nor a checkpoint (.safetensors, .pt, .pth)")
