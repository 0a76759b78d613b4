"""Tests of the SlotDiffusion model (slotbench.models.slotdiffusion), with a stand-in tokenizer."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import reference_config
from torch import nn

from slotbench.models.common import count_parameters
from slotbench.models.slotdiffusion import SlotDiffusion

# the reference configuration comes from params/ (the single source of truth)
REF_MOVI_E = reference_config("movi_e", "slotdiffusion")["model"]
DIFFUSION_REF = REF_MOVI_E["decoder"]["diffusion"]
TINY = dict(
    name="slotdiffusion",
    num_slots=3,
    slot_size=16,
    slot_mlp_size=32,
    num_iterations=2,
    slot_eps=1e-6,
    encoder=dict(type="resnet18", channels=[8, 16, 32], out_features=16),
    predictor=dict(num_layers=2, num_heads=4, ffn_dim=32, dropout=0.1),
    decoder=dict(
        unet=dict(
            model_channels=32,
            channel_mult=[1, 2],
            num_res_blocks=1,
            attention_resolutions=[2],
            num_head_channels=16,
            transformer_depth=1,
            dropout=0.1,
        ),
        diffusion=DIFFUSION_REF,
    ),
)


class StandInTokenizer(nn.Module):
    """A tiny VQ tokenizer with the VQ-VAE's interface: a patchify conv encoder to a
    ``[B, C, H/4, W/4]`` pre-quantisation latent, a nearest-codebook quantiser (straight-through,
    legacy VQ loss) and a transposed-conv decoder. Has a dropout layer to expose train mode."""

    def __init__(self, channels: int = 3, codes: int = 16, seed: int = 0, down_factor: int = 4):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.down_factor = down_factor
        self.encoder = nn.Conv2d(3, channels, down_factor, stride=down_factor)
        self.decoder = nn.ConvTranspose2d(channels, 3, down_factor, stride=down_factor)
        self.codebook = nn.Embedding(codes, channels)
        self.drop = nn.Dropout(0.5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        self.quantize_calls = 0

    def encode(self, img):
        return self.drop(self.encoder(img))

    def quantize(self, z):
        self.quantize_calls += 1
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        d = (flat.square().sum(1, keepdim=True) + self.codebook.weight.square().sum(1)
             - 2 * flat @ self.codebook.weight.T)
        idx = d.argmin(1)
        z_q = self.codebook(idx).view(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
        loss = F.mse_loss(z_q.detach(), z) + 0.25 * F.mse_loss(z_q, z.detach())
        z_q = z + (z_q - z).detach()
        return z_q, loss, idx.view(z.shape[0], z.shape[2], z.shape[3])

    def decode(self, z_q):
        return self.decoder(z_q)


def _cfg(base, **changes):
    cfg = copy.deepcopy(base)
    for key, value in changes.items():
        node = cfg
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return cfg


def _tiny(seed=0, cfg=TINY, res=32) -> SlotDiffusion:
    torch.manual_seed(seed)
    return SlotDiffusion(cfg, res, StandInTokenizer())


def _video(b=2, t=3, res=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 3, res, res, generator=g) * 2 - 1


def _randomise_zero_init(model: nn.Module, seed=1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if torch.all(p == 0):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


# ---------------------------------------------------------------- parameter counts
def test_reference_parameter_counts_movi_e():
    tokenizer = StandInTokenizer()  # real weights; trunk and U-Net only counted, on meta
    with torch.device("meta"):
        model = SlotDiffusion(REF_MOVI_E, 128, tokenizer)
    trainable = count_parameters(model, trainable_only=True)
    assert trainable == 138_481_347
    assert count_parameters(model.trunk) == 4_238_016
    assert count_parameters(model.unet) == 134_243_331
    assert sum(p.numel() for p in model.decoder_parameters()) == 134_243_331
    frozen = count_parameters(model.tokenizer)
    assert count_parameters(model) == trainable + frozen
    assert model.latent_shape == (3, 32, 32)
    assert model.unet.context_dim == 192


# ---------------------------------------------------------------- training
def test_tiny_forward_and_loss():
    model = _tiny()
    model.train()
    video = _video()
    out = model(video)
    assert out["slots"].shape == (2, 3, 3, 16)
    assert out["attn"].shape == (2, 3, 3, 64) and not out["attn"].requires_grad
    torch.manual_seed(5)
    losses = model.loss(video, out)
    assert set(losses) == {"loss", "denoise_loss"}
    assert losses["loss"] is losses["denoise_loss"]
    # a fresh U-Net predicts 0, so the loss is mean(eps^2) with the same seeded draws
    torch.manual_seed(5)
    t = torch.randint(0, 1000, (6,))
    eps = torch.randn(6, 3, 8, 8)
    assert t.shape == (6,)
    torch.testing.assert_close(losses["loss"], eps.square().mean())


def test_denoise_loss_by_hand_on_the_prequantisation_latent():
    """Pins the SlotDiffusion training loss (spec §4.4): ``x0`` is the tokenizer's
    **pre-quantisation** latent (not the codebook vectors, not zeros), ``t ~ U{0..T-1}`` then
    ``eps ~ N(0, I)`` from the global RNG, ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` with
    LDM's linear betas, and ``loss = mse(unet(x_t, t, slots), eps)``. The U-Net has random weights
    so that its prediction, and the loss, depend on ``x0``."""
    model = _tiny()
    _randomise_zero_init(model.unet)
    model.eval()  # no dropout: the U-Net is a deterministic function
    video = _video()
    with torch.no_grad():
        out = model(video)
        torch.manual_seed(5)
        loss = model.loss(video, out)["loss"]

        frames = video.flatten(0, 1)
        context = out["slots"].flatten(0, 1)
        z = model.tokenizer.encode(frames)  # pre-quantisation latent [6, 3, 8, 8]
        betas = torch.linspace(0.0015**0.5, 0.0195**0.5, 1000, dtype=torch.float64) ** 2
        abar = torch.cumprod(1 - betas, dim=0)
        torch.manual_seed(5)
        t = torch.randint(0, 1000, (6,))
        eps = torch.randn(6, 3, 8, 8)

        def by_hand(x0):
            a = abar[t].float().view(6, 1, 1, 1)
            x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
            return (model.unet(x_t, t, context) - eps).square().mean()

        expected = by_hand(z)
        quantised = by_hand(model.tokenizer.quantize(z)[0])
        zeros = by_hand(torch.zeros_like(z))
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-7)
    # the check discriminates: the other candidate targets give clearly different losses
    for other in (quantised, zeros):
        assert abs(other.item() - expected.item()) > 100 * 1e-5 * expected.item(), (
            expected.item(), other.item())


def test_z_scale_factor_divides_the_denoised_latent_and_is_undone_before_decoding():
    """``decoder.diffusion.z_scale_factor`` s (the original's ``z_scale_factor``): the U-Net denoises
    ``encode(frames) / s`` (the loss by hand), every clean-latent prediction is snapped to the codebook
    divided by s, and the final latent is multiplied by s again before the tokenizer decodes it."""
    s = 0.25
    model = _tiny(cfg=_cfg(TINY, **{"decoder.diffusion.z_scale_factor": s}))
    _randomise_zero_init(model.unet)
    model.eval()
    video = _video()
    with torch.no_grad():
        out = model(video)
        torch.manual_seed(5)
        loss = model.loss(video, out)["loss"]
        z = model.tokenizer.encode(video.flatten(0, 1)) / s
        abar = model.schedule.alphas_cumprod
        torch.manual_seed(5)
        t = torch.randint(0, 1000, (6,))
        eps = torch.randn(6, 3, 8, 8)
        a = abar[t].float().view(6, 1, 1, 1)
        noisy = a.sqrt() * z + (1 - a).sqrt() * eps
        expected = (model.unet(noisy, t, out["slots"].flatten(0, 1)) - eps).square().mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-7)
    # snapping works in the scaled space: the codebook vectors divided by s
    snapped = model.snap(z)
    torch.testing.assert_close(snapped * s, model.tokenizer.quantize(z * s)[0])
    # reconstruction decodes the snapped latent at the tokenizer's own scale
    slots = torch.randn(1, 2, 3, 16)
    frames = model.reconstruct(slots, generator=torch.Generator().manual_seed(0))
    latents = model.sample_latents(slots.flatten(0, 1), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(frames.flatten(0, 1), model.tokenizer.decode(model.snap(latents) * s))


def test_frozen_tokenizer_and_gradients():
    model = _tiny()
    _randomise_zero_init(model.unet)
    model.train()
    assert not model.tokenizer.training
    assert all(not p.requires_grad for p in model.tokenizer.parameters())
    assert any(k.startswith("tokenizer.codebook") for k in model.state_dict())
    video = _video()
    model.loss(video, model(video))["loss"].backward()
    assert all(p.grad is None for p in model.tokenizer.parameters())
    missing = [
        n for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.any())
    ]
    assert not missing, missing  # the slots are not detached: the trunk gets gradients too
    model.eval()
    model.train(True)
    assert model.unet.training and model.trunk.training and not model.tokenizer.training
    assert not model.tokenizer.drop.training
    # the U-Net parameters form the decoder group; the rest of the trainables is the trunk
    dec = {id(p) for p in model.decoder_parameters()}
    assert dec == {id(p) for p in model.unet.parameters()}
    rest = {id(p) for p in model.parameters() if p.requires_grad} - dec
    assert rest == {id(p) for p in model.trunk.parameters()}


def test_learning_lowers_loss():
    model = _tiny()
    video = _video(b=2, t=2)
    opt = torch.optim.Adam(
        [
            {"params": [p for p in model.trunk.parameters()], "lr": 1e-3},
            {"params": model.decoder_parameters(), "lr": 2e-3},
        ]
    )

    def fixed_loss():  # same t and noise every time
        model.eval()
        torch.manual_seed(123)
        with torch.no_grad():
            value = model.loss(video, model(video))["loss"].item()
        model.train()
        return value

    before = fixed_loss()
    torch.manual_seed(0)
    for _ in range(40):
        loss = model.loss(video, model(video))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = fixed_loss()
    assert after < 0.7 * before, (before, after)


# ---------------------------------------------------------------- evaluation
def test_chunked_segment_equals_unchunked():
    model = _tiny().eval()
    video = _video(b=2, t=5, seed=1)
    seg_full = model.segment(video, chunk_len=5)
    seg_chunk = model.segment(video, chunk_len=2)
    assert seg_full.dtype == torch.long and seg_full.shape == (2, 5, 32, 32)
    assert torch.equal(seg_full, seg_chunk)
    with torch.no_grad():
        attn = model(video)["attn"]  # [2, 5, 3, 64]
    up = F.interpolate(
        attn.reshape(-1, 1, 8, 8), size=(32, 32), mode="bilinear", align_corners=False
    ).reshape(2, 5, 3, 32, 32)
    assert torch.equal(seg_full, up.argmax(dim=2))
    assert len(seg_full.unique()) > 1


def test_reconstruct_is_seeded_snapped_and_shaped():
    model = _tiny()
    _randomise_zero_init(model.unet)
    model.train()
    torch.manual_seed(0)
    slots = torch.randn(2, 3, 3, 16)
    tok = model.tokenizer
    tok.quantize_calls = 0
    a = model.reconstruct(slots, generator=torch.Generator().manual_seed(0))
    assert tok.quantize_calls == 21  # 20 x0 snaps (one per model evaluation) + the final one
    assert a.shape == (2, 3, 3, 32, 32)
    assert model.unet.training and not tok.training  # mode restored; tokenizer stays eval
    b = model.reconstruct(slots, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    c = model.reconstruct(slots, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(a, c)
    # the decoded latent is made of codebook vectors
    latents = model.sample_latents(
        slots.flatten(0, 1), generator=torch.Generator().manual_seed(0)
    )
    assert latents.shape == (6, 3, 8, 8)
    z_q = model.snap(latents)
    torch.testing.assert_close(a.flatten(0, 1), tok.decode(z_q))
    vectors = z_q.permute(0, 2, 3, 1).reshape(-1, 3)
    dist = (vectors[:, None] - tok.codebook.weight[None]).norm(dim=-1).min(dim=1).values
    assert dist.max() < 1e-6
    # same_noise: every frame starts from the same noise; otherwise each from its own
    first_inputs = []
    forward = model.unet.forward

    def recording_forward(x, t, context):
        first_inputs.append(x.clone())
        return forward(x, t, context)

    model.unet.forward = recording_forward
    for same_noise in (True, False):
        first_inputs.clear()
        model.reconstruct(slots, same_noise=same_noise, generator=torch.Generator().manual_seed(0))
        x_start = first_inputs[0]
        assert len(first_inputs) == 20 and x_start.shape == (6, 3, 8, 8)
        assert torch.equal(x_start[0], x_start[5]) == same_noise
        if same_noise:  # one [1, C, h, w] draw from the generator, repeated
            expected = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
            assert torch.equal(x_start, expected.expand(6, -1, -1, -1))


def test_reconstruct_other_samplers():
    model = _tiny().eval()
    _randomise_zero_init(model.unet)
    slots = torch.randn(1, 2, 3, 16)
    tok = model.tokenizer
    tok.quantize_calls = 0
    out = model.reconstruct(slots, sampler="ddim", steps=5, generator=torch.Generator())
    assert out.shape == (1, 2, 3, 32, 32) and tok.quantize_calls == 6
    with pytest.raises(ValueError, match="sampler"):
        model.reconstruct(slots, sampler="heun")


# ---------------------------------------------------------------- validation
def test_invalid_configs_raise():
    with pytest.raises(ValueError, match="down_factor"):
        SlotDiffusion(TINY, 36, StandInTokenizer(down_factor=8))  # the trunk accepts 36
    with pytest.raises(ValueError, match="U-Net"):  # latent 8 vs U-Net down-sampling 16
        SlotDiffusion(
            _cfg(TINY, **{"decoder.unet.channel_mult": [1, 1, 1, 1, 1]}), 32, StandInTokenizer()
        )
    with pytest.raises(ValueError, match="beta_schedule"):
        SlotDiffusion(_cfg(TINY, **{"decoder.diffusion.beta_schedule": "cosine"}), 32,
                      StandInTokenizer())
    model = SlotDiffusion(TINY, 32, StandInTokenizer(channels=4, down_factor=2))
    assert model.latent_shape == (4, 16, 16) and model.unet.in_channels == 4
