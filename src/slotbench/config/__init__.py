"""Parameters: schema, layered loading and validation."""

from .loader import (
    RunConfigs,
    fingerprint,
    frame_size,
    load_grid,
    load_resources,
    pair_layers,
    param_sources,
    parse_overrides,
    resolve,
    resolve_dataset,
    resolve_tokenizer,
    stage_params,
    tokenizer_layers,
    workflow_overrides,
    workflow_set,
)
from .schema import ParamsError

__all__ = [
    "ParamsError",
    "RunConfigs",
    "fingerprint",
    "frame_size",
    "load_grid",
    "load_resources",
    "pair_layers",
    "param_sources",
    "parse_overrides",
    "resolve",
    "resolve_dataset",
    "resolve_tokenizer",
    "tokenizer_layers",
    "workflow_overrides",
    "workflow_set",
    "stage_params",
]
