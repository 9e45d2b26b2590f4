"""Consistency models: the exact Gaussian consistency function, distillation (the loss, the loop,
the folder it writes, resume), and the few-step PnP solver ``cm`` on 16x16 problems."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from diffrecon import engine
from diffrecon.errors import InputError
from diffrecon.measurement import Measurement
from diffrecon.operators.inpaint import Inpaint
from diffrecon.priors import PriorCard, load_prior, prior_weight_hash
from diffrecon.priors.consistency import ConsistencyDenoiser, GaussianConsistency, consistency_output, is_consistency
from diffrecon.priors.diffusers_vp import alphas_cumprod_from_schedule, save_diffusers_prior
from diffrecon.cli import main
from diffrecon.schedule import karras_sigmas
from diffrecon.solvers import SOLVERS, SampleRNG
from diffrecon.training.consistency import (DistillConfig, consistency_loss, distill, distillation_levels, draw_levels,
                                            teacher_step)
from diffrecon.training.data import load_training_data
from diffrecon.training.loop import SCHEDULE, make_unet

from posterior_reference import gaussian_posterior
from test_solvers import PRIOR, SHAPE, problem

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EPS, SIGMA_MAX, LEVELS = 0.005, 20.0, 18


def relative_error(a, b, centre) -> float:
    return float((a - b).norm() / (b - centre).norm())


def heun_chain(teacher, x, levels):
    """The teacher's ODE from ``levels[-1]`` down to ``levels[0]``, one Heun step per level."""
    b = x.shape[0]
    with torch.no_grad():
        for k in range(len(levels) - 1, 0, -1):
            x = teacher_step(teacher, x, levels[k].expand(b), levels[k - 1].expand(b))
    return x


# ------------------------------------------------------------------------ the exact consistency function
def test_gaussian_consistency_function_is_the_end_of_the_teachers_ode_and_the_identity_at_eps():
    exact = GaussianConsistency(PRIOR, EPS)
    g = torch.Generator().manual_seed(0)
    x = PRIOR.sample(8, g) + SIGMA_MAX * torch.randn(8, *SHAPE, generator=g)
    fine = heun_chain(PRIOR, x, distillation_levels(400, EPS, SIGMA_MAX))
    assert relative_error(exact(x, SIGMA_MAX), fine, PRIOR.mean) < 1e-3
    torch.testing.assert_close(exact(x, EPS), x, rtol=0, atol=1e-5)
    assert is_consistency(exact) and not is_consistency(PRIOR)


def test_boundary_scalings_make_any_network_the_identity_at_the_smallest_level():
    x = torch.randn(3, *SHAPE)
    junk = torch.randn(3, *SHAPE)  # whatever the network says
    torch.testing.assert_close(consistency_output(x, torch.full((3,), EPS), EPS, junk), x, rtol=0, atol=0)
    half = consistency_output(x, torch.full((3,), 2 * EPS), EPS, junk)
    torch.testing.assert_close(half, 0.5 * (x + junk))


# ------------------------------------------------------------------------ distillation, Gaussian teacher
class SpectralStudent(torch.nn.Module):
    """A consistency function whose network is a Wiener-like filter per level (a free gain per
    frequency and level), started at the teacher's Tweedie gains: it can represent the exact
    consistency function of a stationary Gaussian, so distillation can be checked against it."""

    def __init__(self, levels):
        super().__init__()
        self.register_buffer("levels", levels)
        p = PRIOR.power[0]
        self.gain = torch.nn.Parameter(p / (p + levels[:, None, None] ** 2))

    def forward(self, x, sigma):
        s = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1).expand(x.shape[0])
        i = torch.searchsorted(self.levels, s * (1 - 1e-6)).clamp(max=len(self.levels) - 1)
        r = torch.fft.fft2(x - PRIOR.mean, norm="ortho")
        denoised = PRIOR.mean + torch.fft.ifft2(self.gain[i][:, None] * r, norm="ortho").real
        return consistency_output(x, s, EPS, denoised)


