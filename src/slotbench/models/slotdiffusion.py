"""SlotDiffusion (Wu et al., NeurIPS 2023), video version: slot trunk + latent diffusion decoder.

* **Trunk**: the shared :class:`~slotbench.models.trunk.SlotTrunk` (SAVi's encoder, Slot
  Attention and predictor); slots ``[B, T, N, D]`` are not detached, so the denoising loss
  trains the trunk end to end.
* **Tokenizer**: a pre-trained VQ-VAE, frozen (``requires_grad=False``) and kept in eval mode
  by :meth:`SlotDiffusion.train`; a registered submodule, so its weights are part of the state
  dict (as in the original). It must provide ``encode(img [B, 3, H, W]) -> z [B, C, h, w]``
  (the **pre-quantisation** latent), ``quantize(z) -> (z_q, quant_loss, indices)``,
  ``decode(z_q) -> img`` and ``down_factor`` (``H / h``).
* **Decoder**: the :class:`~slotbench.models.unet.UNet` predicting the noise of a latent,
  cross-attending to the frame's slots (context dim = slot size); each frame is denoised on its
  own. The latent it denoises is the tokenizer's divided by ``decoder.diffusion.z_scale_factor``
  (the original's ``z_scale_factor``, 1.0 in every reference config; latent diffusion's usual
  choice is the latents' standard deviation, so that the noise does not drown them).

Training (:meth:`SlotDiffusion.loss`): frames ``[B*T, 3, H, W]`` -> ``x0 =
tokenizer.encode(frames)`` under ``no_grad`` -> :func:`~slotbench.models.diffusion.diffusion_loss`
with the slots as context. Segmentation: the last Slot Attention map, bilinearly upsampled to
``H x W`` (``align_corners=False``) and argmaxed over slots. Reconstruction: DPM-Solver++ (20
model evaluations, order 3) from one shared initial noise per batch, every clean-latent
prediction snapped to the codebook, the final latent quantised and decoded.

Config keys: SAVi's trunk keys (see ``slotbench.models``; ``name: slotdiffusion``) plus::

    decoder:
      unet: {model_channels: 128, channel_mult: [1, 2, 3, 4], num_res_blocks: 2,
             attention_resolutions: [8, 4, 2], num_head_channels: 32,
             transformer_depth: 1, dropout: 0.1}
      diffusion: {z_scale_factor: 1.0, timesteps: 1000, beta_schedule: linear,
                  linear_start: 0.0015, linear_end: 0.0195}

Reference MOVi-D/E at 128x128: 138,481,347 trainable parameters (trunk 4,238,016 + U-Net
134,243,331) plus the frozen VQ-VAE (13,857,886).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from .diffusion import (
    REFERENCE_STEPS,
    SAMPLERS,
    DiffusionSchedule,
    diffusion_loss,
    make_noise,
    model_evaluations,
    sample,
)
from .trunk import SlotTrunk
from .unet import UNet

__all__ = ["SlotDiffusion"]


class SlotDiffusion(nn.Module):
    """Slot trunk + frozen VQ-VAE tokenizer + slot-conditioned latent diffusion U-Net.

    Args:
        cfg: model config dict (module docstring).
        resolution: frame size ``H = W``.
        tokenizer: the pre-trained VQ-VAE (see the module docstring); it is frozen here.

    Attributes:
        trunk, tokenizer, unet: the three parts; ``schedule``: the
            :class:`~slotbench.models.diffusion.DiffusionSchedule`; ``latent_shape``:
            ``(C, h, w)`` of the tokenizer latent.

    Raises:
        ValueError: if ``resolution`` is not divisible by the tokenizer's ``down_factor`` or
            the latent size by the U-Net's down-sampling.
    """

    def __init__(self, cfg: dict, resolution: int, tokenizer: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.resolution = int(resolution)
        self.trunk = SlotTrunk(cfg, resolution)
        self.tokenizer = tokenizer
        for p in self.tokenizer.parameters():
            p.requires_grad_(False)
        self.tokenizer.eval()
        self.latent_shape = self._latent_shape()
        dec = cfg["decoder"]
        c = self.latent_shape[0]
        self.unet = UNet(dec["unet"], c, c, self.trunk.slot_size)
        factor = 2 ** (self.unet.num_levels - 1)
        if self.latent_shape[1] % factor:
            raise ValueError(
                f"latent size {self.latent_shape[1]} (resolution {self.resolution} / tokenizer "
                f"down_factor) is not divisible by the U-Net down-sampling factor {factor}"
            )
        self.schedule = DiffusionSchedule.from_config(dec["diffusion"])
        self.z_scale_factor = float(dec["diffusion"]["z_scale_factor"])

    def _latent_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)``: ``h = resolution / down_factor``; ``C`` is the tokenizer's
        ``embed_dim`` if it has one, else read off the encoding of one small blank frame."""
        f = int(self.tokenizer.down_factor)
        if f < 1 or self.resolution % f:
            raise ValueError(
                f"resolution {self.resolution} is not divisible by the tokenizer "
                f"down_factor {f}"
            )
        h = self.resolution // f
        channels = getattr(self.tokenizer, "embed_dim", None)
        if channels is None:
            ref = next(self.tokenizer.parameters(), None)
            size = f * min(2, h)  # a 2x2 latent (GroupNorm needs more than one value)
            probe = torch.zeros(
                1, 3, size, size,
                device=ref.device if ref is not None else None,
                dtype=ref.dtype if ref is not None else None,
            )
            with torch.no_grad():
                channels = self.tokenizer.encode(probe).shape[1]
        return (int(channels), h, h)

    def train(self, mode: bool = True) -> SlotDiffusion:
        """Set the training mode; the tokenizer always stays in eval mode."""
        super().train(mode)
        self.tokenizer.eval()
        return self

    @property
    def num_slots(self) -> int:
        return self.trunk.num_slots

    @property
    def feature_resolution(self) -> tuple[int, int]:
        return self.trunk.feature_resolution

    def decoder_parameters(self) -> list[nn.Parameter]:
        """The U-Net parameters (the original's second Adam group ``dm_decoder``, trained with
        ``decoder_lr``); every other trainable parameter belongs to the trunk."""
        return list(self.unet.parameters())

    # ------------------------------------------------------------------ training
    def forward(self, video: Tensor, init_slots: Tensor | None = None) -> dict[str, Tensor]:
        """Encode a clip: ``slots [B, T, N, D]`` and ``attn [B, T, N, h*w]`` (detached).

        The decoder runs in :meth:`loss` (training) and :meth:`reconstruct` (sampling).
        """
        slots, attn = self.trunk.encode(video, init_slots)
        return {"slots": slots, "attn": attn}

    def loss(self, video: Tensor, out: dict[str, Tensor]) -> dict[str, Tensor]:
        """Denoising loss on the tokenizer latents of all ``B*T`` frames, slots as context.

        ``t`` and the noise come from the global torch RNG. Returns ``loss`` (the total) and
        ``denoise_loss`` (the same value, weight 1).
        """
        frames = rearrange(video, "b t c h w -> (b t) c h w")
        context = rearrange(out["slots"], "b t n d -> (b t) n d")
        with torch.no_grad():
            x0 = self.tokenizer.encode(frames).detach() / self.z_scale_factor
        if x0.dtype in (torch.float16, torch.bfloat16):  # autocast: keep the target in fp32
            x0 = x0.float()
        denoise = diffusion_loss(lambda x, t: self.unet(x, t, context), x0, self.schedule)
        return {"loss": denoise, "denoise_loss": denoise}

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def segment(self, video: Tensor, chunk_len: int) -> Tensor:
        """Segmentation from the last Slot Attention map (as STEVE and the original).

        Args:
            video: ``[B, T, 3, H, W]`` in [-1, 1].
            chunk_len: frames encoded at once; slots are carried across chunks through the
                predictor, so the result does not depend on it. Call ``eval()`` first
                (dropout in the predictor).

        Returns:
            ``LongTensor [B, T, H, W]``: per pixel, the argmax over slots of the attention
            upsampled bilinearly (``align_corners=False``) from ``h x w`` to ``H x W``.
        """
        return self.trunk.segment_from_attention(video, chunk_len)

    def snap(self, latent: Tensor) -> Tensor:
        """The nearest codebook vectors of a (scaled) latent ``[B, C, h, w]`` (``tokenizer.quantize``),
        in the same scale."""
        return self.tokenizer.quantize(latent * self.z_scale_factor)[0] / self.z_scale_factor

    @torch.no_grad()
    def sample_latents(
        self,
        context: Tensor,
        sampler: str = "dpm++",
        steps: int | None = None,
        same_noise: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Sample (scaled) tokenizer latents ``[M, C, h, w]`` for ``M`` frames with slots ``context
        [M, N, D]``, snapping every clean-latent prediction to the codebook.

        The initial noise comes from ``generator`` (CPU by default, so the result does not
        depend on the device): one ``[1, C, h, w]`` draw repeated over all ``M`` frames when
        ``same_noise`` (the reference), else ``M`` independent draws. The U-Net runs in eval
        mode (its previous mode is restored afterwards).
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; available: {', '.join(SAMPLERS)}")
        x = make_noise(
            (context.shape[0], *self.latent_shape), same_noise, generator, context.device,
            context.dtype,
        )
        was_training = self.unet.training
        self.unet.eval()
        try:
            return sample(
                sampler,
                lambda x_t, t: self.unet(x_t, t, context),
                x,
                self.schedule,
                steps=steps,
                denoise_fn=self.snap,
                same_noise=same_noise,
                generator=generator,
            )
        finally:
            self.unet.train(was_training)

    def decode_slots(self, slots: Tensor, sampler: str = "dpm++", steps: int | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
        """Frames ``[B, T, 3, H, W]`` (not clamped) from slots ``[B, T, N, D]``: :meth:`reconstruct`
        with one initial noise shared by the batch, as the original evaluates."""
        return self.reconstruct(slots, sampler=sampler, steps=steps, same_noise=True, generator=generator)

    def decoder_record(self, sampler: str, steps: int | None) -> dict:
        """What decodes the frames, for the evaluation records."""
        timesteps = self.schedule.num_timesteps
        return {"decoder": "latent diffusion", "sampler": sampler,
                "sampler_steps": steps if steps is not None else REFERENCE_STEPS.get(sampler, timesteps),
                "unet_evaluations_per_frame": model_evaluations(sampler, steps, timesteps),
                "same_noise": True, "noise_generator": "torch CPU generator seeded with eval.seed"}

    @torch.no_grad()
    def reconstruct(
        self,
        slots: Tensor,
        sampler: str = "dpm++",
        steps: int | None = None,
        same_noise: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Decode slots ``[B, T, N, D]`` into frames ``[B, T, 3, H, W]`` (not clamped).

        Args:
            slots: the slots of ``B * T`` frames; all of them form one sampling batch.
            sampler: ``"dpm++"`` (reference: DPM-Solver++, order 3, single-step), ``"ddim"``
                or ``"ddpm"``.
            steps: model evaluations; ``None`` = the sampler's reference count (20 / 200 / T).
            same_noise: one initial noise shared by all ``B * T`` frames (reference: True).
            generator: seeds the noise (the original's was unseeded); the same generator state
                gives the same reconstruction.

        Returns:
            the sampled latents, quantised and decoded by the tokenizer.
        """
        b, t = slots.shape[:2]
        context = rearrange(slots, "b t n d -> (b t) n d")
        latents = self.sample_latents(context, sampler, steps, same_noise, generator)
        frames = self.tokenizer.decode(self.snap(latents) * self.z_scale_factor)
        return rearrange(frames, "(b t) c h w -> b t c h w", b=b, t=t)


#: The class ``models.MODELS`` builds for ``model.name: slotdiffusion``.
SLOT_MODEL = SlotDiffusion
