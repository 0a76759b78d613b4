"""The fast path computes the same function: channels_last, torch.compile (and its fallback), fused
Adam and bf16 autocast give the loss and gradients of the plain float32 step within the dtype's
round-off, for every network on the tiny profile; and the training loop runs with the switches on."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import copy_params

from slotbench import checkpoint, cli
from slotbench.config import resolve, resolve_tokenizer
from slotbench.models import MODEL_TOKENIZER, build_tokenizer
from slotbench.models.frame_tokenizer import FrameTokenizer
from slotbench.training import fast_path
from slotbench.training.distributed import LossStep
from slotbench.training.tasks import build_training_model

NETWORKS = ("savi", "steve", "slotdiffusion", "dvae", "vqvae")
TOKENIZERS = ("dvae", "vqvae")


def _network(name: str, tmp_path) -> tuple[torch.nn.Module, torch.Tensor]:
    """A freshly initialised network of the tiny profile (train mode) and a batch of its input."""
    params = copy_params(tmp_path)
    if name in TOKENIZERS:
        cfg = resolve_tokenizer("shapes", name, params)
        torch.manual_seed(0)
        model = FrameTokenizer(build_tokenizer(cfg["tokenizer"]), cfg["tokenizer"])
    else:
        cfg = resolve("shapes", name, params)
        tok = None
        if name in MODEL_TOKENIZER:
            tok_cfg = resolve_tokenizer("shapes", MODEL_TOKENIZER[name], params)
            torch.manual_seed(1)
            tok = tmp_path / "tokenizer.pt"
            checkpoint.save(tok, {"model": build_tokenizer(tok_cfg["tokenizer"]).state_dict(), "config": tok_cfg,
                                  "kind": "tokenizer"})
        torch.manual_seed(0)
        model = build_training_model(cfg, tok)[0]
    res = cfg["dataset"]["resolution"]
    frames = 1 if name in TOKENIZERS else cfg["train"]["n_sample_frames"]
    video = torch.rand(4, frames, 3, res, res, generator=torch.Generator().manual_seed(2)) * 2 - 1
    return model.train(), video


def _loss_and_grads(step, model: torch.nn.Module, video: torch.Tensor) -> tuple[float, dict[str, torch.Tensor]]:
    """One seeded forward + backward (dropout and diffusion noise drawn the same way each time)."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(3)
    loss = step(video)["loss"]
    loss.backward()
    return loss.item(), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(ref: tuple, other: tuple, rtol: float, what: str) -> None:
    (loss_a, grads_a), (loss_b, grads_b) = ref, other
    assert loss_b == pytest.approx(loss_a, rel=rtol), f"{what}: loss {loss_b} vs {loss_a}"
    assert grads_a.keys() == grads_b.keys()
    # relative to the tensor's largest entry, or to the network's largest gradient for tensors whose
    # gradient is zero up to round-off (a convolution bias right before a normalisation)
    largest = max(g.abs().max().item() for g in grads_a.values())
    for name in grads_a:
        scale = max(grads_a[name].abs().max().item(), 1e-3 * largest)
        err = (grads_a[name] - grads_b[name]).abs().max().item() / scale
        assert err < rtol * 10, f"{what}: gradient of {name} differs by {err:.2e} (relative)"


@pytest.mark.parametrize("name", NETWORKS)
def test_channels_last_computes_the_same_loss_and_gradients(name, tmp_path):
    model, video = _network(name, tmp_path)
    ref = _loss_and_grads(LossStep(model), model, video)
    fast = copy.deepcopy(model)
    fast_path.to_channels_last(fast)
    assert any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
               for p in fast.parameters()), "no convolution weight was converted"
    _assert_same(ref, _loss_and_grads(LossStep(fast), fast, video), 1e-5, "channels_last")


@pytest.mark.parametrize("name", ["dvae"])
def test_compiled_step_computes_the_same_loss_and_gradients(name, tmp_path, monkeypatch):
    """torch.compile (inductor; a C++ compiler is needed on CPU, else the fallback is what runs).
    Inductor draws random numbers (dropout, Gumbel noise) with its own generator unless told to use
    eager's, which it is here so that the same seed gives the same draws. One small network: compiling
    takes about a minute on 2 CPU cores."""
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config, "fallback_random", True)
    model, video = _network(name, tmp_path)
    ref = _loss_and_grads(LossStep(model), model, video)
    step, mode = fast_path.compiled_step(LossStep(model), video)
    assert all(p.grad is None for p in model.parameters()), "the trial left gradients behind"
    if mode != "compiled":
        pytest.skip(f"torch.compile is not usable here: {mode}")
    _assert_same(ref, _loss_and_grads(step, model, video), 1e-4, "torch.compile")