def test_distilling_the_gaussian_prior_learns_its_closed_form_consistency_function():
    levels = distillation_levels(LEVELS, EPS, SIGMA_MAX)
    student = SpectralStudent(levels)
    target, ema = copy.deepcopy(student).requires_grad_(False), copy.deepcopy(student).requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    x_T = PRIOR.sample(256, g) + SIGMA_MAX * torch.randn(256, *SHAPE, generator=g)
    exact = GaussianConsistency(PRIOR, EPS)(x_T, SIGMA_MAX)
    ode = heun_chain(PRIOR, x_T, levels)  # what distillation on these levels can reach
    held_out = PRIOR.sample(64, g), draw_levels(64, LEVELS, g, "cpu"), torch.randn(64, *SHAPE, generator=g)

    def held_out_loss(model):
        with torch.no_grad():
            return float(consistency_loss(model, model, PRIOR, *held_out, levels))

    before_loss = held_out_loss(student)
    with torch.no_grad():
        before = relative_error(student(x_T, SIGMA_MAX), exact, PRIOR.mean)
    opt = torch.optim.Adam(student.parameters(), lr=0.01)
    for _ in range(800):
        x0, n = PRIOR.sample(64, g), draw_levels(64, LEVELS, g, "cpu")
        loss = consistency_loss(student, target, PRIOR, x0, n, torch.randn(x0.shape, generator=g), levels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(target.parameters()), list(student.parameters()), 1 - 0.95)
            torch._foreach_lerp_(list(ema.parameters()), list(student.parameters()), 1 - 0.98)
    with torch.no_grad():
        one_step = ema(x_T, SIGMA_MAX)
    assert before > 0.5  # the teacher's own denoiser returns the posterior mean, far from the ODE's end
    assert held_out_loss(ema) < 0.5 * before_loss
    assert relative_error(one_step, ode, PRIOR.mean) < 0.06  # one evaluation = the teacher's 17 Heun steps
    assert relative_error(one_step, exact, PRIOR.mean) < 0.08  # and the exact ODE solution


# ------------------------------------------------------------------------ distillation, tiny UNet teacher
TINY = dict(batch_size=16, lr=1e-3, levels=8, device="cpu", log_every=10, warmup_steps=1, ema_decay=0.9)


@pytest.fixture(scope="module")
def teacher_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = make_unet(16, (8, 16), 1, attention=False)
    abar = alphas_cumprod_from_schedule(SCHEDULE)
    sigmas = ((1 - abar) / abar).sqrt()
    card = PriorCard(name="tiny", resolution=(16, 16), channels=1, value_range=(-1.0, 1.0),
                     sigma_min=float(sigmas[0]), sigma_max=float(sigmas[-1]), schedule=dict(SCHEDULE),
                     training_data="test", extra={"data_scaling": {"method": "phantoms [0, 1]"}, "training_steps": 7})
    return save_diffusers_prior(unet, card, folder, fp16=False)


