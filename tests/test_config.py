"""Parameter loading: reference values, layering, and clear errors before any compute."""

from __future__ import annotations

import pytest
from conftest import REPO, copy_params, edit_yaml

from slotbench.config import ParamsError, load_grid, resolve, resolve_dataset, resolve_tokenizer, stage_params
from slotbench.config.loader import fingerprint


@pytest.mark.parametrize("dataset", ["movi_d", "movi_e"])
def test_reference_savi_matches_original_config(dataset):
    cfg = resolve(dataset, "savi", REPO / "params")
    m, t = cfg["model"], cfg["train"]
    assert (m["num_slots"], m["slot_size"], m["slot_mlp_size"], m["num_iterations"]) == (15, 192, 384, 2)
    assert m["encoder"] == {"type": "resnet18", "channels": [64, 128, 256], "out_features": 192}
    assert m["predictor"] == {"num_layers": 2, "num_heads": 4, "ffn_dim": 768, "dropout": 0.1}
    assert m["decoder"] == {"channels": [192, 64, 64, 64, 64], "broadcast_resolution": 8, "kernel_size": 5}
    assert (t["batch_size"], t["max_epochs"], t["lr"], t["min_lr"]) == (32, 30, 1e-4, 1e-6)
    assert (t["warmup_pct"], t["clip_grad"], t["weight_decay"]) == (0.025, 0.05, 0.0)
    assert (t["n_sample_frames"], t["frame_offset"]) == (3, 1)
    assert cfg["dataset"]["resolution"] == 128 and cfg["dataset"]["video_len"] == 24
    assert cfg["eval"]["split"] == "test"


@pytest.mark.parametrize("dataset", ["movi_solid", "movi_tex"])
def test_reference_savi_solid_tex_uses_cnn_and_12_slots(dataset):
    m = resolve(dataset, "savi", REPO / "params")["model"]
    assert m["num_slots"] == 12
    assert m["encoder"] == {"type": "cnn", "channels": [64, 64, 64, 64], "kernel_size": 5,
                            "strides": [2, 1, 1, 1], "out_features": 192}


def test_shapes_profile_switches_encoder_variant_cleanly():
    cfg = resolve("shapes", "savi", REPO / "params")
    assert cfg["model"]["encoder"]["type"] == "cnn"
    assert "strides" in cfg["model"]["encoder"]
    assert list(cfg) == ["dataset", "model", "train", "eval", "fvd", "runtime", "tracking"]


def test_grid_and_dataset_only():
    assert load_grid(REPO / "params") == {"datasets": ["shapes"], "models": ["savi", "steve", "slotdiffusion"],
                                          "seeds": [0]}
    assert resolve_dataset("shapes", REPO / "params")["synthetic"]["look"] == "solid"
    assert resolve_dataset("shapes_tex", REPO / "params")["synthetic"]["look"] == "textured"


def test_unknown_key_names_file_and_key(tmp_path):
    params = copy_params(tmp_path)
    edit_yaml(params / "models" / "savi.yaml", "model.num_slotz", 3)
    with pytest.raises(ParamsError, match=r"models/savi.yaml: model.num_slotz: unknown key"):
        resolve("shapes", "savi", params)


def test_wrong_type_names_file_and_key(tmp_path):
    params = copy_params(tmp_path)
    edit_yaml(params / "profiles" / "tiny.yaml", "train.batch_size", "four")
    with pytest.raises(ParamsError, match=r"profiles/tiny.yaml: train.batch_size: expected an integer"):
        resolve("shapes", "savi", params)


def test_missing_and_unknown_names(tmp_path):
    params = copy_params(tmp_path)
    with pytest.raises(ParamsError, match=r"no such dataset 'nope' \(available: .*shapes"):
        resolve("nope", "savi", params)
    with pytest.raises(ParamsError, match=r"no such model 'steeve'"):
        resolve("shapes", "steeve", params)
    (params / "defaults.yaml").unlink()
    with pytest.raises(ParamsError, match=r"defaults.yaml: params file not found"):
        resolve("shapes", "savi", params)


