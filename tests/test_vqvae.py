"""Tests of SlotDiffusion's VQ-VAE tokenizer (slotbench.models.vqvae)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from slotbench.metrics.lpips import LPIPS
from slotbench.models.common import count_parameters
from slotbench.models.vqvae import VQVAE, AttnBlock, VectorQuantizer

REF = dict(
    name="vqvae",
    channels=64,
    channel_mult=[1, 2, 4],
    num_res_blocks=2,
    z_channels=3,
    embed_dim=3,
    n_embed=4096,
    dropout=0.0,
    beta=0.25,
    recon_loss_w=1.0,
    quant_loss_w=1.0,
    percept_loss_w=1.0,
)
TINY = dict(REF, channels=32, channel_mult=[1, 2], num_res_blocks=1, n_embed=16, percept_loss_w=0.0)
RES = 16


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on the shared 2-core machine, 2 threads contend badly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cfg(base=TINY, **changes):
    cfg = copy.deepcopy(base)
    cfg.update(changes)
    return cfg


def _images(b=2, res=RES, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, res, res, generator=g) * 2 - 1


def _small_lpips() -> LPIPS:
    torch.manual_seed(0)
    model = LPIPS().eval()
    with torch.no_grad():
        for head in model.heads:
            head[1].weight.abs_()
    return model


# ---------------------------------------------------------------- reference build
def test_reference_parameter_counts():
    model = VQVAE(REF, perceptual=None)  # building needs no LPIPS; only loss() does
    assert count_parameters(model) == 13_857_886
    assert count_parameters(model, trainable_only=True) == 13_857_886
    assert count_parameters(model.encoder) == 5_594_051
    assert count_parameters(model.decoder) == 8_251_523
    assert count_parameters(model.quantize) == 12_288
    assert count_parameters(model.quant_conv) == 12 and count_parameters(model.post_quant_conv) == 12
    assert model.down_factor == 4
    # the reference layout: mid attention, 3 decoder blocks per level, names of the original
    sd = model.state_dict()
    assert "encoder.mid.attn_1.q.weight" in sd and "decoder.mid.attn_1.proj_out.bias" in sd
    assert "encoder.down.1.downsample.conv.weight" in sd and "encoder.down.2.downsample.conv.weight" not in sd
    assert "decoder.up.2.upsample.conv.weight" in sd and "decoder.up.0.upsample.conv.weight" not in sd
    assert "decoder.up.0.block.2.conv2.weight" in sd and "decoder.up.0.block.3.conv1.weight" not in sd
    assert "encoder.down.1.block.0.nin_shortcut.weight" in sd
    assert "quantize.embedding.weight" in sd
    for m in model.modules():
        if isinstance(m, torch.nn.GroupNorm):
            assert m.num_groups == 32 and m.eps == 1e-6
    w = model.quantize.embedding.weight
    assert w.shape == (4096, 3) and w.abs().max() <= 1 / 4096


# ---------------------------------------------------------------- tiny forward
def test_tiny_shapes_and_api():
    torch.manual_seed(0)
    model = VQVAE(_cfg()).eval()
    img = _images()
    assert model.down_factor == 2
    with torch.no_grad():
        out = model(img)
        z = model.encode(img)
        z_q, _, indices = model.quantize(z)
        recon = model.decode(z_q)
    assert set(out) == {"recon", "z", "quant_loss", "indices"}
    assert out["z"].shape == (2, 3, 8, 8)
    assert out["recon"].shape == img.shape
    assert out["indices"].shape == (2, 8, 8) and out["indices"].dtype == torch.long
    assert out["indices"].min() >= 0 and out["indices"].max() < 16
    assert out["quant_loss"].ndim == 0
    torch.testing.assert_close(out["z"], z)  # encode = pre-quantisation latent (after quant_conv)
    torch.testing.assert_close(out["recon"], recon)
    torch.testing.assert_close(model.decode_indices(indices), recon)
    torch.testing.assert_close(z_q, model.quantize.embedding.weight[indices].permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match="divisible"):
        model.encode(_images(res=15))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model.encode(torch.zeros(1, 1, 3, RES, RES))


def test_attention_block_is_single_head_softmax_attention():
    torch.manual_seed(0)
    block = AttnBlock(32)
    x = torch.randn(2, 32, 3, 4)
    h = block.norm(x)
    q, k, v = (m(h).flatten(2) for m in (block.q, block.k, block.v))  # [B, C, HW]
    attn = torch.softmax(q.transpose(1, 2) @ k / 32**0.5, dim=-1)
    expected = x + block.proj_out((v @ attn.transpose(1, 2)).view(2, 32, 3, 4))
    torch.testing.assert_close(block(x), expected)


def test_downsample_pads_right_and_bottom_only():
    """Pins the VQ-VAE Downsample (spec §3): zero-pad right and bottom by one, then a 3x3 conv
    with stride 2 and no padding; compared with ``F.pad(x, (0, 1, 0, 1))`` + ``F.conv2d`` from
    the module's own weights, for the Downsample inside the tiny model."""
    torch.manual_seed(0)
    model = VQVAE(_cfg())
    downs = [stage.downsample for stage in model.encoder.down if hasattr(stage, "downsample")]
    assert len(downs) == 1
    conv = downs[0].conv
    x = torch.randn(2, conv.in_channels, 8, 6)
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, conv.bias, stride=2)
    with torch.no_grad():
        out = downs[0](x)
    assert out.shape == (2, conv.out_channels, 4, 3)
    torch.testing.assert_close(out, expected)


