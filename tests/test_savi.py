"""Tests of the SAVi model and the shared slot trunk (slotbench.models)."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import reference_config
from torch import nn

from slotbench.checkpoint import restore_model
from slotbench.models import SAVi, build_model, with_later_model_keys
from slotbench.models.common import SoftPositionEmbed, build_grid, count_parameters
from slotbench.models.slot_attention import SlotAttention

# the reference configurations come from params/ (the single source of truth), so these tests
# also check that params/models/savi.yaml reproduces the original's parameter counts
REF_MOVI_E = reference_config("movi_e", "savi")["model"]
REF_MOVI_SOLID = reference_config("movi_solid", "savi")["model"]

TINY_RESNET = dict(
    name="savi",
    num_slots=3,
    slot_size=16,
    slot_mlp_size=32,
    num_iterations=2,
    slot_eps=1e-6,
    encoder=dict(type="resnet18", channels=[8, 16, 32], out_features=16),
    predictor=dict(num_layers=2, num_heads=4, ffn_dim=32, dropout=0.1),
    decoder=dict(channels=[16, 16, 16], broadcast_resolution=8, kernel_size=5),
)
TINY_CNN = copy.deepcopy(TINY_RESNET)
TINY_CNN["encoder"] = dict(
    type="cnn", channels=[16, 16], kernel_size=5, strides=[2, 1], out_features=16
)


def _cfg(base, **changes):
    cfg = copy.deepcopy(base)
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            cfg[outer][inner] = value
        else:
            cfg[key] = value
    return cfg


def _video(b=2, t=3, res=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 3, res, res, generator=g) * 2 - 1


# ---------------------------------------------------------------- parameter counts
def test_reference_parameter_counts_movi_e():
    model = build_model(REF_MOVI_E, 128)
    assert isinstance(model, SAVi)
    trunk = model.trunk
    assert count_parameters(model) == 4_853_892
    assert count_parameters(model, trainable_only=True) == 4_853_892
    assert count_parameters(trunk) == 4_238_016
    assert count_parameters(trunk.encoder) == 2_775_104
    assert count_parameters(trunk.encoder_pos_embedding) == 1_280
    assert count_parameters(trunk.encoder_out_layer) == 86_912
    assert trunk.init_latents.numel() == 2_880
    assert count_parameters(trunk.slot_attention) == 482_112
    assert count_parameters(trunk.predictor) == 889_728
    assert count_parameters(model.decoder) == 615_876
    assert trunk.feature_resolution == (32, 32)
    assert model.decoder.strides == [2, 2, 2, 2]


def test_reference_parameter_counts_movi_solid_tex():
    model = build_model(REF_MOVI_SOLID, 128)
    assert count_parameters(model) == 2_352_260
    assert count_parameters(model.trunk) == 1_736_384
    assert count_parameters(model.trunk.encoder) == 312_256
    assert count_parameters(model.trunk.encoder_pos_embedding) == 320
    assert count_parameters(model.trunk.encoder_out_layer) == 49_664
    assert model.trunk.feature_resolution == (64, 64)


def test_reference_forward_shapes_at_128():
    torch.manual_seed(0)
    model = build_model(REF_MOVI_E, 128)
    with torch.no_grad():
        out = model(_video(b=1, t=1, res=128))
    assert out["recon"].shape == (1, 1, 3, 128, 128)
    assert out["masks"].shape == (1, 1, 15, 1, 128, 128)
    assert out["attn"].shape == (1, 1, 15, 1024)


def test_reference_init():
    torch.manual_seed(0)
    model = build_model(REF_MOVI_E, 128)
    enc = model.trunk.encoder
    conv = enc.layers[2][0].conv1  # 3x3, 128 -> 256
    fan_out = conv.out_channels * 9
    assert conv.bias is None
    assert abs(conv.weight.std().item() - (2.0 / fan_out) ** 0.5) < 0.1 * (2.0 / fan_out) ** 0.5
    for m in enc.modules():
        if isinstance(m, torch.nn.GroupNorm):
            assert m.num_groups == 32
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    latents = model.trunk.init_latents
    assert latents.shape == (1, 15, 192)
    assert abs(latents.std().item() - 1.0) < 0.1


def test_decoder_surplus_layers_are_stride_one_at_the_end():
    model = build_model(REF_MOVI_E, 64)  # 8 -> 16 -> 32 -> 64 -> 64
    assert model.decoder.strides == [2, 2, 2, 1]
    model = build_model(_cfg(TINY_RESNET, **{"decoder.channels": [16, 8, 8, 8, 8]}), 32)
    assert model.decoder.strides == [2, 2, 1, 1]


# ---------------------------------------------------------------- tiny forward
@pytest.mark.parametrize("cfg", [TINY_RESNET, TINY_CNN], ids=["resnet", "cnn"])
def test_tiny_forward_shapes_and_masks(cfg):
    torch.manual_seed(0)
    model = build_model(cfg, 32)
    video = _video(b=2, t=3)
    out = model(video)
    h = model.trunk.feature_resolution[0]
    assert h == (8 if cfg is TINY_RESNET else 16)
    assert out["slots"].shape == (2, 3, 3, 16)
    assert out["recon"].shape == (2, 3, 3, 32, 32)
    assert out["recons"].shape == (2, 3, 3, 3, 32, 32)
    assert out["masks"].shape == (2, 3, 3, 1, 32, 32)
    assert out["attn"].shape == (2, 3, 3, h * h)
    assert not out["attn"].requires_grad
    torch.testing.assert_close(out["masks"].sum(dim=2), torch.ones(2, 3, 1, 32, 32))
    torch.testing.assert_close(out["attn"].sum(dim=2), torch.ones(2, 3, h * h))
    torch.testing.assert_close(out["recon"], (out["recons"] * out["masks"]).sum(dim=2))
    losses = model.loss(video, out)
    assert set(losses) == {"loss", "img_recon_loss"}
    torch.testing.assert_close(losses["loss"], ((out["recon"] - video) ** 2).mean())


def test_softmaxes_stay_float32_under_cpu_bf16_autocast():
    """Slot Attention's softmax over slots and the decoder's alpha masks run in float32 under CPU bf16
    autocast (as CUDA's autocast keeps a softmax), the convolutions in bfloat16."""
    torch.manual_seed(0)
    model = build_model(TINY_CNN, 32)
    video = _video(b=2, t=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(video)
    assert out["attn"].dtype == out["masks"].dtype == out["recon"].dtype == torch.float32
    assert out["recons"].dtype == torch.bfloat16
    torch.testing.assert_close(out["masks"].sum(dim=2), torch.ones(2, 3, 1, 32, 32))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = build_model(TINY_RESNET, 32)
    model.train()
    video = _video(b=2, t=3)
    model.loss(video, model(video))["loss"].backward()
    missing = [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))
    ]
    assert not missing, missing
    groups = {
        n.split(".")[1] if n.startswith("trunk.") else n.split(".")[0]
        for n, _ in model.named_parameters()
    }
    assert {"encoder", "init_latents", "slot_attention", "predictor", "decoder"} <= groups