def test_bad_yaml_and_impossible_values(tmp_path):
    params = copy_params(tmp_path)
    (params / "profiles" / "tiny.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        resolve("shapes", "savi", params)
    params = copy_params(tmp_path / "b")
    edit_yaml(params / "profiles" / "tiny.yaml", "train.n_sample_frames", 9)
    with pytest.raises(ParamsError, match="spans 9 frames but dataset.video_len is 6"):
        resolve("shapes", "savi", params)
    params = copy_params(tmp_path / "c")
    edit_yaml(params / "profiles" / "tiny.yaml", "train.max_epochs", 3)
    with pytest.raises(ParamsError, match="exactly one of train.max_epochs and train.max_steps"):
        resolve("shapes", "savi", params)
    params = copy_params(tmp_path / "d")
    edit_yaml(params / "datasets" / "shapes.yaml", "dataset.source", "ftp")
    with pytest.raises(ParamsError, match=r"dataset.source: expected one of"):
        resolve_dataset("shapes", params)


def test_stage_fingerprints_separate_training_from_evaluation(tmp_path):
    params = copy_params(tmp_path)
    before = resolve("shapes", "savi", params)
    edit_yaml(params / "profiles" / "tiny.yaml", "eval.num_videos", 1)
    after = resolve("shapes", "savi", params)
    assert fingerprint(stage_params(before, "train")) == fingerprint(stage_params(after, "train"))
    assert fingerprint(stage_params(before, "eval_seg")) != fingerprint(stage_params(after, "eval_seg"))


def test_committed_dvc_yaml_is_up_to_date(monkeypatch):
    from slotbench.workflow_dvc import render_dvc_yaml

    monkeypatch.chdir(REPO)
    assert (REPO / "dvc.yaml").read_text() == render_dvc_yaml("params"), "run `slotbench dvc-yaml`"


@pytest.mark.parametrize("dataset", ["movi_d", "movi_e", "movi_solid", "movi_tex"])
def test_reference_steve_and_slotdiffusion(dataset):
    steve = resolve(dataset, "steve", REPO / "params")
    assert steve["model"]["tokenizer"] == "dvae"
    assert steve["model"]["decoder"] == {"num_layers": 8, "num_heads": 4, "d_model": 192, "dropout": 0.1}
    assert (steve["train"]["lr"], steve["train"]["decoder_lr"], steve["train"]["min_lr"]) == (1e-4, 3e-4, 0.0)
    assert (steve["train"]["warmup_pct"], steve["train"]["batch_size"], steve["train"]["clip_grad"]) == (0.05, 32, 0.05)
    sd = resolve(dataset, "slotdiffusion", REPO / "params")
    unet, diffusion = sd["model"]["decoder"]["unet"], sd["model"]["decoder"]["diffusion"]
    assert unet == {"model_channels": 128, "channel_mult": [1, 2, 3, 4], "num_res_blocks": 2,
                    "attention_resolutions": [8, 4, 2], "num_head_channels": 32, "transformer_depth": 1,
                    "dropout": 0.1}
    assert diffusion == {"z_scale_factor": 1.0, "timesteps": 1000, "beta_schedule": "linear", "linear_start": 0.0015,
                         "linear_end": 0.0195}
    assert (sd["train"]["lr"], sd["train"]["decoder_lr"], sd["train"]["min_lr"]) == (1e-4, 2e-4, 0.0)
    slots = 12 if dataset in ("movi_solid", "movi_tex") else 15
    assert steve["model"]["num_slots"] == sd["model"]["num_slots"] == slots


def test_reference_tokenizers():
    dvae = resolve_tokenizer("movi_e", "dvae", REPO / "params")
    assert dvae["tokenizer"] == {"name": "dvae", "vocab_size": 4096, "hidden_channels": 64, "down_factor": 4,
                                 "init": None, "gumbel": {"init_tau": 1.0, "final_tau": 0.1, "decay_pct": 0.15}}
    vq = resolve_tokenizer("movi_e", "vqvae", REPO / "params")
    tok = vq["tokenizer"]
    assert (tok["channels"], tok["channel_mult"], tok["n_embed"]) == (64, [1, 2, 4], 4096)
    assert tok["percept_loss_w"] == 1.0 and tok["beta"] == 0.25
    for t in (dvae, vq):
        train = t["train"]
        assert (train["lr"], train["min_lr"], train["max_epochs"], train["batch_size"]) == (1e-3, 1e-5, 50, 64)
        assert train["n_sample_frames"] == 1 and train["clip_grad"] < 0
    # the profile's plain `train` section is the slot models'; tokenizers take per_tokenizer only
    shapes = resolve_tokenizer("shapes", "dvae", REPO / "params")
    assert shapes["train"]["max_steps"] == 600 and shapes["train"]["lr"] == 1e-3
    assert resolve_tokenizer("shapes", "vqvae", REPO / "params")["tokenizer"]["percept_loss_w"] == 0.0


def test_model_and_tokenizer_must_match(tmp_path):
    params = copy_params(tmp_path)
    edit_yaml(params / "models" / "steve.yaml", "model.tokenizer", "vqvae")
    with pytest.raises(ParamsError, match=r"steve.yaml: model.tokenizer: expected one of \['dvae'\]"):
        resolve("shapes", "steve", params)
    with pytest.raises(ParamsError, match="no such tokenizer 'vae'"):
        resolve_tokenizer("shapes", "vae", params)


def test_tokenizer_decoder_lr_is_an_error(tmp_path):
    """A tokenizer trains with one Adam group: a decoder_lr there would be ignored, so it is refused."""
    params = copy_params(tmp_path)
    edit_yaml(params / "tokenizers" / "dvae.yaml", "train.decoder_lr", 1e-3)
    with pytest.raises(ParamsError, match=r"train.decoder_lr is 0.001, but a tokenizer trains with one Adam group"):
        resolve_tokenizer("shapes", "dvae", params)


@pytest.mark.parametrize("file, dotted, value, load, match", [
    ("profiles/tiny.yaml", "per_model.sav.train.lr", 0.5, lambda p: resolve("shapes", "savi", p),
     r"profiles/tiny.yaml: per_model.sav: unknown model \(known models: savi, slotdiffusion, steve\)"),
    ("models/savi.yaml", "per_dataset.shape.model.num_slots", 7, lambda p: resolve("shapes", "savi", p),
     r"models/savi.yaml: per_dataset.shape: unknown dataset \(known datasets: movi_d, .*, shapes, shapes_tex\)"),
    ("profiles/tiny.yaml", "per_tokenizer.dave.train.max_steps", 99, lambda p: resolve_tokenizer("shapes", "dvae", p),
     r"profiles/tiny.yaml: per_tokenizer.dave: unknown tokenizer \(known tokenizers: dvae, vqvae\)"),
])
def test_misspelt_name_under_per_is_an_error(tmp_path, file, dotted, value, load, match):
    """A name under per_model / per_dataset / per_tokenizer must be a file of params/ (else its override is lost)."""
    params = copy_params(tmp_path)
    edit_yaml(params / file, dotted, value)
    with pytest.raises(ParamsError, match=match):
        load(params)


def test_duplicate_key_is_an_error(tmp_path):
    """PyYAML keeps the last of two equal keys; a second `train:` block would silently drop the first."""
    params = copy_params(tmp_path)
    model = params / "models" / "savi.yaml"
    text = model.read_text()
    first = text.splitlines().index("train:") + 1
    model.write_text(text + "train:\n  clip_grad: 1.0\n")
    again = len(text.splitlines()) + 1
    with pytest.raises(ParamsError,
                       match=rf"models/savi.yaml: not valid YAML \(duplicate key 'train' on lines {first} and {again}"):
        resolve("shapes", "savi", params)
    model.write_text(text)
    profile = params / "profiles" / "tiny.yaml"
    text = profile.read_text()
    line = text.splitlines().index("  lr: 1.0e-3") + 1
    profile.write_text(text.replace("  lr: 1.0e-3\n", "  lr: 1.0e-3\n  lr: 5.0e-3\n"))
    with pytest.raises(ParamsError,
                       match=rf"profiles/tiny.yaml: not valid YAML \(duplicate key 'lr' "
                             rf"on lines {line} and {line + 1}"):
        resolve("shapes", "savi", params)


def test_scientific_notation_without_dot_gets_a_hint(tmp_path):
    """YAML 1.1 reads 1e-4 as a string: the error says how to write the number."""
    params = copy_params(tmp_path)
    model = params / "models" / "savi.yaml"
    model.write_text(model.read_text().replace("lr: 1.0e-4", "lr: 1e-4", 1))
    with pytest.raises(ParamsError,
                       match=r"train.lr: expected a number, got '1e-4' \(YAML reads 1e-4 as text; write 1.0e-4\)"):
        resolve("shapes", "savi", params)


def test_models_are_registered_by_their_schema_entry():
    """``models.MODELS`` follows the params schema: each ``MODEL`` variant's class is ``SLOT_MODEL`` of
    ``models/<name>.py``; its tokenizer is the schema's ``tokenizer`` choice (docs/extending.md)."""
    from slotbench.config.definitions import MODEL
    from slotbench.models import MODEL_TOKENIZER, MODELS, STEVE, SAVi, SlotDiffusion

    assert set(MODELS) == set(MODEL.variants)
    assert MODELS == {"savi": SAVi, "steve": STEVE, "slotdiffusion": SlotDiffusion}
    assert MODEL_TOKENIZER == {"steve": "dvae", "slotdiffusion": "vqvae"}
