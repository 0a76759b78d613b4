"""Side-by-side parity of slotbench with the original implementation (a benchmark, not a test).

For each network (SAVi, dVAE, STEVE, VQ-VAE, SlotDiffusion) and each MOVi dataset, this builds
the original network from the original reference config (code read at run time from the
checkouts named by ``SLOTDIFFUSION_REPO`` and ``NERV_REPO``, else ``bench/scratch/original/*``, see
``bench/original_code.py``),
initialises it with a fixed seed (parameters the original zero-initialises are refilled with
small random values, see :func:`fill_zero_init`), saves it as nerv's trainer does (a full training checkpoint
``model_{it}.pth``), imports that file with ``slotbench import-original``'s code, and runs both
implementations on the same inputs in float32 on CPU in eval mode (dropout off):

* SAVi: slots per frame, reconstruction, alpha masks;
* dVAE: token logits, reconstruction from the argmax tokens;
* STEVE: slots, teacher-forced token logits, attention masks (upsampled as in evaluation);
* VQ-VAE: latent, quantised latent, reconstruction;
* SlotDiffusion: slots, attention masks, predicted noise at several timesteps for the same noisy
  latents and slots, the training loss with the same ``t`` and noise (same seed), and
  DPM-Solver++ (order 3, single-step, 20 model evaluations) from the same noise, with the VQ
  snap of the evaluation (latents and decoded frames) and without it (the solver alone).

STEVE's checkpoint embeds the dVAE saved just before, and SlotDiffusion's the VQ-VAE, through
the original's own ``dvae_ckp_path`` / ``vqvae_ckp_path`` loading.

Differences: ``max_abs`` = max |a - b|; ``max_rel`` = max |a - b| / max |a| (relative to the
output's scale, ``a`` the original). Target: ``max_rel`` <= 1e-5 everywhere.

Training steps (``--train-steps N``, default 5; ``0`` skips them): from the same imported weights
and the same batches (random pixels at 128x128, ``--train-batch`` clips of ``--frames`` frames,
single frames for the tokenizers), N optimizer steps of the first N of a ``--train-schedule``-step
schedule, (a) with the original's own trainer (nerv's method class of the network: its loss
weighting, optimizer groups, gradient clipping, learning-rate schedule and dVAE temperature; see
``original_code.original_steps``), float32; (b) the same in float64 (weights and batches cast): the
float32 noise floor; (c) with slotbench's training loop, ``slotbench.training.loop.train`` itself,
stopped after N steps. Dropout stays on, seeded identically (every step starts from slotbench's
``micro_batch_seed``); the VQ-VAE and SlotDiffusion run a second time with the dropout on their
convolution activations off (:data:`CONV_DROPOUT`: slotbench's loop keeps those activations in
channels-last memory order, so the same seed draws other masks than the original's). Per step:
both losses, the learning rate of every group, and the weight
differences from the float32 original (largest per-tensor relative difference, and the relative
L2 norm over all trainable tensors) for slotbench and for the float64 run. Also the rates of both
over the whole reference schedule, and the parameters of each optimizer group.

``--small-keys PATH`` also writes the parameter names and shapes of every original network at
a small configuration (16x16 frames) with the matching slotbench configuration: the data of
``tests/test_import_original.py``.

Usage (``SLOTDIFFUSION_COMMIT`` / ``NERV_COMMIT`` name the commits of checkouts without ``.git``)::

    SLOTDIFFUSION_REPO=/path/to/SlotDiffusion NERV_REPO=/path/to/nerv \\
        python bench/parity_original.py [--datasets movi_e ...] [--networks savi ...] \\
        [--small-keys tests/data/original_small_keys.json] [--train-steps 5] [--only-train]

Writes ``bench/results/parity_original.json`` and ``.md`` (``--only-train`` replaces only the
training runs it makes and keeps the rest; a run without it rewrites the output comparison and
keeps the training runs it does not redo); checkpoints and the small training data go to
``bench/scratch/parity_original/``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import re
import shutil
import subprocess
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from machine import cpu_model
from original_code import OriginalCode, original_steps, use_local_checkouts
from torch import Tensor
from torch.optim.optimizer import register_optimizer_step_post_hook

from slotbench import checkpoint
from slotbench.checkpoint import load_frozen_tokenizer, restore_model
from slotbench.config import fingerprint, resolve, resolve_tokenizer
from slotbench.data.dataset import ClipDataset, StepBatchSampler, to_model_input
from slotbench.data.storage import SplitWriter, write_meta
from slotbench.interop.original import convert_state, import_original
from slotbench.interop.original_keys import EMBEDDED_TOKENIZER, target
from slotbench.metrics.lpips import LPIPS
from slotbench.models import dvae as sb_dvae
from slotbench.models import steve as sb_steve
from slotbench.models.diffusion import dpm_solver_pp_sample, make_noise
from slotbench.models.frame_tokenizer import FrameTokenizer
from slotbench.training import loop
from slotbench.training.distributed import micro_batch_seed
from slotbench.training.schedule import apply_lr
from slotbench.training.tasks import param_groups

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SCRATCH = ROOT / "bench" / "scratch" / "parity_original"
DATASETS = ("movi_d", "movi_e", "movi_solid", "movi_tex")
NETWORKS = ("savi", "dvae", "steve", "vqvae", "slotdiffusion")
ORDER = ("dvae", "vqvae", "savi", "steve", "slotdiffusion")
TOKENIZERS = ("dvae", "vqvae")
#: MOVi-E train videos (reference/published-results.md) and the clips per video of the reference
#: loaders (3-frame windows of 24 frames; tokenizers: single frames): the full schedule compared.
MOVI_TRAIN_VIDEOS = 9_749
CLIPS_PER_VIDEO = {"slot_model": 22, "tokenizer": 24}
#: Networks with dropout on convolution activations, which slotbench's loop keeps in channels-last
#: memory order, so that the same seed draws another mask than the original's: the label of the
#: variant training run with that dropout off, and the original's and slotbench's part concerned.
CONV_DROPOUT = {
    "vqvae": ("LPIPS dropout off", lambda orig: orig.loss.perceptual_loss, lambda sb: sb.tokenizer.perceptual),
    "slotdiffusion": ("U-Net dropout off", lambda orig: orig.dm_decoder, lambda sb: sb.unet),
}
TIMESTEP_FRACTIONS = (0.0, 0.25, 0.5, 1.0)  # of the last timestep: 0, 250, 500, 999 at T = 1000
TARGET_REL = 1e-5


# ----------------------------------------------------------------------------- initialising
@torch.no_grad()
def fill_zero_init(model: torch.nn.Module, seed: int, std: float = 0.02) -> int:
    """Refill every all-zero floating parameter from ``N(0, std^2)`` and the VQ codebook from
    ``N(0, 1)`` (fixed seed); the number of tensors refilled.

    The original zero-initialises biases and, in the U-Net, the output convolution, the last
    convolution of every ResBlock and every ``proj_out``: a fresh SlotDiffusion predicts exactly
    zero noise, which would hide any difference in the U-Net.
    """
    gen = torch.Generator().manual_seed(seed)
    filled = 0
    for name, p in model.named_parameters():
        if p.is_floating_point() and not p.any():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
            filled += 1
        elif name.endswith("quantize.embedding.weight"):
            # the VQ codebook starts uniform in +-1/n_embed, far inside the latents' range: every
            # snap of a sampling step would return nearly the same code; spread it like latents
            p.copy_(torch.randn(p.shape, generator=gen))
            filled += 1
    return filled


# ----------------------------------------------------------------------------- saving
def save_as_trainer(model: torch.nn.Module, code: OriginalCode, params, path: Path) -> None:
    """A nerv full training checkpoint (``method.py::save_ckp``) of a freshly built model: the
    state dict, Adam's state, iteration / epoch counters, best metrics, the warm-up cosine
    scheduler's state and the fp16 grad scaler's."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=params.lr)
    scheduler = code.lr.CosineAnnealingWarmupRestarts(
        optimizer, first_cycle_steps=1000, cycle_mult=1.0, max_lr=params.lr, min_lr=0.0, warmup_steps=50, gamma=1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "opt_state_dict": optimizer.state_dict(), "it": 0, "epoch": 0,
                "best_metric_dict": {"": 1e8}, "scheduler_state_dict": scheduler.state_dict(),
                "scheduler_method": "step", "grad_scaler": torch.amp.GradScaler("cpu").state_dict()}, path)