def test_config_errors():
    with pytest.raises(ValueError, match="multiple of 32"):
        VQVAE(_cfg(channels=48))
    cfg = _cfg()
    del cfg["beta"]
    with pytest.raises(ValueError, match="beta"):
        VQVAE(cfg)
    with pytest.raises(ValueError, match="vqvae"):
        VQVAE(_cfg(name="savi"))


# ---------------------------------------------------------------- quantiser
def test_indices_are_the_nearest_codes():
    torch.manual_seed(0)
    vq = VectorQuantizer(n_embed=16, embed_dim=3, beta=0.25)
    with torch.no_grad():
        vq.embedding.weight.normal_()
    z = torch.randn(2, 3, 5, 4)
    _, _, indices = vq(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 3)
    dist = ((flat[:, None, :] - vq.embedding.weight[None]) ** 2).sum(-1)  # brute force [N, K]
    assert torch.equal(indices.flatten(), dist.argmin(dim=1))
    # bf16 latents / autocast: distances still in float32, the same codes
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z_q, _, idx_bf16 = vq(z.bfloat16())
    flat = z.bfloat16().float().permute(0, 2, 3, 1).reshape(-1, 3)
    dist = ((flat[:, None, :] - vq.embedding.weight[None]) ** 2).sum(-1)
    assert torch.equal(idx_bf16.flatten(), dist.argmin(dim=1))
    assert z_q.dtype == torch.float32


def test_straight_through_gradient_is_identity():
    torch.manual_seed(0)
    vq = VectorQuantizer(n_embed=8, embed_dim=3, beta=0.25)
    z = torch.randn(2, 3, 4, 4, requires_grad=True)
    z_q, _, indices = vq(z)
    torch.testing.assert_close(z_q, vq.lookup(indices))  # the value is the code
    g = torch.randn_like(z)
    (z_q * g).sum().backward()
    torch.testing.assert_close(z.grad, g)
    assert vq.embedding.weight.grad is None  # only the loss trains the codebook


