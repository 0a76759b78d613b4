"""The schema of every parameter slotbench reads (types only; values live in ``params/``).

The merged configuration of one (dataset, model) pair has the sections ``dataset``,
``model``, ``train``, ``eval``, ``runtime`` and ``tracking``. Which YAML file may set which
section is described in :mod:`slotbench.config.loader`.
"""

from __future__ import annotations

from .schema import (
    MapOf,
    MayBeAbsent,
    Spec,
    Variant,
    boolean,
    integer,
    list_of,
    number,
    one_of,
    optional,
    sha256_hex,
    string,
)

_DATASET_COMMON = {
    "name": string(),
    "source": one_of("synthetic", "tfds", "release"),
    "resolution": integer(8),
    "video_len": integer(1),
    # frames and segmentations resized to frame_size x frame_size at export (absent: resolution)
    "frame_size": MayBeAbsent(integer(8)),
    # only the first max_videos videos of each split (absent: every video)
    "max_videos": MayBeAbsent(integer(1)),
}

SYNTHETIC = {
    "look": one_of("solid", "textured"),
    "min_objects": integer(1),
    "max_objects": integer(1),
    "shapes": list_of(string(), min_length=1),
    "min_size": number(0.0, 1.0),
    "max_size": number(0.0, 1.0),
    "max_speed": number(0.0),
    "orientation": one_of("random", "upright"),
    "max_spin": number(0.0),
    "shading": number(0.0, 1.0),
    "distinct_colours": boolean(),
}

DATASET = Variant(
    "source",
    {
        "synthetic": {
            **_DATASET_COMMON,
            "seed": integer(0),
            "splits": {"train": integer(1), "validation": integer(1), "test": integer(1)},
            "synthetic": SYNTHETIC,
        },
        "tfds": {
            **_DATASET_COMMON,
            "splits": list_of(string(), min_length=1),
            "tfds": {"builder": string(), "version": string(), "data_dir": string()},
        },
        "release": {
            **_DATASET_COMMON,
            "splits": list_of(string(), min_length=1),
            "release": {"path": string(), "num_masks": integer(1)},
        },
    },
)

def _check_init(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"from", "path"}:
        return f"expected null or a mapping with exactly the keys from and path, got {value!r}"
    if value["from"] != "original":
        return f"from: expected 'original' (a checkpoint of the original implementation), got {value['from']!r}"
    if not isinstance(value["path"], str) or not value["path"]:
        return f"path: expected the checkpoint file (relative to the project root), got {value['path']!r}"
    return None


#: ``null`` (the stage trains) or ``{from: original, path: FILE}``: the stage imports ``FILE``, a
#: checkpoint of the original implementation (``slotbench import-original``), instead of training.
INIT = Spec("null or {from: original, path: <checkpoint file>}", _check_init)

ENCODER = Variant(
    "type",
    {
        "resnet18": {
            "type": string(),
            "channels": list_of(integer(1), min_length=3),
            "out_features": integer(1),
        },
        "cnn": {
            "type": string(),
            "channels": list_of(integer(1), min_length=1),
            "kernel_size": integer(1),
            "strides": list_of(integer(1), min_length=1),
            "out_features": integer(1),
        },
    },
)

_TRUNK = {
    "name": string(),
    "num_slots": integer(1),
    "slot_size": integer(1),
    "slot_mlp_size": integer(1),
    "num_iterations": integer(1),
    "slot_eps": number(0.0),
    "init": INIT,
    "encoder": ENCODER,
    "predictor": {
        "num_layers": integer(0),
        "num_heads": integer(1),
        "ffn_dim": integer(1),
        "dropout": number(0.0, 1.0),
    },
}

_UNET = {
    "model_channels": integer(1),
    "channel_mult": list_of(integer(1), min_length=1),
    "num_res_blocks": integer(1),
    "attention_resolutions": list_of(integer(1)),
    "num_head_channels": integer(1),
    "transformer_depth": integer(1),
    "dropout": number(0.0, 1.0),
}

_DIFFUSION = {
    "z_scale_factor": number(1e-6),  # the latent the U-Net denoises is the tokenizer's divided by this
    "timesteps": integer(1),
    "beta_schedule": one_of("linear"),
    "linear_start": number(0.0, 1.0),
    "linear_end": number(0.0, 1.0),
}

MODEL = Variant(
    "name",
    {
        "savi": {
            **_TRUNK,
            "decoder": {
                "channels": list_of(integer(1), min_length=2),
                "broadcast_resolution": integer(1),
                "kernel_size": integer(1),
            },
        },
        "steve": {
            **_TRUNK,
            "tokenizer": one_of("dvae"),
            "decoder": {
                "num_layers": integer(1),
                "num_heads": integer(1),
                "d_model": integer(1),
                "dropout": number(0.0, 1.0),
            },
        },
        "slotdiffusion": {
            **_TRUNK,
            "tokenizer": one_of("vqvae"),
            "decoder": {"unet": _UNET, "diffusion": _DIFFUSION},
        },
    },
)

