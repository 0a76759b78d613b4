"""Load the layered YAML parameters of one (dataset, model) pair, validated before any compute.

Layers, later ones win (mappings merge key by key, lists and scalars are replaced):

1. ``params/defaults.yaml``                 ``train``, ``eval``, ``runtime``, ``tracking`` (and ``grid``,
                                           ``resources``: read on their own, see :func:`load_resources`)
2. ``params/datasets/{dataset}.yaml``       ``dataset`` (and the name of its scale ``profile``)
3. ``params/models/{model}.yaml``           ``model``, ``train``, ``eval``: the reference configuration
4. ``params/models/{model}.yaml``           ``per_dataset.{dataset}``: what the original changes per dataset
5. ``params/profiles/{profile}.yaml``       ``dataset``, then ``per_source.{source}.dataset``, then
                                           ``model``, ``train``, ``eval``: the scale profile
                                           (``$SLOTBENCH_PROFILE`` replaces every dataset's profile)
6. ``params/profiles/{profile}.yaml``       ``per_model.{model}``

A tokenizer (``params/tokenizers/{tokenizer}.yaml``) is resolved the same way, see
:func:`tokenizer_layers`.

Each file is checked on its own (unknown key, wrong type, a key written twice, a name under
``per_*`` that is no file of ``params/``: the message names the file and the key), then the
merged result is checked for completeness.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections.abc import Hashable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from ..paths import PROFILE_ENV, SET_ENV
from ..pipeline import STAGES
from . import definitions as defs
from .schema import ParamsError, Variant, validate


@dataclass(frozen=True)
class Layer:
    """One YAML layer: ``file`` holds ``content`` (a mapping of sections) under key ``prefix``."""

    file: Path
    prefix: str
    content: dict


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key written twice in one mapping is an error (not "last wins")."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        lines: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: the keys written here override it
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if isinstance(key, Hashable) and key in lines:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} on lines {lines[key]} and {line}; write each key once")
            lines[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: Path, schema: dict, params_dir: Path) -> dict:
    """Read and check one params file (all keys optional, every key known and well typed, no key twice).

    Names under ``per_dataset`` / ``per_model`` / ``per_tokenizer`` must be files of ``params_dir``.
    """
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({err})") from err
    data = {} if data is None else data
    names = {kind: _names(params_dir, kind) for kind in ("datasets", "models", "tokenizers")}
    validate(data, schema, partial=True, where=str(path), names=names)
    return data


def _names(params_dir: Path, kind: str) -> list[str]:
    """The names of the ``kind`` (``datasets``, ``models``...): the files in ``params_dir / kind``."""
    return sorted(p.stem for p in (params_dir / kind).glob("*.yaml"))


def _named_file(params_dir: Path, kind: str, name: str) -> Path:
    path = params_dir / kind / f"{name}.yaml"
    if not path.is_file():
        available = _names(params_dir, kind)
        raise ParamsError(f"{path}: no such {kind[:-1]} '{name}' (available: {', '.join(available) or 'none'})")
    return path


def load_grid(params_dir: str | Path = "params") -> dict:
    """The experiment grid (``datasets``, ``models``, ``seeds``) from ``params/defaults.yaml``."""
    path = Path(params_dir) / "defaults.yaml"
    grid = load_yaml(path, defs.DEFAULTS_FILE, path.parent).get("grid")
    validate(grid, defs.GRID, partial=False, where=str(path), path="grid")
    return grid


def load_resources(params_dir: str | Path = "params") -> dict:
    """What one job of each stage asks for (``resources`` of ``params/defaults.yaml``)."""
    path = Path(params_dir) / "defaults.yaml"
    resources = load_yaml(path, defs.DEFAULTS_FILE, path.parent).get("resources")
    validate(resources, defs.RESOURCES, partial=False, where=str(path), path="resources")
    return resources


def profile_override() -> str | None:
    """The profile that replaces every dataset's own (``$SLOTBENCH_PROFILE``; ``snakemake --config
    profile=NAME`` sets it), or None. Its outputs live apart (:mod:`slotbench.paths`)."""
    return os.environ.get(PROFILE_ENV) or None


def dataset_layers(dataset: str, params_dir: str | Path = "params") -> tuple[str, list[Layer]]:
    """The profile name and the layers that set the ``dataset`` section: the dataset file, the
    profile's ``dataset`` and its ``per_source.{source}.dataset``."""
    params_dir = Path(params_dir)
    ds_path = _named_file(params_dir, "datasets", dataset)
    ds_file = load_yaml(ds_path, defs.DATASET_FILE, params_dir)
    if "profile" not in ds_file:
        raise ParamsError(f"{ds_path}: profile: missing key (name of a file in {params_dir / 'profiles'})")
    profile = profile_override() or ds_file["profile"]
    prof_path = _named_file(params_dir, "profiles", profile)
    prof_file = load_yaml(prof_path, defs.PROFILE_FILE, params_dir)
    source = ds_file.get("dataset", {}).get("source")
    per_source = prof_file.get("per_source", {}).get(source, {})
    layers = [
        Layer(ds_path, "", {k: v for k, v in ds_file.items() if k == "dataset"}),
        Layer(prof_path, "", {k: v for k, v in prof_file.items() if k == "dataset"}),
        Layer(prof_path, f"per_source.{source}.", per_source),
    ]
    return profile, layers


