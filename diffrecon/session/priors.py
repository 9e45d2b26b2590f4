"""The priors a user can choose, without any GUI toolkit: the bundled ones and those installed in
the user's priors folder, each with its card; adding a prior folder or checkpoint (checked by
:func:`diffrecon.priors.check.check_prior`, the check behind ``diffrecon prior check``, then
copied atomically), removing an installed one, and fine-tuning one on a folder of images
(:func:`diffrecon.training.finetune.fine_tune`, i.e. ``diffrecon train --init-from``) into a new
installed prior.

The priors folder is ``$DIFFRECON_DATA/priors``, else the platform's per-user data folder
(``%LOCALAPPDATA%\\diffrecon`` on Windows, ``~/Library/Application Support/diffrecon`` on macOS,
``$XDG_DATA_HOME/diffrecon`` or ``~/.local/share/diffrecon`` elsewhere). An installed prior is
one sub-folder: a prior folder (card.json, config.json, diffusion_pytorch_model.safetensors) or a
checkpoint with its card. A prior's value for a run (``RunConfig.prior``) is its name when bundled
and its path when installed, as ``--prior PATH`` takes it.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import sys
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

from ..errors import DiffreconError, InputError, printable
from ..priors import BUNDLED_PRIORS, FIT_PHANTOMS
from ..priors.check import CHECKPOINT_SUFFIXES, check_prior

PRIOR_FILES = ("card.json", "config.json", "diffusion_pytorch_model.safetensors", "training_log.json")
VALID = ("a prior folder (card.json, config.json, diffusion_pytorch_model.safetensors) or a guided-diffusion "
         "checkpoint (.safetensors, .pt, .pth) that diffrecon prior check loads")


def user_data_folder() -> Path:
    """diffrecon's per-user data folder (``$DIFFRECON_DATA`` overrides it)."""
    if os.environ.get("DIFFRECON_DATA"):
        return Path(os.environ["DIFFRECON_DATA"])
    home = Path(os.path.expanduser("~"))
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "diffrecon"
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "diffrecon"
    return Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share") / "diffrecon"


def installed_folder() -> Path:
    return user_data_folder() / "priors"


@dataclass(frozen=True)
class PriorEntry:
    """One prior of the list: ``value`` is what a run's ``prior`` setting takes; ``origin`` is
    bundled, fitted or installed; the card fields are text, "—" where unknown."""

    name: str
    value: str
    origin: str
    path: Path | None
    resolution: str
    value_range: str
    training_data: str
    parameters: int | None
    size_bytes: int | None
    description: str = ""
    fine_tunable: bool = False  # a diffusers prior folder written by diffrecon train's network builder

    def card_rows(self) -> list[tuple[str, str]]:
        size = "—" if self.size_bytes is None else f"{self.size_bytes / 1e6:.1f} MB"
        params = "—" if self.parameters is None else f"{self.parameters / 1e6:.2f} M"
        return [("Name", self.name), ("Origin", self.origin), ("Resolution", self.resolution),
                ("Value range", self.value_range), ("Training data", self.training_data),
                ("Parameters", params), ("Size on disk", size), ("Description", self.description or "—"),
                ("Path", str(self.path) if self.path is not None else "—")]


def _safetensors_parameters(path: Path) -> int | None:
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            total = 0
            for key in f.keys():
                n = 1
                for d in f.get_slice(key).get_shape():
                    n *= int(d)
                total += n
            return total
    except Exception:  # noqa: BLE001 - an unreadable header shows as unknown; the check reports it
        return None


def _bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _fields(card: dict) -> dict:
    res, rng = card.get("resolution"), card.get("value_range")
    return {"resolution": "x".join(map(str, res)) if isinstance(res, (list, tuple)) and res else "—",
            "value_range": f"[{rng[0]:g}, {rng[1]:g}]" if isinstance(rng, (list, tuple)) and len(rng) == 2
            and all(isinstance(v, (int, float)) for v in rng) else "—",
            "training_data": printable(str(card.get("training_data") or "—"))[:400],
            "description": printable(str(card.get("description") or ""))[:600]}