def test_legacy_loss_by_hand():
    """mean((sg[e] - z)^2) + beta * mean((e - sg[z])^2): beta on the codebook term."""
    beta = 0.25
    vq = VectorQuantizer(n_embed=2, embed_dim=1, beta=beta)
    with torch.no_grad():
        vq.embedding.weight.copy_(torch.tensor([[0.0], [1.0]]))
    z = torch.tensor([0.2, 0.9, 2.0, -1.0]).view(1, 1, 2, 2).requires_grad_(True)
    _, loss, indices = vq(z)
    assert indices.flatten().tolist() == [0, 1, 1, 0]
    sq = (0.2**2 + 0.1**2 + 1.0**2 + 1.0**2) / 4
    torch.testing.assert_close(loss, torch.tensor((1 + beta) * sq))
    loss.backward()
    # commitment term, weight 1: d/dz mean((e - z)^2) = 2 (z - e) / N
    e = torch.tensor([0.0, 1.0, 1.0, 0.0])
    torch.testing.assert_close(z.grad.flatten(), 2 * (z.detach().flatten() - e) / 4)
    # codebook term, weight beta: d/de_k = beta * 2 * sum_{i -> k} (e_k - z_i) / N
    expected = beta * 2 / 4 * torch.tensor([[(0 - 0.2) + (0 + 1.0)], [(1 - 0.9) + (1 - 2.0)]])
    torch.testing.assert_close(vq.embedding.weight.grad, expected)


# ---------------------------------------------------------------- losses and training
def test_loss_decreases_with_adam():
    torch.manual_seed(0)
    model = VQVAE(_cfg()).train()
    img = _images(b=4, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        out = model(img)
        terms = model.loss(img, out)
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        losses.append(terms["loss"].item())
    # percept_loss_w 0: MSE reconstruction, no perceptual term
    torch.testing.assert_close(terms["recon_loss"], F.mse_loss(out["recon"], img))
    assert terms["percept_loss"].item() == 0.0
    torch.testing.assert_close(terms["loss"], terms["recon_loss"] + terms["quant_loss"])
    assert losses[-1] < 0.5 * losses[0], losses


def test_percept_loss_needs_lpips():
    torch.manual_seed(0)
    model = VQVAE(_cfg(percept_loss_w=1.0))  # building is fine ...
    assert model.needs_perceptual
    img = _images()
    with pytest.raises(ValueError, match="percept_loss_w: 0"):  # ... the loss is not
        model.loss(img, model(img))


def test_lpips_is_not_part_of_the_vqvae():
    lpips = _small_lpips()
    torch.manual_seed(0)
    cfg = _cfg(percept_loss_w=1.0, recon_loss_w=2.0, quant_loss_w=0.5)
    model = VQVAE(cfg, perceptual=lpips)
    plain = VQVAE(cfg)
    assert model.perceptual is lpips
    assert set(model.state_dict()) == set(plain.state_dict())
    assert not any(k.startswith(("perceptual", "_perceptual", "loss")) for k in model.state_dict())
    assert count_parameters(model) == count_parameters(plain)
    opt = torch.optim.Adam(model.parameters())
    opt_ids = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not opt_ids & {id(p) for p in lpips.parameters()}
    assert not any(p.requires_grad for p in lpips.parameters())
    # assigning goes through set_perceptual, never registers a submodule
    model.perceptual = lpips
    assert "perceptual" not in dict(model.named_children())
    # mode and dtype follow the model (the original's LPIPS was a submodule)
    model.train()
    assert lpips.training
    model.eval()
    assert not lpips.training
    model.double()
    assert lpips.features[0].weight.dtype == torch.float64
    model.float()

    img = _images()
    out = model(img)
    terms = model.loss(img, out)
    torch.testing.assert_close(terms["recon_loss"], (img - out["recon"]).abs().mean())  # L1
    torch.testing.assert_close(terms["percept_loss"], lpips(img, out["recon"]).mean())
    assert terms["percept_loss"].item() > 0
    torch.testing.assert_close(
        terms["loss"],
        2.0 * terms["recon_loss"] + 0.5 * terms["quant_loss"] + terms["percept_loss"],
    )
    terms["loss"].backward()
    assert model.decoder.conv_out.weight.grad is not None
    assert all(p.grad is None for p in lpips.parameters())