# ----------------------------------------------------------------------------- comparing
def diff(a: Tensor, b: Tensor) -> dict:
    """Largest absolute and scale-relative difference of ``b`` from ``a`` (same shape)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: original {list(a.shape)}, slotbench {list(b.shape)}")
    a, b = a.detach().double(), b.detach().double()
    max_abs = (a - b).abs().max().item()
    return {"shape": list(a.shape), "max_abs": max_abs, "max_rel": max_abs / max(a.abs().max().item(), 1e-30)}


def upsample(attn: Tensor, size: int, hw: tuple[int, int]) -> Tensor:
    """slotbench's attention ``[B, T, N, h*w]`` upsampled as evaluation does -> ``[B, T, N, H, W]``."""
    b, t, n, _ = attn.shape
    maps = attn.reshape(b * t * n, 1, *hw)
    return F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False).reshape(b, t, n, size, size)


@torch.no_grad()
def compare(network: str, orig: torch.nn.Module, sb: torch.nn.Module, video: Tensor, seed: int) -> dict[str, dict]:
    """Outputs of both networks (eval mode) on ``video [B, T, 3, H, W]``."""
    orig.eval()
    sb.eval()
    frames = video.flatten(0, 1)
    size = video.shape[-1]
    if network == "savi":
        o, s = orig({"img": video}), sb(video)
        return {"slots": diff(o["slots"], s["slots"]), "recon": diff(o["recon_img"], s["recon"]),
                "masks": diff(o["masks"], s["masks"])}
    if network == "dvae":
        lo, ls = orig.encoder(frames), sb.logits(frames)
        onehot = F.one_hot(lo.argmax(1), lo.shape[1]).permute(0, 3, 1, 2).float()
        return {"logits": diff(lo, ls), "recon": diff(orig.detokenize(onehot), sb.detokenize(onehot))}
    if network == "vqvae":
        zo, zs = orig.encode(frames), sb.encode(frames)
        qo, qs = orig.quantize(zo)[0], sb.quantize(zs)[0]
        return {"latent": diff(zo, zs), "quantised": diff(qo, qs), "recon": diff(orig.decode(qo), sb.decode(qs))}
    if network == "steve":
        o, s = orig({"img": video}), sb(video)
        return {"slots": diff(o["slots"], s["slots"]), "token_logits": diff(o["pred_token_id"], s["logits"]),
                "attn_masks": diff(o["masks"], upsample(s["attn"], size, sb.feature_resolution))}
    return _compare_slotdiffusion(orig, sb, video, seed)


def _compare_slotdiffusion(orig, sb, video: Tensor, seed: int) -> dict[str, dict]:
    o, s = orig({"img": video}), sb(video)
    out = {"slots": diff(o["slots"], s["slots"]),
           "attn_masks": diff(o["masks"], upsample(s["attn"], video.shape[-1], sb.feature_resolution))}
    ctx = o["slots"].flatten(0, 1)  # the same slots for both decoders: [B*T, N, D]
    dm = orig.dm_decoder
    x0 = dm.vae.encode(video.flatten(0, 1))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    for step in sorted({round(f * (dm.num_timesteps - 1)) for f in TIMESTEP_FRACTIONS}):
        t = torch.full((x0.shape[0],), step, dtype=torch.long)
        x_t = dm._sample_xt_from_x0(x0=x0, t=t, noise=noise)
        out[f"eps_t{step}"] = diff(dm(x_t, t, context=ctx), sb.unet(x_t, t, ctx))
    torch.manual_seed(seed)
    loss_o = orig.calc_train_loss({"img": video}, {"slots": o["slots"]})["denoise_loss"]
    torch.manual_seed(seed)
    loss_s = sb.loss(video, {"slots": o["slots"]})["loss"]
    out["train_loss"] = diff(loss_o.reshape(1), loss_s.reshape(1))
    torch.manual_seed(seed)
    lat_o = dm.generate_imgs(cond=ctx, batch_size=ctx.shape[0], verbose=False, use_dpm=True, same_noise=True)
    torch.manual_seed(seed)
    lat_s = sb.sample_latents(ctx, "dpm++", steps=20, same_noise=True)
    out["dpm++_latent"] = diff(lat_o, lat_s)
    out["dpm++_frames"] = diff(dm.vae.decode(lat_o), sb.tokenizer.decode(sb.snap(lat_s)))
    dm.vq_denoised = False  # the solver alone, without the codebook snap after each data prediction
    torch.manual_seed(seed)
    lat_o = dm.generate_imgs(cond=ctx, batch_size=ctx.shape[0], verbose=False, use_dpm=True, same_noise=True)
    dm.vq_denoised = True
    torch.manual_seed(seed)
    noise = make_noise(lat_o.shape, same_noise=True)
    lat_s = dpm_solver_pp_sample(lambda x_t, t: sb.unet(x_t, t, ctx), noise, sb.schedule, steps=20)
    out["dpm++_latent_no_snap"] = diff(lat_o, lat_s)
    return out


def param_counts(network: str, orig: torch.nn.Module, sb: torch.nn.Module) -> dict:
    """Parameter counts: the original's total, the part that maps to slotbench parameters, and slotbench's."""
    mapped = sum(p.numel() for n, p in orig.named_parameters() if (t := target(network, n)) and t.kind == "param")
    return {"original_total": sum(p.numel() for p in orig.parameters()), "original_mapped": mapped,
            "slotbench": sum(p.numel() for p in sb.parameters())}


# ----------------------------------------------------------------------------- reference runs
@dataclass
class Pair:
    """One original network and its slotbench import, with identical weights."""

    network: str
    dataset: str
    orig: torch.nn.Module
    sb: torch.nn.Module  # the slot model, or the bare tokenizer
    params: object  # the original's config instance the network was built from
    src: Path  # the original trainer checkpoint it was imported from
    out: Path  # slotbench's model.pt it was imported into
    origin: dict  # import_original's record