def test_init_slots_argument():
    torch.manual_seed(0)
    model = build_model(TINY_CNN, 32).eval()
    video = _video(b=2, t=2)
    with torch.no_grad():
        default = model(video)
        explicit = model(video, model.trunk.initial_slots(2))
        other = model(video, torch.randn(2, 3, 16))
    torch.testing.assert_close(default["slots"], explicit["slots"])
    assert not torch.allclose(default["slots"], other["slots"])
    with pytest.raises(ValueError):
        model(video, torch.randn(2, 4, 16))


# ---------------------------------------------------------------- components
def test_soft_position_embedding_grid():
    grid = build_grid((3, 5))
    assert grid.shape == (1, 3, 5, 4)
    torch.testing.assert_close(grid[0, :, 0, 0], torch.tensor([0.0, 0.5, 1.0]))
    torch.testing.assert_close(grid[0, 0, :, 1], torch.linspace(0, 1, 5))
    torch.testing.assert_close(grid[..., 2:], 1 - grid[..., :2])
    pe = SoftPositionEmbed(6, (3, 5))
    x = torch.randn(2, 6, 3, 5)
    expected = x + (grid @ pe.dense.weight.T + pe.dense.bias).permute(0, 3, 1, 2)
    torch.testing.assert_close(pe(x), expected)


