"""Tests of the dVAE tokenizer (slotbench.models.dvae)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from slotbench.models import DVAE, build_tokenizer
from slotbench.models.common import count_parameters
from slotbench.models.dvae import Conv2dBlock, gumbel_noise, gumbel_softmax, gumbel_tau

REF = dict(name="dvae", vocab_size=4096, hidden_channels=64)
TINY = dict(name="dvae", vocab_size=32, hidden_channels=16)


def _img(b=2, res=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, res, res, generator=g) * 2 - 1


def test_reference_parameter_counts():
    model = build_tokenizer(REF)
    assert isinstance(model, DVAE)
    assert count_parameters(model) == 681_923
    assert count_parameters(model.encoder) == 294_784
    assert count_parameters(model.decoder) == 387_139
    assert model.down_factor == 4
    assert model.vocab_size == 4096


def test_reference_layout_and_init():
    torch.manual_seed(0)
    model = DVAE(REF)
    enc, dec = model.encoder, model.decoder
    assert len(enc) == 8 and len(dec) == 12
    first = enc[0]
    assert isinstance(first, Conv2dBlock)
    assert first.m.bias is None and first.m.kernel_size == (4, 4) and first.m.stride == (4, 4)
    assert torch.all(first.weight == 1) and torch.all(first.bias == 0)
    # kaiming-uniform(relu): bound sqrt(6 / fan_in)
    bound = math.sqrt(6.0 / (64 * 1 * 1))
    w = enc[1].m.weight
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    # xavier-uniform, zero bias on the logit conv and the RGB conv
    for conv in (enc[-1], dec[-1]):
        assert isinstance(conv, torch.nn.Conv2d)
        assert torch.all(conv.bias == 0)
        fan_in, fan_out = conv.in_channels, conv.out_channels
        assert conv.weight.abs().max() <= math.sqrt(6.0 / (fan_in + fan_out))
    assert isinstance(dec[5], torch.nn.PixelShuffle) and isinstance(dec[10], torch.nn.PixelShuffle)
    assert dec[4].m.out_channels == 256 and dec[9].m.out_channels == 256
    assert dec[1].m.kernel_size == (3, 3) and dec[6].m.kernel_size == (3, 3)


def test_forward_shapes_and_log_softmax():
    torch.manual_seed(0)
    model = DVAE(TINY)
    img = _img()
    out = model(img, tau=1.0)
    assert out["recon"].shape == (2, 3, 16, 16)
    assert out["z_logits"].shape == (2, 32, 4, 4)
    torch.testing.assert_close(out["z_logits"].exp().sum(dim=1), torch.ones(2, 4, 4))
    losses = model.loss(img, out)
    assert set(losses) == {"loss", "recon_loss"}
    torch.testing.assert_close(losses["loss"], ((out["recon"] - img) ** 2).mean())
    out_hard = model(img, tau=0.5, hard=True)
    assert out_hard["recon"].shape == (2, 3, 16, 16)


def test_gumbel_softmax():
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 2, 2).log_softmax(dim=1)
    soft = gumbel_softmax(logits, tau=0.7, dim=1)
    assert torch.all(soft >= 0)
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(3, 2, 2))
    logits.requires_grad_(True)
    hard = gumbel_softmax(logits, tau=0.7, hard=True, dim=1)
    assert set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(hard.detach().sum(dim=1), torch.ones(3, 2, 2))
    hard.sum().backward()  # straight-through gradient exists
    assert logits.grad is not None
    # low temperature: the sample concentrates on the argmax of logits + noise
    peaked = gumbel_softmax(torch.tensor([[0.0, 50.0, 0.0]]), tau=0.1)
    assert peaked[0, 1] > 0.999
    with pytest.raises(ValueError):
        gumbel_softmax(logits, tau=0.0)


def test_gumbel_noise_is_standard_gumbel():
    """The noise drawn through ``-log(U)`` has the standard Gumbel law (KS test against SciPy's
    ``gumbel_r``) and the law of the reference's ``-log(Exp(1) + tiny)`` draw (two-sample KS)."""
    from scipy import stats

    torch.manual_seed(0)
    noise = gumbel_noise(torch.empty(4, 64, 32, 32))
    assert noise.shape == (4, 64, 32, 32) and torch.isfinite(noise).all()
    sample = noise.flatten()[:200_000].double().numpy()
    assert stats.kstest(sample, stats.gumbel_r.cdf).pvalue > 1e-3
    tiny = torch.finfo(torch.float32).tiny
    reference = -(torch.empty(200_000).exponential_() + tiny).log()
    assert stats.ks_2samp(sample, reference.double().numpy()).pvalue > 1e-3
    assert abs(sample.mean() - np.euler_gamma) < 0.01 and abs(sample.var() - np.pi**2 / 6) < 0.02


