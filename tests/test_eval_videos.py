"""MP4s to watch (slotbench.evaluation.videos): eval_recon and eval_comp_gen write
``<run>/vis/{idx}_{recon,comp}.mp4`` for the first ``eval.vis_videos`` test videos, which OpenCV
reads back with the expected frame count, size and content."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from test_eval_recon import EVAL, RUNTIME, SD_CFG, VQVAE, T, _checkpoint, _data, _one_thread, no_lpips_weights, savi_run  # noqa: F401  # noqa: F401  (fixtures; _one_thread is autouse)

from slotbench.evaluation import reconstruction as er
from slotbench.evaluation import videos
from slotbench.visualize import GAP, LABEL_HEIGHT, MIN_TILE


def _read_mp4(path) -> tuple[np.ndarray, float, int]:
    """Every frame (uint8 RGB ``[T, H, W, 3]``), the frame rate and the container's frame count."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    fps, count = capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame[..., ::-1])
    capture.release()
    return np.stack(frames), fps, count


def test_write_mp4_reads_back_with_its_frames_size_and_pixels(tmp_path):
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (5, 5, 8, 3), dtype=np.uint8)  # 8x8 blocks of flat colour: the codec keeps them
    frames = np.repeat(np.repeat(blocks, 8, axis=1), 8, axis=2)[:, :39, :63]  # [5, 39, 63, 3]: odd sides
    path = videos.write_mp4(tmp_path / "vis" / "0_recon.mp4", frames)
    read, fps, count = _read_mp4(path)
    assert read.shape == (5, 40, 64, 3) and count == 5 and fps == videos.FPS  # padded to even sides
    assert read[:, 39].mean() > 200 and read[:, :, 63].mean() > 200  # the padding is white (up to chroma bleed)
    assert np.abs(read[:, :39, :63].astype(int) - frames.astype(int)).mean() < 10
    assert [p.name for p in (tmp_path / "vis").iterdir()] == ["0_recon.mp4"]  # no temporary left
    with pytest.raises(ValueError, match="uint8"):
        videos.write_mp4(tmp_path / "bad.mp4", frames.astype(np.float32))


def _tile_width(tiles: int) -> int:
    return tiles * (MIN_TILE + GAP) - GAP  # 32-pixel videos are enlarged 3 times to 96


def test_recon_and_comp_gen_write_the_first_vis_videos(savi_run, no_lpips_weights):  # noqa: F811
    root, video, state = savi_run
    args = (RUNTIME, root / "model.pt", root / "data")
    vis = root / "vis"
    vis.mkdir()
    (vis / "4_recon.mp4").write_bytes(b"stale")  # an earlier run's, with more vis_videos
    (vis / "notes.txt").write_text("not the stages'")
    base = er.run_eval_recon(EVAL, *args, root / "base.json", root / "vids0", progress=False)  # vis_videos 0
    assert not (vis / "4_recon.mp4").exists()
    recon = er.run_eval_recon(dict(EVAL, vis_videos=3), *args, root / "recon.json", root / "vids", progress=False)
    assert {k: recon[k] for k in ("MSE", "PSNR", "SSIM")} == {k: base[k] for k in ("MSE", "PSNR", "SSIM")}
    er.run_eval_comp_gen(dict(EVAL, vis_videos=3), *args, root / "comp.json", root / "vids", progress=False)
    assert sorted(p.name for p in vis.iterdir()) == sorted(
        [f"{i}_{kind}.mp4" for i in range(3) for kind in ("recon", "comp")] + ["notes.txt"])
    num_slots = state["config"]["model"]["num_slots"]
    for i in range(3):  # batches of 2: the third video comes from the second batch
        frames, fps, count = _read_mp4(vis / f"{i}_recon.mp4")
        assert count == T and fps == videos.FPS  # input, reconstruction, segmentation, one panel per slot:
        assert frames.shape == (T, LABEL_HEIGHT + MIN_TILE, _tile_width(3 + num_slots), 3)
        shown = frames[:, LABEL_HEIGHT:, :MIN_TILE][:, 1::3, 1::3].astype(int)  # the input panel, enlarged 3 times
        # per-pixel noise is the codec's worst case: the panel is much nearer its video than another one
        assert np.abs(shown - video[i]).mean() < 0.5 * np.abs(shown - video[i + 1]).mean()
        frames, _, count = _read_mp4(vis / f"{i}_comp.mp4")
        assert count == T and frames.shape == (T, LABEL_HEIGHT + MIN_TILE, _tile_width(2), 3)
    er.run_eval_recon(dict(EVAL, vis_videos=1), *args, root / "recon.json", root / "vids", progress=False)
    assert sorted(p.name for p in vis.glob("*.mp4")) == ["0_comp.mp4", "0_recon.mp4", "1_comp.mp4", "2_comp.mp4"]
    assert json.loads((root / "recon.json").read_text())["MSE"] == recon["MSE"]


def test_vis_videos_leave_slotdiffusions_sampling_alone(tmp_path, no_lpips_weights):  # noqa: F811
    """The segmentation behind the MP4s draws no noise: SlotDiffusion's numbers do not depend on vis_videos."""
    _data(tmp_path / "data", n=3, t=2, res=16)
    _checkpoint(tmp_path / "model.pt", SD_CFG, VQVAE, res=16, t=2)
    cfg = dict(EVAL, recon_batch_size=2, chunk_len=2)
    args = (RUNTIME, tmp_path / "model.pt", tmp_path / "data")
    without = er.run_eval_recon(cfg, *args, tmp_path / "a.json", tmp_path / "a", progress=False, lpips=None)
    with_vis = er.run_eval_recon(dict(cfg, vis_videos=3), *args, tmp_path / "b.json", tmp_path / "b", progress=False,
                                 lpips=None)
    assert (without["MSE"], without["SSIM"]) == (with_vis["MSE"], with_vis["SSIM"])
    assert sorted(p.name for p in (tmp_path / "vis").iterdir()) == ["0_recon.mp4", "1_recon.mp4", "2_recon.mp4"]
