"""Datasets: clip indexing as the original, normalisation, id compaction, resumable sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slotbench.data.dataset import (
    ClipDataset,
    StepBatchSampler,
    VideoDataset,
    check_compatible,
    compact_ids,
    to_model_input,
)
from slotbench.data.storage import DataError


def test_clip_windows_like_the_original(tiny_data):
    # tiny profile: 6 videos of 6 frames; 3-frame clips with offset 1 -> 4 clips per video
    clips = ClipDataset(tiny_data, "train", n_sample_frames=3, frame_offset=1)
    assert len(clips) == 6 * 4
    item = clips[5]  # video 1, start 1
    assert (item["index"], item["start"]) == (1, 1)
    np.testing.assert_array_equal(item["video"].numpy(), clips.split.video[1, 1:4])
    strided = ClipDataset(tiny_data, "train", n_sample_frames=3, frame_offset=2)
    assert strided.starts_per_video == 2
    np.testing.assert_array_equal(strided[1]["video"].numpy(), strided.split.video[0, 1:6:2])


def test_full_videos_for_evaluation(tiny_data):
    videos = VideoDataset(tiny_data, "test")
    assert len(videos) == 3
    item = videos[2]
    assert item["video"].shape == (6, 16, 16, 3) and item["seg"].dtype == torch.int64
    assert len(VideoDataset(tiny_data, "test", num_videos=2)) == 2


def test_normalisation_matches_to_tensor_then_normalize():
    video = torch.randint(0, 256, (2, 3, 5, 7, 3), dtype=torch.uint8)
    reference = (video.permute(0, 1, 4, 2, 3).float() / 255.0 - 0.5) / 0.5
    torch.testing.assert_close(to_model_input(video), reference, rtol=0, atol=1e-6)
    assert to_model_input(video).shape == (2, 3, 3, 5, 7)


def test_compact_ids_orders_present_ids():
    seg = np.array([[0, 5], [17, 5]], dtype=np.uint8)
    np.testing.assert_array_equal(compact_ids(seg), [[0, 1], [2, 1]])
    # no background: the smallest present id becomes 0, as the original's suppress_mask_idx
    np.testing.assert_array_equal(compact_ids(np.array([3, 4, 3])), [0, 1, 0])


def test_incompatible_data_is_refused(tiny_data):
    with pytest.raises(DataError, match="the configuration expects 24 frames of 128x128"):
        check_compatible(tiny_data, 128, 24)


def test_step_sampler_is_resumable_and_covers_each_epoch():
    full = list(StepBatchSampler(10, 3, seed=7, start_step=0, total_steps=7))
    resumed = list(StepBatchSampler(10, 3, seed=7, start_step=4, total_steps=7))
    assert full[4:] == resumed
    epoch0 = sum(full[:3], [])  # 3 batches per epoch (last partial batch dropped)
    assert len(set(epoch0)) == 9
    assert full[:3] != full[3:6], "each epoch reshuffles"
    assert list(StepBatchSampler(10, 3, seed=8, start_step=0, total_steps=3)) != full[:3]
    with pytest.raises(DataError, match="fewer than one batch"):
        StepBatchSampler(2, 3, seed=0, start_step=0, total_steps=1)
