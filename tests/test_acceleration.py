"""Network acceleration: modes, checkpointing, channels-last, and (on a GPU) CUDA graphs."""
import pytest
import torch
from safetensors.torch import save_file

from diffrecon.cli import main as cli_main
from diffrecon.demo import make_demo
from diffrecon.engine import Finished, Log, RunConfig, run
from diffrecon.errors import InputError
from diffrecon.priors import load_prior
from diffrecon.priors.acceleration import NetworkCall, resolve_mode
from diffrecon.priors.adm import ADMConfig, ADMUNet, load_adm_prior

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
    cfg = RunConfig(solver="dps", steps=20, samples=2, device="cpu", checkpointing=True, compile="graphs")
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
        cfg = RunConfig(solver="dps", steps=20, samples=2, device="cuda", compile=mode, precision="fp32")
        events = list(run(m, cfg, denoiser=den))
        results[mode] = next(e.result for e in events if isinstance(e, Finished))
        logs = [e.message for e in events if isinstance(e, Log)]
        assert any("recorded CUDA graphs" in s for s in logs) == (mode == "graphs")
    # 20 DPS steps amplify rounding differences (its step gain reaches ~1e4 at the top noise
    # level); a replay of stale inputs or of the wrong graph would differ by the image's scale
    diff = abs(results["graphs"].mean - results["none"].mean)
    assert float(diff.mean()) < 2e-3 and float(diff.max()) < 3e-2
    assert abs(results["graphs"].metrics["psnr"] - results["none"].metrics["psnr"]) < 0.05
