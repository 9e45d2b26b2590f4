"""Network acceleration: modes, checkpointing, channels-last, and (on a GPU) CUDA graphs."""
import pytest
import torch
from safetensors.torch import save_file

from diffrecon.cli import main as cli_main
from diffrecon.demo import make_demo
from diffrecon.engine import Finished, Log, RunConfig, plan, run
from diffrecon.errors import InputError
from diffrecon.priors import load_prior
from diffrecon.priors import acceleration
from diffrecon.priors.acceleration import NetworkCall, auto_mode, resolve_mode
from diffrecon.priors.adm import ADMConfig, ADMUNet
from diffrecon.priors.adm_layout import load_adm_prior

TINY = ADMConfig(image_size=16, in_channels=1, model_channels=32, num_res_blocks=1,
                 attention_resolutions=(8,), channel_mult=(1, 2), num_head_channels=16)
CUDA = torch.cuda.is_available()


def _adm(tmp_path, device="cpu"):
    torch.manual_seed(0)
    state = {k: (0.05 * torch.randn_like(v) if v.ndim > 1 else v) for k, v in ADMUNet(TINY).state_dict().items()}
    save_file(state, str(tmp_path / "adm.safetensors"))
    return load_adm_prior(tmp_path / "adm.safetensors", TINY, device)


def _value_and_grad(den, x, sigma):
    with torch.enable_grad():
        xi = x.detach().clone().requires_grad_(True)
        out = den(xi, sigma)
        (g,) = torch.autograd.grad(out.square().sum(), xi)
    return out.detach(), g


def test_mode_names_are_checked_and_only_cuda_gets_graphs():
    assert resolve_mode("auto", torch.device("cpu")) == "none"
    assert resolve_mode("graphs", torch.device("cpu")) == "none"
    assert resolve_mode("auto", torch.device("cuda")) == "graphs"
    assert resolve_mode("compile", torch.device("cuda")) == "compile"
    with pytest.raises(InputError, match="compile mode 'fast' is not one of auto, none, graphs, compile"):
        resolve_mode("fast", torch.device("cpu"))


def test_engine_refuses_an_unknown_compile_mode_before_any_work():
    m = make_demo("denoise", 16, 0)
    with pytest.raises(InputError, match="compile mode"):
        next(run(m, RunConfig(solver="ddim", prior="gaussian", steps=2, samples=1, device="cpu", compile="jit")))


def test_adm_checkpointing_gives_the_same_value_and_gradient(tmp_path):
    den = _adm(tmp_path)
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    ref_out, ref_g = _value_and_grad(den, x, 0.7)
    den.accelerate("none", checkpointing=True)
    assert den.network.gradient_checkpointing
    out, g = _value_and_grad(den, x, 0.7)
    assert float(ref_g.abs().max()) > 1e-3
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(g, ref_g, atol=1e-5, rtol=1e-5)
    den.accelerate("none", checkpointing=False)
    assert not den.network.gradient_checkpointing