def pair_layers(dataset: str, model: str, params_dir: str | Path = "params") -> list[Layer]:
    """All layers of a (dataset, model) pair in merge order."""
    params_dir = Path(params_dir)
    defaults_path = params_dir / "defaults.yaml"
    defaults = load_yaml(defaults_path, defs.DEFAULTS_FILE, params_dir)
    profile, ds_layers = dataset_layers(dataset, params_dir)
    model_path = _named_file(params_dir, "models", model)
    model_file = load_yaml(model_path, defs.MODEL_FILE, params_dir)
    prof_path = params_dir / "profiles" / f"{profile}.yaml"
    prof_file = load_yaml(prof_path, defs.PROFILE_FILE, params_dir)
    sections = ("model", "train", "eval")
    return [
        Layer(defaults_path, "", {k: v for k, v in defaults.items() if k not in ("grid", "resources")}),
        ds_layers[0],
        Layer(model_path, "", {k: v for k, v in model_file.items() if k in sections}),
        Layer(model_path, f"per_dataset.{dataset}.", model_file.get("per_dataset", {}).get(dataset, {})),
        ds_layers[1],
        ds_layers[2],
        Layer(prof_path, "", {k: v for k, v in prof_file.items() if k in sections}),
        Layer(prof_path, f"per_model.{model}.", prof_file.get("per_model", {}).get(model, {})),
    ]


def tokenizer_layers(dataset: str, tokenizer: str, params_dir: str | Path = "params") -> list[Layer]:
    """All layers of a (dataset, tokenizer) pair in merge order.

    Like :func:`pair_layers` with ``params/tokenizers/{tokenizer}.yaml`` in place of the model
    file; of the profile, only ``dataset`` and ``per_tokenizer.{tokenizer}`` apply (its plain
    ``train`` section is the slot models').
    """
    params_dir = Path(params_dir)
    defaults_path = params_dir / "defaults.yaml"
    defaults = load_yaml(defaults_path, defs.DEFAULTS_FILE, params_dir)
    profile, ds_layers = dataset_layers(dataset, params_dir)
    tok_path = _named_file(params_dir, "tokenizers", tokenizer)
    tok_file = load_yaml(tok_path, defs.TOKENIZER_FILE, params_dir)
    prof_path = params_dir / "profiles" / f"{profile}.yaml"
    prof_file = load_yaml(prof_path, defs.PROFILE_FILE, params_dir)
    return [
        Layer(defaults_path, "", {k: v for k, v in defaults.items() if k in ("train", "runtime", "tracking")}),
        ds_layers[0],
        Layer(tok_path, "", {k: v for k, v in tok_file.items() if k in ("tokenizer", "train")}),
        Layer(tok_path, f"per_dataset.{dataset}.", tok_file.get("per_dataset", {}).get(dataset, {})),
        ds_layers[1],
        ds_layers[2],
        Layer(prof_path, f"per_tokenizer.{tokenizer}.", prof_file.get("per_tokenizer", {}).get(tokenizer, {})),
    ]


