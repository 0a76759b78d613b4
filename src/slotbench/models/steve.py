"""STEVE (Singh et al. 2022) as configured by SlotDiffusion's video experiments on MOVi.

Slot trunk (:class:`~slotbench.models.trunk.SlotTrunk`, the SAVi one) + a frozen dVAE tokenizer
(:class:`~slotbench.models.dvae.DVAE`, always in eval mode, a submodule named ``dvae`` so its
weights are part of the state dict) + a slot-conditioned autoregressive transformer decoder
over the dVAE tokens (``trans_decoder``, :class:`STEVETransformerDecoder`):

* slots ``[BT, N, D]`` -> ``in_proj = Linear(D, D)`` (the cross-attention memory, no LN);
* tokens: ``BOS (id V) + targets[:-1]`` -> ``Embedding(V + 1, D)`` (N(0, 1) init) + a learned
  position embedding ``[1, L, D]`` (``L = h*w``, truncated normal, std 1, cut at +-2) ->
  dropout;
* ``num_layers`` pre-LN blocks: ``x += SelfAttn(LN x)`` (causal), ``x += CrossAttn(LN x,
  slots)``, ``x += FFN(LN x)`` (``D -> 4D -> D``, ReLU). In the **first** block ``x <- LN(x)``
  replaces the residual stream before its self-attention (the reference's ``is_first``).
  Attention projections are bias-free and xavier-uniform; ``proj_o`` and the second FFN linear
  use xavier gain ``(3 num_layers)^-0.5``; the first FFN linear is kaiming-uniform; dropout on
  the attention weights, after ``proj_o`` and after the FFN;
* final ``LayerNorm(D)`` -> ``head = Linear(D, V, bias=False)``: logits ``[BT, L, V]``;
  position ``i`` predicts token ``i`` from ``BOS + tokens[:i]``.

Both attentions use ``F.scaled_dot_product_attention``; ``attn_impl = "explicit"`` switches to
the reference's explicit ``softmax(q k^T / sqrt(d))`` formulation (same function). In training on a
CPU, with dropout on the attention weights, PyTorch has no fused causal kernel and would fill and
drop out the whole ``L x L`` weight matrix (CUDA's fused kernels take the dropout themselves);
:func:`causal_attention_in_blocks` computes the self-attention in blocks of queries that see only
the keys up to their end (about half the matrix, the same function: the same weights, each dropped
independently with probability ``dropout``). The causal
mask is one non-persistent bool buffer ``[L, L]``. The original instead stores one
``triu(ones(L, L))`` bool mask per block as a frozen ``nn.Parameter`` (8 x 1,048,576 elements
at 128x128), so its naive parameter total, 19,851,139 for MOVi-E, equals ours + 8,388,608.

Loss: cross-entropy over all ``BT * L`` tokens (mean), weight 1. Targets are the dVAE's argmax
tokens of each frame, computed on the fly under ``no_grad``.

Segmentation (reference protocol): the last Slot Attention attention ``[B, T, N, h', w']``,
bilinearly upsampled (``align_corners=False``) to ``H x W``, argmax over slots.

Reconstruction: greedy (argmax) autoregressive decoding of all ``L`` tokens of each frame in
raster order, then ``dvae.detokenize``. With ``use_cache=True`` each layer keeps the
self-attention keys/values of the previous positions and the cross-attention keys/values of the
slots (computed once), so each new token costs one position per layer; ``use_cache=False``
re-runs the whole prefix at every step as the original does. Both give the same tokens.

Reference parameter counts (MOVi-E, 128x128): trainable 10,780,608 = trunk 4,238,016 +
``trans_decoder`` 6,542,592; with the frozen dVAE (681,923) 11,462,531. MOVi-Solid/Tex:
trainable 8,278,976.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .dvae import DVAE
from .trunk import SlotTrunk

#: Frames decoded at once by :meth:`STEVE.decode_slots` (the reference's ``recon_img(slots, bs=24)``;
#: any value gives the same frames, greedy decoding being deterministic).
DECODE_BATCH_FRAMES = 24

__all__ = [
    "MultiHeadAttention",
    "TransformerDecoderBlock",
    "STEVETransformerDecoder",
    "STEVE",
    "explicit_attention",
    "causal_attention_in_blocks",
]

ATTN_IMPLS = ("sdpa", "explicit")

#: Queries per block of :func:`causal_attention_in_blocks` (fastest of 64 / 128 / 256 at 1024
#: tokens, 2-core AMD EPYC).
CAUSAL_QUERY_BLOCK = 128


def _linear(cin: int, cout: int, bias: bool = True, init: str = "xavier", gain: float = 1.0):
    layer = nn.Linear(cin, cout, bias=bias)
    if init == "kaiming":
        nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
    else:
        nn.init.xavier_uniform_(layer.weight, gain=gain)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def explicit_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, dropout: nn.Module | None = None
) -> Tensor:
    """The reference formulation: ``softmax((q / sqrt(d)) k^T, masked -inf) v``.

    Args:
        q: ``[B, h, T, d]``; k, v: ``[B, h, S, d]``.
        mask: bool ``[T, S]``, ``True`` where attention is **forbidden**.
        dropout: applied to the attention weights.
    """
    attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)
    if mask is not None:
        attn = attn.masked_fill(mask, float("-inf"))
    attn = attn.softmax(dim=-1)
    if dropout is not None:
        attn = dropout(attn)
    return attn @ v


def causal_attention_in_blocks(
    q: Tensor, k: Tensor, v: Tensor, dropout_p: float, block: int = CAUSAL_QUERY_BLOCK
) -> Tensor:
    """Causal attention with dropout on the weights, ``[B, h, T, d]``, computed block by block.

    Queries ``[s, e)`` attend to keys ``[0, e)`` under the causal mask, so the weights above the
    diagonal blocks are never formed nor drawn for dropout: ``sum_i e_i`` of the ``T^2`` weights
    (0.56 T^2 at ``T = 1024``, ``block = 128``). Each weight is the full causal softmax's and is
    dropped independently with probability ``dropout_p`` (kept ones scaled by ``1 / (1 - p)``),
    as in ``scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)``.

    Args:
        q, k, v: ``[B, h, T, d]`` (self-attention: as many keys as queries).
        dropout_p: probability of dropping an attention weight.
        block: queries per block.
    """
    length = q.shape[-2]
    outs = []
    for start in range(0, length, block):
        end = min(start + block, length)
        # query start + i may see keys 0 .. start + i
        allowed = torch.ones(end - start, end, dtype=torch.bool, device=q.device).tril(diagonal=start)
        outs.append(F.scaled_dot_product_attention(
            q[..., start:end, :], k[..., :end, :], v[..., :end, :], attn_mask=allowed, dropout_p=dropout_p))
    return torch.cat(outs, dim=-2)


class MultiHeadAttention(nn.Module):
    """Bias-free multi-head attention; ``proj_o`` has xavier gain ``gain``."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, gain: float = 1.0):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.d_model = d_model
        self.num_heads = num_heads
        self.dropout = float(dropout)
        self.attn_dropout = nn.Dropout(dropout)
        self.output_dropout = nn.Dropout(dropout)
        self.proj_q = _linear(d_model, d_model, bias=False)
        self.proj_k = _linear(d_model, d_model, bias=False)
        self.proj_v = _linear(d_model, d_model, bias=False)
        self.proj_o = _linear(d_model, d_model, bias=False, gain=gain)

    def _heads(self, x: Tensor) -> Tensor:
        return rearrange(x, "b t (h d) -> b h t d", h=self.num_heads)

    def project_q(self, x: Tensor) -> Tensor:
        """``[B, T, D] -> [B, h, T, d]``."""
        return self._heads(self.proj_q(x))

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, S, D] -> (k, v)``, each ``[B, h, S, d]``."""
        return self._heads(self.proj_k(x)), self._heads(self.proj_v(x))

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        causal: bool = False,
        mask: Tensor | None = None,
        impl: str = "sdpa",
    ) -> Tensor:
        """Attention of projected heads, output projection and dropout: ``[B, T, D]``.

        ``causal`` (square ``T == S`` only) masks future positions; ``mask`` is the bool
        ``[T, S]`` "forbidden" mask the explicit formulation uses for it.
        """
        if impl == "sdpa" and causal and self.training and self.dropout > 0 and q.device.type == "cpu":
            out = causal_attention_in_blocks(q, k, v, self.dropout)  # CUDA's fused kernels take the dropout
        elif impl == "sdpa":
            out = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=causal
            )
        else:
            out = explicit_attention(q, k, v, mask if causal else None, self.attn_dropout)
        out = rearrange(out, "b h t d -> b t (h d)")
        return self.output_dropout(self.proj_o(out))


class TransformerDecoderBlock(nn.Module):
    """Pre-LN block: causal self-attention, cross-attention to the slots, FFN ``D -> 4D -> D``."""

    def __init__(
        self, d_model: int, num_heads: int, dropout: float, gain: float, is_first: bool = False
    ):
        super().__init__()
        self.is_first = is_first
        self.self_attn_layer_norm = nn.LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout, gain)
        self.encoder_decoder_attn_layer_norm = nn.LayerNorm(d_model)
        self.encoder_decoder_attn = MultiHeadAttention(d_model, num_heads, dropout, gain)
        self.ffn_layer_norm = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(
            _linear(d_model, 4 * d_model, init="kaiming"),
            nn.ReLU(),
            _linear(4 * d_model, d_model, gain=gain),
            nn.Dropout(dropout),
        )

    def _cross_and_ffn(self, x: Tensor, mem_k: Tensor, mem_v: Tensor, impl: str) -> Tensor:
        attn = self.encoder_decoder_attn
        q = attn.project_q(self.encoder_decoder_attn_layer_norm(x))
        x = x + attn.attend(q, mem_k, mem_v, impl=impl)
        return x + self.ffn(self.ffn_layer_norm(x))

    def forward(self, x: Tensor, memory: Tensor, mask: Tensor, impl: str = "sdpa") -> Tensor:
        """Full causal pass: ``x [B, T, D]``, ``memory [B, N, D]``, ``mask`` bool ``[T, T]``."""
        h = self.self_attn_layer_norm(x)
        if self.is_first:
            x = h
        q = self.self_attn.project_q(h)
        k, v = self.self_attn.project_kv(h)
        x = x + self.self_attn.attend(q, k, v, causal=True, mask=mask, impl=impl)
        mem_k, mem_v = self.encoder_decoder_attn.project_kv(memory)
        return self._cross_and_ffn(x, mem_k, mem_v, impl)

    def step(self, x: Tensor, pos: int, cache: dict[str, Tensor], impl: str = "sdpa") -> Tensor:
        """One position with a key/value cache (eval only).

        Args:
            x: ``[B, 1, D]``, the stream at position ``pos``.
            cache: ``k``, ``v`` ``[B, h, L, d]`` (self-attention, positions ``< pos`` filled;
                position ``pos`` is written here) and ``mem_k``, ``mem_v`` (cross-attention).
        """
        h = self.self_attn_layer_norm(x)
        if self.is_first:
            x = h
        q = self.self_attn.project_q(h)
        k, v = self.self_attn.project_kv(h)
        cache["k"][:, :, pos : pos + 1] = k
        cache["v"][:, :, pos : pos + 1] = v
        keys, values = cache["k"][:, :, : pos + 1], cache["v"][:, :, : pos + 1]
        x = x + self.self_attn.attend(q, keys, values, impl=impl)  # all previous: no mask
        return self._cross_and_ffn(x, cache["mem_k"], cache["mem_v"], impl)


class STEVETransformerDecoder(nn.Module):
    """Slot-conditioned autoregressive transformer over ``L = h*w`` dVAE tokens.

    Args:
        vocab_size: ``V`` (BOS is id ``V``).
        num_tokens: ``L``.
        d_model, num_heads, num_layers, dropout: transformer sizes.

    Attributes:
        attn_impl: ``"sdpa"`` (default) or ``"explicit"`` (the reference formulation).
    """

    def __init__(
        self,
        vocab_size: int,
        num_tokens: int,
        d_model: int,
        num_heads: int,
        num_layers: int,
        dropout: float = 0.1,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"decoder.num_layers must be >= 1, got {num_layers}")
        self.vocab_size = int(vocab_size)
        self.num_tokens = int(num_tokens)
        self.d_model = int(d_model)
        self.num_heads = int(num_heads)
        self.attn_impl = "sdpa"
        self.in_proj = nn.Linear(d_model, d_model)
        self.tok_emb = nn.Embedding(vocab_size + 1, d_model)
        self.pos_emb = nn.Parameter(torch.zeros(1, num_tokens, d_model))
        nn.init.trunc_normal_(self.pos_emb, std=1.0, a=-2.0, b=2.0)
        self.pos_dropout = nn.Dropout(dropout)
        gain = (3 * num_layers) ** -0.5
        self.blocks = nn.ModuleList(
            [
                TransformerDecoderBlock(d_model, num_heads, dropout, gain, is_first=(i == 0))
                for i in range(num_layers)
            ]
        )
        self.layer_norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        mask = torch.triu(torch.ones(num_tokens, num_tokens, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal_mask", mask, persistent=False)

    @property
    def bos(self) -> int:
        return self.vocab_size

    def _check_impl(self) -> str:
        if self.attn_impl not in ATTN_IMPLS:
            raise ValueError(f"attn_impl must be one of {ATTN_IMPLS}, got {self.attn_impl!r}")
        return self.attn_impl

    def _embed(self, ids: Tensor, start: int = 0) -> Tensor:
        """``ids [B, T]`` (BOS included) at positions ``start..start+T-1`` -> ``[B, T, D]``."""
        x = self.tok_emb(ids) + self.pos_emb[:, start : start + ids.shape[1]]
        return self.pos_dropout(x)

    def hidden(self, slots: Tensor, in_ids: Tensor) -> Tensor:
        """Final-LN hidden states ``[B, 1 + T, D]`` for ``BOS + in_ids`` (``in_ids [B, T]``)."""
        if in_ids.shape[1] >= self.num_tokens:
            raise ValueError(
                f"at most {self.num_tokens - 1} input tokens (BOS is prepended), "
                f"got {in_ids.shape[1]}"
            )
        impl = self._check_impl()
        memory = self.in_proj(slots)
        bos = torch.full((in_ids.shape[0], 1), self.bos, dtype=torch.long, device=in_ids.device)
        x = self._embed(torch.cat([bos, in_ids.long()], dim=1))
        t = x.shape[1]
        mask = self.causal_mask[:t, :t]
        for block in self.blocks:
            x = block(x, memory, mask, impl)
        return self.layer_norm(x)

    def forward(self, slots: Tensor, in_ids: Tensor) -> Tensor:
        """Teacher-forcing logits.

        Args:
            slots: ``[B, N, D]``.
            in_ids: ``[B, T]`` token ids, ``T < L`` (the targets minus the last).

        Returns:
            ``[B, 1 + T, V]``; position ``i`` predicts token ``i`` from ``BOS + in_ids[:i]``.
        """
        return self.head(self.hidden(slots, in_ids))

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(
        self,
        slots: Tensor,
        use_cache: bool = True,
        return_logits: bool = False,
        steps: int | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Greedy decoding of the tokens in raster order (call in eval mode).

        Args:
            slots: ``[B, N, D]``.
            use_cache: key/value cache (one position per layer and step) or the reference's
                full re-forward of the prefix at every step.
            return_logits: also return the logits of every step, ``[B, S, V]``.
            steps: ``S``, how many tokens to generate (default all ``L``; fewer is for
                timing).

        Returns:
            ``tokens LongTensor [B, S]`` and the logits (or ``None``). Greedy = argmax of the
            logits (the reference takes the top-1 of ``softmax(logits / 1.0)``, the same
            token). Only the last position's head output is computed at each step.
        """
        if self.training:
            raise RuntimeError("generate() needs eval mode (no dropout); call .eval() first")
        impl = self._check_impl()
        b, length = slots.shape[0], self.num_tokens
        if steps is not None:
            if not 1 <= steps <= length:
                raise ValueError(f"steps must be in [1, {length}], got {steps}")
            length = int(steps)
        tokens = torch.empty(b, length, dtype=torch.long, device=slots.device)
        all_logits = [] if return_logits else None
        if use_cache:
            memory = self.in_proj(slots)
            shape = (b, self.num_heads, length, self.d_model // self.num_heads)
            caches = []
            for block in self.blocks:
                mem_k, mem_v = block.encoder_decoder_attn.project_kv(memory)
                caches.append(
                    {
                        "k": memory.new_empty(shape),
                        "v": memory.new_empty(shape),
                        "mem_k": mem_k,
                        "mem_v": mem_v,
                    }
                )
            ids = torch.full((b, 1), self.bos, dtype=torch.long, device=slots.device)
            for pos in range(length):
                x = self._embed(ids, start=pos)
                for block, cache in zip(self.blocks, caches):
                    x = block.step(x, pos, cache, impl)
                logits = self.head(self.layer_norm(x[:, -1]))
                ids = logits.argmax(dim=-1, keepdim=True)
                tokens[:, pos] = ids[:, 0]
                if all_logits is not None:
                    all_logits.append(logits)
        else:
            for pos in range(length):
                x = self.hidden(slots, tokens[:, :pos])
                logits = self.head(x[:, -1])
                tokens[:, pos] = logits.argmax(dim=-1)
                if all_logits is not None:
                    all_logits.append(logits)
        return tokens, (torch.stack(all_logits, dim=1) if all_logits is not None else None)


class STEVE(nn.Module):
    """STEVE: slot trunk + frozen dVAE tokenizer + autoregressive transformer decoder.

    Args:
        cfg: model config dict (``name: steve``, the SAVi trunk keys and ``decoder:
            {num_layers, num_heads, d_model, dropout}``; ``d_model`` must equal ``slot_size``).
        resolution: frame size ``H = W`` (divisible by the dVAE's down-sampling factor).
        tokenizer: the trained :class:`DVAE`; frozen here and kept in eval mode.

    Attributes:
        trunk: :class:`SlotTrunk`; dvae: the tokenizer; trans_decoder:
        :class:`STEVETransformerDecoder`; token_resolution: ``(h, w)`` of the token grid.
    """

    def __init__(self, cfg: dict, resolution: int, tokenizer: DVAE):
        super().__init__()
        if tokenizer is None:
            raise ValueError("STEVE needs a trained dVAE tokenizer (the `tokenizer` stage)")
        if not isinstance(tokenizer, DVAE):
            raise ValueError(f"STEVE's tokenizer must be a DVAE, got {type(tokenizer).__name__}")
        self.cfg = cfg
        self.resolution = int(resolution)
        dec = cfg["decoder"]
        d_model = int(dec["d_model"])
        slot_size = int(cfg["slot_size"])
        if d_model != slot_size:
            raise ValueError(
                f"decoder.d_model ({d_model}) must equal slot_size ({slot_size})"
            )
        self.trunk = SlotTrunk(cfg, resolution)
        down = tokenizer.down_factor
        if self.resolution % down:
            raise ValueError(
                f"resolution {self.resolution} is not divisible by the dVAE down-sampling "
                f"factor {down}"
            )
        self.token_resolution: tuple[int, int] = (self.resolution // down,) * 2
        self.num_tokens = self.token_resolution[0] * self.token_resolution[1]
        self.dvae = tokenizer
        for p in self.dvae.parameters():
            p.requires_grad_(False)
        self.dvae.eval()
        self.vocab_size = tokenizer.vocab_size
        self.trans_decoder = STEVETransformerDecoder(
            vocab_size=self.vocab_size,
            num_tokens=self.num_tokens,
            d_model=d_model,
            num_heads=int(dec["num_heads"]),
            num_layers=int(dec["num_layers"]),
            dropout=float(dec.get("dropout", 0.1)),
        )

    @property
    def tokenizer(self) -> DVAE:
        return self.dvae

    @property
    def num_slots(self) -> int:
        return self.trunk.num_slots

    @property
    def feature_resolution(self) -> tuple[int, int]:
        return self.trunk.feature_resolution

    def train(self, mode: bool = True) -> STEVE:
        """Set the mode of everything but the dVAE, which always stays in eval mode."""
        super().train(mode)
        self.dvae.eval()
        return self

    def decoder_parameters(self) -> list[nn.Parameter]:
        """The transformer decoder's parameters (the reference's second Adam group, whose
        learning rate is ``decoder_lr``)."""
        return list(self.trans_decoder.parameters())

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def tokenize(self, video: Tensor) -> Tensor:
        """dVAE tokens of every frame, ``LongTensor [B*T, L]`` (raster order)."""
        frames = rearrange(video, "b t c h w -> (b t) c h w")
        return rearrange(self.dvae.tokenize(frames), "bt h w -> bt (h w)")

    def forward(self, video: Tensor, init_slots: Tensor | None = None) -> dict[str, Tensor]:
        """Encode a clip and predict its tokens by teacher forcing.

        Args:
            video: ``[B, T, 3, H, W]`` in [-1, 1].
            init_slots: optional ``[B, N, D]`` frame-0 slots (see :meth:`SlotTrunk.encode`).

        Returns:
            ``slots [B, T, N, D]``, ``attn [B, T, N, h'*w']`` (detached), ``logits [B*T, L, V]``
            and ``targets LongTensor [B*T, L]``.
        """
        slots, attn = self.trunk.encode(video, init_slots)
        targets = self.tokenize(video)
        logits = self.trans_decoder(
            rearrange(slots, "b t n d -> (b t) n d"), targets[:, :-1]
        )
        return {"slots": slots, "attn": attn, "logits": logits, "targets": targets}

    def loss(self, video: Tensor, out: dict[str, Tensor]) -> dict[str, Tensor]:
        """``token_recon_loss`` = cross-entropy over all tokens (mean, weight 1); ``loss``."""
        ce = F.cross_entropy(out["logits"].flatten(0, 1), out["targets"].flatten())
        return {"loss": ce, "token_recon_loss": ce}

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def segment(self, video: Tensor, chunk_len: int) -> Tensor:
        """Reference STEVE segmentation: last Slot Attention attention, bilinearly upsampled
        (``align_corners=False``) to ``H x W``, argmax over slots.

        Args:
            video: ``[B, T, 3, H, W]`` in [-1, 1].
            chunk_len: frames encoded at once (slots are carried across chunks through the
                predictor, so the result does not depend on it). Call ``eval()`` first.

        Returns:
            ``LongTensor [B, T, H, W]`` of slot ids in ``[0, N)``.
        """
        return self.trunk.segment_from_attention(video, chunk_len)

    @torch.no_grad()
    def reconstruct_tokens(
        self, slots: Tensor, use_cache: bool = True, batch_size: int | None = None
    ) -> Tensor:
        """Greedy tokens ``LongTensor [B, T, h, w]`` of slots ``[B, T, N, D]``.

        The decoder runs in eval mode (no dropout) whatever the model's mode; ``batch_size``
        frames at a time (all at once by default).
        """
        if slots.dim() != 4:
            raise ValueError(f"slots must be [B, T, N, D], got {list(slots.shape)}")
        b, t = slots.shape[:2]
        flat = rearrange(slots, "b t n d -> (b t) n d")
        step = batch_size or flat.shape[0]
        was_training = self.trans_decoder.training
        self.trans_decoder.eval()
        try:
            tokens = torch.cat(
                [
                    self.trans_decoder.generate(flat[i : i + step], use_cache=use_cache)[0]
                    for i in range(0, flat.shape[0], step)
                ]
            )
        finally:
            self.trans_decoder.train(was_training)
        h, w = self.token_resolution
        return rearrange(tokens, "(b t) (h w) -> b t h w", b=b, t=t, h=h, w=w)

    @torch.no_grad()
    def decode_slots(self, slots: Tensor, sampler: str = "dpm++", steps: int | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
        """Frames ``[B, T, 3, H, W]`` (not clamped) from slots ``[B, T, N, D]``: greedy autoregressive
        token decoding with the key/value cache, :data:`DECODE_BATCH_FRAMES` frames at a time
        (deterministic; the sampling arguments of the interface are unused)."""
        return self.reconstruct(slots, use_cache=True, batch_size=DECODE_BATCH_FRAMES)

    def decoder_record(self, sampler: str, steps: int | None) -> dict:
        """What decodes the frames, for the evaluation records."""
        return {"decoder": "autoregressive transformer, greedy argmax, KV cache",
                "tokens_per_frame": int(self.num_tokens), "decode_batch_frames": DECODE_BATCH_FRAMES}

    @torch.no_grad()
    def reconstruct(
        self, slots: Tensor, use_cache: bool = True, batch_size: int | None = None
    ) -> Tensor:
        """Autoregressive reconstruction ``[B, T, 3, H, W]`` (values in [-1, 1] space, not
        clamped) of slots ``[B, T, N, D]``: :meth:`reconstruct_tokens` then the dVAE decoder."""
        tokens = self.reconstruct_tokens(slots, use_cache=use_cache, batch_size=batch_size)
        b, t = tokens.shape[:2]
        step = batch_size or b * t
        flat = rearrange(tokens, "b t h w -> (b t) h w")
        imgs = torch.cat(
            [self.dvae.detokenize(flat[i : i + step]) for i in range(0, flat.shape[0], step)]
        )
        return rearrange(imgs, "(b t) c h w -> b t c h w", b=b, t=t)


#: The class ``models.MODELS`` builds for ``model.name: steve``.
SLOT_MODEL = STEVE