TOKENIZER = Variant(
    "name",
    {
        "dvae": {
            "name": string(),
            "vocab_size": integer(2),
            "hidden_channels": integer(1),
            "down_factor": one_of(4, 2),
            "init": INIT,
            "gumbel": {"init_tau": number(0.0), "final_tau": number(0.0), "decay_pct": number(0.0, 1.0)},
        },
        "vqvae": {
            "name": string(),
            "channels": integer(1),
            "channel_mult": list_of(integer(1), min_length=1),
            "num_res_blocks": integer(1),
            "z_channels": integer(1),
            "embed_dim": integer(1),
            "n_embed": integer(2),
            "dropout": number(0.0, 1.0),
            "beta": number(0.0),
            "recon_loss_w": number(0.0),
            "quant_loss_w": number(0.0),
            "percept_loss_w": number(0.0),
            "init": INIT,
        },
    },
)

TRAIN = {
    "batch_size": integer(1),
    "max_epochs": optional(integer(1)),
    "max_steps": optional(integer(1)),
    "lr": number(0.0),
    "decoder_lr": optional(number(0.0)),
    "min_lr": number(0.0),
    "warmup_pct": number(0.0, 1.0),
    "clip_grad": number(),
    "weight_decay": number(0.0),
    "n_sample_frames": integer(1),
    "frame_offset": integer(1),
    "checkpoint_every": integer(1),
    "log_every": integer(1),
    "val_every": integer(1),
    "val_clips": integer(1),
    "num_workers": integer(0),
    "amp": one_of("off", "bf16", "fp16"),
    "cpu_amp": one_of("off", "bf16"),
    "grad_accum_steps": integer(1),
    "nonfinite": one_of("stop", "skip"),
}

EVAL = {
    "split": string(),
    "batch_size": integer(1),
    "num_videos": optional(integer(1)),
    "chunk_len": integer(1),
    "recon_batch_size": integer(1),
    "comp_batch_size": integer(2),
    "sampler": one_of("dpm++", "dpm++2m", "ddim", "ddpm"),
    "sampler_steps": optional(integer(1)),
    "seed": integer(0),
    "save_videos": boolean(),
    "lpips": boolean(),
    "vis_videos": integer(0),
}

FVD = {
    "stylegan_v_checkout": optional(string()),
    "detector_path": optional(string()),
    "detector_sha256": optional(sha256_hex()),
    "seed": integer(0),
}

RUNTIME = {
    "device": one_of("auto", "cpu", "cuda"),
    "threads": optional(integer(1)),
    "channels_last": Spec("auto, true or false",
                          lambda v: None if v == "auto" or isinstance(v, bool)
                          else f"expected auto, true or false, got {v!r}"),
    "compile": boolean(),
}

TRACKING = {
    "enabled": boolean(),
    "uri": optional(string()),
    "experiment": string(),
}

#: What one job of a stage asks of a machine or a SLURM cluster.
_JOB = {"gpus": integer(0), "cpus": integer(1), "mem_mb": integer(1), "runtime_min": integer(1)}
#: A training job: ``processes`` > 1 launches torchrun (DDP) with that many processes on one node.
_TRAINING_JOB = {
    "processes": integer(1),
    "gpus_per_process": integer(0),
    "cpus_per_process": integer(1),
    "mem_mb": integer(1),
    "runtime_min": integer(1),
}
RESOURCES = {"export": _JOB, "tokenizer": _TRAINING_JOB, "train": _TRAINING_JOB, "eval": _JOB, "fvd": _JOB}

GRID = {
    "datasets": list_of(string(), min_length=1),
    "models": list_of(string(), min_length=1),
    "seeds": list_of(integer(0), min_length=1),
}

#: The merged configuration of one (dataset, model) pair.
RESOLVED = {
    "dataset": DATASET,
    "model": MODEL,
    "train": TRAIN,
    "eval": EVAL,
    "fvd": FVD,
    "runtime": RUNTIME,
    "tracking": TRACKING,
}

#: The merged configuration of one (dataset, tokenizer) pair.
RESOLVED_TOKENIZER = {
    "dataset": DATASET,
    "tokenizer": TOKENIZER,
    "train": TRAIN,
    "runtime": RUNTIME,
    "tracking": TRACKING,
}

#: What a per-dataset (model file) or per-model (profile) override may set: never the data.
_PER_PAIR = {"model": MODEL, "train": TRAIN, "eval": EVAL}
_PER_TOKENIZER = {"tokenizer": TOKENIZER, "train": TRAIN}

DEFAULTS_FILE = {"grid": GRID, "resources": RESOURCES, "train": TRAIN, "eval": EVAL, "fvd": FVD, "runtime": RUNTIME,
                 "tracking": TRACKING}
DATASET_FILE = {"profile": string(), "dataset": DATASET}
MODEL_FILE = {"model": MODEL, "train": TRAIN, "eval": EVAL, "per_dataset": MapOf(_PER_PAIR, "datasets")}
TOKENIZER_FILE = {**_PER_TOKENIZER, "per_dataset": MapOf(_PER_TOKENIZER, "datasets")}
PROFILE_FILE = {
    "dataset": DATASET,
    **_PER_PAIR,
    "per_model": MapOf(_PER_PAIR, "models"),
    "per_tokenizer": MapOf(_PER_TOKENIZER, "tokenizers"),
    # the data of the profile by the dataset's source (a synthetic dataset is generated at the
    # profile's size, a MOVi export is cut and resized): one profile fits every dataset
    "per_source": {source: {"dataset": variant} for source, variant in DATASET.variants.items()},
}