def build_pair(code: OriginalCode, dataset: str, network: str, seed: int) -> Pair:
    """Build one original network at its reference config (seeded, :func:`fill_zero_init`), save it
    as nerv's trainer does and import that file into slotbench. STEVE / SlotDiffusion embed the
    tokenizer saved before them in the same scratch folder."""
    folder = SCRATCH / dataset
    overrides = {}
    if network == "steve":
        overrides = {"dvae_dict": {"dvae_ckp_path": str(folder / "dvae" / "model_0.pth")}}
    if network == "slotdiffusion":
        overrides = {"dec_dict": {"vae_dict": {"vqvae_ckp_path": str(folder / "vqvae" / "model_0.pth")}}}
    params = code.params(network, dataset, overrides)
    torch.manual_seed(seed)
    orig = code.build(params)
    fill_zero_init(orig, seed)
    src = folder / network / "model_0.pth"
    save_as_trainer(orig, code, params, src)
    out = folder / network / "slotbench_model.pt"
    origin = import_original(network, dataset, src, out, ROOT / "params")
    state = checkpoint.load(out)
    sb = load_frozen_tokenizer(out)[0] if network in TOKENIZERS else restore_model(state)
    return Pair(network, dataset, orig, sb, params, src, out, origin)


def reference_run(pair: Pair, seed: int, video: Tensor) -> dict:
    """Compare one imported network with its original at the reference config (eval mode)."""
    start = time.perf_counter()
    outputs = compare(pair.network, pair.orig, pair.sb, video, seed)
    return {"dataset": pair.dataset, "network": pair.network, "outputs": outputs,
            "params": param_counts(pair.network, pair.orig, pair.sb), "import_time_s": pair.origin["import_time_s"],
            "checkpoint_mb": round(pair.src.stat().st_size / 2**20, 1), "tensors": pair.origin["tensors"],
            "compare_time_s": round(time.perf_counter() - start, 2)}


# ----------------------------------------------------------------------------- training steps
class _Enough(Exception):
    """Raised by the optimizer hook after the last compared step: ends slotbench's training loop there."""


def write_train_data(root: Path, dataset_cfg: dict, videos: int, seed: int) -> Path:
    """A dataset folder in slotbench's storage format for ``dataset_cfg`` (its ``resolution`` and
    ``video_len``, and its params fingerprint as the export stage records it): ``train`` holds
    ``videos`` random uint8 videos ``[video_len, resolution, resolution, 3]``; ``validation`` one
    such video (seg all 0; never read, the run stops before validating)."""
    frames, resolution = dataset_cfg["video_len"], dataset_cfg["resolution"]
    rng = np.random.default_rng(seed)
    shutil.rmtree(root, ignore_errors=True)
    splits = {}
    for split, n in (("train", videos), ("validation", 1)):
        writer = SplitWriter(root, split, n, frames, resolution)
        writer.write(0, rng.integers(0, 256, (n, frames, resolution, resolution, 3), dtype=np.uint8),
                     np.zeros((n, frames, resolution, resolution), np.uint8), np.zeros(n, np.int16))
        splits[split] = writer.finish()
    write_meta(root, {"dataset": dataset_cfg["name"], "source": "random pixels (bench/parity_original.py)",
                      "resolution": resolution, "video_len": frames, "splits": splits,
                      "params_fingerprint": fingerprint(dataset_cfg), "params": dataset_cfg})
    return root


def reference_config(dataset: str, network: str) -> dict:
    """slotbench's resolved reference config of ``(dataset, network)`` (a fresh copy)."""
    if network in TOKENIZERS:
        return copy.deepcopy(resolve_tokenizer(dataset, network, ROOT / "params"))
    return copy.deepcopy(resolve(dataset, network, ROOT / "params"))


def short_config(dataset: str, network: str, frames: int, batch: int, schedule: int) -> dict:
    """The reference config for the short run: a ``schedule``-step schedule (warm-up, cosine; the
    dVAE's temperature), batches of ``batch`` clips of ``frames`` frames (tokenizers: of single
    frames), CPU, one process, no workers, tracking off, no validation or checkpoint before the stop.
    Rates, groups, clipping, loss weights and the model are the reference's."""
    cfg = reference_config(dataset, network)
    cfg["dataset"]["video_len"] = frames
    cfg["train"].update(batch_size=batch, max_steps=schedule, n_sample_frames=1 if network in TOKENIZERS else frames,
                        frame_offset=1, grad_accum_steps=1, num_workers=0, log_every=1, val_every=10**9,
                        checkpoint_every=10**9, val_clips=1, amp="off", nonfinite="stop")
    cfg["runtime"].update(device="cpu", compile=False, channels_last=False)
    cfg["tracking"]["enabled"] = False
    return cfg


def planned_batches(root: Path, cfg: dict, steps: int, seed: int) -> list[Tensor]:
    """The first ``steps`` batches slotbench's loop draws from ``root`` (its ``ClipDataset``,
    ``StepBatchSampler`` and ``to_model_input``): each ``[B, T, 3, H, W]`` in [-1, 1]."""
    t = cfg["train"]
    clips = ClipDataset(root, "train", t["n_sample_frames"], t["frame_offset"])
    sampler = StepBatchSampler(len(clips), t["batch_size"], seed, 0, steps)
    return [to_model_input(torch.stack([clips[i]["video"] for i in batch])) for batch in sampler]