def resolve_tokenizer(dataset: str, tokenizer: str, params_dir: str | Path = "params",
                      overrides: dict[str, Any] | None = None) -> dict:
    """The complete, validated configuration of one (dataset, tokenizer) pair (``overrides``: see
    :func:`override_layer`)."""
    layers = tokenizer_layers(dataset, tokenizer, params_dir)
    layers += override_layer(overrides, defs.RESOLVED_TOKENIZER)
    return _resolve_pair(layers, defs.RESOLVED_TOKENIZER, "tokenizer", tokenizer, f"params of ({dataset}, {tokenizer})")


def resolve_dataset(dataset: str, params_dir: str | Path = "params", overrides: dict[str, Any] | None = None) -> dict:
    """The validated ``dataset`` section alone (what the export stage needs); only the ``dataset.*``
    keys of ``overrides`` apply."""
    _, layers = dataset_layers(dataset, params_dir)
    layers += override_layer({k: v for k, v in (overrides or {}).items() if k.startswith("dataset.")},
                             {"dataset": defs.DATASET})
    merged = _merge_layers(layers, defs.RESOLVED)
    where = f"dataset '{dataset}' (merged from {', '.join(str(layer.file) for layer in layers)})"
    if "dataset" not in merged:
        raise ParamsError(f"{where}: dataset: missing section")
    validate(merged["dataset"], defs.DATASET, partial=False, where=where, path="dataset")
    _check_dataset(merged["dataset"], where)
    return merged["dataset"]


def resolve(dataset: str, model: str, params_dir: str | Path = "params",
            overrides: dict[str, Any] | None = None) -> dict:
    """The complete, validated configuration of one (dataset, model) pair (``overrides``: see
    :func:`override_layer`)."""
    layers = pair_layers(dataset, model, params_dir) + override_layer(overrides, defs.RESOLVED)
    return _resolve_pair(layers, defs.RESOLVED, "model", model, f"params of ({dataset}, {model})")


_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class _CommandLineLoader(yaml.SafeLoader):
    """YAML for ``--set`` values: only ``true`` / ``false`` are booleans (YAML 1.2), so that
    ``train.cpu_amp=off`` is the string ``off``, not YAML 1.1's False."""


_CommandLineLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_CommandLineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["train.lr=1e-3", "model.num_slots=4"]`` (``slotbench <stage> --set``) as ``{dotted key: value}``,
    each value read as YAML (``3`` an integer, ``null`` None, ``[1, 2]`` a list)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key or "." not in key:
            raise ParamsError(f"--set {item}: expected SECTION.KEY=VALUE, e.g. train.max_steps=100")
        try:
            value = yaml.load(text, Loader=_CommandLineLoader)  # a SafeLoader
        except yaml.YAMLError as err:
            raise ParamsError(f"--set {item}: the value is not valid YAML ({err})") from err
        # YAML 1.1 reads 1e-3 (no dot) as a string; on the command line it means a number
        out[key] = float(value) if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value) else value
    return out


def override_layer(overrides: dict[str, Any] | None, schema: dict) -> list[Layer]:
    """The command line's ``--set`` values as the last layer (it wins over every file), checked like a
    params file against ``schema``; no layer without overrides."""
    if not overrides:
        return []
    nested: dict = {}
    for dotted, value in overrides.items():
        *parents, last = dotted.split(".")
        node = nested
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ParamsError(f"--set {dotted}: {key} is set to a value and used as a section")
        node[last] = value
    validate(nested, schema, partial=True, where="--set")
    return [Layer(Path("--set"), "", nested)]


def _resolve_pair(layers: list[Layer], schema: dict, section: str, name: str, where: str) -> dict:
    """Merge ``layers``, check the result against ``schema`` and that ``section.name`` is ``name``."""
    merged = _merge_layers(layers, schema)
    validate(merged, schema, partial=False, where=where)
    _check_dataset(merged["dataset"], where)
    _check_train(merged, where)
    _check_shapes(merged, section, where)
    if merged[section]["name"] != name:
        raise ParamsError(f"{where}: {section}.name is {merged[section]['name']!r}, expected {name!r}")
    return {key: merged[key] for key in schema}


#: Keys of a section that change no output of the stages reading it, left out of their parameters so
#: that changing one re-runs nothing and a training run still resumes from its checkpoints: where
#: scratch checkpoints are written, how many processes load the data (batches come from the seeded
#: sampler, items carry no randomness), how often validation runs (each pass reseeds from its step
#: and leaves the training RNG and the weights alone; train.json holds the last step's). Not
#: ``log_every`` (train.json's ``train_loss`` is the mean over the last logging window) nor
#: ``val_clips`` (train.json's validation metrics).
_NO_EFFECT = {"train": ("checkpoint_every", "num_workers", "val_every")}