def folder_entry(folder: Path, value: str, origin: str, name: str | None = None) -> PriorEntry:
    """The entry of a prior folder from its card (a card that cannot be read says so)."""
    from ..priors.base import read_json

    try:
        card = read_json(folder / "card.json", "Prior card")
        card = card if isinstance(card, dict) else {}
        problem = ""
    except InputError as err:
        card, problem = {}, str(err)
    extra = card.get("extra") if isinstance(card.get("extra"), dict) else {}
    weights = folder / PRIOR_FILES[2]
    params = extra.get("parameters") if isinstance(extra.get("parameters"), int) else _safetensors_parameters(weights)
    fields = _fields(card)
    if problem:
        fields["description"] = problem
    return PriorEntry(name=name or folder.name, value=value, origin=origin, path=folder, parameters=params,
                      size_bytes=_bytes(folder), fine_tunable=_ddpm_network(folder, extra) and weights.is_file(),
                      **fields)


def _ddpm_network(folder: Path, extra: dict) -> bool:
    """Whether the DDPM loss of ``diffrecon train`` fits the folder's network: an epsilon-prediction
    UNet2DModel without learned variances, not a distilled consistency model."""
    from ..priors.base import read_json

    try:
        config = read_json(folder / "config.json", "Prior config")
    except InputError:
        return False
    return (isinstance(config, dict) and config.get("_class_name", "UNet2DModel") == "UNet2DModel"
            and config.get("out_channels") == config.get("in_channels") and "consistency" not in extra)


def _checkpoint_entry(file: Path) -> PriorEntry:
    from ..priors.adm_layout import sidecar_card

    try:
        side = sidecar_card(file)
        card, problem = (side[1] if side else {}), ""
    except InputError as err:
        card, problem = {}, str(err)
    fields = _fields(card)
    if problem:
        fields["description"] = problem
    params = _safetensors_parameters(file) if file.suffix == ".safetensors" else None
    return PriorEntry(name=file.parent.name, value=str(file), origin="installed", path=file, parameters=params,
                      size_bytes=_bytes(file.parent), **fields)


def bundled_entries() -> list[PriorEntry]:
    """The bundled network priors (those installed with the package) and the two fitted priors."""
    base = Path(str(resources.files("diffrecon").joinpath("resources", "priors")))
    entries = [folder_entry(base / name, name, "bundled") for name in ("default", *BUNDLED_PRIORS)
               if (base / name / "card.json").is_file()]
    fitted = f"{FIT_PHANTOMS} procedural phantoms (diffrecon.phantoms), fitted at the image's size when a run starts"
    entries += [PriorEntry("gaussian", "gaussian", "fitted", None, "any (fitted at the image's size)", "[0, 1]", fitted,
                           None, None, "Stationary Gaussian: its denoiser is exact (the Wiener filter)."),
                PriorEntry("gmm", "gmm", "fitted", None, "any (fitted at the image's size)", "[0, 1]", fitted,
                           None, None, "Four-component Gaussian mixture: exact denoiser.")]
    return entries


def _one_sentence(path: Path, error: str | None) -> str:
    """The check's reason as one sentence that names ``path`` and says what is valid."""
    text = printable(" ".join((error or f"{path} does not load").split())).rstrip(". ")
    if str(path) not in text:
        text = f"{path}: {text}"
    if not ("prior folder (" in text and "checkpoint (" in text):
        text += f"; valid is {VALID}"
    return f"Prior not added: {text}."