def trainable(model: torch.nn.Module) -> dict[str, Tensor]:
    """Copies of the trainable parameters of ``model`` by name."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def weight_diff(ref: dict[str, Tensor], other: dict[str, Tensor]) -> dict:
    """How far the tensors of ``other`` are from the same-named ones of ``ref`` (``a`` from ``ref``):
    ``max_abs`` = max |a - b| over all; ``max_rel`` = the largest over tensors of max |a - b| / max |a|
    (each tensor against its own scale), ``worst`` = that tensor's name; ``rms_rel`` = ||a - b|| / ||a||
    over all the tensors together (L2 norms)."""
    out = {"max_abs": 0.0, "max_rel": -1.0, "worst": None}
    sq_diff = sq_ref = 0.0
    for name, b in other.items():
        a = ref[name].double()
        delta = a - b.double()
        d = delta.abs().max().item()
        rel = d / max(a.abs().max().item(), 1e-30)
        out["max_abs"] = max(out["max_abs"], d)
        sq_diff, sq_ref = sq_diff + delta.square().sum().item(), sq_ref + a.square().sum().item()
        if rel > out["max_rel"]:
            out["max_rel"], out["worst"] = rel, name
    out["rms_rel"] = (sq_diff / max(sq_ref, 1e-300)) ** 0.5
    return out


@contextlib.contextmanager
def precision(dtype: torch.dtype):
    """The numeric setting of an original run. float64: default dtype float64 (tensors the original
    makes without a dtype), and ``torch.randn`` / ``randn_like`` draw float32 numbers, then cast:
    the CPU generator gives other normal numbers for float64 than for float32 (the diffusion noise),
    while its exponential (Gumbel) and Bernoulli (dropout) draws agree up to rounding. float32:
    nothing changes."""
    if dtype == torch.float32:
        yield
        return
    randn, randn_like = torch.randn, torch.randn_like

    def randn32(*size, dtype=None, **kwargs):
        return randn(*size, dtype=torch.float32, **kwargs).to(dtype or torch.get_default_dtype())

    def randn_like32(x, *, dtype=None, **kwargs):
        return randn_like(x, dtype=torch.float32, **kwargs).to(dtype or x.dtype)

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with mock.patch.object(torch, "randn", randn32), mock.patch.object(torch, "randn_like", randn_like32):
            yield
    finally:
        torch.set_default_dtype(previous)


def _to_weight_dtype(layer: torch.nn.Module, args: tuple) -> tuple:
    return tuple(a.to(layer.weight.dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


@contextlib.contextmanager
def original_draws():
    """slotbench's training draws its random numbers as the original does, so that the same seed
    gives the same noise: the dVAE's Gumbel noise from ``exponential_`` (slotbench draws ``-log(U)``,
    the same law, faster) and STEVE's attention dropout over the whole ``L x L`` weight matrix
    (slotbench draws it only for the causal blocks). Those faster draws are tested for their law in
    ``tests/test_dvae.py`` and ``tests/test_steve.py``; this checks the rest of the training."""
    def exponential_gumbel(like):
        tiny = torch.finfo(like.dtype).tiny
        return -(torch.empty_like(like, memory_format=torch.contiguous_format).exponential_() + tiny).log()

    def whole_matrix(q, k, v, dropout_p, block=None):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)

    with mock.patch.object(sb_dvae, "gumbel_noise", exponential_gumbel), \
            mock.patch.object(sb_steve, "causal_attention_in_blocks", whole_matrix):
        yield


def float64_ready(model: torch.nn.Module) -> None:
    """Let the original ``model`` (cast to float64) run in float64 where it pins float32 for its
    fp16 training: the floating inputs of every linear and convolution layer are cast to the
    layer's dtype (the U-Net's timestep embedding is made in float32 and keeps that rounding), and
    the U-Net's ``GroupNorm32`` (input cast to float32) normalises in the input's dtype instead."""
    for m in model.modules():
        if isinstance(m, torch.nn.Linear | torch.nn.Conv1d | torch.nn.Conv2d):
            m.register_forward_pre_hook(_to_weight_dtype)
        if type(m).__name__ == "GroupNorm32":
            m.forward = types.MethodType(torch.nn.GroupNorm.forward, m)


def run_original(code: OriginalCode, pair: Pair, schedule: int, batches: list[Tensor], seeds: list[int],
                 dtype: torch.dtype, conv_dropout: bool, on_step: Callable[[int, torch.nn.Module], dict]) -> list[dict]:
    """Steps of the original's own trainer (:func:`original_steps`) on a copy of ``pair.orig`` cast
    to ``dtype``, over a ``schedule``-step schedule (``max_epochs = 1`` of ``schedule`` batches).

    Args:
        batches: ``[B, T, 3, H, W]`` float32, one per step, handed over contiguous as the original's
            data loader makes them (cast to ``dtype``; tokenizers get the frames ``[B*T, 3, H, W]``).
        conv_dropout: False sets the dropout of :data:`CONV_DROPOUT`'s part to 0.
        on_step: ``(step, model) -> dict`` after each step, merged into its record.
    Returns:
        per step: ``loss``, ``lr`` (per group), ``tau`` and ``on_step``'s entries.
    """
    model = copy.deepcopy(pair.orig).to(dtype)
    if not conv_dropout:
        dropout_off(CONV_DROPOUT[pair.network][1](model))
    if dtype != torch.float32:
        float64_ready(model)
    # save_interval 1: nerv's mid-epoch checkpoint (of the data loader too) never falls in the steps
    params = code.params(pair.network, pair.dataset, {"max_epochs": 1, "save_interval": 1.0})
    inputs = [{"img": (b.flatten(0, 1) if pair.network in TOKENIZERS else b).to(dtype).contiguous()} for b in batches]
    records = []
    with precision(dtype):
        trainer = code.trainer(params, model, schedule, SCRATCH / "train" / "nerv_checkpoints")
        for step, record in enumerate(original_steps(trainer, inputs, seeds)):
            records.append({**record, **on_step(step, model)})
    return records


def lpips_from_original(orig_vqvae: torch.nn.Module) -> LPIPS:
    """slotbench's LPIPS with the weights of the original VQ-VAE's ``loss.perceptual_loss`` (the
    ``lpips`` package's network: ``net.slice{k}.{n}`` -> ``features.{n}``, ``lin{k}.model.1`` ->
    ``heads.{k}.1``), frozen; slotbench's own loader wants the ImageNet files instead."""
    mapped = {}
    for key, value in orig_vqvae.loss.perceptual_loss.state_dict().items():
        if m := re.fullmatch(r"net\.slice\d\.(\d+)\.(weight|bias)", key):
            mapped[f"features.{m[1]}.{m[2]}"] = value
        elif m := re.fullmatch(r"lin(\d)\.model\.1\.weight", key):
            mapped[f"heads.{m[1]}.1.weight"] = value
    lpips = LPIPS()
    lpips.load_state_dict(mapped)  # strict: every slotbench tensor is set
    return lpips.requires_grad_(False).eval()


def dropout_off(module: torch.nn.Module) -> None:
    """Every ``nn.Dropout`` inside ``module`` to p = 0, in place."""
    for m in module.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0


def training_module(pair: Pair, cfg: dict, conv_dropout: bool) -> tuple[torch.nn.Module, dict]:
    """What slotbench's loop trains, as ``build_training_model`` returns it, freshly loaded from the
    imported ``model.pt``: the slot model, or the tokenizer in the trainer's ``FrameTokenizer`` (the
    VQ-VAE with the original's LPIPS weights, :func:`lpips_from_original`). Without
    ``conv_dropout``, the dropout of :data:`CONV_DROPOUT`'s part is set to 0."""
    if pair.network not in TOKENIZERS:
        model, extra = restore_model(checkpoint.load(pair.out)), {"kind": "slot_model"}
    else:
        tokenizer = load_frozen_tokenizer(pair.out)[0]
        if pair.network == "vqvae":
            tokenizer.perceptual = lpips_from_original(pair.orig)
        model = FrameTokenizer(tokenizer, cfg["tokenizer"])
        extra = {"kind": "tokenizer", "perceptual_loss": "original's LPIPS"}
    if not conv_dropout:
        dropout_off(CONV_DROPOUT[pair.network][2](model))
    return model, extra