def stage_keys(config: dict, stage: str) -> tuple[str, ...]:
    """What ``stage`` reads of ``config``, as its declaration says (``pipeline.STAGES[stage].sections``):
    whole sections (``"dataset"``) or single keys (``"eval.split"``). A whole ``train`` section without
    the keys of :data:`_NO_EFFECT`; the stage's ``sampling`` keys only for a model whose decoder samples
    (one with a ``decoder.diffusion`` section)."""
    declared = STAGES[stage]
    samples = "diffusion" in (config.get("model", {}).get("decoder") or {})
    keys: list[str] = []
    for entry in declared.sections + (declared.sampling if samples else ()):
        if entry in _NO_EFFECT:
            keys += [f"{entry}.{name}" for name in config[entry] if name not in _NO_EFFECT[entry]]
        else:
            keys.append(entry)
    return tuple(keys)


def stage_params(config: dict, stage: str) -> dict:
    """The values of :func:`stage_keys` in ``config``, nested as there (what must trigger a re-run of
    ``stage``, and what a training checkpoint must share to be resumed)."""
    out: dict = {}
    for key in stage_keys(config, stage):
        section, _, name = key.partition(".")
        if name:
            out.setdefault(section, {})[name] = config[section][name]
        else:
            out[section] = config[section]
    return out


def frame_size(dataset_cfg: dict) -> int:
    """The side in pixels of the exported frames, which the models see: ``dataset.frame_size`` when
    set (the export resizes), else ``dataset.resolution`` (the source's own size)."""
    return dataset_cfg.get("frame_size") or dataset_cfg["resolution"]


