"""Tests of SlotDiffusion's U-Net (slotbench.models.unet)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from slotbench.models.common import count_parameters
from slotbench.models.unet import (
    REFERENCE_UNET,
    CrossAttention,
    GroupNorm32,
    ResBlock,
    SpatialTransformer,
    UNet,
    timestep_embedding,
)

TINY_UNET = dict(
    model_channels=32,
    channel_mult=[1, 2],
    num_res_blocks=2,
    attention_resolutions=[2],
    num_head_channels=16,
    transformer_depth=1,
    dropout=0.1,
)


def _reference_on_meta() -> UNet:
    with torch.device("meta"):
        return UNet(REFERENCE_UNET, 3, 3, 192)


def _tiny(seed=0, **changes) -> UNet:
    torch.manual_seed(seed)
    cfg = copy.deepcopy(TINY_UNET)
    cfg.update(changes)
    return UNet(cfg, 3, 3, 16)


def _randomise_zero_init(model: UNet, seed=1) -> None:
    """Give the zero-initialised layers random weights so that every path carries signal."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if torch.all(p == 0):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


# ---------------------------------------------------------------- reference build
def test_reference_parameter_counts():
    unet = _reference_on_meta()
    assert count_parameters(unet) == 134_243_331
    assert count_parameters(unet.time_embed) == 328_704
    assert count_parameters(unet.input_blocks) == 40_031_616
    assert count_parameters(unet.middle_block) == 15_418_880
    assert count_parameters(unet.output_blocks) == 78_460_416
    assert count_parameters(unet.out) == 3_715


def test_reference_layout():
    unet = _reference_on_meta()
    assert len(unet.input_blocks) == 12 and len(unet.output_blocks) == 12
    # SpatialTransformers: none at 32 px; heads C / 32 at 256 / 384 / 512 channels.
    st_in = [i for i, b in enumerate(unet.input_blocks) if isinstance(b[-1], SpatialTransformer)]
    assert st_in == [4, 5, 7, 8, 10, 11]
    st_out = [
        i for i, b in enumerate(unet.output_blocks)
        if any(isinstance(m, SpatialTransformer) for m in b)
    ]
    assert st_out == list(range(9))
    expected = {256: (8, 1_414_400), 384: (12, 3_104_640), 512: (16, 5_450_240)}
    for st in (m for m in unet.modules() if isinstance(m, SpatialTransformer)):
        ch = st.proj_in.in_channels
        heads, params = expected[ch]
        block = st.transformer_blocks[0]
        assert block.attn1.heads == heads and block.attn1.dim_head == 32
        assert block.attn2.to_k.in_features == 192 and block.attn2.to_k.bias is None
        assert block.attn1.to_q.bias is None and block.attn1.to_out[0].bias is not None
        assert block.ff.net[0].proj.out_features == 8 * ch
        assert st.norm.eps == 1e-6 and st.norm.num_groups == 32
        assert count_parameters(st) == params
    # ResBlock in -> out channels of the output side, and their parameter formula.
    outs = [(b[0].channels, b[0].out_channels) for b in unet.output_blocks]
    assert outs == [
        (1024, 512), (1024, 512), (896, 512), (896, 384), (768, 384), (640, 384),
        (640, 256), (512, 256), (384, 256), (384, 128), (256, 128), (256, 128),
    ]
    for rb in (m for m in unet.modules() if isinstance(m, ResBlock)):
        i, o = rb.channels, rb.out_channels
        n = 9 * i * o + 9 * o * o + 2 * i + 517 * o + (i * o + o if i != o else 0)
        assert count_parameters(rb) == n
        assert isinstance(rb.in_layers[0], GroupNorm32) and rb.in_layers[0].eps == 1e-5
        assert rb.out_layers[2].p == 0.1
    for st in (m for m in unet.modules() if isinstance(m, SpatialTransformer)):
        assert all(m.p == 0.0 for m in st.modules() if isinstance(m, torch.nn.Dropout))


def test_reference_forward_shape_on_meta():
    unet = _reference_on_meta().eval()
    with torch.device("meta"):
        y = unet(torch.randn(2, 3, 32, 32), torch.tensor([999.0, 0.5]), torch.randn(2, 15, 192))
    assert y.shape == (2, 3, 32, 32)