def test_model_pt_from_earlier_versions_restores_the_same_model():
    """A config with the keys earlier versions had, at the values this version builds, restores the
    same model; one that used a removed option is refused with a sentence, not rebuilt wrongly."""
    model = build_model(TINY_CNN, 32).eval()
    old_cfg = _cfg(TINY_CNN, slot_init="learned", slot_bilevel=False, encoder_fourier_octaves=0)
    old_cfg["decoder"]["fourier_octaves"] = 0
    state = {"config": {"model": old_cfg, "dataset": {"resolution": 32}}, "model": model.state_dict()}
    restored = restore_model(state).eval()
    assert old_cfg["slot_bilevel"] is False  # the stored config is not changed
    with torch.no_grad():
        torch.testing.assert_close(restored(_video())["recon"], model(_video())["recon"])
    assert with_later_model_keys(TINY_CNN) == TINY_CNN
    for key, value in (("slot_init", "sampled"), ("slot_bilevel", True), ("encoder_fourier_octaves", 2),
                       ("decoder.fourier_octaves", 3)):
        with pytest.raises(ValueError, match=f"model.{key}: .*retrain"):
            with_later_model_keys(_cfg(TINY_CNN, **{key: value}))


def test_slot_attention_normalisation_and_permutation_equivariance():
    torch.manual_seed(0)
    sa = SlotAttention(in_features=12, slot_size=16, mlp_hidden_size=32, num_iterations=3)
    inputs = torch.randn(2, 20, 12)
    slots = torch.randn(2, 5, 16)
    out, attn = sa(inputs, slots)
    assert out.shape == (2, 5, 16) and attn.shape == (2, 5, 20)
    torch.testing.assert_close(attn.sum(dim=1), torch.ones(2, 20))
    perm = torch.tensor([3, 0, 4, 1, 2])
    out_p, attn_p = sa(inputs, slots[:, perm])
    torch.testing.assert_close(out_p, out[:, perm], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attn_p, attn[:, perm], rtol=1e-5, atol=1e-5)


def _direct_slot_attention(sa: SlotAttention, inputs, slots):
    """Slot Attention written out from the spec (official-video-spec-models.md §1.5), reading only
    the module's weights: hand-written LayerNorm and GRU cell, no call into the module."""

    def layer_norm(x, ln):
        mu = x.mean(-1, keepdim=True)
        var = (x - mu).square().mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias

    def gru_cell(x, h, gru):  # PyTorch gate order (r, z, n); x = input, h = hidden
        gi = x @ gru.weight_ih.T + gru.bias_ih
        gh = h @ gru.weight_hh.T + gru.bias_hh
        i_r, i_z, i_n = gi.chunk(3, dim=-1)
        h_r, h_z, h_n = gh.chunk(3, dim=-1)
        r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return (1 - z) * n + z * h

    d = sa.slot_size
    x = layer_norm(inputs, sa.norm_inputs)
    k, v = x @ sa.project_k.weight.T, x @ sa.project_v.weight.T  # no bias
    ln, fc1, _, fc2 = sa.mlp
    attn = None
    for _ in range(sa.num_iterations):
        q = layer_norm(slots, sa.norm_slots) @ sa.project_q.weight.T
        logits = (k @ q.transpose(1, 2)) * d**-0.5  # [B, N_in, N_slots]
        attn = logits.softmax(dim=-1)  # over the slots
        w = attn + sa.eps  # eps after the softmax ...
        w = w / w.sum(dim=1, keepdim=True)  # ... then a weighted mean over the inputs
        updates = w.transpose(1, 2) @ v  # [B, N_slots, D]
        slots = gru_cell(updates, slots, sa.gru)  # input = updates, hidden = previous slots
        slots = slots + fc2(torch.relu(fc1(layer_norm(slots, ln))))  # residual MLP
    return slots, attn.transpose(1, 2)


@pytest.mark.parametrize("eps", [1e-6, 0.3])
def test_slot_attention_matches_the_spec_formula(eps):
    """Pins Slot Attention (spec §1.5) term by term: ``D^-0.5`` logit scale, softmax over slots,
    ``eps`` added after the softmax, renormalisation over the inputs, ``GRUCell(input=updates,
    hidden=slots)``, residual MLP, the reported attention (post-softmax, before eps). float64 so
    the reference eps 1e-6 is resolved; the large eps makes the eps placement visible."""
    torch.manual_seed(0)
    sa = SlotAttention(in_features=12, slot_size=16, mlp_hidden_size=24, num_iterations=3,
                       eps=eps).double()
    with torch.no_grad():  # non-trivial LayerNorm affines
        for ln in (sa.norm_inputs, sa.norm_slots, sa.mlp[0]):
            ln.weight.add_(0.3 * torch.randn_like(ln.weight))
            ln.bias.add_(0.3 * torch.randn_like(ln.bias))
    inputs = torch.randn(2, 20, 12, dtype=torch.float64)
    slots = torch.randn(2, 4, 16, dtype=torch.float64)
    with torch.no_grad():
        out, attn = sa(inputs, slots)
        expected, expected_attn = _direct_slot_attention(sa, inputs, slots)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(attn, expected_attn, rtol=1e-9, atol=1e-10)