def fingerprint(obj: Any) -> str:
    """A stable SHA-256 of a JSON-serialisable object (key order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def param_sources(layers: list[Layer], keys: tuple[str, ...]) -> dict[Path, list[str]]:
    """For each params file, the dotted keys that feed ``keys`` (for DVC's ``params:``).

    ``keys`` are whole sections or single keys of a section (:func:`stage_keys`). DVC tracks only
    keys present in a file and would miss one added later (``dvc exp run -S
    params/profiles/tiny.yaml:eval.num_videos=2``), so a layer lists the single keys it sets only
    when each wanted key of that section is either set there or set again by a later layer (adding
    it would change nothing); otherwise it lists its whole section.
    """
    wanted: dict[str, list[str]] = {}
    for key in keys:
        section, _, name = key.partition(".")
        wanted.setdefault(section, []).extend([name] if name else [])
    out: dict[Path, list[str]] = {}
    for i, layer in enumerate(layers):
        found = []
        for section, names in wanted.items():
            if section not in layer.content:
                continue
            sets = layer.content[section]
            later = {name for above in layers[i + 1:] for name in above.content.get(section, {})}
            if names and all(name in sets or name in later for name in names):
                found += [f"{layer.prefix}{section}.{name}" for name in names if name in sets]
            else:
                found.append(layer.prefix + section)
        if found:
            out.setdefault(layer.file, []).extend(k for k in found if k not in out.get(layer.file, []))
    return out


def _merge_layers(layers: list[Layer], schema: dict) -> dict:
    merged: dict = {}
    for layer in layers:
        merged = _merge(merged, layer.content, schema)
    return merged


def _merge(base: Any, over: Any, schema: Any) -> Any:
    """Deep-merge ``over`` into ``base``; a mapping that switches a variant replaces the old one."""
    if not (isinstance(base, dict) and isinstance(over, dict)):
        return copy.deepcopy(over)
    if isinstance(schema, Variant):
        sel = schema.selector
        if sel in over and sel in base and over[sel] != base[sel]:
            return copy.deepcopy(over)
        schema = schema.variants.get(over.get(sel, base.get(sel)), {})
    out = copy.deepcopy(base)
    for key, value in over.items():
        sub = schema.get(key) if isinstance(schema, dict) else None
        out[key] = _merge(out[key], value, sub) if key in out else copy.deepcopy(value)
    return out


def _check_dataset(ds: dict, where: str) -> None:
    syn = ds.get("synthetic")
    if syn is not None:
        if syn["min_objects"] > syn["max_objects"]:
            raise ParamsError(f"{where}: dataset.synthetic.min_objects ({syn['min_objects']}) "
                              f"> max_objects ({syn['max_objects']})")
        if syn["min_size"] > syn["max_size"]:
            raise ParamsError(f"{where}: dataset.synthetic.min_size ({syn['min_size']}) > max_size ({syn['max_size']})")


def _check_train(cfg: dict, where: str) -> None:
    train, ds = cfg["train"], cfg["dataset"]
    if (train["max_epochs"] is None) == (train["max_steps"] is None):
        raise ParamsError(f"{where}: set exactly one of train.max_epochs and train.max_steps (the other null)")
    span = (train["n_sample_frames"] - 1) * train["frame_offset"] + 1
    if span > ds["video_len"]:
        raise ParamsError(
            f"{where}: train.n_sample_frames={train['n_sample_frames']} with frame_offset={train['frame_offset']} "
            f"spans {span} frames but dataset.video_len is {ds['video_len']}"
        )
    if "tokenizer" in cfg and train["decoder_lr"] is not None:
        raise ParamsError(f"{where}: train.decoder_lr is {train['decoder_lr']}, but a tokenizer trains with one "
                          "Adam group; set it to null")


#: Spatial down-sampling of a tokenizer's token grid: one halving per level after the first of its
#: ``channel_mult`` (the VQ-VAE), else a fixed 4x (the dVAE, which has no levels to set).
def _tokenizer_factor(tok: dict) -> tuple[int, str]:
    if "channel_mult" in tok:
        return 2 ** (len(tok["channel_mult"]) - 1), "tokenizer.channel_mult (one halving per level after the first)"
    return 4, f"the {tok['name']}'s fixed 4x down-sampling"


def _encoder_factor(enc: dict) -> tuple[int, str]:
    if enc["type"] == "resnet18":
        return 2 ** (len(enc["channels"]) - 1), "model.encoder.channels (stride 2 per stage after the first)"
    factor = 1
    for s in enc["strides"]:
        factor *= s
    return factor, f"model.encoder.strides {enc['strides']}"


def _check_shapes(cfg: dict, section: str, where: str) -> None:
    """Impossible shapes, refused before any compute: a resolution the encoder (or tokenizer) cannot
    divide, a broadcast decoder that cannot reach the resolution, more slots than feature positions."""
    res = frame_size(cfg["dataset"])
    size_key = "dataset.frame_size" if cfg["dataset"].get("frame_size") else "dataset.resolution"
    if section == "tokenizer":
        factor, why = _tokenizer_factor(cfg["tokenizer"])
        if res % factor:
            raise ParamsError(f"{where}: {size_key}: {res} is not divisible by {factor}, the down-sampling of "
                              f"{why}")
        return
    model = cfg["model"]
    factor, why = _encoder_factor(model["encoder"])
    if res % factor:
        raise ParamsError(f"{where}: {size_key}: {res} is not divisible by {factor}, the encoder's "
                          f"down-sampling ({why})")
    positions = (res // factor) ** 2
    if model["num_slots"] > positions:
        raise ParamsError(f"{where}: model.num_slots: {model['num_slots']} slots but the encoder gives only "
                          f"{res // factor}x{res // factor} = {positions} feature positions for them to share")
    dec = model.get("decoder") or {}
    if "broadcast_resolution" in dec:  # a spatial-broadcast decoder (SAVi's)
        size, layers = dec["broadcast_resolution"], len(dec["channels"]) - 1
        reachable = {size * 2 ** k for k in range(layers + 1)}  # each layer doubles the size, or keeps it
        if res not in reachable:
            raise ParamsError(f"{where}: model.decoder.broadcast_resolution: {size} with {layers} decoder layers "
                              f"reaches {sorted(reachable)}, not {size_key} {res}")


def workflow_set() -> list[str]:
    """The workflow-wide ``KEY=VALUE`` items of ``$SLOTBENCH_SET`` (a JSON list; ``snakemake --config
    set=[...]`` sets it), checked; ``[]`` when unset."""
    text = os.environ.get(SET_ENV)
    if not text:
        return []
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        raise ParamsError(f"${SET_ENV}: not a JSON list of KEY=VALUE ({err})") from err
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ParamsError(f"${SET_ENV}: not a JSON list of KEY=VALUE strings: {text}")
    return items


def workflow_overrides(stage: str, params_dir: str | Path = "params") -> dict[str, Any]:
    """The workflow-wide overrides (:func:`workflow_set`) that a job of ``stage`` takes: those of the
    sections its configuration has (:meth:`RunConfigs.stage_overrides`)."""
    items = workflow_set()
    return RunConfigs(params_dir, parse_overrides(items)).stage_overrides(stage) if items else {}


class RunConfigs:
    """The parameters of the pipeline's jobs, each resolved once (``pipeline.Configs``).

    Args:
        params_dir: the parameter folder.
        overrides: ``--set`` values (:func:`parse_overrides`; ``snakemake --config set=[...]``), each
            applied to every resolution that has its section.
    """

    def __init__(self, params_dir: str | Path = "params", overrides: dict[str, Any] | None = None):
        self.params_dir = Path(params_dir)
        self.overrides = overrides or {}
        unknown = sorted(k for k in self.overrides if k.split(".")[0] not in defs.RESOLVED)
        if unknown:
            raise ParamsError(f"--set {', '.join(unknown)}: no stage reads these; a workflow-wide --set takes the "
                              f"sections {', '.join(defs.RESOLVED)} (edit params/defaults.yaml for the rest)")
        self._cache: dict[tuple, dict] = {}

    def stage_overrides(self, stage: str) -> dict[str, Any]:
        """The overrides a job of ``stage`` is given (``--set``): those of the sections its
        configuration has (a tokenizer's has no ``model``, ``eval`` or ``fvd``; the export reads
        ``dataset`` only); none for a stage that takes no ``--set``."""
        declared = STAGES[stage]
        if not declared.settable:
            return {}
        if "model" in declared.wildcards:
            sections = defs.RESOLVED
        elif "tokenizer" in declared.wildcards:
            sections = defs.RESOLVED_TOKENIZER
        else:
            sections = {"dataset": None}
        return {k: v for k, v in self.overrides.items() if k.split(".")[0] in sections}

    @cached_property
    def grid(self) -> dict:
        return load_grid(self.params_dir)

    def _pair(self, kind: str, dataset: str, name: str) -> dict:
        if (kind, dataset, name) not in self._cache:
            fn, schema = (resolve, defs.RESOLVED) if kind == "model" else (resolve_tokenizer, defs.RESOLVED_TOKENIZER)
            overrides = {k: v for k, v in self.overrides.items() if k.split(".")[0] in schema}
            self._cache[kind, dataset, name] = fn(dataset, name, self.params_dir, overrides)
        return self._cache[kind, dataset, name]

    def model(self, dataset: str, model: str) -> dict:
        return self._pair("model", dataset, model)["model"]

    def tokenizer(self, dataset: str, tokenizer: str) -> dict:
        return self._pair("tokenizer", dataset, tokenizer)["tokenizer"]

    def of_run(self, run: dict) -> dict:
        """The configuration a job of ``run`` reads: the (dataset, model) or (dataset, tokenizer)
        pair's, else ``{"dataset": ...}`` alone."""
        if "model" in run:
            return self._pair("model", run["dataset"], run["model"])
        if "tokenizer" in run:
            return self._pair("tokenizer", run["dataset"], run["tokenizer"])
        return {"dataset": resolve_dataset(run["dataset"], self.params_dir, self.overrides)}

    def layers(self, run: dict) -> list[Layer]:
        """The params layers :meth:`of_run` merges (without the overrides)."""
        if "model" in run:
            return pair_layers(run["dataset"], run["model"], self.params_dir)
        if "tokenizer" in run:
            return tokenizer_layers(run["dataset"], run["tokenizer"], self.params_dir)
        return dataset_layers(run["dataset"], self.params_dir)[1]

    def stage_params(self, stage: str, run: dict) -> dict:
        """What a job of ``stage`` reads of the parameters (:func:`stage_params`), or for a stage that
        collects over the grid, the grid lists it collects over."""
        declared = STAGES[stage]
        if declared.sections:
            return stage_params(self.of_run(run), stage)
        return {key: self.grid[key] for key in declared.grid}