def run_slotbench(model: torch.nn.Module, extra: dict, cfg: dict, data_root: Path, seed: int,
                  batches: list[Tensor], on_step: Callable[[int, torch.nn.Module], dict]) -> list[dict]:
    """The first ``len(batches)`` optimizer steps of slotbench's own training loop
    (:func:`slotbench.training.loop.train`: its fused Adam over ``param_groups``, ``apply_lr``,
    ``set_step``, per-step seeding, clipping), with ``model`` as the module it trains.

    The loop runs unchanged but for three hooks: ``build_training_model`` returns ``model``; the
    model's ``loss`` records each step's loss and checks that the batch is the planned one; a
    global optimizer step hook records the rates (and the dVAE's temperature), calls
    ``on_step(step, model)`` and stops the loop after the last step.
    """
    run_dir = SCRATCH / "train" / "slotbench_run"
    shutil.rmtree(run_dir, ignore_errors=True)
    losses, records = [], []
    model_loss = model.loss

    def recorded_loss(video: Tensor, out: dict) -> dict:
        if not torch.equal(video, batches[len(losses)]):
            raise RuntimeError(f"slotbench's loop drew another batch than planned at step {len(losses)}")
        result = model_loss(video, out)
        losses.append(result["loss"].item())
        return result

    def after_step(optimizer, args, kwargs) -> None:  # noqa: ARG001
        step = len(records)
        records.append({"loss": losses[step], "lr": [g["lr"] for g in optimizer.param_groups],
                        "tau": model.tau if isinstance(model, FrameTokenizer) else None, **on_step(step, model)})
        if len(records) == len(batches):
            raise _Enough

    model.loss = recorded_loss
    handle = register_optimizer_step_post_hook(after_step)
    try:
        with mock.patch.object(loop, "build_training_model", lambda cfg, tokenizer_checkpoint: (model, extra)):
            loop.train(cfg, data_root, run_dir, seed, progress=False)
    except _Enough:
        pass
    finally:
        handle.remove()
        del model.loss
    if len(records) != len(batches):
        raise RuntimeError(f"slotbench's loop stopped after {len(records)} of {len(batches)} steps")
    return records


def _inner(model: torch.nn.Module) -> torch.nn.Module:
    """The network whose weights are compared: the tokenizer of a ``FrameTokenizer``, else ``model``."""
    return model.tokenizer if isinstance(model, FrameTokenizer) else model


def _group_names(network: str, optimizer: torch.optim.Optimizer, model: torch.nn.Module, original: bool) -> list:
    """The trainable parameters of each optimizer group, by slotbench name (original names mapped)."""
    names = {id(p): n.removeprefix("module.") for n, p in model.named_parameters()}
    groups = []
    for g in optimizer.param_groups:
        found = [names[id(p)] for p in g["params"] if p.requires_grad]
        groups.append(sorted(target(network, n).name for n in found) if original else sorted(found))
    return groups


def _original_rates(trainer, steps: int) -> Tensor:
    """The original's rate of every group at steps 0 .. steps-1 (its scheduler stepped per batch): ``[steps, G]``."""
    rates = []
    for _ in range(steps):
        rates.append([g["lr"] for g in trainer.optimizer.param_groups])
        trainer.scheduler.step()
    return torch.tensor(rates, dtype=torch.float64)


def _slotbench_rates(optimizer: torch.optim.Optimizer, steps: int, warmup_pct: float) -> Tensor:
    """slotbench's rate of every group at steps 0 .. steps-1 (``apply_lr``): ``[steps, G]``."""
    return torch.tensor([apply_lr(optimizer, k, steps, warmup_pct) for k in range(steps)], dtype=torch.float64)


def _trainable_size(group: dict) -> int:
    return sum(p.numel() for p in group["params"] if p.requires_grad)