def test_original_state_dict_names():
    keys = set(_tiny().state_dict())
    for key in [
        "time_embed.0.weight",
        "time_embed.2.bias",
        "input_blocks.0.0.weight",
        "input_blocks.1.0.in_layers.0.weight",
        "input_blocks.1.0.emb_layers.1.weight",
        "input_blocks.1.0.out_layers.3.weight",
        "input_blocks.3.0.op.weight",
        "input_blocks.4.0.skip_connection.weight",
        "input_blocks.4.1.proj_in.weight",
        "input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight",
        "input_blocks.4.1.transformer_blocks.0.attn2.to_out.0.bias",
        "input_blocks.4.1.transformer_blocks.0.ff.net.0.proj.weight",
        "input_blocks.4.1.transformer_blocks.0.ff.net.2.weight",
        "input_blocks.4.1.transformer_blocks.0.norm3.weight",
        "middle_block.1.proj_out.weight",
        "output_blocks.2.2.conv.weight",
        "out.2.weight",
    ]:
        assert key in keys, key


# ---------------------------------------------------------------- tiny model
def test_tiny_shapes_and_zero_output_at_init():
    unet = _tiny()
    x = torch.randn(2, 3, 8, 8)
    ctx = torch.randn(2, 4, 16)
    for t in (torch.tensor([0, 999]), torch.tensor([949.05, 3.5]), torch.tensor(7)):
        y = unet(x, t, ctx)
        assert y.shape == (2, 3, 8, 8)
        assert torch.equal(y, torch.zeros_like(y))  # zero-init output conv
    zero_init = [
        unet.out[2],
        *(m.out_layers[3] for m in unet.modules() if isinstance(m, ResBlock)),
        *(m.proj_out for m in unet.modules() if isinstance(m, SpatialTransformer)),
    ]
    assert len(zero_init) == 1 + 12 + 6  # out conv, 4 + 2 + 6 ResBlocks, 2 + 1 + 3 STs
    for conv in zero_init:
        assert torch.all(conv.weight == 0) and torch.all(conv.bias == 0)


def test_tiny_uses_time_and_context_and_keeps_samples_independent():
    unet = _tiny().eval()
    _randomise_zero_init(unet)
    x = torch.randn(3, 3, 8, 8)
    ctx = torch.randn(3, 4, 16)
    t = torch.tensor([10, 500, 990])
    y = unet(x, t, ctx)
    assert y.abs().max() > 0
    assert not torch.allclose(unet(x, t, torch.randn(3, 4, 16)), y)
    assert not torch.allclose(unet(x, t.flip(0), ctx), y)
    # per-sample computation: sample 1 alone gives the same result
    torch.testing.assert_close(unet(x[1:2], t[1:2], ctx[1:2]), y[1:2], rtol=1e-4, atol=1e-5)
    # slot order does not matter (cross-attention is permutation invariant over the context)
    torch.testing.assert_close(unet(x, t, ctx[:, [2, 0, 3, 1]]), y, rtol=1e-4, atol=1e-5)
    # dropout is active in train mode only
    unet.train()
    torch.manual_seed(0)
    assert not torch.allclose(unet(x, t, ctx), y)


def test_gradients_reach_every_parameter():
    unet = _tiny()
    _randomise_zero_init(unet)
    y = unet(torch.randn(2, 3, 8, 8), torch.tensor([3, 700]), torch.randn(2, 4, 16))
    y.square().mean().backward()
    missing = [n for n, p in unet.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, missing


def test_timestep_embedding_cos_then_sin():
    t = torch.tensor([0.0, 1.0, 949.05])
    emb = timestep_embedding(t, 8)
    assert emb.shape == (3, 8) and emb.dtype == torch.float32
    freqs = torch.tensor([math.exp(-math.log(10000.0) * i / 4) for i in range(4)])
    torch.testing.assert_close(emb[:, :4], torch.cos(t[:, None] * freqs))
    torch.testing.assert_close(emb[:, 4:], torch.sin(t[:, None] * freqs))
    torch.testing.assert_close(emb[0], torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0]))
    assert timestep_embedding(torch.tensor([2]), 5).shape == (1, 5)


