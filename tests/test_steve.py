"""Tests of STEVE (slotbench.models.steve) on top of the shared slot trunk and the dVAE."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import reference_config

from slotbench.models import STEVE, build_model, build_tokenizer
from slotbench.models.common import count_parameters
from slotbench.models.steve import STEVETransformerDecoder, causal_attention_in_blocks, explicit_attention
from slotbench.training.tasks import param_groups

# the reference configurations come from params/ (the single source of truth)
REF_DVAE = reference_config("movi_e", "dvae", tokenizer=True)["tokenizer"]
REF_MOVI_E = reference_config("movi_e", "steve")["model"]
REF_MOVI_SOLID = reference_config("movi_solid", "steve")["model"]

TINY_DVAE = dict(name="dvae", vocab_size=32, hidden_channels=16)
TINY = dict(
    name="steve",
    num_slots=3,
    slot_size=16,
    slot_mlp_size=32,
    num_iterations=2,
    slot_eps=1e-6,
    encoder=dict(type="cnn", channels=[16, 16], kernel_size=5, strides=[2, 1], out_features=16),
    predictor=dict(num_layers=2, num_heads=4, ffn_dim=32, dropout=0.1),
    decoder=dict(num_layers=2, num_heads=2, d_model=16, dropout=0.1),
)


def _tiny(res=16, seed=0, cfg=TINY):
    torch.manual_seed(seed)
    return build_model(cfg, res, tokenizer=build_tokenizer(TINY_DVAE))


def _video(b=2, t=3, res=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, 3, res, res, generator=g) * 2 - 1


# ---------------------------------------------------------------- parameter counts
def test_reference_parameter_counts_movi_e():
    model = build_model(REF_MOVI_E, 128, tokenizer=build_tokenizer(REF_DVAE))
    assert isinstance(model, STEVE)
    assert count_parameters(model, trainable_only=True) == 10_780_608
    assert count_parameters(model.trans_decoder) == 6_542_592
    assert count_parameters(model.trunk) == 4_238_016
    assert count_parameters(model.dvae) == 681_923
    assert count_parameters(model) == 11_462_531
    # the original also counts 8 frozen bool masks of 1024 x 1024
    assert count_parameters(model) + 8 * 1024 * 1024 == 19_851_139
    dec = model.trans_decoder
    assert count_parameters(dec.in_proj) == 37_056
    assert count_parameters(dec.tok_emb) == 786_624
    assert dec.pos_emb.numel() == 196_608
    assert all(count_parameters(b) == 591_936 for b in dec.blocks) and len(dec.blocks) == 8
    assert count_parameters(dec.layer_norm) == 384
    assert count_parameters(dec.head) == 786_432
    assert model.token_resolution == (32, 32) and model.num_tokens == 1024
    assert dec.causal_mask.shape == (1024, 1024)


def test_reference_parameter_counts_movi_solid_tex():
    model = build_model(REF_MOVI_SOLID, 128, tokenizer=build_tokenizer(REF_DVAE))
    assert count_parameters(model, trainable_only=True) == 8_278_976
    assert count_parameters(model) + 8 * 1024 * 1024 == 17_349_507


def test_state_dict_holds_dvae_not_mask():
    model = _tiny()
    keys = set(model.state_dict())
    assert any(k.startswith("dvae.") for k in keys)
    assert not any("causal_mask" in k for k in keys)
    assert any(n.endswith("causal_mask") for n, _ in model.named_buffers())
    assert not any("mask" in n for n, _ in model.named_parameters())


def test_decoder_init():
    torch.manual_seed(0)
    dec = STEVETransformerDecoder(vocab_size=64, num_tokens=256, d_model=48, num_heads=4,
                                  num_layers=3, dropout=0.1)
    pe = dec.pos_emb
    assert pe.abs().max() <= 2.0 and abs(pe.std().item() - 0.88) < 0.05  # N(0,1) cut at +-2
    gain = (3 * 3) ** -0.5
    xavier = math.sqrt(6.0 / (48 + 48))
    for block in dec.blocks:
        for attn in (block.self_attn, block.encoder_decoder_attn):
            for proj in (attn.proj_q, attn.proj_k, attn.proj_v, attn.proj_o):
                assert proj.bias is None
            assert attn.proj_q.weight.abs().max() <= xavier
            assert attn.proj_o.weight.abs().max() <= gain * xavier
            assert attn.proj_o.weight.abs().max() > 0.9 * gain * xavier
        ffn1, ffn2 = block.ffn[0], block.ffn[2]
        assert torch.all(ffn1.bias == 0) and torch.all(ffn2.bias == 0)
        assert ffn2.weight.abs().max() <= gain * math.sqrt(6.0 / (192 + 48))
        assert ffn1.weight.abs().max() <= math.sqrt(6.0 / 48)  # kaiming-uniform(relu)
    assert [b.is_first for b in dec.blocks] == [True, False, False]
    assert dec.head.bias is None and dec.tok_emb.num_embeddings == 65


# ---------------------------------------------------------------- forward / loss
def test_forward_shapes_and_loss():
    model = _tiny()
    video = _video()
    out = model(video)
    assert out["slots"].shape == (2, 3, 3, 16)
    assert out["attn"].shape == (2, 3, 3, 64)  # 8x8 features
    assert out["logits"].shape == (6, 16, 32)  # 4x4 tokens, vocab 32
    assert out["targets"].shape == (6, 16) and out["targets"].dtype == torch.long
    expected = model.dvae.tokenize(video.flatten(0, 1)).flatten(1)
    assert torch.equal(out["targets"], expected)
    losses = model.loss(video, out)
    assert set(losses) == {"loss", "token_recon_loss"}
    ce = F.cross_entropy(out["logits"].reshape(-1, 32), out["targets"].reshape(-1))
    torch.testing.assert_close(losses["loss"], ce)


def test_dvae_with_down_factor_two_gives_four_times_the_tokens():
    torch.manual_seed(0)
    model = build_model(TINY, 16, tokenizer=build_tokenizer(dict(TINY_DVAE, down_factor=2)))
    assert model.token_resolution == (8, 8) and model.num_tokens == 64
    video = _video()
    out = model(video)
    assert out["logits"].shape == (6, 64, 32) and out["targets"].shape == (6, 64)
    assert torch.isfinite(model.loss(video, out)["loss"])


def _reference_decoder_logits(dec: STEVETransformerDecoder, slots, in_ids):
    """An independent re-statement of the reference decoder (eval mode, no dropout)."""
    h = dec.num_heads

    def mha(attn, q, kv, mask):
        b, t, d = q.shape
        s = kv.shape[1]
        qh = (q @ attn.proj_q.weight.T).view(b, t, h, -1).transpose(1, 2)
        kh = (kv @ attn.proj_k.weight.T).view(b, s, h, -1).transpose(1, 2)
        vh = (kv @ attn.proj_v.weight.T).view(b, s, h, -1).transpose(1, 2)
        scores = (qh * qh.shape[-1] ** -0.5) @ kh.transpose(-1, -2)
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        out = (scores.softmax(-1) @ vh).transpose(1, 2).reshape(b, t, d)
        return out @ attn.proj_o.weight.T

    memory = slots @ dec.in_proj.weight.T + dec.in_proj.bias
    ids = torch.cat([torch.full_like(in_ids[:, :1], dec.vocab_size), in_ids], dim=1)
    x = dec.tok_emb.weight[ids] + dec.pos_emb[:, : ids.shape[1]]
    t = x.shape[1]
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    for i, blk in enumerate(dec.blocks):
        if i == 0:
            x = blk.self_attn_layer_norm(x)
            x = x + mha(blk.self_attn, x, x, mask)
        else:
            y = blk.self_attn_layer_norm(x)
            x = x + mha(blk.self_attn, y, y, mask)
        y = blk.encoder_decoder_attn_layer_norm(x)
        x = x + mha(blk.encoder_decoder_attn, y, memory, None)
        y = blk.ffn_layer_norm(x)
        x = x + blk.ffn[2](F.relu(blk.ffn[0](y)))
    return dec.layer_norm(x) @ dec.head.weight.T


def test_decoder_matches_reference_formulation():
    model = _tiny().eval()
    dec = model.trans_decoder
    torch.manual_seed(1)
    slots = torch.randn(3, 3, 16)
    in_ids = torch.randint(0, 32, (3, 15))
    with torch.no_grad():
        expected = _reference_decoder_logits(dec, slots, in_ids)
        for impl in ("sdpa", "explicit"):
            dec.attn_impl = impl
            torch.testing.assert_close(dec(slots, in_ids), expected, rtol=1e-4, atol=1e-5)
    dec.attn_impl = "sdpa"


def test_cross_attention_memory_is_in_proj_of_the_slots():
    """Pins STEVE's decoder input (models spec §2.3): the slots ``[B, N, D]`` pass through
    ``in_proj = Linear(D, D)`` with a bias (no LayerNorm) and the result is the memory of every
    block's cross-attention, both in teacher forcing and in greedy generation. Stated as: the
    decoder on ``slots`` equals a copy whose ``in_proj`` is the identity, run on
    ``in_proj(slots)``; and ``in_proj`` is no no-op (the copy on the raw slots differs)."""
    model = _tiny().eval()
    dec = model.trans_decoder
    proj = dec.in_proj
    assert isinstance(proj, torch.nn.Linear) and proj.bias is not None
    assert proj.in_features == proj.out_features == 16
    identity = copy.deepcopy(dec)
    with torch.no_grad():
        identity.in_proj.weight.copy_(torch.eye(16))
        identity.in_proj.bias.zero_()
        proj.bias.copy_(torch.linspace(-0.5, 0.5, 16))  # a bias that matters
    torch.manual_seed(6)
    slots = torch.randn(2, 3, 16)
    in_ids = torch.randint(0, 32, (2, 15))
    with torch.no_grad():
        logits = dec(slots, in_ids)
        torch.testing.assert_close(logits, identity(proj(slots), in_ids), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(logits, identity(slots, in_ids), rtol=1e-3, atol=1e-3)
        for use_cache in (True, False):
            tokens, gen_logits = dec.generate(slots, use_cache=use_cache, return_logits=True)
            ref_tokens, ref_logits = identity.generate(
                proj(slots), use_cache=use_cache, return_logits=True
            )
            assert torch.equal(tokens, ref_tokens)
            torch.testing.assert_close(gen_logits, ref_logits, rtol=1e-4, atol=1e-5)
            # generation and teacher forcing share the memory: same logits on the same tokens
            torch.testing.assert_close(dec(slots, tokens[:, :-1]), gen_logits,
                                       rtol=1e-4, atol=1e-5)


def test_sdpa_equals_explicit_attention():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8)
    mask = torch.triu(torch.ones(7, 7, dtype=torch.bool), diagonal=1)
    torch.testing.assert_close(
        F.scaled_dot_product_attention(q, k, v, is_causal=True),
        explicit_attention(q, k, v, mask),
        rtol=1e-5,
        atol=1e-6,
    )
    kv = torch.randn(2, 3, 4, 8)
    torch.testing.assert_close(
        F.scaled_dot_product_attention(q, kv, kv), explicit_attention(q, kv, kv),
        rtol=1e-5, atol=1e-6,
    )
    model = _tiny().eval()
    video = _video()
    with torch.no_grad():
        sdpa = model(video)["logits"]
        model.trans_decoder.attn_impl = "explicit"
        explicit = model(video)["logits"]
    torch.testing.assert_close(sdpa, explicit, rtol=1e-4, atol=1e-5)
    model.trans_decoder.attn_impl = "flash9"
    with pytest.raises(ValueError):
        model(video)


@pytest.mark.parametrize("block", [1, 3, 4, 10, 16])
def test_causal_attention_in_blocks_without_dropout_is_causal_attention(block):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 10, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    full = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    blocks = causal_attention_in_blocks(q, k, v, 0.0, block)
    torch.testing.assert_close(blocks, full)
    weights = torch.randn_like(full)
    grads_full = torch.autograd.grad((full * weights).sum(), (q, k, v))
    grads_blocks = torch.autograd.grad((blocks * weights).sum(), (q, k, v))
    for a, b in zip(grads_blocks, grads_full):
        torch.testing.assert_close(a, b)


def test_causal_attention_in_blocks_drops_each_causal_weight_independently():
    """With ``v`` the identity the output rows are the attention weights after dropout: every weight
    is either dropped (0) or the full causal softmax's divided by ``1 - p``; nothing above the
    diagonal; the dropped share is ``p`` (binomial bounds); future keys change nothing before them."""
    torch.manual_seed(0)
    length, p = 40, 0.3
    q, k = torch.randn(4, 8, length, 16, dtype=torch.float64), torch.randn(4, 8, length, 16, dtype=torch.float64)
    eye = torch.eye(length, dtype=torch.float64).expand(4, 8, length, length)
    weights = F.scaled_dot_product_attention(q, k, eye, is_causal=True)
    dropped = causal_attention_in_blocks(q, k, eye, p, block=16)
    lower = torch.ones(length, length, dtype=torch.bool).tril().expand_as(weights)
    assert torch.all(dropped[~lower] == 0)
    kept = dropped[lower] != 0
    torch.testing.assert_close(dropped[lower][kept], weights[lower][kept] / (1 - p))
    n = lower.sum().item()
    share = 1 - kept.double().mean().item()
    assert abs(share - p) < 5 * (p * (1 - p) / n) ** 0.5
    # the same draws with the last 10 keys changed: the first 30 rows are unchanged
    torch.manual_seed(1)
    before = causal_attention_in_blocks(q, k, eye, p, block=16)
    k2 = k.clone()
    k2[..., 30:, :] += 5.0
    torch.manual_seed(1)
    after = causal_attention_in_blocks(q, k2, eye, p, block=16)
    torch.testing.assert_close(after[..., :30, :], before[..., :30, :])


def test_training_self_attention_runs_in_blocks(monkeypatch):
    """STEVE in training mode (dropout > 0) takes the block path; in eval mode the fused one."""
    import slotbench.models.steve as steve

    calls = []
    real = steve.causal_attention_in_blocks
    monkeypatch.setattr(steve, "causal_attention_in_blocks", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    model = _tiny()
    model.trans_decoder.train()
    model(_video())
    assert len(calls) == len(model.trans_decoder.blocks)
    calls.clear()
    model.eval()
    with torch.no_grad():
        model(_video())
    assert not calls


@pytest.mark.parametrize("impl", ["sdpa", "explicit"])
def test_causal_masking(impl):
    """Position i predicts token i from BOS + tokens[:i]: changing token k changes nothing at
    positions <= k, and does change some position > k."""
    model = _tiny().eval()
    dec = model.trans_decoder
    dec.attn_impl = impl
    torch.manual_seed(2)
    slots = torch.randn(2, 3, 16)
    tokens = torch.randint(0, 32, (2, 16))
    with torch.no_grad():
        base = dec(slots, tokens[:, :-1])
        assert base.shape == (2, 16, 32)
        for k in (0, 5, 14):
            changed = tokens.clone()
            changed[:, k] = (changed[:, k] + 7) % 32
            logits = dec(slots, changed[:, :-1])
            torch.testing.assert_close(logits[:, : k + 1], base[:, : k + 1], rtol=0, atol=1e-5)
            assert not torch.allclose(logits[:, k + 1 :], base[:, k + 1 :])
        # the last target token is never an input
        changed = tokens.clone()
        changed[:, -1] = (changed[:, -1] + 1) % 32
        torch.testing.assert_close(dec(slots, changed[:, :-1]), base, rtol=0, atol=0)


# ---------------------------------------------------------------- generation
def test_kv_cache_decoding_matches_full_recompute():
    model = _tiny(res=32, seed=3).eval()  # 8x8 = 64 tokens
    dec = model.trans_decoder
    torch.manual_seed(4)
    slots = torch.randn(2, 2, 3, 16)
    flat = slots.flatten(0, 1)
    with torch.no_grad():
        tok_c, logit_c = dec.generate(flat, use_cache=True, return_logits=True)
        tok_u, logit_u = dec.generate(flat, use_cache=False, return_logits=True)
        assert torch.equal(tok_c, tok_u)
        torch.testing.assert_close(logit_c, logit_u, rtol=1e-4, atol=1e-5)
        assert tok_c.unique().numel() > 3  # not a degenerate constant sequence
        # greedy: each token is the argmax of its step's logits, which equal teacher forcing
        assert torch.equal(tok_u, logit_u.argmax(-1))
        tf = dec(flat, tok_u[:, :-1])
        torch.testing.assert_close(tf, logit_u, rtol=1e-4, atol=1e-5)
        for use_cache in (True, False):  # a prefix of the generation (for timing)
            part, _ = dec.generate(flat, use_cache=use_cache, steps=10)
            assert torch.equal(part, tok_c[:, :10])
    recon_c = model.reconstruct(slots, use_cache=True)
    recon_u = model.reconstruct(slots, use_cache=False, batch_size=3)
    assert recon_c.shape == (2, 2, 3, 32, 32)
    # same tokens; another decode batch size only changes the float summation order of the convs
    torch.testing.assert_close(recon_c, recon_u, rtol=0, atol=1e-5)
    assert torch.equal(model.reconstruct_tokens(slots, use_cache=False, batch_size=3),
                       model.reconstruct_tokens(slots, use_cache=True))
    tokens = model.reconstruct_tokens(slots)
    assert tokens.shape == (2, 2, 8, 8)
    assert torch.equal(tokens.flatten(2).flatten(0, 1), tok_c)
    torch.testing.assert_close(
        recon_c.flatten(0, 1), model.dvae.detokenize(tokens.flatten(0, 1))
    )


def test_reconstruct_is_deterministic_in_train_mode():
    model = _tiny().train()
    slots = torch.randn(1, 2, 3, 16)
    first = model.reconstruct(slots)
    assert model.training and model.trans_decoder.training  # mode restored
    assert torch.equal(first, model.reconstruct(slots))
    with pytest.raises(RuntimeError):
        model.trans_decoder.generate(slots[0])


# ---------------------------------------------------------------- training
def test_frozen_dvae_and_gradients():
    model = _tiny()
    model.train()
    assert not model.dvae.training
    assert all(not m.training for m in model.dvae.modules())
    assert model.trunk.training and model.trans_decoder.training
    assert all(not p.requires_grad for p in model.dvae.parameters())
    video = _video()
    model.loss(video, model(video))["loss"].backward()
    assert all(p.grad is None for p in model.dvae.parameters())
    missing = [
        n for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))
    ]
    assert not missing, missing
    assert any(n.startswith("trunk.encoder.") for n, _ in model.named_parameters())
    model.eval()
    assert not model.dvae.training and not model.trunk.training


def test_decoder_parameters_split_trunk_from_decoder():
    """``decoder_parameters`` is ``trans_decoder``; with the trunk it covers every trainable
    parameter (the frozen dVAE in neither). Training builds its Adam groups from it."""
    model = _tiny()
    dec = model.decoder_parameters()
    assert {id(p) for p in dec} == {id(p) for p in model.trans_decoder.parameters()}
    rest, decoder = param_groups(model, {"lr": 1e-4, "min_lr": 1e-6, "decoder_lr": 3e-4})
    assert decoder["max_lr"] == 3e-4 and rest["max_lr"] == 1e-4
    assert {id(p) for p in decoder["params"]} == {id(p) for p in dec}
    n_trunk = sum(p.numel() for p in rest["params"])
    assert n_trunk == count_parameters(model.trunk)
    assert n_trunk + sum(p.numel() for p in dec) == count_parameters(model, trainable_only=True)


def test_learning_lowers_loss():
    model = _tiny()
    model.train()
    video = torch.full((2, 2, 3, 16, 16), -0.5)
    video[0, :, 0, 2:9, 3:10] = 0.9
    video[1, :, 1, 6:14, 1:8] = 0.8
    video[:, 1] = video[:, 1].roll(1, dims=-1)
    groups = param_groups(model, {"lr": 1e-3, "min_lr": 0.0, "decoder_lr": 3e-3})
    opt = torch.optim.Adam([{"params": g["params"], "lr": g["max_lr"]} for g in groups])
    losses = []
    for _ in range(40):
        loss = model.loss(video, model(video))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


# ---------------------------------------------------------------- evaluation
def test_segment_chunked_equals_unchunked():
    model = _tiny().eval()
    video = _video(b=2, t=5, seed=1)
    seg = model.segment(video, chunk_len=5)
    assert seg.dtype == torch.long and seg.shape == (2, 5, 16, 16)
    assert int(seg.min()) >= 0 and int(seg.max()) < 3
    assert torch.equal(seg, model.segment(video, chunk_len=2))
    with torch.no_grad():
        attn = model(video)["attn"].reshape(10, 3, 8, 8)
    up = F.interpolate(attn, size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.equal(seg, up.argmax(dim=1).reshape(2, 5, 16, 16))


# ---------------------------------------------------------------- validation
def test_invalid_configs_raise():
    with pytest.raises(ValueError, match="`tokenizer` stage"):
        build_model(TINY, 16)
    bad = copy.deepcopy(TINY)
    bad["decoder"]["d_model"] = 32
    with pytest.raises(ValueError, match="slot_size"):
        build_model(bad, 16, tokenizer=build_tokenizer(TINY_DVAE))
    with pytest.raises(ValueError):
        STEVE(TINY, 16, tokenizer=None)
    with pytest.raises(ValueError):  # 18 is not divisible by the encoder stride / dVAE factor
        build_model(TINY, 18, tokenizer=build_tokenizer(TINY_DVAE))
    model = _tiny()
    with pytest.raises(ValueError):
        model.trans_decoder(torch.randn(1, 3, 16), torch.zeros(1, 16, dtype=torch.long))