class PriorLibrary:
    """The bundled priors and the installed ones in ``root`` (default :func:`installed_folder`)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else installed_folder()

    # ------------------------------------------------------------------ list
    def installed(self) -> list[PriorEntry]:
        if not self.root.is_dir():
            return []
        entries = []
        for sub in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if (sub / "config.json").is_file():
                entries.append(folder_entry(sub, str(sub), "installed"))
                continue
            files = sorted(p for p in sub.iterdir() if p.suffix.lower() in CHECKPOINT_SUFFIXES)
            if files:
                entries.append(_checkpoint_entry(files[0]))
        return entries

    def entries(self) -> list[PriorEntry]:
        return bundled_entries() + self.installed()

    def find(self, value: str) -> PriorEntry | None:
        return next((e for e in self.entries() if e.value == str(value)), None)

    # ------------------------------------------------------------------ add and remove
    def _free_name(self, name: str) -> str:
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "prior"
        candidate, k = name, 2
        while (self.root / candidate).exists():
            candidate, k = f"{name}-{k}", k + 1
        return candidate

    def _install(self, fill: Callable[[Path], None], name: str) -> Path:
        """Fill a hidden folder beside the installed ones, then rename it into place (atomic)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".adding-{secrets.token_hex(4)}"
        try:
            tmp.mkdir()
            fill(tmp)
            final = self.root / self._free_name(name)
            os.replace(tmp, final)
        except OSError as err:
            raise InputError(f"Prior folder {self.root} cannot be written ({err.strerror or err}); "
                             f"choose a writable DIFFRECON_DATA folder.") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def add(self, path: str | Path) -> PriorEntry:
        """Check ``path`` (a prior folder, a checkpoint, or a card.json in a prior folder) and
        install a copy; InputError, one sentence naming the file and what is valid, otherwise."""
        path = Path(path)
        if path.is_file() and path.name == "card.json":
            path = path.parent
        report = check_prior(path)
        if not report.loads:
            raise InputError(_one_sentence(path, report.error))
        if path.is_dir():
            files = [path / f for f in PRIOR_FILES if (path / f).is_file()]
            final = self._install(lambda tmp: [shutil.copy2(f, tmp / f.name) for f in files], path.name)
            return folder_entry(final, str(final), "installed")
        from ..priors.adm_layout import sidecar_card

        side = sidecar_card(path)

        def fill(tmp: Path) -> None:
            shutil.copy2(path, tmp / path.name)
            if side is not None:  # keep the card's name: <file>.card.json, <stem>.card.json or card.json
                shutil.copy2(side[0], tmp / side[0].name)

        return _checkpoint_entry(self._install(fill, path.stem) / path.name)

    def remove(self, entry: PriorEntry) -> None:
        """Delete an installed prior (bundled and fitted ones cannot be removed)."""
        if entry.origin != "installed" or entry.path is None:
            raise InputError(f"Prior {entry.name} is {entry.origin}; only installed priors (in {self.root}) can "
                             "be removed.")
        folder = entry.path if entry.path.is_dir() else entry.path.parent
        if folder.parent.resolve() != self.root.resolve():
            raise InputError(f"Prior {folder} is not in the priors folder {self.root}; it was not removed.")
        trash = self.root / f".removing-{secrets.token_hex(4)}"
        os.replace(folder, trash)  # gone from the list at once; the files follow
        shutil.rmtree(trash, ignore_errors=True)

    # ------------------------------------------------------------------ fine-tune
    def stored_estimate(self, entry: PriorEntry, settings) -> float | None:
        """Seconds for ``settings.steps`` at the rate an earlier fine-tune of this network measured."""
        from ..training.finetune import rate_key, stored_rate

        if not entry.fine_tunable:
            return None
        try:
            rate = stored_rate(rate_key(entry.path, settings.batch_size, settings.device))
        except DiffreconError:
            return None
        return None if rate is None else rate * settings.steps

    def fine_tune(self, entry: PriorEntry, data_folder: str | Path, settings=None,
                  emit: Callable[[object], None] = lambda event: None, stop: threading.Event | None = None):
        """Fine-tune ``entry`` on ``data_folder`` and install the result as ``<name>-<folder>``;
        returns ``(new entry, FineTuned)``. The training runs in a hidden folder of the priors
        folder, whose checkpoint is dropped once the prior is installed."""
        from ..training.finetune import FineTuneSettings, fine_tune

        if not entry.fine_tunable or entry.path is None:
            raise InputError(f"Prior {entry.name} cannot be fine-tuned; choose a prior folder written by diffrecon "
                             "train (a diffusers UNet2DModel with card.json and safetensors weights).")
        data_folder = Path(data_folder)
        self.root.mkdir(parents=True, exist_ok=True)
        work = self.root / f".training-{secrets.token_hex(4)}"
        try:
            done = fine_tune(entry.path, data_folder, work, settings or FineTuneSettings(), emit, stop)
            files = [work / f for f in PRIOR_FILES if (work / f).is_file()]
            final = self._install(lambda tmp: [shutil.move(str(f), tmp / f.name) for f in files],
                                  f"{entry.name}-{data_folder.name}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return folder_entry(final, str(final), "installed"), done