@pytest.fixture(scope="module")
def distilled(teacher_folder, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cm") / "cm-tiny"
    data = load_training_data("phantoms", 16, n_images=32)
    folder = distill(DistillConfig(teacher=str(teacher_folder), out=str(out), steps=60, checkpoint_every=30, **TINY),
                     data=data, progress=False)
    return folder, data


def test_distilled_unet_lowers_the_consistency_loss_and_moves_towards_the_teachers_ode(teacher_folder, distilled):
    folder, data = distilled
    teacher = load_prior(str(teacher_folder))
    levels = distillation_levels(TINY["levels"], teacher.sigma_min, teacher.sigma_max)
    g = torch.Generator().manual_seed(1)
    x0 = data.images[torch.randint(len(data.images), (64,), generator=g)]
    n, z = draw_levels(64, TINY["levels"], g, "cpu"), torch.randn(x0.shape, generator=g)
    x_T = x0 + teacher.sigma_max * z
    ode = heun_chain(teacher, x_T, levels)
    start = ConsistencyDenoiser(teacher.unet, alphas_cumprod_from_schedule(SCHEDULE), teacher.card)
    student = load_prior(str(folder))

    def scores(model):
        with torch.no_grad():
            loss = float(consistency_loss(model, model, teacher, x0, n, z, levels))
            return loss, float((model(x_T, teacher.sigma_max) - ode).square().mean().sqrt())

    (loss0, err0), (loss1, err1) = scores(start), scores(student)
    assert loss1 < 0.7 * loss0
    assert err1 < 0.5 * err0


def test_distilled_folder_loads_through_load_prior_and_its_card_says_what_it_is(teacher_folder, distilled):
    folder, _ = distilled
    model = load_prior(str(folder))
    teacher = load_prior(str(teacher_folder))
    assert isinstance(model, ConsistencyDenoiser) and is_consistency(model)
    card = json.loads((folder / "card.json").read_text())
    info = card["extra"]["consistency"]
    assert card["name"] == "cm-tiny" and "Consistency model distilled from tiny" in card["description"]
    assert info["teacher_sha256"] == prior_weight_hash(teacher) and info["teacher_training_steps"] == 7
    assert info["distillation_steps"] == 60 and info["levels"] == 8 and info["ode_solver"] == "heun"
    assert "pseudo-Huber" in info["metric"] and info["data_variance"] > 0
    assert card["schedule"] == teacher.card.schedule and card["resolution"] == [16, 16]
    x = torch.randn(2, *SHAPE)
    torch.testing.assert_close(model(x, model.sigma_min), x, rtol=0, atol=1e-6)  # the boundary condition
    log = json.loads((folder / "training_log.json").read_text())
    assert [e["step"] for e in log["log"]] == list(range(10, 61, 10))


def test_resumed_distillation_writes_the_weights_of_an_uninterrupted_one(teacher_folder, tmp_path):
    data = load_training_data("phantoms", 16, n_images=8)
    common = dict(teacher=str(teacher_folder), **{**TINY, "log_every": 2})
    full = distill(DistillConfig(out=str(tmp_path / "full"), steps=6, **common), data=data, progress=False)
    distill(DistillConfig(out=str(tmp_path / "split"), steps=4, **common), data=data, progress=False)
    split = distill(DistillConfig(out=str(tmp_path / "split"), steps=6, resume=True, **common), data=data,
                    progress=False)
    a, b = load_prior(str(full)), load_prior(str(split))
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


def test_time_limit_stops_at_the_first_log_point_and_writes_the_model(teacher_folder, tmp_path):
    data = load_training_data("phantoms", 16, n_images=8)
    folder = distill(DistillConfig(teacher=str(teacher_folder), out=str(tmp_path / "cm"), steps=100, time_limit=1e-6,
                                   **{**TINY, "log_every": 3}), data=data, progress=False)
    assert json.loads((folder / "card.json").read_text())["extra"]["consistency"]["distillation_steps"] == 3


def test_command_line_refuses_bad_settings_in_one_sentence(teacher_folder, tmp_path, capsys):
    assert main(["distill", "--teacher", str(teacher_folder), "--out", str(tmp_path / "x"), "--steps", "0"]) == 2
    err = capsys.readouterr().err
    assert "--steps must be an integer of at least 1" in err and "Traceback" not in err
    with pytest.raises(InputError, match="not a diffusion network prior"):
        distill(DistillConfig(out=str(tmp_path / "y"), device="cpu"), teacher=PRIOR)


# ------------------------------------------------------------------------ the solver
def run_cm(op, y, k, samples=64, **params):
    sigmas = karras_sigmas(k, EPS, SIGMA_MAX)
    rng = SampleRNG(0, range(samples))
    info = SOLVERS["cm"]
    with torch.no_grad():
        steps = list(info.solve(GaussianConsistency(PRIOR, EPS), op, y, sigmas, float(sigmas[0]) * rng.randn(SHAPE),
                                params=info.Params(**params), generator=rng))
    assert len(steps) == k and steps[-1].nfe == k
    return steps[-1].x.double()


@pytest.mark.parametrize("k", [2, 4, 8])
def test_cm_on_inpainting_beats_the_measurement_only_reconstruction_at_few_evaluations(k):
    op, y = problem("inpaint")
    truth = PRIOR.sample(1, torch.Generator().manual_seed(1)).double()  # what problem() simulated y from
    mean, _ = gaussian_posterior(PRIOR, op, y)
    direct = next(iter(SOLVERS["direct"].solve(None, op, y, torch.tensor([1.0, 0.0]), torch.zeros(1, *SHAPE),
                                               params=SOLVERS["direct"].Params(), generator=SampleRNG(0, [0])))).x
    xs = run_cm(op, y, k)
    assert relative_error(xs.mean(0), mean, PRIOR.mean.double()) < 0.7 * relative_error(direct.double()[0], mean,
                                                                                         PRIOR.mean.double())
    assert (xs.mean(0) - truth[0]).norm() < (direct.double()[0] - truth[0]).norm()


def test_cm_spread_is_of_the_posteriors_order_and_comes_from_the_injected_noise():
    op, y = problem("inpaint")
    _, cov = gaussian_posterior(PRIOR, op, y)
    ratio = lambda xs: float(xs.var(0).sum() / cov.trace())  # noqa: E731
    assert 0.5 < ratio(run_cm(op, y, 8)) < 2.0
    assert ratio(run_cm(op, y, 8, inject=0.0)) < 0.3
    assert SOLVERS["cm"].spread_of().is_posterior
    assert SOLVERS["cm"].spread_of(SOLVERS["cm"].Params(inject=0.0)).kind == "seed"


def test_cm_runs_through_the_engine_with_a_distilled_folder(distilled):
    folder, _ = distilled
    truth = load_training_data("phantoms", 16, n_images=4).images[0].numpy() * 0.5 + 0.5
    mask = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.5
    op = Inpaint((1, 16, 16), mask, 0.01)
    y = op.A(torch.from_numpy(truth)[None])[0].numpy()
    m = Measurement(y=y, operator=op.to_spec(), noise_sigma=0.01, value_range=(0.0, 1.0), ground_truth=truth)
    cfg = engine.RunConfig(solver="cm", steps=4, samples=2, prior=str(folder), device="cpu", keep_samples=2,
                           preview_interval=1e9, prior_fit=False)
    result = next(e.result for e in engine.run(m, cfg) if isinstance(e, engine.Finished))
    assert result.metrics["nfe"] == 8 and result.mean.shape == (1, 16, 16)
    assert torch.isfinite(torch.from_numpy(result.mean)).all()


# ------------------------------------------------------------------------ the time-to-quality benchmark
def _benchmark():
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(folder))
    try:
        spec = importlib.util.spec_from_file_location("time_to_quality", folder / "time_to_quality.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return module


def test_ladder_stops_at_the_first_rung_that_reaches_the_bar_and_the_summary_takes_the_fastest():
    ttq = _benchmark()
    calls = []

    def call(steps):
        calls.append(steps)
        return {"seconds": steps / 10, "psnr": 20.0 + steps}

    row = ttq.ladder("x", (2, 4, 8, 16), call, bar=26.0, cap=None)
    assert calls == [2, 2, 4, 8] and row["best"]["steps"] == 8  # a warm-up run, then up to the first success
    assert [r["meets_bar"] for r in row["tried"]] == [False, False, True]
    never = ttq.ladder("y", (2, 4), call, bar=99.0, cap=None)
    assert never["best"] is None and len(never["tried"]) == 2
    theirs = {"label": "deepinv DPS", "tried": [{"steps": 1000, "seconds": 40.0, "psnr": 30.0, "meets_bar": True}]}
    theirs["best"] = theirs["tried"][0]
    out = ttq.summary({"ours": [row, never], "deepinv": [theirs]})
    assert out["ours_best"]["label"] == "x" and out["speedup_vs_deepinv_best"] == pytest.approx(50.0)
    assert out["speedup_vs_deepinv_dps_1000"] == pytest.approx(50.0)