def test_compile_failure_falls_back_to_the_eager_step(tmp_path, monkeypatch):
    model, video = _network("savi", tmp_path)
    ref = _loss_and_grads(LossStep(model), model, video)

    def broken_compile(module, *args, **kwargs):
        def run(*a, **k):
            raise RuntimeError("InductorError: CppCompileError: C++ compile error\nmore lines")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(UserWarning, match="torch.compile failed .*CppCompileError.*training runs eagerly"):
        step, mode = fast_path.compiled_step(LossStep(model), video)
    assert mode.startswith("eager (compile failed: RuntimeError: InductorError") and isinstance(step, LossStep)
    _assert_same(ref, _loss_and_grads(step, model, video), 0.0 + 1e-12, "fallback")


@pytest.mark.parametrize("name", ["savi", "steve", "slotdiffusion"])
def test_bf16_autocast_stays_within_bf16_round_off(name, tmp_path):
    """What ``train.amp: bf16`` does on CUDA, checked with CPU autocast: the same loss to bf16's
    precision (8 bits of mantissa, ~0.4% per rounding; a few percent after a deep network)."""
    model, video = _network(name, tmp_path)
    ref, _ = _loss_and_grads(LossStep(model), model, video)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, _ = _loss_and_grads(LossStep(model), model, video)
    assert low == pytest.approx(ref, rel=5e-2)


def test_fused_adam_takes_the_same_step_as_the_for_loop(tmp_path):
    """Two Adam steps from the same gradients: the for-loop (CPU default), fused and foreach kernels."""
    model, video = _network("savi", tmp_path)
    _loss_and_grads(LossStep(model), model, video)
    results = []
    for kwargs in ({"foreach": False}, {"fused": True}, {"foreach": True}):
        net = copy.deepcopy(model)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, **kwargs)
        opt.step()
        opt.step()  # the second uses the moment estimates of the first
        results.append({n: p.detach().clone() for n, p in net.named_parameters()})
    for other in results[1:]:
        for n, p in results[0].items():
            torch.testing.assert_close(other[n], p, rtol=1e-6, atol=1e-7)


def test_training_with_channels_last_and_compile_matches_the_plain_run(project, tiny_data, monkeypatch):
    """The real stage with runtime.channels_last: true and runtime.compile: true (torch.compile
    replaced by a failing stand-in here, to keep the suite fast: the fallback path) trains to the
    same loss; train.json records what ran."""
    args = ["train", "--dataset", "shapes", "--model", "savi", "--seed", "0", "--no-progress"]
    run = project / "results" / "shapes" / "savi" / "seed0"
    assert cli.main(args) == 0
    plain = json.loads((run / "train.json").read_text())
    assert plain["fast_path"] == {"channels_last": False, "compile": "off", "amp": "off", "adam": "fused"}
    import shutil

    shutil.rmtree(run)
    monkeypatch.setattr(torch, "compile", lambda module, **k: (lambda *a, **kw: (_ for _ in ()).throw(
        RuntimeError("no compiler"))))
    with pytest.warns(UserWarning, match="no compiler"):
        assert cli.main([*args, "--set", "runtime.channels_last=true", "--set", "runtime.compile=true"]) == 0
    fast = json.loads((run / "train.json").read_text())
    assert fast["fast_path"]["channels_last"] is True
    assert fast["fast_path"]["compile"].startswith("eager (compile failed")
    assert fast["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-4)
    weights = checkpoint.load(run / "model.pt")["model"]
    assert any(t.dim() == 4 and not t.is_contiguous() for t in weights.values())  # saved as trained (NHWC)


def test_channels_last_setting():
    assert fast_path.channels_last_enabled("auto", torch.device("cpu")) is False
    assert fast_path.channels_last_enabled("auto", torch.device("cuda", 0)) is True
    assert fast_path.channels_last_enabled(True, torch.device("cpu")) is True
    assert fast_path.channels_last_enabled(False, torch.device("cuda", 0)) is False


def test_cpu_bf16_training_runs_in_bf16_and_trains_like_float32(project, tiny_data):
    """``train.cpu_amp: bf16`` (the real stage, ``--set``): the training runs under CPU autocast (its
    matrix products come out in bf16), train.json records it, and the loss after the same steps stays
    within bf16's round-off of the float32 run's."""
    from slotbench.runtime import autocast

    with autocast(torch.device("cpu"), "off", "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "bf16", "off"):  # train.amp is CUDA's alone
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    args = ["train", "--dataset", "shapes", "--model", "savi", "--seed", "0", "--no-progress"]
    run = project / "results" / "shapes" / "savi" / "seed0"
    assert cli.main(args) == 0
    plain = json.loads((run / "train.json").read_text())
    import shutil

    shutil.rmtree(run)
    assert cli.main([*args, "--set", "train.cpu_amp=bf16"]) == 0
    low = json.loads((run / "train.json").read_text())
    assert plain["fast_path"]["amp"] == "off" and low["fast_path"]["amp"] == "bf16"
    assert low["train_loss"] == pytest.approx(plain["train_loss"], rel=5e-2)
    assert low["train_loss"] != plain["train_loss"]  # it did run in another precision
