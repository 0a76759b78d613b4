"""A small declarative schema for the YAML parameters, with errors that name the key.

A schema is a nested ``dict`` whose leaves are :class:`Spec` objects. Two modes:

* ``partial=True`` checks one YAML layer (a file or an override): every key must exist in
  the schema and have the right type, but keys may be left out;
* ``partial=False`` checks the merged configuration: every key must be present.

Defaults never live here (one source of truth: the files in ``params/``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any


class ParamsError(ValueError):
    """Invalid parameters: the message names the file (when known), the key and what was expected."""


@dataclass(frozen=True)
class Spec:
    """A leaf: ``check(value)`` returns an error message or ``None``."""

    description: str
    check: Callable[[Any], str | None]
    choices: tuple[Any, ...] = ()  # the allowed values of a :func:`one_of` leaf

    def __repr__(self) -> str:  # shown in error messages
        return self.description


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float))) and not isinstance(v, bool)


def integer(minimum: int | None = None) -> Spec:
    def check(v: Any) -> str | None:
        if not _is_int(v):
            return f"expected an integer, got {v!r}"
        if minimum is not None and v < minimum:
            return f"expected an integer >= {minimum}, got {v}"
        return None

    return Spec("integer" if minimum is None else f"integer >= {minimum}", check)


#: Scientific notation that YAML 1.1 (PyYAML) reads as text: no dot in the mantissa or no sign in the exponent.
_TEXT_FLOAT = re.compile(r"([-+]?[0-9][0-9_]*)(\.[0-9_]*)?[eE]([-+]?)([0-9]+)")


def _float_hint(v: Any) -> str:
    """``" (YAML reads 1e-4 as text; write 1.0e-4)"`` for a number YAML 1.1 took for a string, else ``""``."""
    match = _TEXT_FLOAT.fullmatch(v) if isinstance(v, str) else None
    if match is None:
        return ""
    whole, fraction, sign, exponent = match.groups()
    return f" (YAML reads {v} as text; write {whole}{fraction or '.0'}e{sign or '+'}{exponent})"


def number(minimum: float | None = None, maximum: float | None = None) -> Spec:
    def check(v: Any) -> str | None:
        if not _is_number(v):
            return f"expected a number, got {v!r}{_float_hint(v)}"
        if minimum is not None and v < minimum:
            return f"expected a number >= {minimum}, got {v}"
        if maximum is not None and v > maximum:
            return f"expected a number <= {maximum}, got {v}"
        return None

    return Spec("number", check)


def string() -> Spec:
    return Spec("string", lambda v: None if isinstance(v, str) else f"expected a string, got {v!r}")


def sha256_hex() -> Spec:
    """A full SHA-256 digest: 64 hexadecimal digits."""
    def check(v: Any) -> str | None:
        if not isinstance(v, str) or len(v) != 64 or any(c not in "0123456789abcdefABCDEF" for c in v):
            return f"expected a SHA-256 digest (64 hex digits), got {v!r}"
        return None

    return Spec("SHA-256 (64 hex digits)", check)


def boolean() -> Spec:
    return Spec("boolean", lambda v: None if isinstance(v, bool) else f"expected true or false, got {v!r}")


def one_of(*choices: Any) -> Spec:
    def check(v: Any) -> str | None:
        return None if v in choices else f"expected one of {list(choices)}, got {v!r}"

    return Spec(f"one of {list(choices)}", check, tuple(choices))


def optional(spec: Spec) -> Spec:
    """``null`` or a value matching ``spec``."""
    return Spec(f"null or {spec.description}", lambda v: None if v is None else spec.check(v))


def list_of(spec: Spec, min_length: int = 0) -> Spec:
    def check(v: Any) -> str | None:
        if not isinstance(v, list):
            return f"expected a list of {spec.description}, got {v!r}"
        if len(v) < min_length:
            return f"expected at least {min_length} entries, got {len(v)}"
        for i, item in enumerate(v):
            if (msg := spec.check(item)) is not None:
                return f"entry {i}: {msg}"
        return None

    return Spec(f"list of {spec.description}", check)


@dataclass(frozen=True)
class Variant:
    """A mapping whose allowed keys depend on the value of its ``selector`` key."""

    selector: str
    variants: dict[str, dict]


@dataclass(frozen=True)
class MayBeAbsent:
    """A key that a merged configuration may leave out (the code then uses its neutral behaviour);
    when present it must match ``schema``. Keys added after exports existed are of this kind, so
    that the dataset fingerprint of an export made before stays the same."""

    schema: Any


@dataclass(frozen=True)
class MapOf:
    """A mapping from names of one ``kind`` (``datasets``, ``models``...) to partial overrides of ``schema``."""

    schema: dict
    kind: str


def validate(value: Any, schema: Any, *, partial: bool, where: str, path: str = "",
             names: Mapping[str, Collection[str]] | None = None) -> None:
    """Raise :class:`ParamsError` unless ``value`` matches ``schema``.

    Args:
        value: the parsed YAML (or merged configuration).
        schema: a nested dict / :class:`Variant` / :class:`MapOf` / :class:`Spec`.
        partial: allow missing keys (one layer) or require every key (merged config).
        where: the file or layer name, used in messages.
        path: dotted key of ``value`` (internal).
        names: the known names of each :attr:`MapOf.kind`; a :class:`MapOf` refuses any other name.
    """
    label = path or "<top level>"
    if isinstance(schema, MayBeAbsent):
        schema = schema.schema
    if isinstance(schema, Spec):
        if (msg := schema.check(value)) is not None:
            raise ParamsError(f"{where}: {label}: {msg}")
        return
    if not isinstance(value, dict):
        raise ParamsError(f"{where}: {label}: expected a mapping, got {value!r}")
    if isinstance(schema, MapOf):
        known = sorted((names or {}).get(schema.kind, ()))
        for name, sub in value.items():
            if name not in known:
                raise ParamsError(f"{where}: {_join(path, str(name))}: unknown {schema.kind[:-1]} "
                                  f"(known {schema.kind}: {', '.join(known) or 'none'})")
            validate(sub, schema.schema, partial=True, where=where, path=_join(path, str(name)))
        return
    if isinstance(schema, Variant):
        if partial and schema.selector not in value:
            _validate_any_variant(value, schema, where=where, path=path)
            return
        schema = _select_variant(value, schema, partial=partial, where=where, path=path)
    for key, sub in value.items():
        if key not in schema:
            known = ", ".join(sorted(schema))
            raise ParamsError(f"{where}: {_join(path, str(key))}: unknown key (known keys here: {known})")
        validate(sub, schema[key], partial=partial, where=where, path=_join(path, key), names=names)
    if not partial:
        missing = [k for k in schema if k not in value and not isinstance(schema[k], MayBeAbsent)]
        if missing:
            raise ParamsError(f"{where}: {_join(path, missing[0])}: missing key (required: {', '.join(missing)})")


def _validate_any_variant(value: dict, schema: Variant, *, where: str, path: str) -> None:
    """A partial mapping without its selector must fit at least one variant (first error otherwise)."""
    errors = []
    for variant in schema.variants.values():
        try:
            validate(value, variant, partial=True, where=where, path=path)
            return
        except ParamsError as err:
            errors.append(err)
    raise errors[0]


def _select_variant(value: dict, schema: Variant, *, partial: bool, where: str, path: str) -> dict:
    chosen = value.get(schema.selector)
    if chosen is None:
        raise ParamsError(f"{where}: {_join(path, schema.selector)}: missing key")
    if chosen not in schema.variants:
        raise ParamsError(
            f"{where}: {_join(path, schema.selector)}: expected one of {sorted(schema.variants)}, got {chosen!r}"
        )
    return schema.variants[chosen]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
