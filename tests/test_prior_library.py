"""The priors list of the window (diffrecon.session.priors): bundled and installed priors with their
cards, adding (checked, one sentence when refused), removing, fine-tuning on a folder of images with
progress, stop, an estimate and a before/after denoising check (diffrecon.training.finetune)."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from diffrecon.errors import InputError
from diffrecon.phantoms import phantom_batch
from diffrecon.priors import load_diffusers_prior, load_prior
from diffrecon.session.priors import PriorLibrary
from diffrecon.training.finetune import (DenoiseCheck, FineTuneEstimate, FineTuneProgress, FineTuneSettings,
                                         FineTuneStarted, denoise_check)
from tiny_priors import tiny_prior, write_image_folder  # noqa: F401 - tiny_prior is a fixture

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = FineTuneSettings(steps=4, batch_size=4, device="cpu", held_out=2, sigmas=(0.2, 0.5))


def test_bundled_priors_are_listed_with_their_cards(tmp_path):
    entries = {e.name: e for e in PriorLibrary(tmp_path / "none").entries()}
    assert {"default", "procedural", "procedural-small", "gaussian", "gmm"} <= set(entries)
    small = dict(entries["procedural-small"].card_rows())
    card = json.loads((entries["procedural-small"].path / "card.json").read_text())
    assert small["Resolution"] == "x".join(map(str, card["resolution"])) and small["Value range"] == "[-1, 1]"
    assert entries["procedural-small"].parameters == card["extra"]["parameters"]
    assert entries["procedural-small"].size_bytes > 1_000_000 and entries["procedural-small"].fine_tunable
    assert entries["default"].value == "default" and entries["gaussian"].origin == "fitted"


def test_add_installs_a_copy_and_remove_deletes_it(tiny_prior, tmp_path):
    lib = PriorLibrary(tmp_path / "priors")
    entry = lib.add(tiny_prior)
    assert entry.origin == "installed" and entry.path.parent == tmp_path / "priors"
    assert sorted(p.name for p in entry.path.iterdir()) == sorted(
        ["card.json", "config.json", "diffusion_pytorch_model.safetensors", "training_log.json"])  # no checkpoint
    assert entry.resolution == "16x16"
    assert entry.parameters == sum(p.numel() for p in load_diffusers_prior(tiny_prior).parameters())
    again = lib.add(tiny_prior)  # a second copy gets its own name
    assert again.path.name == entry.path.name + "-2"
    assert [e.value for e in lib.installed()] == [str(entry.path), str(again.path)]
    lib.remove(entry)
    assert not entry.path.exists() and [e.value for e in lib.installed()] == [str(again.path)]
    assert not [p for p in (tmp_path / "priors").iterdir() if p.name.startswith(".")]
    with pytest.raises(InputError, match="only installed priors"):
        lib.remove(lib.find("default"))


def test_a_checkpoint_is_installed_with_its_card_and_loads_from_there(tmp_path):
    from safetensors.torch import save_file

    from diffrecon.priors.adm import ADMConfig, ADMUNet

    config = ADMConfig(image_size=16, in_channels=1, model_channels=32, num_res_blocks=1, attention_resolutions=(8,),
                       channel_mult=(1, 2), num_head_channels=16)
    state = {k: v.contiguous() for k, v in ADMUNet(config).state_dict().items()}
    save_file(state, str(tmp_path / "adm.safetensors"))
    card = {"resolution": [16, 16], "channels": 1, "value_range": [0.0, 1.0], "training_data": "random weights",
            "extra": {"adm_config": {"num_head_channels": 16}}}
    (tmp_path / "adm.safetensors.card.json").write_text(json.dumps(card))
    lib = PriorLibrary(tmp_path / "priors")
    entry = lib.add(tmp_path / "adm.safetensors")
    assert entry.path == tmp_path / "priors" / "adm" / "adm.safetensors" and entry.value == str(entry.path)
    assert (entry.path.parent / "adm.safetensors.card.json").is_file() and not entry.fine_tunable
    assert (entry.resolution, entry.value_range, entry.training_data) == ("16x16", "[0, 1]", "random weights")
    assert entry.parameters == sum(v.numel() for v in state.values())
    assert [e.value for e in lib.installed()] == [entry.value]
    assert load_prior(entry.value).image_shape == (1, 16, 16)  # a run's prior setting takes the value


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make, what", [
    (lambda d: _write(d / "card.json", b"{}").parent, "lacks diffusion_pytorch_model.safetensors"),
    (lambda d: _write(d / "x.safetensors", b"not safetensors at all"), "x.safetensors"),
    (lambda d: _write(d / "notes.txt", b"hello"), "notes.txt"),
])
def test_a_malformed_prior_is_refused_in_one_sentence_naming_it(tmp_path, make, what):
    (tmp_path / "bad").mkdir()
    path = make(tmp_path / "bad")
    lib = PriorLibrary(tmp_path / "priors")
    with pytest.raises(InputError) as err:
        lib.add(path)
    text = str(err.value)
    assert text.startswith("Prior not added: ") and str(path) in text and what in text
    assert "prior folder (card.json" in text and "checkpoint (.safetensors" in text  # what is valid
    assert text.count(". ") == 0 and text.endswith(".") and "\n" not in text
    assert lib.installed() == []


def test_fine_tune_reports_progress_an_estimate_and_a_before_after_check(tiny_prior, tmp_path):
    data = write_image_folder(tmp_path / "mine")
    lib = PriorLibrary(tmp_path / "priors")
    source = lib.add(tiny_prior)
    events = []
    entry, done = lib.fine_tune(source, data, FAST, events.append)
    started = [e for e in events if isinstance(e, FineTuneStarted)]
    assert started == [FineTuneStarted(images=6, held_out=2, size=16, steps=4, device="cpu")]
    progress = [e for e in events if isinstance(e, FineTuneProgress)]
    assert [p.done for p in progress] == [1, 2, 3, 4] and progress[-1].eta_s == 0
    estimate = [e for e in events if isinstance(e, FineTuneEstimate)]
    assert len(estimate) == 1 and estimate[0].measured_steps == 2
    assert estimate[0].total_s == pytest.approx(4 * estimate[0].seconds_per_step)
    assert "an estimate" in estimate[0].text()
    assert done.steps == 4 and not done.stopped and entry.origin == "installed" and entry.fine_tunable
    card = json.loads((entry.path / "card.json").read_text())
    assert card["extra"]["training_steps"] == 34 and card["extra"]["init_from"]["training_steps"] == 30
    assert "held out" in card["training_data"] and not (entry.path / "checkpoint").exists()
    check = done.check
    assert check.sigmas == (0.2, 0.5) and check.images == 2
    # the noisy input's PSNR is fixed by sigma (peak-to-peak 2): 20 log10(2 / sigma) up to the draw
    assert check.noisy[0] == pytest.approx(20 * np.log10(2 / 0.2), abs=1.0)
    assert all(np.isfinite(check.before + check.after))
    assert lib.stored_estimate(source, FAST) == pytest.approx(4 * done.seconds_per_step)


def test_denoise_check_scores_the_exact_denoiser_above_the_noisy_input():
    gaussian = load_prior("gaussian", (1, 16, 16))
    identity = type("Identity", (torch.nn.Module,), {"forward": lambda self, x, s: x})()
    identity.register_buffer("b", torch.zeros(1))
    images = torch.from_numpy(phantom_batch(1, 16, 5))
    check = denoise_check(identity, gaussian, images, (0.1, 0.3))
    assert isinstance(check, DenoiseCheck) and check.before == check.noisy  # the identity returns its input
    # PSNR of x + sigma n against x at peak-to-peak 2 is 20 log10(2 / sigma), up to the draw of 256 pixels
    assert check.noisy == pytest.approx([20 * np.log10(2 / 0.1), 20 * np.log10(2 / 0.3)], abs=0.8)
    assert all(a > n for a, n in zip(check.after, check.noisy))  # the exact (Wiener) denoiser lowers the error


def test_stop_ends_training_after_the_current_step_and_still_checks(tiny_prior, tmp_path):
    data = write_image_folder(tmp_path / "mine")
    lib = PriorLibrary(tmp_path / "priors")
    source = lib.add(tiny_prior)
    stop = threading.Event()
    events = []

    def emit(event):
        events.append(event)
        if isinstance(event, FineTuneProgress) and event.done == 2:
            stop.set()

    entry, done = lib.fine_tune(source, data, FineTuneSettings(**{**FAST.__dict__, "steps": 50}), emit, stop)
    assert done.steps == 2 and done.stopped and done.total == 50
    assert json.loads((entry.path / "card.json").read_text())["extra"]["training_steps"] == 32
    assert len(done.check.after) == 2


def test_fine_tune_refuses_a_folder_too_small_to_hold_images_out(tiny_prior, tmp_path):
    data = write_image_folder(tmp_path / "few", n=5)
    lib = PriorLibrary(tmp_path / "priors")
    with pytest.raises(InputError, match=r"holds 5 images; fine-tuning needs at least 6"):
        lib.fine_tune(lib.add(tiny_prior), data, FAST)
    with pytest.raises(InputError, match="cannot be fine-tuned"):
        lib.fine_tune(lib.find("gaussian"), data, FAST)


def test_the_priors_folder_is_the_users_data_folder_unless_diffrecon_data_says(monkeypatch, tmp_path):
    import sys

    from diffrecon.session.priors import installed_folder

    monkeypatch.setenv("DIFFRECON_DATA", str(tmp_path / "d"))
    assert installed_folder() == tmp_path / "d" / "priors" and PriorLibrary().root == tmp_path / "d" / "priors"
    monkeypatch.delenv("DIFFRECON_DATA")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert installed_folder() == tmp_path / "xdg" / "diffrecon" / "priors"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert installed_folder() == tmp_path / "local" / "diffrecon" / "priors"


def test_only_ddpm_networks_are_offered_for_fine_tuning(tiny_prior, tmp_path):
    import shutil

    from diffrecon.session.priors import folder_entry

    assert folder_entry(tiny_prior, "x", "installed").fine_tunable
    for name, edit in (("cm", lambda card, config: card["extra"].update(consistency={"teacher": "x"})),
                       ("sigma", lambda card, config: config.update(out_channels=2))):
        folder = shutil.copytree(tiny_prior, tmp_path / name, ignore=shutil.ignore_patterns("checkpoint"))
        card, config = (json.loads((folder / f).read_text()) for f in ("card.json", "config.json"))
        edit(card, config)
        (folder / "card.json").write_text(json.dumps(card))
        (folder / "config.json").write_text(json.dumps(config))
        assert not folder_entry(folder, "x", "installed").fine_tunable, name