def test_frame_loop_predictor_output_replaces_the_slots():
    """Pins the frame loop (spec §1.6): frame 0 starts from ``init_latents``, frame t from
    ``predictor(slots_{t-1})`` itself (no outer residual), Slot Attention on every frame."""
    torch.manual_seed(0)
    trunk = build_model(TINY_CNN, 32).trunk.eval()  # eval: no predictor dropout
    video = _video(b=2, t=3)
    with torch.no_grad():
        slots, attn = trunk.encode(video)
        feats = trunk.encode_features(video)
        s = trunk.init_latents.expand(2, -1, -1)
        for t in range(3):
            if t > 0:
                s = trunk.predictor(s)
            s, a = trunk.slot_attention(feats[:, t], s)
            torch.testing.assert_close(slots[:, t], s)
            torch.testing.assert_close(attn[:, t], a)


def test_slots_are_not_detached_between_frames():
    """Pins "prev_slots = slots_t without detach" (spec §1.6): frame t's loss has a gradient with
    respect to frame t-1's slots (the Slot Attention output of the previous frame)."""
    torch.manual_seed(0)
    model = build_model(TINY_CNN, 32).train()
    frame_slots = []
    handle = model.trunk.slot_attention.register_forward_hook(
        lambda module, args, output: frame_slots.append(output[0])
    )
    try:
        video = _video(b=2, t=3)
        out = model(video)
    finally:
        handle.remove()
    assert len(frame_slots) == 3
    last_frame_loss = ((out["recon"][:, 2] - video[:, 2]) ** 2).mean()
    grads = torch.autograd.grad(last_frame_loss, frame_slots[:2], allow_unused=True)
    for t, g in enumerate(grads):
        assert g is not None and g.abs().sum() > 0, f"no gradient from frame 2 to frame {t}"


def test_reference_decoder_has_a_relu_after_every_deconv_including_the_last():
    """Pins the spatial-broadcast decoder of the reference config (spec §1.8): 4 x
    (ConvTranspose2d(k5, s2, p2, op1, bias) + ReLU), **ReLU after the 4th deconv too**, then
    Conv2d(64, 4, 1x1); functionally, the input of the 1x1 conv is non-negative."""
    decoder = build_model(REF_MOVI_E, 128).decoder.net
    types = [type(m) for m in decoder]
    assert types == [nn.ConvTranspose2d, nn.ReLU] * 4 + [nn.Conv2d], types
    for deconv in decoder[:-1:2]:
        assert deconv.kernel_size == (5, 5) and deconv.stride == (2, 2)
        assert deconv.padding == (2, 2) and deconv.output_padding == (1, 1)
        assert deconv.bias is not None
    assert [m.out_channels for m in decoder[:-1:2]] == [64, 64, 64, 64]
    assert decoder[-1].kernel_size == (1, 1) and decoder[-1].out_channels == 4
    torch.manual_seed(0)
    tiny = build_model(TINY_CNN, 32)
    seen = []
    hook = tiny.decoder.net[-1].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        tiny(_video(b=1, t=1))
    hook.remove()
    assert seen[0].min() >= 0 and seen[0].max() > 0


def test_solid_tex_cnn_encoder_has_no_relu_after_the_last_conv():
    """Pins the MOVi-Solid/Tex plain CNN encoder (spec §1.2): 4 convs (k5, p2, bias, stride 2
    only in the first) with a ReLU after every conv **except the last**; functionally, the
    encoder output takes negative values."""
    encoder = build_model(REF_MOVI_SOLID, 128).trunk.encoder.net
    types = [type(m) for m in encoder]
    assert types == [nn.Conv2d, nn.ReLU] * 3 + [nn.Conv2d], types
    assert [m.stride for m in encoder[::2]] == [(2, 2), (1, 1), (1, 1), (1, 1)]
    assert all(m.kernel_size == (5, 5) and m.padding == (2, 2) for m in encoder[::2])
    assert all(m.bias is not None for m in encoder[::2])
    torch.manual_seed(0)
    with torch.no_grad():
        assert build_model(TINY_CNN, 32).trunk.encoder(_video(b=1, t=1)[:, 0]).min() < 0