def test_bundled_prior_checkpointing_and_channels_last_match_eager():
    den = load_prior("default", (1, 128, 128))
    x = torch.randn(2, 1, 128, 128, generator=torch.Generator().manual_seed(2))
    ref_out, ref_g = _value_and_grad(den, x, 0.5)
    den.accelerate("none", channels_last=True, checkpointing=True)
    assert den.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    out, g = _value_and_grad(den, x, 0.5)
    torch.testing.assert_close(out, ref_out, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(g, ref_g, atol=1e-3, rtol=1e-3)
    den.accelerate("none", channels_last=False)  # back to the default layout
    assert den.unet.conv_in.weight.is_contiguous()


def test_network_call_keeps_the_newest_variants_only():
    call = NetworkCall(torch.nn.Identity(), "graphs")
    for i in range(6):
        call._recorded[(i,)] = object()
        while len(call._recorded) > call.keep:
            call._recorded.pop(next(iter(call._recorded)))
    assert list(call._recorded) == [(2,), (3,), (4,), (5,)]
    call.release()
    assert call._recorded == {}


def test_run_records_the_acceleration_settings_in_the_provenance(tmp_path):
    den = _adm(tmp_path)
    m = make_demo("denoise", 16, 0)
    # the untrained network's estimates leave any range: the divergence guard only reports them here
    cfg = RunConfig(solver="dps", steps=20, samples=2, device="cpu", checkpointing=True, compile="graphs",
                    on_divergence="continue")
    result = next(e.result for e in run(m, cfg, denoiser=den) if isinstance(e, Finished))
    prov = result.provenance
    assert (prov["compile"], prov["channels_last"], prov["checkpointing"]) == ("none", False, True)
    assert result.metrics["grad_evals"] == 40


def test_cli_reconstruct_takes_the_acceleration_flags(tmp_path, capsys):
    m = tmp_path / "m.h5"
    assert cli_main(["demo", "denoise", "--size", "16", "--out", str(m)]) == 0
    out = tmp_path / "r.h5"
    assert cli_main(["reconstruct", str(m), "--out", str(out), "--solver", "ddim", "--prior", "gaussian",
                     "--steps", "3", "--samples", "1", "--device", "cpu", "--compile", "none",
                     "--channels-last", "--checkpointing"]) == 0
    from diffrecon.io import read_result

    prov = read_result(out).provenance
    assert prov["compile"] == "none" and prov["checkpointing"] is True
    assert cli_main(["reconstruct", str(m), "--out", str(out), "--compile", "jit"]) != 0
    assert "--compile: invalid choice: 'jit'" in capsys.readouterr().err


def test_auto_compiles_a_large_network_only_when_the_run_pays_for_the_compile(monkeypatch):
    monkeypatch.setattr(acceleration, "compile_available", lambda: True)
    # the bundled prior's size: graphs whatever the run's length (compile measured slower)
    mode, why = auto_mode(8_900_000, [8], 100_000)
    assert mode == "graphs" and "9 M parameters" in why
    # 553 M parameters, 8 samples: each evaluation saves 1 - 1/1.6 = 0.375 of its time compiled;
    # a first compile costs 700 evaluations' time per sample, so the break-even is 1867 steps
    assert auto_mode(553_000_000, [8], 1000)[0] == "graphs"  # 3000 saved < 5600
    mode, why = auto_mode(553_000_000, [8], 2000)  # 6000 saved > 5600
    assert mode == "compile" and "16000 evaluations" in why and "costs about 5600" in why
    # compiled before (inductor's cache): 100 evaluations' time per sample
    assert auto_mode(553_000_000, [8], 1000, cached=lambda b: True)[0] == "compile"  # 3000 > 800
    assert auto_mode(553_000_000, [8], 200, cached=lambda b: True)[0] == "graphs"  # 600 < 800
    # a smaller last batch is a second shape to compile
    _, why = auto_mode(553_000_000, [8, 8, 4], 2000)
    assert "compiling 2 batch size(s) costs about 8400" in why
    monkeypatch.setattr(acceleration, "compile_available", lambda: False)
    mode, why = auto_mode(553_000_000, [8], 10_000)
    assert mode == "graphs" and "Triton" in why


def test_compiled_shapes_are_recorded_atomically_in_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFRECON_CACHE", str(tmp_path / "cache"))
    net = ADMUNet(TINY)
    sig = acceleration.shape_signature(net, (8, 1, 16, 16), True, torch.bfloat16, torch.device("cpu"))
    assert sig.startswith("ADMUNet/") and "/8x1x16x16/grad/torch.bfloat16/cpu/torch " in sig
    assert not acceleration.compiled_before(sig)
    acceleration.note_compiled(sig, 71.94)
    acceleration.note_compiled("other", 9.6)
    assert acceleration.compiled_before(sig) and acceleration.compiled_before("other")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["compiled.json"]  # no temporary left
    (tmp_path / "cache" / "compiled.json").write_text("{not json")
    assert not acceleration.compiled_before(sig)  # a damaged record is a cold cache, not an error
    acceleration.note_compiled(sig, 1.0)
    assert acceleration.compiled_before(sig)
    monkeypatch.setenv("DIFFRECON_CACHE", str(tmp_path / "cache" / "compiled.json" / "x"))  # not a folder
    acceleration.note_compiled(sig, 1.0)  # loses the record quietly


def test_auto_decision_reads_the_prior_network_and_the_record(tmp_path, monkeypatch):
    from diffrecon import engine

    monkeypatch.setenv("DIFFRECON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(acceleration, "compile_available", lambda: True)
    den = _adm(tmp_path)
    n = sum(p.numel() for p in den.unet.parameters())
    cpu = torch.device("cpu")
    mode, why, cost = engine._auto_compile(den, True, [4], 50, None, cpu)
    assert mode == "graphs" and f"{n / 1e6:.0f} M parameters" in why and cost == 2800
    monkeypatch.setattr(acceleration, "COMPILE_MIN_PARAMETERS", 1)
    assert engine._auto_compile(den, True, [4], 50, None, cpu)[0] == "graphs"  # 75 < 2800
    acceleration.note_compiled(acceleration.shape_signature(den.unet, (4, 1, 16, 16), True, None, cpu), 5.0)
    assert engine._auto_compile(den, True, [4], 50, None, cpu)[::2] == ("graphs", 400)  # 75 < 400
    assert engine._auto_compile(den, True, [4], 300, None, cpu)[0] == "compile"  # 450 > 400
    assert engine._auto_compile(den, False, [4], 300, None, cpu)[0] == "graphs"  # plain: not compiled before


# ------------------------------------------------------------------------------------ GPU
@pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA GPU")
@pytest.mark.parametrize("amp", [None, torch.bfloat16])
def test_graph_replay_matches_eager_with_and_without_gradient(tmp_path, amp, monkeypatch):
    # TF32 convolutions differ by ~1e-3 between cuDNN algorithms, and a recording may pick another
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    den = _adm(tmp_path, "cuda")
    x = torch.randn(3, 1, 16, 16, device="cuda", generator=torch.Generator("cuda").manual_seed(3))
    sig = torch.tensor([0.2, 1.0, 5.0], device="cuda")
    ctx = torch.autocast("cuda", dtype=amp) if amp else torch.autocast("cuda", enabled=False)
    with ctx:
        ref_out, ref_g = _value_and_grad(den, x, sig)
        with torch.no_grad():
            ref_plain = den(x, sig)
    den.accelerate("graphs")
    with ctx:
        for k in range(3):  # recorded once, replayed after; inputs change between calls
            xs = x * (1 + 0.1 * k)
            out, g = _value_and_grad(den, xs, sig)
            with torch.no_grad():
                plain = den(xs, sig)
            if k == 0:
                tol = dict(atol=2e-2, rtol=2e-2) if amp else dict(atol=1e-4, rtol=1e-4)
                torch.testing.assert_close(out, ref_out, **tol)
                torch.testing.assert_close(g, ref_g, **tol)
                torch.testing.assert_close(plain, ref_plain, **tol)
    assert den.network_call.setups == 2  # one with gradient, one without
    assert len(den.network_call._recorded) == 2


@pytest.mark.skipif(not CUDA, reason="CUDA graphs need a CUDA GPU")
def test_engine_dps_with_graphs_reports_recording_and_matches_eager(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    den = _adm(tmp_path, "cuda")
    m = make_demo("denoise", 16, 0)
    results = {}
    for mode in ("none", "graphs"):
        cfg = RunConfig(solver="dps", steps=20, samples=2, device="cuda", compile=mode, precision="fp32",
                        on_divergence="continue")  # the untrained network diverges; compare all 20 steps
        events = list(run(m, cfg, denoiser=den))
        results[mode] = next(e.result for e in events if isinstance(e, Finished))
        logs = [e.message for e in events if isinstance(e, Log)]
        assert any("recorded CUDA graphs" in s for s in logs) == (mode == "graphs")
    # 20 DPS steps amplify rounding differences (its step gain reaches ~1e4 at the top noise
    # level); a replay of stale inputs or of the wrong graph would differ by the image's scale
    diff = abs(results["graphs"].mean - results["none"].mean)
    assert float(diff.mean()) < 2e-3 and float(diff.max()) < 3e-2
    assert abs(results["graphs"].metrics["psnr"] - results["none"].metrics["psnr"]) < 0.05


@pytest.mark.skipif(not CUDA, reason="torch.compile on CUDA needs a GPU")
def test_engine_auto_compiles_when_it_pays_records_the_shape_and_matches_graphs(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFRECON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(acceleration, "COMPILE_MIN_PARAMETERS", 1)  # the tiny network counts as large
    monkeypatch.setattr(acceleration, "COMPILE_COST_EVALUATIONS", {"first": 1.0, "cached": 0.1})
    den = _adm(tmp_path, "cuda")
    m = make_demo("denoise", 16, 0)
    results = {}
    for mode in ("graphs", "auto"):
        cfg = RunConfig(solver="ddim", steps=10, samples=2, device="cuda", compile=mode, precision="fp32",
                        on_divergence="continue")  # the untrained network may diverge; compare all steps
        planned = plan(m, cfg, denoiser=den)  # the probe runs graphs; the plan says what the run will do
        assert planned.network_mode == ("compile" if mode == "auto" else "graphs")
        assert planned.predicted_seconds is not None and planned.predicted_seconds > 0
        events = list(run(m, cfg, denoiser=den))
        results[mode] = next(e.result for e in events if isinstance(e, Finished))
        logs = [e.message for e in events if isinstance(e, Log)]
        assert any(s.startswith("Network: torch.compile: 20 evaluations") for s in logs) == (mode == "auto")
    assert results["auto"].provenance["compile"] == "compile"
    assert acceleration.compiled_before(acceleration.shape_signature(den.unet, (2, 1, 16, 16), False, None,
                                                                     torch.device("cuda")))
    # inductor's fused kernels round differently from cuDNN's: close, not equal
    assert float(abs(results["auto"].mean - results["graphs"].mean).max()) < 1e-2
    assert abs(results["auto"].metrics["psnr"] - results["graphs"].metrics["psnr"]) < 0.05


@pytest.mark.skipif(not CUDA, reason="torch.compile on CUDA needs a GPU")
def test_a_failing_compile_falls_back_to_graphs_when_asked_and_raises_otherwise(tmp_path, monkeypatch):
    class Broken(torch.nn.Module):
        def forward(self, *a):
            raise RuntimeError("no C compiler")

    monkeypatch.setattr(torch, "compile", lambda net, **kw: Broken())
    den = _adm(tmp_path, "cuda")
    x = torch.randn(2, 1, 16, 16, device="cuda")
    with torch.no_grad():
        ref = den(x, 0.5)
        den.accelerate("compile", fallback="graphs")
        out = den(x, 0.5)
    call = den.network_call
    assert call.mode == "graphs" and "RuntimeError: no C compiler" in call.fallback_reason
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    den.accelerate("compile")  # asked for by name: the failure is the user's to see
    with pytest.raises(RuntimeError, match="no C compiler"), torch.no_grad():
        den(x, 0.5)
