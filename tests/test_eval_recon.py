"""The reconstruction and compositional-generation stages (slotbench.evaluation.reconstruction)
on tiny checkpoints made here (SAVi end to end; STEVE and SlotDiffusion decoding paths)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from slotbench import checkpoint
from slotbench.checkpoint import restore_model
from slotbench.data.dataset import to_model_input
from slotbench.data.storage import SplitWriter, write_meta
from slotbench.evaluation import reconstruction as er
from slotbench.metrics import lpips as lp
from slotbench.metrics.fvd import read_video_folder, to_uint8_frames
from slotbench.metrics.reconstruction import recon_metrics
from slotbench.models import STEVE, SlotDiffusion, build_model, build_tokenizer

RES, T, N_VIDEOS = 32, 4, 5
SAVI = dict(
    name="savi", num_slots=3, slot_size=16, slot_mlp_size=32, num_iterations=2, slot_eps=1e-6,
    encoder=dict(type="cnn", channels=[16, 16], kernel_size=5, strides=[2, 1], out_features=16),
    predictor=dict(num_layers=2, num_heads=4, ffn_dim=32, dropout=0.1),
    decoder=dict(channels=[16, 16, 16], broadcast_resolution=8, kernel_size=5),
)
STEVE_CFG = dict(
    name="steve", num_slots=3, slot_size=16, slot_mlp_size=32, num_iterations=2, slot_eps=1e-6,
    encoder=dict(type="cnn", channels=[16, 16], kernel_size=5, strides=[2, 1], out_features=16),
    predictor=dict(num_layers=2, num_heads=4, ffn_dim=32, dropout=0.1),
    decoder=dict(num_layers=2, num_heads=2, d_model=16, dropout=0.1),
)
DVAE = dict(name="dvae", vocab_size=32, hidden_channels=16)
EVAL = dict(split="test", num_videos=None, chunk_len=3, recon_batch_size=2, comp_batch_size=2,
            sampler="dpm++", sampler_steps=None, seed=0, save_videos=True, lpips=True, vis_videos=0)
RUNTIME = dict(device="cpu", threads=1)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_lpips_weights(monkeypatch, tmp_path):
    """LPIPS weights nowhere and no downloads."""
    monkeypatch.setattr(lp, "_lpips_package_dir", lambda: None)
    monkeypatch.setenv("SLOTBENCH_WEIGHTS", str(tmp_path / "no_weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no_torch_home"))
    monkeypatch.setenv("SLOTBENCH_OFFLINE", "1")


def _data(root, n=N_VIDEOS, t=T, res=RES, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, 1, res, res, 3))
    video = np.clip(base + rng.integers(-20, 21, (n, t, res, res, 3)), 0, 255).astype(np.uint8)
    writer = SplitWriter(root, "test", n, t, res)
    writer.write(0, video, rng.integers(0, 3, (n, t, res, res), dtype=np.uint8), np.full(n, 2, np.int16))
    write_meta(root, {"dataset": "tiny", "source": "test", "resolution": res, "video_len": t,
                      "splits": {"test": writer.finish()}})
    return video


def _checkpoint(path, model_cfg, tokenizer_cfg=None, res=RES, t=T, seed=0):
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(tokenizer_cfg) if tokenizer_cfg else None
    model = build_model(model_cfg, res, tokenizer=tokenizer)
    state = {"kind": "slot_model", "config": {"model": model_cfg, "dataset": {"name": "tiny", "resolution": res,
                                                                             "video_len": t}},
             "model": model.state_dict(), "tokenizer_config": tokenizer_cfg, "seed": 0, "step": 7}
    checkpoint.save(path, state)
    return state


@pytest.fixture
def savi_run(tmp_path):
    video = _data(tmp_path / "data")
    state = _checkpoint(tmp_path / "model.pt", SAVI)
    return tmp_path, video, state


def _direct(state, video, batch_size, chunk_len, compose=False, lpips=None):
    """Per-batch decoded frames and per-frame metrics, computed here without the stage."""
    model = restore_model(state).eval()
    preds, scores = [], {}
    with torch.no_grad():
        for s in range(0, len(video), batch_size):
            x = to_model_input(torch.from_numpy(video[s:s + batch_size]))
            slots, _ = model.trunk.encode_chunked(x, chunk_len)
            if compose:
                slots = er.compose_slots(slots)
            pred = model.decode(slots)["recon"]
            preds.append(pred)
            for k, v in recon_metrics(pred.flatten(0, 1), x.flatten(0, 1), lpips).items():
                scores.setdefault(k, []).extend(v.tolist())
    return torch.cat(preds), {k: float(np.mean(v)) for k, v in scores.items()}


# ---------------------------------------------------------------------------- composition
def test_compose_slots_matches_the_reference_roll():
    b, t, n, d = 3, 2, 5, 4
    slots = torch.arange(b * t * n * d, dtype=torch.float32).view(b, t, n, d)
    out = er.compose_slots(slots)
    for bi in range(b):
        for i in range(n):
            source = (bi + i) % b if i < b else bi
            assert torch.equal(out[bi, :, i], slots[source, :, i]), (bi, i)
    # the original's construction, literally: column i <- cat(slots[i:, :, i], slots[:i, :, i])
    ref = slots.clone()
    for i in range(n):
        ref[:, :, i] = torch.cat([slots[i:, :, i], slots[:i, :, i]]) if i < b else slots[:, :, i]
    assert torch.equal(out, ref)
    assert torch.equal(er.compose_slots(slots[:1]), slots[:1])  # batch of one: nothing composed
    assert torch.equal(slots, torch.arange(b * t * n * d, dtype=torch.float32).view(b, t, n, d))  # input kept
    with pytest.raises(ValueError):
        er.compose_slots(slots[0])


# ---------------------------------------------------------------------------- recon stage (SAVi)
def test_recon_stage_writes_metrics_and_frames(savi_run, no_lpips_weights):
    root, video, state = savi_run
    (root / "vids" / "recon_vids" / "99").mkdir(parents=True)  # stale outputs of another run
    (root / "vids" / "gt_vids" / "99").mkdir(parents=True)
    result = er.run_eval_recon(EVAL, RUNTIME, root / "model.pt", root / "data", root / "recon.json",
                               root / "vids", progress=False)
    on_disk = json.loads((root / "recon.json").read_text())
    assert on_disk == result
    for key in ("MSE", "PSNR", "SSIM", "LPIPS", "lpips_missing_reason", "num_videos", "frames", "seed",
                "batch_size", "decoding", "num_frames_total", "checkpoint_sha256", "video_root"):
        assert key in result, key
    assert result["num_videos"] == N_VIDEOS and result["frames"] == T and result["num_frames_total"] == N_VIDEOS * T
    # LPIPS weights are missing: null with the reason, never a number
    assert result["LPIPS"] is None
    assert "vgg16-397923af.pth" in result["lpips_missing_reason"]
    # metrics equal a direct computation with the reference definitions
    pred, expected = _direct(state, video, EVAL["recon_batch_size"], EVAL["chunk_len"])
    for key, name in (("mse", "MSE"), ("psnr", "PSNR"), ("ssim", "SSIM")):
        assert result[name] == pytest.approx(expected[key], rel=1e-5, abs=1e-6)
    # frame folders: {idx}/{t}.png, uint8 RGB, GT exactly the stored pixels
    for sub in ("gt_vids", "recon_vids"):
        folder = root / "vids" / sub
        assert sorted(p.name for p in folder.iterdir()) == [str(i) for i in range(N_VIDEOS)]
        assert all(sorted(p.name for p in (folder / str(i)).iterdir()) == sorted(f"{t}.png" for t in range(T))
                   for i in range(N_VIDEOS))
        with Image.open(folder / "0" / "0.png") as im:
            assert im.mode == "RGB" and im.size == (RES, RES)
    gt = read_video_folder(root / "vids" / "gt_vids")
    recon = read_video_folder(root / "vids" / "recon_vids")
    expected_png = to_uint8_frames(pred).numpy()
    for i in range(N_VIDEOS):
        np.testing.assert_array_equal(gt[str(i)], video[i])
        assert np.abs(recon[str(i)].astype(int) - expected_png[i].astype(int)).max() <= 1
    assert not list((root / "vids").rglob(".tmp-*"))


def test_recon_stage_with_an_lpips_network(savi_run):
    root, video, state = savi_run

    class StandInLPIPS(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(0.5))

        def forward(self, a, b):
            return ((a - b) ** 2).mean(dim=(1, 2, 3)) * self.scale

    net = StandInLPIPS()
    cfg = dict(EVAL, save_videos=False)
    result = er.run_eval_recon(cfg, RUNTIME, root / "model.pt", root / "data", root / "recon.json",
                               root / "vids", progress=False, lpips=net)
    _, expected = _direct(state, video, cfg["recon_batch_size"], cfg["chunk_len"], lpips=net)
    assert result["LPIPS"] == pytest.approx(expected["lpips"], rel=1e-5)
    assert result["lpips_missing_reason"] is None
    assert not (root / "vids").exists()  # save_videos: false
    off = er.run_eval_recon(dict(cfg, lpips=False), RUNTIME, root / "model.pt", root / "data",
                            root / "recon2.json", root / "vids", progress=False)
    assert off["LPIPS"] is None and "eval.lpips" in off["lpips_missing_reason"]


def test_missing_eval_key_is_named(savi_run):
    root, _, _ = savi_run
    cfg = {k: v for k, v in EVAL.items() if k != "recon_batch_size"}
    with pytest.raises(KeyError, match="eval.recon_batch_size"):
        er.run_eval_recon(cfg, RUNTIME, root / "model.pt", root / "data", root / "r.json", root / "v",
                          progress=False, lpips=None)


# ---------------------------------------------------------------------------- comp-gen stage (SAVi)
def test_comp_gen_stage(savi_run):
    root, video, state = savi_run
    result = er.run_eval_comp_gen(EVAL, RUNTIME, root / "model.pt", root / "data", root / "comp.json",
                                  root / "vids", progress=False)
    assert json.loads((root / "comp.json").read_text()) == result
    assert result["batch_size"] == 2 and result["num_videos"] == N_VIDEOS
    assert result["slot_indices_swapped"] == [1] and result["num_slots"] == 3
    assert result["videos_not_composed"] == [4]  # batches [0, 1], [2, 3], [4]
    comp = read_video_folder(root / "vids" / "comp_vids")
    gt = read_video_folder(root / "vids" / "gt_vids")
    assert sorted(comp, key=int) == sorted(gt, key=int) == [str(i) for i in range(N_VIDEOS)]
    composed, _ = _direct(state, video, 2, EVAL["chunk_len"], compose=True)
    plain, _ = _direct(state, video, 2, EVAL["chunk_len"])
    expected = to_uint8_frames(composed).numpy()
    for i in range(N_VIDEOS):
        assert np.abs(comp[str(i)].astype(int) - expected[i].astype(int)).max() <= 1
        np.testing.assert_array_equal(gt[str(i)], video[i])
    assert not torch.allclose(composed[:4], plain[:4])  # composed videos differ from reconstructions
    torch.testing.assert_close(composed[4], plain[4])   # the lone last video is a reconstruction

    with pytest.raises(ValueError, match="composes nothing"):
        er.run_eval_comp_gen(dict(EVAL, comp_batch_size=1), RUNTIME, root / "model.pt", root / "data",
                             root / "comp1.json", root / "vids", progress=False)


# ---------------------------------------------------------------------------- STEVE / SlotDiffusion
def test_recon_stage_steve_greedy_decoding(tmp_path, no_lpips_weights):
    res, t, n = 16, 3, 2
    video = _data(tmp_path / "data", n=n, t=t, res=res)
    state = _checkpoint(tmp_path / "model.pt", STEVE_CFG, DVAE, res=res, t=t)
    cfg = dict(EVAL, recon_batch_size=2)
    result = er.run_eval_recon(cfg, RUNTIME, tmp_path / "model.pt", tmp_path / "data", tmp_path / "recon.json",
                               tmp_path / "vids", progress=False)
    assert result["decoding"]["decoder"].startswith("autoregressive") and result["decoding"]["tokens_per_frame"] == 16
    model = restore_model(state).eval()
    with torch.no_grad():
        x = to_model_input(torch.from_numpy(video))
        slots, _ = model.trunk.encode_chunked(x, cfg["chunk_len"])
        pred = model.reconstruct(slots, use_cache=False)  # greedy without the cache: same frames
    recon = read_video_folder(tmp_path / "vids" / "recon_vids")
    expected = to_uint8_frames(pred).numpy()
    for i in range(n):
        assert np.abs(recon[str(i)].astype(int) - expected[i].astype(int)).max() <= 1
    assert result["MSE"] == pytest.approx(
        recon_metrics(pred.flatten(0, 1), x.flatten(0, 1))["mse"].mean().item(), rel=1e-4)


def _bare(cls):
    obj = cls.__new__(cls)
    nn.Module.__init__(obj)
    return obj


def test_decode_dispatch_for_steve_and_slotdiffusion():
    calls = {}
    sd = _bare(SlotDiffusion)
    sd.reconstruct = lambda slots, **kw: calls.setdefault("sd", kw) and slots
    steve = _bare(STEVE)
    steve.reconstruct = lambda slots, **kw: calls.setdefault("steve", kw) and slots
    gen = torch.Generator().manual_seed(5)
    slots = torch.zeros(1, 2, 3, 4)
    er.decode_slots(sd, slots, "dpm++", None, gen)
    assert calls["sd"] == {"sampler": "dpm++", "steps": None, "same_noise": True, "generator": gen}
    er.decode_slots(steve, slots)
    assert calls["steve"] == {"use_cache": True, "batch_size": 24}
    sd.schedule = SimpleNamespace(num_timesteps=1000)
    settings = er.decoder_settings(sd, EVAL)
    assert settings["sampler"] == "dpm++" and settings["sampler_steps"] == 20 and settings["same_noise"] is True
    assert settings["unet_evaluations_per_frame"] == 20
    ddim = er.decoder_settings(sd, dict(EVAL, sampler="ddim", sampler_steps=30))
    assert ddim["sampler_steps"] == 30 and ddim["unet_evaluations_per_frame"] == 31  # LDM's grid
    assert er.decoder_settings(sd, dict(EVAL, sampler="ddpm"))["unet_evaluations_per_frame"] == 1000
    with pytest.raises(TypeError):
        er.decode_slots(nn.Linear(1, 1), slots)


SD_CFG = dict(
    name="slotdiffusion", num_slots=3, slot_size=16, slot_mlp_size=32, num_iterations=2, slot_eps=1e-6,
    encoder=dict(type="cnn", channels=[16, 16], kernel_size=5, strides=[2, 1], out_features=16),
    predictor=dict(num_layers=2, num_heads=4, ffn_dim=32, dropout=0.1),
    decoder=dict(
        unet=dict(model_channels=32, channel_mult=[1, 2], num_res_blocks=1, attention_resolutions=[2],
                  num_head_channels=16, transformer_depth=1, dropout=0.1),
        diffusion=dict(z_scale_factor=1.0, timesteps=1000, beta_schedule="linear", linear_start=0.0015,
                       linear_end=0.0195),
    ),
)
VQVAE = dict(name="vqvae", channels=32, channel_mult=[1, 2], num_res_blocks=1, z_channels=3, embed_dim=3,
             n_embed=16, dropout=0.0, beta=0.25, recon_loss_w=1.0, quant_loss_w=1.0, percept_loss_w=0.0)


def test_recon_stage_slotdiffusion_seeded_dpm_solver(tmp_path, no_lpips_weights):
    res, t, n = 16, 2, 3
    video = _data(tmp_path / "data", n=n, t=t, res=res)
    state = _checkpoint(tmp_path / "model.pt", SD_CFG, VQVAE, res=res, t=t)
    cfg = dict(EVAL, recon_batch_size=2, chunk_len=2)
    args = (RUNTIME, tmp_path / "model.pt", tmp_path / "data")
    first = er.run_eval_recon(cfg, *args, tmp_path / "a.json", tmp_path / "vids", progress=False)
    again = er.run_eval_recon(cfg, *args, tmp_path / "b.json", tmp_path / "vids2", progress=False, lpips=None)
    other = er.run_eval_recon(dict(cfg, seed=1), *args, tmp_path / "c.json", tmp_path / "vids3", progress=False,
                              lpips=None)
    assert first["decoding"] == {"decoder": "latent diffusion", "sampler": "dpm++", "sampler_steps": 20,
                                 "unet_evaluations_per_frame": 20, "same_noise": True,
                                 "noise_generator": "torch CPU generator seeded with eval.seed"}
    assert (first["MSE"], first["SSIM"]) == (again["MSE"], again["SSIM"])  # seeded
    assert other["MSE"] != first["MSE"]
    model = restore_model(state).eval()
    gen = torch.Generator().manual_seed(0)
    preds = []
    with torch.no_grad():
        for s in range(0, n, 2):  # one shared noise per batch, drawn in batch order
            x = to_model_input(torch.from_numpy(video[s:s + 2]))
            slots, _ = model.trunk.encode_chunked(x, 2)
            preds.append(model.reconstruct(slots, sampler="dpm++", steps=None, same_noise=True, generator=gen))
    expected = to_uint8_frames(torch.cat(preds)).numpy()
    recon = read_video_folder(tmp_path / "vids" / "recon_vids")
    for i in range(n):
        assert np.abs(recon[str(i)].astype(int) - expected[i].astype(int)).max() <= 1