def test_sdpa_attention_equals_explicit_softmax():
    torch.manual_seed(0)
    attn = CrossAttention(query_dim=32, context_dim=16, heads=4, dim_head=8)
    x = torch.randn(2, 10, 32)
    ctx = torch.randn(2, 5, 16)

    def explicit(x, c):
        def split(z):
            return z.reshape(z.shape[0], z.shape[1], 4, 8).transpose(1, 2)

        q, k, v = split(attn.to_q(x)), split(attn.to_k(c)), split(attn.to_v(c))
        w = torch.softmax(q @ k.transpose(-1, -2) * 8**-0.5, dim=-1)
        out = (w @ v).transpose(1, 2).reshape(x.shape[0], x.shape[1], 32)
        return attn.to_out(out)

    torch.testing.assert_close(attn(x, ctx), explicit(x, ctx), rtol=1e-5, atol=1e-6)
    # context=None is self-attention (k, v from x; here to_k / to_v take 32 features)
    attn = CrossAttention(query_dim=32, heads=4, dim_head=8)
    torch.testing.assert_close(attn(x), explicit(x, x), rtol=1e-5, atol=1e-6)


def test_group_norm32_computes_in_float32():
    gn = GroupNorm32(32, 64)
    x = torch.randn(2, 64, 4, 4).to(torch.bfloat16)
    y = gn(x)
    assert y.dtype == torch.bfloat16
    ref = torch.nn.functional.group_norm(x.float(), 32, gn.weight, gn.bias, 1e-5)
    torch.testing.assert_close(y, ref.to(torch.bfloat16))


def test_resblock_by_hand_embedding_added_after_the_first_conv():
    """Pins the U-Net ResBlock (models spec §4.3): ``h = conv3x3(SiLU(GN32(x)))``, **then**
    ``h += Linear(SiLU(emb))`` broadcast over space (plain addition, no scale-shift), then
    ``GN32 -> SiLU -> Dropout -> conv3x3`` and ``+ skip(x)`` (identity, or a 1x1 conv when
    ``in != out``). Computed from the block's own weights, for both kinds of skip; the zero-init
    last conv gets random weights so that the residual branch carries signal, and the embedding
    added before the first conv (or not at all) would give a different result."""
    F = torch.nn.functional
    g = torch.Generator().manual_seed(3)
    # 64 output channels: two per GroupNorm group, so a per-channel shift survives the next GN
    for cin, cout in ((64, 64), (32, 64)):
        torch.manual_seed(0)
        rb = ResBlock(cin, 24, dropout=0.1, out_channels=cout).eval()
        with torch.no_grad():
            last = rb.out_layers[3]
            last.weight.copy_(torch.randn(last.weight.shape, generator=g) * 0.05)
            last.bias.copy_(torch.randn(last.bias.shape, generator=g) * 0.05)
        x = torch.randn(2, cin, 6, 6, generator=g)
        emb = torch.randn(2, 24, generator=g) * 3

        def by_hand(add_emb=True):
            conv1, lin, conv2 = rb.in_layers[2], rb.emb_layers[1], rb.out_layers[3]
            h = F.silu(F.group_norm(x, 32, rb.in_layers[0].weight, rb.in_layers[0].bias, 1e-5))
            h = F.conv2d(h, conv1.weight, conv1.bias, padding=1)
            if add_emb:
                h = h + F.linear(F.silu(emb), lin.weight, lin.bias)[:, :, None, None]
            h = F.silu(F.group_norm(h, 32, rb.out_layers[0].weight, rb.out_layers[0].bias, 1e-5))
            h = F.conv2d(h, conv2.weight, conv2.bias, padding=1)
            skip = x if cin == cout else rb.skip_connection(x)
            return skip + h

        with torch.no_grad():
            y = rb(x, emb)
            expected = by_hand()
            torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
            # the embedding matters: without it the block's output is clearly different
            assert (by_hand(add_emb=False) - expected).abs().max() > 1e-2


# ---------------------------------------------------------------- validation
def test_invalid_configs_and_inputs_raise():
    with pytest.raises(ValueError, match="GroupNorm"):
        _tiny(model_channels=48)
    with pytest.raises(ValueError, match="num_head_channels"):
        _tiny(num_head_channels=24)
    with pytest.raises(ValueError, match="dropout"):
        _tiny(dropout=1.5)
    unet = _tiny()
    with pytest.raises(ValueError, match="divisible"):
        unet(torch.randn(1, 3, 7, 8), torch.tensor([1]), torch.randn(1, 4, 16))
    with pytest.raises(ValueError, match="context"):
        unet(torch.randn(1, 3, 8, 8), torch.tensor([1]), torch.randn(1, 4, 12))
    with pytest.raises(ValueError):
        unet(torch.randn(1, 4, 8, 8), torch.tensor([1]), torch.randn(1, 4, 16))
