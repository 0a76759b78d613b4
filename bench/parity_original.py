"""Side-by-side parity of slotbench with the original implementation (a benchmark, not a test).

For each network (SAVi, dVAE, STEVE, VQ-VAE, SlotDiffusion) and each MOVi dataset, this builds
the original network from the original reference config (code read at run time from the
checkouts named by ``SLOTDIFFUSION_REPO`` and ``NERV_REPO``, see ``bench/original_code.py``),
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

``--small-keys PATH`` also writes the parameter names and shapes of every original network at
a small configuration (16x16 frames) with the matching slotbench configuration: the data of
``tests/test_import_original.py``.

Usage (``SLOTDIFFUSION_COMMIT`` / ``NERV_COMMIT`` name the commits of checkouts without ``.git``)::

    SLOTDIFFUSION_REPO=/path/to/SlotDiffusion NERV_REPO=/path/to/nerv \\
        python bench/parity_original.py [--datasets movi_e ...] [--networks savi ...] \\
        [--small-keys tests/data/original_small_keys.json]

Writes ``bench/results/parity_original.json`` and ``.md``; checkpoints go to
``bench/scratch/parity_original/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from machine import cpu_model
from original_code import OriginalCode
from torch import Tensor

from slotbench.interop.original import import_original
from slotbench.interop.original_keys import EMBEDDED_TOKENIZER, target
from slotbench.models.diffusion import dpm_solver_pp_sample, make_noise
from slotbench.training import checkpoint
from slotbench.training.tasks import load_frozen_tokenizer, restore_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SCRATCH = ROOT / "bench" / "scratch" / "parity_original"
DATASETS = ("movi_d", "movi_e", "movi_solid", "movi_tex")
NETWORKS = ("savi", "dvae", "steve", "vqvae", "slotdiffusion")
ORDER = ("dvae", "vqvae", "savi", "steve", "slotdiffusion")
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
def reference_run(code: OriginalCode, dataset: str, network: str, seed: int, video: Tensor) -> dict:
    """Build, save, import and compare one original network at its reference config."""
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
    sb = load_frozen_tokenizer(out)[0] if network in ("dvae", "vqvae") else restore_model(state)
    start = time.perf_counter()
    outputs = compare(network, orig, sb, video, seed)
    return {"dataset": dataset, "network": network, "outputs": outputs, "params": param_counts(network, orig, sb),
            "import_time_s": origin["import_time_s"], "checkpoint_mb": round(src.stat().st_size / 2**20, 1),
            "tensors": origin["tensors"], "compare_time_s": round(time.perf_counter() - start, 2)}


# ----------------------------------------------------------------------------- small configuration
_TRUNK_ORIG = {"resolution": (16, 16),
               "slot_dict": {"num_slots": 3, "slot_size": 16, "slot_mlp_size": 32, "num_iterations": 2},
               "enc_dict": {"enc_out_channels": 16},
               "pred_dict": {"pred_num_layers": 1, "pred_num_heads": 2, "pred_ffn_dim": 32}}
_TRUNK_SB = {"num_slots": 3, "slot_size": 16, "slot_mlp_size": 32, "num_iterations": 2, "slot_eps": 1e-6,
             "slot_init": "learned", "slot_bilevel": False, "encoder_fourier_octaves": 0,
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
                                                       "kernel_size": 3, "fourier_octaves": 0}}, None),
    "savi_cnn": ("savi", "movi_solid", {**_TRUNK_ORIG, **_CNN_ORIG,
                                        "dec_dict": {"dec_channels": (16, 8, 8), "dec_resolution": (4, 4),
                                                     "dec_ks": 3}},
                 {"name": "savi", **_TRUNK_SB, "encoder": _CNN_SB,
                  "decoder": {"channels": [16, 8, 8], "broadcast_resolution": 4, "kernel_size": 3,
                              "fourier_octaves": 0}}, None),
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
                     "diffusion": {"timesteps": 1000, "beta_schedule": "linear", "linear_start": 0.0015,
                                   "linear_end": 0.0195}}}, _VQ_SB),
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
    """The checkout's commit; for a copy without ``.git`` (``git archive``), ``$variable`` if set."""
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
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
        lines += ["", f"Small configurations (16x16, tests/data): worst max_rel {worst[0]:.2e} ({worst[1]} {worst[2]})."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    parser.add_argument("--frames", type=int, default=2, help="frames of the test clip (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small-keys", type=Path, help="also write the small-config key lists here (tests/data)")
    parser.add_argument("--no-reference", action="store_true", help="only the small configurations")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    code = OriginalCode()
    record = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": {"cpu": cpu_model(), "python": platform.python_version()}, "torch": torch.__version__,
              "original": {"slotdiffusion_commit": _git_head(code.repo, "SLOTDIFFUSION_COMMIT"),
                           "nerv_commit": _git_head(code.nerv, "NERV_COMMIT"),
                           "placeholder_modules": code.placeholders},
              "definition": "max_abs = max|a-b|, max_rel = max|a-b| / max|a|, a = original output",
              "small": [], "reference": []}
    if args.small_keys:
        keys = {}
        for name in SMALL:
            keys[name], parity = small_run(code, name, args.seed)
            record["small"].append(parity)
            print(name, {o: f"{d['max_rel']:.1e}" for o, d in parity["outputs"].items()}, flush=True)
        args.small_keys.parent.mkdir(parents=True, exist_ok=True)
        args.small_keys.write_text(json.dumps({"source": record["original"], "networks": keys}, indent=1) + "\n")
    if not args.no_reference:
        needed = set(args.networks) | {t for m, t in EMBEDDED_TOKENIZER.items() if m in args.networks}
        video = torch.rand(1, args.frames, 3, 128, 128, generator=torch.Generator().manual_seed(args.seed)) * 2 - 1
        for dataset in args.datasets:
            for network in ORDER:  # tokenizers first: STEVE / SlotDiffusion embed the saved ones
                if network not in needed:
                    continue
                run = reference_run(code, dataset, network, args.seed, video)
                record["reference"].append(run)
                print(dataset, network, {o: f"{d['max_rel']:.1e}" for o, d in run["outputs"].items()},
                      run["params"], f"import {run['import_time_s']} s", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "parity_original.json").write_text(json.dumps(record, indent=1) + "\n")
    (RESULTS / "parity_original.md").write_text(markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()
