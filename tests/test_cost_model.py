"""bench/cost_model.py: FLOP counts checked against hand counts, fake-tensor counts against real
ones, and the record's keys on the tiny profile (no timing asserted)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import cost_model  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_conv_and_linear_match_hand_counts():
    conv = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)
    x = torch.randn(2, 3, 10, 10)  # output [2, 8, 5, 5]
    with torch.no_grad():
        assert cost_model.count_flops(lambda: conv(x)) == 2 * (2 * 8 * 5 * 5) * (3 * 3 * 3)
    linear = nn.Linear(5, 7)
    y = torch.randn(4, 5)
    with torch.no_grad():
        assert cost_model.count_flops(lambda: linear(y)) == 2 * 4 * 5 * 7


def test_training_step_is_three_forwards_less_the_input_gradient():
    """Backward of each linear layer costs two forwards (gradients of input and weight), except
    the first, whose input needs no gradient: step = 3 x forward - the first layer's forward."""
    b, d_in, d_hidden, d_out = 6, 10, 20, 4
    mlp = nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))
    x = torch.randn(b, d_in)
    with torch.no_grad():
        forward = cost_model.count_flops(lambda: mlp(x))
    step = cost_model.count_flops(lambda: mlp(x).square().sum().backward())
    assert forward == 2 * b * (d_in * d_hidden + d_hidden * d_out)
    assert step == 3 * forward - 2 * b * d_in * d_hidden


def test_cpu_attention_is_counted():
    b, h, lq, lk, d = 2, 3, 5, 7, 4
    q, k, v = torch.randn(b, h, lq, d), torch.randn(b, h, lk, d), torch.randn(b, h, lk, d)
    # two matrix products: Q K^T and (softmax) V
    assert cost_model.count_flops(lambda: F.scaled_dot_product_attention(q, k, v)) == 2 * 2 * b * h * lq * lk * d


def test_affine_extrapolation():
    fit = cost_model.affine_extrapolate([13, 23, 33], (1, 2, 3), 24)
    assert fit["flops"] == 3 + 10 * 24 and fit["intercept"] == 3 and fit["second_difference_rel"] == 0


def test_fake_tensor_step_counts_as_the_real_step(project):
    from slotbench.training.distributed import LossStep

    params = project / "params"
    cfg = cost_model.network_config("steve", "shapes", params)
    model = cost_model.build_network("steve", cfg, params)
    res = cfg["dataset"]["resolution"]
    fake = cost_model.train_step_flops(model, 2, 3, res)
    model.train()
    video = torch.rand(2, 3, 3, res, res) * 2 - 1
    real = cost_model.count_flops(lambda: LossStep(model)(video)["loss"].backward())
    assert fake == real > 0


@pytest.mark.parametrize("name", ["steve", "slotdiffusion"])
def test_decoding_is_linear_in_frames(project, name):
    """What lets the cost model count reconstruction on one frame and multiply by 24."""
    from slotbench.evaluation.reconstruction import decode_slots

    params = project / "params"
    cfg = cost_model.network_config(name, "shapes", params)
    model = cost_model.build_network(name, cfg, params).eval()
    slots = torch.randn(1, 3, cfg["model"]["num_slots"], cfg["model"]["slot_size"])
    with torch.no_grad():
        three = cost_model.count_flops(lambda: decode_slots(model, slots))
        one = cost_model.count_flops(lambda: decode_slots(model, slots[:, :1]))
    assert three == 3 * one > 0


def test_record_on_the_tiny_profile(project):
    params = project / "params"
    networks = {"shapes": {name: cost_model.count_network(name, "shapes", params, 10, decode=name == "slotdiffusion",
                                                           progress=False)
                           for name in ("savi", "slotdiffusion", "vqvae", "steve", "dvae")}}
    savi = networks["shapes"]["savi"]
    assert savi["train_step"]["flops"] == savi["train_step"]["affine_check"]["flops"]
    assert savi["schedule"] == {"steps": 6, "rule": "train.max_steps"}
    assert savi["train_total_flops"] == 6 * savi["train_step"]["flops"]
    assert savi["eval_per_video"]["segmentation"]["second_difference_rel"] == 0
    sd = networks["shapes"]["slotdiffusion"]["eval_per_video"]
    assert sd["reconstruction"]["flops"] > 10 * sd["segmentation"]["flops"]  # 20 U-Net evaluations per frame
    assert sd["reconstruction"]["flops"] > sd["compositional_generation"]["flops"]  # + the metrics

    info = {"Model name": "Test CPU", "Vendor ID": "GenuineIntel", "CPU family": "6", "Core(s) per socket": "2",
            "Socket(s)": "1", "CPU max MHz": "3000", "Flags": "fma avx2"}
    peak = cost_model.cpu_peak(info)
    assert peak["peak_fp32_flops"] == 2 * 3e9 * 32
    throughput = [{"network": n, "input": "4x3x64^2", "s_per_step": 1.0, "repeats_s": [1.0],
                   "flops_per_step": 1e9, "achieved_flops_per_s": 1e9,
                   "fraction_of_peak": 1e9 / peak["peak_fp32_flops"],
                   "threads": 1, "load_average_before": 0.0, "date": "2026-01-01T00:00:00+00:00"}
                  for n in (*cost_model.MODELS, *cost_model.TOKENIZERS)]
    eval_cfg = cost_model.network_config("slotdiffusion", "shapes", params)["eval"]
    result = cost_model.build_result(networks, throughput, peak, info, eval_cfg, 3, 10, 0.4)
    assert {"date", "machine", "flop_counter", "assumptions", "networks", "throughput", "runs"} <= set(result)
    run = result["runs"]["shapes"]["steve"]
    assert run["networks"] == ["steve", "dvae"]
    assert run["train_flops"] == (networks["shapes"]["steve"]["train_total_flops"]
                                  + networks["shapes"]["dvae"]["train_total_flops"])
    assert set(run["gpu_hours_estimate"]) == {"A40", "H100 SXM"}
    text = cost_model.markdown(result)
    readme = text.split("## README table\n", 1)[1].strip().splitlines()
    assert "Test CPU" in text and len(readme) <= 12