def test_gumbel_tau_schedule():
    total = 1000  # decay over D = 150 steps
    assert gumbel_tau(0, total) == pytest.approx(1.0)
    assert gumbel_tau(75, total) == pytest.approx(0.55)
    assert gumbel_tau(150, total) == pytest.approx(0.1)
    assert gumbel_tau(151, total) == pytest.approx(0.1)
    assert gumbel_tau(10_000, total) == pytest.approx(0.1)
    assert gumbel_tau(30, total) == pytest.approx(0.45 * math.cos(math.pi * 30 / 150) + 0.55)
    values = [gumbel_tau(k, total) for k in range(200)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert gumbel_tau(5, 100, init_tau=2.0, final_tau=0.5, decay_pct=0.1) == pytest.approx(1.25)


def test_tokenize_and_detokenize():
    torch.manual_seed(0)
    model = DVAE(TINY).eval()
    img = _img()
    tokens = model.tokenize(img)
    assert tokens.dtype == torch.long and tokens.shape == (2, 4, 4)
    assert torch.equal(tokens, model.encoder(img).argmax(dim=1))
    assert torch.equal(tokens, model.tokenize(img))  # no noise
    one_hot = torch.nn.functional.one_hot(tokens, 32).permute(0, 3, 1, 2).float()
    from_ids = model.detokenize(tokens)
    from_one_hot = model.detokenize(one_hot)
    assert from_ids.shape == (2, 3, 16, 16)
    torch.testing.assert_close(from_ids, from_one_hot, rtol=1e-5, atol=1e-6)
    probs = torch.randn(2, 32, 4, 4).softmax(dim=1)
    assert model.detokenize(probs).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError):
        model.detokenize(torch.full((2, 4, 4), 32))
    with pytest.raises(ValueError):
        model.detokenize(torch.rand(2, 31, 4, 4))


def test_tokens_are_the_noise_free_argmax_of_the_logits():
    """Pins the dVAE's tokenisation (models spec §2.1): tokens are the argmax over the
    vocabulary of the encoder logits, **no Gumbel noise**, so even a tiny logit margin decides
    them, and they do not depend on the global RNG state. The logit conv is set to a constant
    map whose largest logit (id 7) leads the next one by only 3e-5: any Gumbel sample (noise of
    scale ~1) would scatter the ids over the vocabulary."""
    torch.manual_seed(0)
    model = DVAE(TINY).eval()
    with torch.no_grad():
        head = model.encoder[-1]
        head.weight.zero_()
        head.bias.copy_(torch.linspace(0.0, 1e-3, 32).roll(8))  # max at id 7
    assert int(head.bias.argmax()) == 7
    img = _img(b=3, res=32, seed=4)
    token_sets = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        token_sets.append(model.tokenize(img))
    for tokens in token_sets:
        assert tokens.shape == (3, 8, 8) and tokens.dtype == torch.long
        assert torch.equal(tokens, torch.full((3, 8, 8), 7))
    # on the untouched random weights too: the same ids whatever the RNG state, = logits argmax
    torch.manual_seed(0)
    model = DVAE(TINY).eval()
    torch.manual_seed(11)
    first = model.tokenize(img)
    torch.manual_seed(12)
    assert torch.equal(model.tokenize(img), first)
    assert torch.equal(first, model.logits(img).argmax(dim=1))


def test_learning_lowers_loss():
    torch.manual_seed(0)
    model = DVAE(TINY).train()
    img = torch.full((4, 3, 16, 16), -0.6)
    img[0, 0, 2:9, 3:10] = 0.9
    img[1, 1, 6:14, 1:8] = 0.8
    img[2, 2, 0:6, 8:16] = 0.7
    img[3, :, 8:16, 8:16] = 0.5
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(40):
        out = model(img, tau=gumbel_tau(step, 40))
        loss = model.loss(img, out)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="unknown tokenizer"):
        build_tokenizer(dict(TINY, name="vqvae9"))
    model = DVAE(TINY)
    with pytest.raises(ValueError):
        model(torch.rand(2, 3, 18, 18), tau=1.0)
    with pytest.raises(ValueError):
        model.tokenize(torch.rand(2, 1, 3, 16, 16))
    with pytest.raises(ValueError):
        gumbel_tau(0, 10, init_tau=0.1, final_tau=1.0)


def test_down_factor_two_halves_the_token_grid_only():
    """``down_factor: 2``: tokens of 2x2 pixels, one up-sampling stage; 4 keeps the original's layers."""
    torch.manual_seed(0)
    four = DVAE(TINY)
    torch.manual_seed(0)
    two = DVAE(dict(TINY, down_factor=2))
    assert (four.down_factor, two.down_factor) == (4, 2)
    assert len(two.decoder) == len(four.decoder) - 5
    assert sum(isinstance(m, torch.nn.PixelShuffle) for m in two.decoder) == 1
    img = _img(b=2, res=16)
    assert two.tokenize(img).shape == (2, 8, 8)
    assert four.tokenize(img).shape == (2, 4, 4)
    out = two(img, tau=1.0)
    assert out["recon"].shape == img.shape and out["z_logits"].shape == (2, TINY["vocab_size"], 8, 8)
    assert two.detokenize(two.tokenize(img)).shape == img.shape
    with pytest.raises(ValueError, match="divisible by 2"):
        two.logits(_img(b=1, res=15))
    with pytest.raises(ValueError, match="down_factor"):
        DVAE(dict(TINY, down_factor=8))