def schedule_check(code: OriginalCode, pair: Pair, model: torch.nn.Module) -> dict:
    """Learning rates over the whole reference schedule, ``max_epochs`` x (MOVi-E clips // batch)
    steps (one process): the original's method (its optimizer groups and
    ``CosineAnnealingWarmupRestarts``) against slotbench's (``param_groups`` + ``apply_lr`` with
    ``loop.total_steps``); and what each group holds. ``model``: what slotbench trains."""
    cfg = reference_config(pair.dataset, pair.network)["train"]
    clips = MOVI_TRAIN_VIDEOS * CLIPS_PER_VIDEO["tokenizer" if pair.network in TOKENIZERS else "slot_model"]
    params = code.params(pair.network, pair.dataset)
    trainer = code.trainer(params, pair.orig, clips // cfg["batch_size"], SCRATCH / "train" / "nerv_checkpoints")
    optimizer = torch.optim.Adam(param_groups(model, cfg), lr=cfg["lr"])
    total_o, total_s = params.max_epochs * len(trainer.train_loader), loop.total_steps(cfg, clips)
    names_o = _group_names(pair.network, trainer.optimizer, trainer.model, original=True)
    names_s = _group_names(pair.network, optimizer, _inner(model), original=False)
    n = min(total_o, total_s)
    rates_o = _original_rates(trainer, total_o)[:n]
    rates_s = _slotbench_rates(optimizer, total_s, cfg["warmup_pct"])[:n]
    peak = rates_o.amax(0).clamp_min(1e-30)
    rel = ((rates_o - rates_s).abs().amax(0) / peak).tolist()
    groups = zip(trainer.optimizer.param_groups, optimizer.param_groups, names_o, names_s, strict=True)
    return {"steps_original": total_o, "steps_slotbench": total_s, "clips": clips,
            "clip_grad_original": trainer.clip_grad, "clip_grad_slotbench": cfg["clip_grad"],
            "groups": [{"peak_lr_original": peak[i].item(), "lr_max_rel_diff": rel[i],
                        "params_original": _trainable_size(go), "params_slotbench": _trainable_size(gs),
                        "same_parameters": no == ns} for i, (go, gs, no, ns) in enumerate(groups)]}


def train_run(code: OriginalCode, pair: Pair, args, conv_dropout: bool = True) -> dict:
    """``args.train_steps`` optimizer steps from ``pair``'s identical weights and batches: the
    original's trainer in float32, again in float64 (the noise floor), then slotbench's loop; per
    step the losses, rates and weight differences against the float32 original. ``conv_dropout``
    False: the dropout of :data:`CONV_DROPOUT`'s part at 0 in all three runs (the variant run)."""
    start = time.perf_counter()
    network, steps = pair.network, args.train_steps
    cfg = short_config(pair.dataset, network, args.frames, args.train_batch, args.train_schedule)
    root = write_train_data(SCRATCH / "train" / "data", cfg["dataset"], args.train_batch * steps, args.seed)
    batches = planned_batches(root, cfg, steps, args.seed)
    seeds = [micro_batch_seed(args.seed, k, 0) for k in range(steps)]  # what the loop seeds each step with
    initial = pair.orig.state_dict()
    snapshots = []

    def keep(step: int, model: torch.nn.Module) -> dict:
        snapshots.append(trainable(model))
        return {"moved": weight_diff(initial, snapshots[-1])}

    f32 = run_original(code, pair, args.train_schedule, batches, seeds, torch.float32, conv_dropout, keep)
    f64 = run_original(code, pair, args.train_schedule, batches, seeds, torch.float64, conv_dropout,
                       lambda k, model: {"weights": weight_diff(snapshots[k], trainable(model))})
    model, extra = training_module(pair, cfg, conv_dropout)
    schedule = schedule_check(code, pair, model) if conv_dropout else None  # the same for the variant

    def against_original(k: int, model: torch.nn.Module) -> dict:
        inner = _inner(model)
        ref, _ = convert_state(network, {**initial, **snapshots[k]}, inner)
        return {"weights": weight_diff(ref, trainable(inner))}

    with original_draws():
        sb = run_slotbench(model, extra, cfg, root, args.seed, batches, against_original)
    rows = [_step_row(k, o, d, s) for k, (o, d, s) in enumerate(zip(f32, f64, sb, strict=True))]
    return {"dataset": pair.dataset, "network": network, "variant": None if conv_dropout else CONV_DROPOUT[network][0],
            "steps": rows, "schedule": schedule, "batch_shape": list(batches[0].shape),
            "settings": {"steps": steps, "schedule_steps": args.train_schedule, "batch": args.train_batch,
                         "frames": 1 if network in TOKENIZERS else args.frames, "resolution": batches[0].shape[-1],
                         "warmup_pct": cfg["train"]["warmup_pct"], "seed": args.seed},
            "time_s": round(time.perf_counter() - start, 1)}


def _step_row(step: int, o: dict, d: dict, s: dict) -> dict:
    """One step's record: original float32 ``o``, original float64 ``d``, slotbench ``s``."""
    return {"step": step, "lr_original": o["lr"], "lr_slotbench": s["lr"], "tau_original": o["tau"],
            "tau_slotbench": s["tau"], "loss_original": o["loss"], "loss_slotbench": s["loss"],
            "loss_original_f64": d["loss"], "loss_diff": abs(o["loss"] - s["loss"]),
            "loss_diff_f64": abs(o["loss"] - d["loss"]), "weights": s["weights"], "weights_f64": d["weights"],
            "moved": o["moved"]}


# ----------------------------------------------------------------------------- small configuration
_TRUNK_ORIG = {"resolution": (16, 16),
               "slot_dict": {"num_slots": 3, "slot_size": 16, "slot_mlp_size": 32, "num_iterations": 2},
               "enc_dict": {"enc_out_channels": 16},
               "pred_dict": {"pred_num_layers": 1, "pred_num_heads": 2, "pred_ffn_dim": 32}}
_TRUNK_SB = {"num_slots": 3, "slot_size": 16, "slot_mlp_size": 32, "num_iterations": 2, "slot_eps": 1e-6,
             "encoder": {"type": "resnet18", "channels": [64, 128, 256], "out_features": 16},
             "predictor": {"num_layers": 1, "num_heads": 2, "ffn_dim": 32, "dropout": 0.1}}
_CNN_ORIG = {"enc_dict": {"enc_channels": (3, 8, 8), "enc_ks": 3, "enc_out_channels": 16, "enc_norm": ""}}
_CNN_SB = {"type": "cnn", "channels": [8, 8], "kernel_size": 3, "strides": [1, 1], "out_features": 16}
_VQ_ORIG = {"resolution": 16, "in_channels": 3, "z_channels": 3, "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1,
            "attn_resolutions": [], "out_ch": 3, "dropout": 0.0}
_VQ_SB = {"name": "vqvae", "channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1, "z_channels": 3,
          "embed_dim": 3, "n_embed": 16, "dropout": 0.0, "beta": 0.25, "recon_loss_w": 1.0, "quant_loss_w": 1.0,
          "percept_loss_w": 1.0}
_DVAE_SB = {"name": "dvae", "vocab_size": 16, "hidden_channels": 64,
            "gumbel": {"init_tau": 1.0, "final_tau": 0.1, "decay_pct": 0.15}}

#: name -> (network, dataset of the original config, original overrides, slotbench model or
#: tokenizer config, slotbench tokenizer config of a two-step model)
SMALL = {
    "savi": ("savi", "movi_e", {**_TRUNK_ORIG, "dec_dict": {"dec_channels": (16, 8, 8), "dec_resolution": (4, 4),
                                                             "dec_ks": 3}},
             {"name": "savi", **_TRUNK_SB, "decoder": {"channels": [16, 8, 8], "broadcast_resolution": 4,
                                                       "kernel_size": 3}}, None),
    "savi_cnn": ("savi", "movi_solid", {**_TRUNK_ORIG, **_CNN_ORIG,
                                        "dec_dict": {"dec_channels": (16, 8, 8), "dec_resolution": (4, 4),
                                                     "dec_ks": 3}},
                 {"name": "savi", **_TRUNK_SB, "encoder": _CNN_SB,
                  "decoder": {"channels": [16, 8, 8], "broadcast_resolution": 4, "kernel_size": 3}}, None),
    "dvae": ("dvae", "movi_e", {"resolution": (16, 16), "vocab_size": 16}, _DVAE_SB, None),
    "steve": ("steve", "movi_e", {**_TRUNK_ORIG, "dvae_dict": {"vocab_size": 16},
                                  "dec_dict": {"dec_num_layers": 1, "dec_num_heads": 2, "dec_d_model": 16}},
              {"name": "steve", "tokenizer": "dvae", **_TRUNK_SB,
               "decoder": {"num_layers": 1, "num_heads": 2, "d_model": 16, "dropout": 0.1}}, _DVAE_SB),
    "vqvae": ("vqvae", "movi_e", {"resolution": (16, 16), "enc_dec_dict": _VQ_ORIG,
                                  "vq_dict": {"n_embed": 16}}, _VQ_SB, None),
    "slotdiffusion": (
        "slotdiffusion", "movi_e",
        {**_TRUNK_ORIG,
         "dec_dict": {"resolution": (8, 8),
                      "vae_dict": {"enc_dec_dict": _VQ_ORIG, "vq_dict": {"n_embed": 16}},
                      "unet_dict": {"model_channels": 32, "channel_mult": (1, 2), "num_res_blocks": 1,
                                    "attention_resolutions": (2,), "num_head_channels": 16, "context_dim": 16},
                      # T = 1000 as in the reference: the original's DPM-Solver wrapper feeds the U-Net the
                      # time (t - 1/T) * 1000 whatever T is (slotbench: (t - 1/T) * T); equal only at 1000
                      "diffusion_dict": {"timesteps": 1000}}},
        {"name": "slotdiffusion", "tokenizer": "vqvae", **_TRUNK_SB,
         "decoder": {"unet": {"model_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1,
                              "attention_resolutions": [2], "num_head_channels": 16, "transformer_depth": 1,
                              "dropout": 0.1},
                     "diffusion": {"z_scale_factor": 1.0, "timesteps": 1000, "beta_schedule": "linear",
                                   "linear_start": 0.0015, "linear_end": 0.0195}}}, _VQ_SB),
}


def small_run(code: OriginalCode, name: str, seed: int) -> tuple[dict, dict]:
    """The key list of one small original network, and its parity at that size."""
    from slotbench.interop.original import convert_state
    from slotbench.models import build_model, build_tokenizer

    network, dataset, overrides, sb_cfg, tok_cfg = SMALL[name]
    if network == "slotdiffusion":
        overrides = {**overrides, "dec_dict": {**overrides["dec_dict"],
                                               "vae_dict": {**overrides["dec_dict"]["vae_dict"],
                                                            "vqvae_ckp_path": ""}}}
    torch.manual_seed(seed)
    orig = code.build(code.params(network, dataset, overrides))
    fill_zero_init(orig, seed)
    if network in ("dvae", "vqvae"):
        sb = build_tokenizer(sb_cfg)
    else:
        sb = build_model(sb_cfg, 16, tokenizer=build_tokenizer(tok_cfg) if tok_cfg else None)
    state, _ = convert_state(network, orig.state_dict(), sb)
    sb.load_state_dict(state)
    video = torch.rand(1, 2, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    keys = {"network": network, "original_config": f"{dataset} reference config with overrides",
            "slotbench_config": sb_cfg, "tokenizer_config": tok_cfg, "resolution": 16,
            "original_state": [[k, list(v.shape), str(v.dtype).removeprefix("torch.")]
                               for k, v in orig.state_dict().items()]}
    return keys, {"name": name, "outputs": compare(network, orig, sb, video, seed),
                  "params": param_counts(network, orig, sb)}


# ----------------------------------------------------------------------------- report
def _git_head(path: Path, variable: str) -> str | None:
    """The checkout's commit; for a copy without ``.git`` (``git archive``; inside another repository,
    such as ``bench/scratch/original/*`` in this one, git would name that repository's), ``$variable``
    if set."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() == Path(path).resolve():
            return git("rev-parse", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        pass
    return os.environ.get(variable)


def markdown(record: dict) -> str:
    lines = ["# Parity with the original implementation", "",
             (f"{record['date']}, {record['machine']['cpu']}, torch {record['torch']}, float32 CPU, eval mode. "
              f"max_rel = max|a-b| / max|a| (a: original). Target {TARGET_REL:g}."), "",
             "| network | dataset | output | shape | max abs | max rel | within target |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for run in record["reference"]:
        for out, d in run["outputs"].items():
            lines.append(f"| {run['network']} | {run['dataset']} | {out} | {d['shape']} | {d['max_abs']:.2e} | "
                         f"{d['max_rel']:.2e} | {'yes' if d['max_rel'] <= TARGET_REL else '**no**'} |")
    lines += ["", ("| network | dataset | original params (all) | original, mapped to parameters | slotbench params "
                   "| equal | checkpoint MB | import s |"), "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in record["reference"]:
        p = run["params"]
        lines.append(f"| {run['network']} | {run['dataset']} | {p['original_total']:,} | {p['original_mapped']:,} | "
                     f"{p['slotbench']:,} | {'yes' if p['original_mapped'] == p['slotbench'] else '**no**'} | "
                     f"{run['checkpoint_mb']} | {run['import_time_s']} |")
    if record["small"]:
        worst = max((d["max_rel"], r["name"], o) for r in record["small"] for o, d in r["outputs"].items())
        lines += ["", f"Small configurations (16x16, tests/data): worst max_rel {worst[0]:.2e} "
                      f"({worst[1]} {worst[2]})."]
    if record.get("train"):
        lines += train_markdown(record["train"])
    return "\n".join(lines) + "\n"


def _label(run: dict) -> str:
    """A training run's network, with its variant."""
    return run["network"] + (f" ({run['variant']})" if run.get("variant") else "")


def _ratio(sb: float, floor: float) -> str:
    """``sb / floor``, bold above 1 (slotbench further from the float32 original than float64 is)."""
    if sb == 0:
        return "0"
    text = f"{sb / floor:.2f}" if floor > 0 else "inf"
    return text if floor > 0 and sb <= floor else f"**{text}**"


def _rates(rates: list[float]) -> str:
    return " / ".join(f"{r:.4g}" for r in rates)


def train_markdown(section: dict) -> list[str]:
    """The training-step section of the report."""
    runs = section["runs"]
    st = next((r["settings"] for r in runs if r["network"] not in TOKENIZERS), runs[0]["settings"])
    lines = ["", "## Training steps", "",
             (f"{section['date']}, {section['machine']['cpu']}, torch {section['torch']}, {section['threads']} "
              f"thread(s), float32 on CPU (the original trained in fp16 on GPUs; not compared here). From "
              f"identical weights (the import above) and identical batches, {st['steps']} optimizer steps "
              f"(a) with the original's own trainer: nerv's method of the network from its `method.py` "
              f"(`calc_train_loss` weighted by the params' `*_loss_w`, its optimizer groups, `clip_grad`, "
              f"`CosineAnnealingWarmupRestarts` stepped per batch, the dVAE's temperature hook), set up on the "
              f"CPU in place of its CUDA-only `_init_env`; (b) with slotbench's training loop "
              f"(`slotbench.training.loop.train`, run unchanged and stopped after the last step)."), "",
             (f"Reference configs with a small batch: {st['batch']} clips of {st['frames']} frames at "
              f"{st['resolution']}x{st['resolution']} (tokenizers: {st['batch']} single frames), random pixels; "
              f"the first {st['steps']} steps of a {st['schedule_steps']}-step schedule, so that the warm-up and "
              f"the cosine both occur. Dropout is on and seeded identically: both seed every step with "
              f"slotbench's `micro_batch_seed(seed, step, 0)` and draw the dropout masks, Gumbel noise and "
              f"diffusion timesteps / noise in the same order (slotbench's own faster draws of the same laws, "
              f"the dVAE's Gumbel noise from uniforms and STEVE's attention dropout for the causal blocks only, "
              f"give way to the original's here: `original_draws`). The original gets each batch contiguous, as its "
              f"data loader makes it; slotbench's loop gets its own `to_model_input` view, whose memory is in "
              f"channels-last order, so its convolutions run other CPU kernels (round-off), and its "
              f"convolution activations stay channels-last where the original's are contiguous: a dropout "
              f"on them (the VQ-VAE's LPIPS heads, SlotDiffusion's U-Net ResBlocks) draws its mask over "
              f"another element order than the original's from the same seed, so these two also run with "
              f"that dropout off in all three runs (variant rows). Noise floor (f64): the original run again in "
              f"float64 (weights and batches cast, normal draws made in float32), against the float32 original. "
              f"Weights after the step, trainable tensors, a = float32 original: max rel = max over tensors of "
              f"max|a-b| / max|a| (each tensor against its own scale); rms rel = ||a-b|| / ||a|| over all of them; "
              f"ratio: slotbench's difference over the floor's (bold above 1, where float64 is closer to the "
              f"float32 original than slotbench is; two independent float32 round-offs give about 1.4 on "
              f"average). moved: the same of the float32 original against its initial weights. lr: the rate of "
              f"each parameter group used by the step (original / slotbench)."), "",
             ("| network | dataset | step | lr original | lr slotbench | loss original | loss slotbench | "
              "\\|Δ loss\\| | \\|Δ loss\\| f64 | weights max rel: slotbench / f64 | weights rms rel: "
              "slotbench / f64 | ratio slotbench / f64 (max, rms) | moved (max / rms) |"),
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        for r in run["steps"]:
            w, f, m = r["weights"], r["weights_f64"], r["moved"]
            ratio = [_ratio(w[k], f[k]) for k in ("max_rel", "rms_rel")]
            lines.append(f"| {_label(run)} | {run['dataset']} | {r['step']} | {_rates(r['lr_original'])} | "
                         f"{_rates(r['lr_slotbench'])} | {r['loss_original']:.8g} | {r['loss_slotbench']:.8g} | "
                         f"{r['loss_diff']:.1e} | {r['loss_diff_f64']:.1e} | {w['max_rel']:.1e} / {f['max_rel']:.1e} | "
                         f"{w['rms_rel']:.1e} / {f['rms_rel']:.1e} | {', '.join(ratio)} | "
                         f"{m['max_rel']:.1e} / {m['rms_rel']:.1e} |")
    taus = [(run["network"], r) for run in runs for r in run["steps"] if r["tau_original"] is not None]
    if taus:
        worst = max(abs(r["tau_original"] - r["tau_slotbench"]) for _, r in taus)
        lines += ["", f"dVAE Gumbel temperature per step (original = slotbench, largest difference {worst:.1e}): "
                  + ", ".join(f"{r['tau_original']:.4f}" for _, r in taus) + "."]
    lines += ["", ("Learning rates over the whole reference schedule (MOVi-E, 9,749 train videos: max_epochs x "
                   "clips // batch steps; one process), per optimizer group:"), "",
              ("| network | dataset | steps original / slotbench | group | trainable params original / slotbench | "
               "same parameters | peak lr | max \\|Δ lr\\| / peak | clip_grad original / slotbench |"),
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        sch = run["schedule"]
        for i, g in enumerate(sch["groups"] if sch else []):
            lines.append(f"| {_label(run)} | {run['dataset']} | {sch['steps_original']:,} / "
                         f"{sch['steps_slotbench']:,} | {i} | {g['params_original']:,} / {g['params_slotbench']:,} | "
                         f"{'yes' if g['same_parameters'] else '**no**'} | {g['peak_lr_original']:.4g} | "
                         f"{g['lr_max_rel_diff']:.1e} | {sch['clip_grad_original']:g} / "
                         f"{sch['clip_grad_slotbench']:g} |")
    return lines


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--frames", type=int, default=2,
                        help="frames of the test clip and of the training clips (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small-keys", type=Path, help="also write the small-config key lists here (tests/data)")
    parser.add_argument("--no-reference", action="store_true",
                        help="only the small configurations: no reference-config comparison, no training steps")
    parser.add_argument("--train-steps", type=int, default=5,
                        help="optimizer steps of the training parity, 0 = none (default %(default)s)")
    parser.add_argument("--train-batch", type=int, default=2, help="clips per training batch (default %(default)s)")
    parser.add_argument("--train-schedule", type=int, default=40,
                        help="length of the schedule the training steps start (default %(default)s)")
    parser.add_argument("--only-train", action="store_true",
                        help="only the training parity; the other results in the json are kept")
    return parser.parse_args()


def _previous() -> dict:
    path = RESULTS / "parity_original.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _merge_train(previous: dict | None, runs: list[dict], code: OriginalCode) -> dict | None:
    """The ``train`` section: ``runs`` replace the earlier runs of the same (dataset, network)."""
    if not runs:
        return previous
    done = {(r["dataset"], r["network"]) for r in runs}  # a network's variant runs go with it
    kept = [r for r in (previous or {}).get("runs", []) if (r["dataset"], r["network"]) not in done]
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpu": cpu_model(), "python": platform.python_version()}, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "original": _source(code), "slotbench": _slotbench_source(),
            "runs": sorted(kept + runs, key=_run_order)}


def _run_order(run: dict) -> tuple:
    """Training runs by dataset, then as :data:`ORDER`, a network's variant after it."""
    return run["dataset"], ORDER.index(run["network"]), run.get("variant") or ""


def _source(code: OriginalCode) -> dict:
    return {"slotdiffusion_commit": _git_head(code.repo, "SLOTDIFFUSION_COMMIT"),
            "nerv_commit": _git_head(code.nerv, "NERV_COMMIT"), "placeholder_modules": code.placeholders}


def _slotbench_source() -> dict:
    """The slotbench commit the training runs used (``$SLOTBENCH_COMMIT`` for a copy without ``.git``)
    and whether ``src/`` or ``params/`` had uncommitted changes (None: unknown)."""
    try:
        status = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "params"],
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        status = None
    return {"commit": _git_head(ROOT, "SLOTBENCH_COMMIT"), "uncommitted_changes": None if status is None
            else bool(status.strip())}


def _print_train(run: dict) -> None:
    for row in run["steps"]:
        w, f = row["weights"], row["weights_f64"]
        print(f"  step {row['step']}: loss {row['loss_original']:.7g} / {row['loss_slotbench']:.7g} "
              f"(diff {row['loss_diff']:.1e}, f64 {row['loss_diff_f64']:.1e}), weights max_rel {w['max_rel']:.1e} "
              f"rms_rel {w['rms_rel']:.1e} (f64 floor {f['max_rel']:.1e}, {f['rms_rel']:.1e}), "
              f"lr {_rates(row['lr_original'])} / {_rates(row['lr_slotbench'])}", flush=True)


def _train_and_print(code: OriginalCode, pair: Pair, args, conv_dropout: bool) -> dict:
    """:func:`train_run` (gradients on), its steps printed."""
    with torch.enable_grad():
        run = train_run(code, pair, args, conv_dropout)
    print(pair.dataset, _label(run), f"training steps ({run['time_s']} s)", flush=True)
    _print_train(run)
    return run


def main() -> None:
    args = _arguments()
    torch.set_grad_enabled(False)
    use_local_checkouts()  # bench/scratch/original/* where the variables are unset
    code = OriginalCode()
    previous = _previous()
    record = previous if args.only_train and previous else {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "python": platform.python_version()}, "torch": torch.__version__,
        "original": _source(code), "definition": "max_abs = max|a-b|, max_rel = max|a-b| / max|a|, a = original output",
        "small": [], "reference": []}
    if args.small_keys and not args.only_train:
        keys = {}
        for name in SMALL:
            keys[name], parity = small_run(code, name, args.seed)
            record["small"].append(parity)
            print(name, {o: f"{d['max_rel']:.1e}" for o, d in parity["outputs"].items()}, flush=True)
        args.small_keys.parent.mkdir(parents=True, exist_ok=True)
        args.small_keys.write_text(json.dumps({"source": record["original"], "networks": keys}, indent=1) + "\n")
    reference = not (args.no_reference or args.only_train)
    train = args.train_steps > 0 and (args.only_train or not args.no_reference)
    train_runs = []
    if reference or train:
        needed = set(args.networks) | {t for m, t in EMBEDDED_TOKENIZER.items() if m in args.networks}
        video = torch.rand(1, args.frames, 3, 128, 128, generator=torch.Generator().manual_seed(args.seed)) * 2 - 1
        for dataset in args.datasets:
            for network in ORDER:  # tokenizers first: STEVE / SlotDiffusion embed the saved ones
                if network not in needed:
                    continue
                pair = build_pair(code, dataset, network, args.seed)
                if reference:
                    run = reference_run(pair, args.seed, video)
                    record["reference"].append(run)
                    print(dataset, network, {o: f"{d['max_rel']:.1e}" for o, d in run["outputs"].items()},
                          run["params"], f"import {run['import_time_s']} s", flush=True)
                for conv_dropout in (True, False) if network in CONV_DROPOUT else (True,):
                    if not train or network not in args.networks:
                        break
                    train_runs.append(_train_and_print(code, pair, args, conv_dropout))
                    if args.only_train:  # each run is kept even if a later one fails
                        _write({**record, "train": _merge_train(previous.get("train"), train_runs, code)})
                del pair
    record["train"] = _merge_train(previous.get("train"), train_runs, code)
    _write(record)
    print(markdown(record))


def _write(record: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "parity_original.json").write_text(json.dumps(record, indent=1) + "\n")
    (RESULTS / "parity_original.md").write_text(markdown(record))


if __name__ == "__main__":
    main()