def test_predictor_layers_identical_at_init():
    torch.manual_seed(0)
    model = build_model(TINY_RESNET, 32)
    layers = model.trunk.predictor.transformer.layers
    assert len(layers) == 2
    for (n0, p0), (n1, p1) in zip(layers[0].named_parameters(), layers[1].named_parameters()):
        assert n0 == n1
        assert torch.equal(p0, p1), n0
    first = layers[0]
    assert first.norm_first and first.dropout.p == 0.1
    assert model.trunk.predictor.transformer.norm is None


# ---------------------------------------------------------------- evaluation
def test_chunked_segment_equals_unchunked():
    torch.manual_seed(0)
    model = build_model(TINY_RESNET, 32).eval()
    video = _video(b=2, t=5, seed=1)
    seg_full = model.segment(video, chunk_len=5)
    seg_chunk = model.segment(video, chunk_len=2)
    assert seg_full.dtype == torch.long and seg_full.shape == (2, 5, 32, 32)
    assert torch.equal(seg_full, seg_chunk)
    with torch.no_grad():
        out = model(video)
    assert torch.equal(seg_full, out["masks"][:, :, :, 0].argmax(dim=2))
    slots_chunk, attn_chunk = model.trunk.encode_chunked(video, chunk_len=2)
    torch.testing.assert_close(slots_chunk, out["slots"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(attn_chunk, out["attn"], rtol=1e-4, atol=1e-5)


def test_learning_lowers_loss():
    torch.manual_seed(0)
    model = build_model(TINY_CNN, 32)
    model.train()
    # Fixed batch: two coloured squares on a grey background, moving by one pixel per frame.
    video = torch.full((2, 3, 3, 32, 32), -0.5)
    colours = torch.tensor(
        [[[0.9, -0.8, -0.8], [-0.8, -0.8, 0.9]], [[-0.8, 0.9, -0.8], [0.9, 0.9, -0.8]]]
    )
    for b in range(2):
        for t in range(3):
            for k, (y, x) in enumerate([(4 + t, 6 + 2 * b), (18 - t, 16 + b)]):
                video[b, t, :, y : y + 10, x : x + 10] = colours[b, k].view(3, 1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        loss = model.loss(video, model(video))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


# ---------------------------------------------------------------- validation
def test_invalid_configs_raise():
    with pytest.raises(ValueError, match="divisible"):
        build_model(TINY_RESNET, 30)  # stride 4
    with pytest.raises(ValueError, match="divisible"):
        build_model(_cfg(TINY_CNN, **{"encoder.strides": [2, 2]}), 34)
    with pytest.raises(ValueError, match="slot_size"):
        build_model(_cfg(TINY_RESNET, **{"decoder.channels": [32, 16, 16]}), 32)
    with pytest.raises(ValueError, match="broadcast"):
        build_model(_cfg(TINY_RESNET, **{"decoder.channels": [16, 16]}), 32)  # 8 -> 16 only
    with pytest.raises(ValueError, match="broadcast"):
        build_model(_cfg(TINY_RESNET, **{"decoder.broadcast_resolution": 6}), 32)
    with pytest.raises(ValueError, match="broadcast"):
        build_model(_cfg(TINY_RESNET, **{"decoder.broadcast_resolution": 64}), 32)
    with pytest.raises(ValueError, match="encoder type"):
        build_model(_cfg(TINY_RESNET, **{"encoder.type": "vit"}), 32)
    with pytest.raises(ValueError, match="unknown model"):
        build_model(_cfg(TINY_RESNET, name="steve_v9"), 32)
    with pytest.raises(ValueError):
        build_model(_cfg(TINY_RESNET, **{"encoder.channels": [8, 16, 48]}), 32)  # GN groups
    model = build_model(TINY_RESNET, 32)
    with pytest.raises(ValueError):
        model(_video(res=64))


