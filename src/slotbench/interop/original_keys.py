"""Where each tensor of an original checkpoint goes in slotbench.

The original implementation (Wuziyi616/SlotDiffusion with its trainer nerv) names its tensors
after its own module tree; slotbench's modules follow the same layers under other names. Each
original tensor is one of three kinds (:class:`Target`):

``param``
    a trained parameter (or persistent buffer) copied into slotbench's state dict under ``name``;
``buffer``
    a constant the original stores but slotbench recomputes: the soft position embedding's
    coordinate grid ``[1, h, w, 4]`` and STEVE's causal masks (one frozen bool ``nn.Parameter
    [L, L]`` per decoder block in the original). The importer checks that the stored value
    equals slotbench's buffer ``name``, so a checkpoint of another resolution is refused;
``schedule``
    one of the twelve diffusion-schedule buffers of SlotDiffusion's ``dm_decoder`` (``betas``,
    ``alphas_bar``, ...; ``name`` is the original buffer name), checked against the schedule
    slotbench derives from the params;
``dropped``
    the LPIPS network of the VQ-VAE's training loss (``loss.perceptual_loss.*``): frozen
    ImageNet weights that are no part of the tokenizer (slotbench loads LPIPS from its own
    weight files); ``name`` says so.

Names are matched in full; a name that no rule matches is an error of the importer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

NETWORKS = ("savi", "steve", "slotdiffusion", "vqvae", "dvae")

#: The slot models' tokenizer (their original checkpoints embed it).
EMBEDDED_TOKENIZER = {"steve": "dvae", "slotdiffusion": "vqvae"}

#: Diffusion-schedule buffers of the original ``dm_decoder`` (``ddpm.py::register_schedule``).
SCHEDULE_BUFFERS = (
    "betas", "alphas_bar", "alphas_bar_prev", "sqrt_alphas_bar", "sqrt_one_minus_alphas_bar",
    "log_one_minus_alphas_bar", "sqrt_recip_alphas_bar", "sqrt_recipm1_alphas_bar",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
)

LPIPS_NOTE = "LPIPS network of the original VQ-VAE training loss (not part of the tokenizer)"


@dataclass(frozen=True)
class Target:
    """What an original tensor becomes: ``kind`` is ``param``, ``buffer``, ``schedule`` or ``dropped``."""

    kind: str
    name: str


Rule = tuple[re.Pattern, Callable[[re.Match], Target]]


def _rule(pattern: str, template: str, kind: str = "param") -> Rule:
    """Match ``pattern`` in full; the target name is ``template`` with ``\\1``-style groups."""
    return re.compile(pattern), lambda m: Target(kind, m.expand(template))


def _indexed(pattern: str, make: Callable[[re.Match], str]) -> Rule:
    """A parameter whose slotbench name needs arithmetic on a layer index."""
    return re.compile(pattern), lambda m: Target("param", make(m))


def _nested(rules: list[Rule], orig_prefix: str, sb_prefix: str) -> list[Rule]:
    """``rules`` of a sub-network stored under ``orig_prefix`` (original) / ``sb_prefix`` (slotbench)."""
    out = []
    for pattern, make in rules:
        def nested_make(m: re.Match, make=make, pattern=pattern) -> Target:
            inner = make(pattern.fullmatch(m.group("inner")))
            return inner if inner.kind in ("dropped", "schedule") else Target(inner.kind, sb_prefix + inner.name)

        out.append((re.compile(re.escape(orig_prefix) + f"(?P<inner>{pattern.pattern})"), nested_make))
    return out


# --------------------------------------------------------------------------- tokenizers
_DVAE = [_rule(r"((?:encoder|decoder)\.\d+\.(?:m\.)?(?:weight|bias))", r"\1")]

_VQVAE = [
    _rule(r"((?:encoder|decoder|quantize|quant_conv|post_quant_conv)\..+)", r"\1"),
    _rule(r"loss\..+", LPIPS_NOTE, kind="dropped"),
]

# --------------------------------------------------------------------------- slot trunk
# ResNet-18 variant (MOVi-D/E): conv1/bn1 = stem, layer{k} = layers[k-1], bn -> norm,
# downsample -> shortcut. Plain CNN (MOVi-Solid/Tex): block i = net[2 i] (ReLU between).
_TRUNK = [
    _rule(r"init_latents", r"trunk.init_latents"),
    _rule(r"slot_attention\.project_q\.0\.(weight|bias)", r"trunk.slot_attention.norm_slots.\1"),
    _rule(r"slot_attention\.project_q\.1\.weight", r"trunk.slot_attention.project_q.weight"),
    _rule(r"slot_attention\.((?:norm_inputs|project_k|project_v|gru|mlp)\..+)", r"trunk.slot_attention.\1"),
    _rule(r"encoder\.conv1\.weight", r"trunk.encoder.stem.0.weight"),
    _rule(r"encoder\.bn1\.(weight|bias)", r"trunk.encoder.stem.1.\1"),
    _indexed(r"encoder\.layer(\d)\.(\d+)\.conv(\d)\.weight",
             lambda m: f"trunk.encoder.layers.{int(m[1]) - 1}.{m[2]}.conv{m[3]}.weight"),
    _indexed(r"encoder\.layer(\d)\.(\d+)\.bn(\d)\.(weight|bias)",
             lambda m: f"trunk.encoder.layers.{int(m[1]) - 1}.{m[2]}.norm{m[3]}.{m[4]}"),
    _indexed(r"encoder\.layer(\d)\.(\d+)\.downsample\.(\d)\.(weight|bias)",
             lambda m: f"trunk.encoder.layers.{int(m[1]) - 1}.{m[2]}.shortcut.{m[3]}.{m[4]}"),
    _indexed(r"encoder\.(\d+)\.0\.(weight|bias)", lambda m: f"trunk.encoder.net.{2 * int(m[1])}.{m[2]}"),
    _rule(r"encoder_pos_embedding\.dense\.(weight|bias)", r"trunk.encoder_pos_embedding.dense.\1"),
    _rule(r"encoder_pos_embedding\.grid", r"trunk.encoder_pos_embedding.grid", kind="buffer"),
    _rule(r"encoder_out_layer\.(\d+\.(?:weight|bias))", r"trunk.encoder_out_layer.\1"),
    _rule(r"predictor\.transformer_encoder\.layers\.(.+)", r"trunk.predictor.transformer.layers.\1"),
]

# --------------------------------------------------------------------------- decoders
# SAVi: deconv i (``decoder.{i}.0``) and the final 1x1 conv (``decoder.{n}``) = net[2 i].
_SAVI = _TRUNK + [
    _indexed(r"decoder\.(\d+)(?:\.0)?\.(weight|bias)", lambda m: f"decoder.net.{2 * int(m[1])}.{m[2]}"),
    _rule(r"decoder_pos_embedding\.dense\.(weight|bias)", r"decoder.pos_embedding.dense.\1"),
    _rule(r"decoder_pos_embedding\.grid", r"decoder.pos_embedding.grid", kind="buffer"),
]

_STEVE = _TRUNK + _nested(_DVAE, "dvae.", "dvae.") + [
    _rule(r"trans_decoder\.((?:in_proj|tok_emb|head)\.(?:weight|bias))", r"trans_decoder.\1"),
    _rule(r"trans_decoder\.pos_emb\.pe", r"trans_decoder.pos_emb"),
    _rule(r"trans_decoder\.tf_dec\.blocks\.\d+\.self_attn_mask", r"trans_decoder.causal_mask", kind="buffer"),
    _rule(r"trans_decoder\.tf_dec\.(blocks\.\d+\..+|layer_norm\.(?:weight|bias))", r"trans_decoder.\1"),
]

_SLOTDIFFUSION = _TRUNK + _nested(_VQVAE, "dm_decoder.vae.vqvae.", "tokenizer.") + [
    _rule(r"dm_decoder\.model\.diffusion_model\.(.+)", r"unet.\1"),
    _rule(r"dm_decoder\.(" + "|".join(SCHEDULE_BUFFERS) + ")", r"\1", kind="schedule"),
]

RULES: dict[str, list[Rule]] = {
    "dvae": _DVAE, "vqvae": _VQVAE, "savi": _SAVI, "steve": _STEVE, "slotdiffusion": _SLOTDIFFUSION,
}


def target(network: str, name: str) -> Target | None:
    """Where the original tensor ``name`` of ``network`` goes, or ``None`` when no rule knows it."""
    if network not in RULES:
        raise ValueError(f"unknown network {network!r}; available: {', '.join(NETWORKS)}")
    for pattern, make in RULES[network]:
        match = pattern.fullmatch(name)
        if match:
            return make(match)
    return None
