"""Atomic file writing and small JSON/NumPy helpers.

Every artifact a stage writes goes through :func:`atomic_path`: the content is written to a
temporary name in the same folder and renamed into place only when complete, so an
interrupted stage never leaves a file that looks finished.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

TMP_PREFIX = ".tmp-"


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched. The file gets
    the permissions a plain ``open`` would give it (``0o666`` less the umask), not the private
    ``0o600`` of :func:`tempfile.mkstemp`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


#: The key of a metrics record's own digest (see :func:`write_record`).
RECORD_DIGEST_KEY = "record_sha256"


def record_digest(data: dict) -> str:
    """SHA-256 of a record's canonical JSON (sorted keys), :data:`RECORD_DIGEST_KEY` left out."""
    body = {k: v for k, v in data.items() if k != RECORD_DIGEST_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_record(path: str | os.PathLike, data: dict) -> dict:
    """Write a stage's JSON record atomically with its own SHA-256 (``record_sha256``, added to
    ``data`` in place); :func:`read_json` refuses the file when its content no longer matches."""
    data[RECORD_DIGEST_KEY] = record_digest(data)
    remove_stale_temporaries(Path(path).parent, Path(path).name)  # left by a killed earlier attempt
    write_json(path, data)
    return data


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, with an error that names the file when it is missing, malformed (e.g.
    truncated) or, for a record of :func:`write_record`, no longer matches its ``record_sha256``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}); the file is corrupt or incomplete: re-run the stage "
                         f"that writes it") from err
    if isinstance(data, dict) and RECORD_DIGEST_KEY in data and record_digest(data) != data[RECORD_DIGEST_KEY]:
        raise ValueError(f"{path}: content does not match its {RECORD_DIGEST_KEY} (the file is corrupt or was "
                         f"edited); refusing to use it: re-run the stage that writes it")
    return data


def differences(before: Any, now: Any, prefix: str = "", limit: int = 3) -> str:
    """How two JSON-like records differ, for an error or warning: ``"key.sub: 1 -> 2, other: ..."``.

    Mappings are compared key by key (a key missing on one side reads ``<absent>``); anything
    else is compared as a whole. At most ``limit`` differences are named, then how many more
    there are. Returns ``""`` when the records are equal.
    """
    found: list[str] = []

    def walk(a: Any, b: Any, key: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for name in sorted(set(a) | set(b), key=str):
                walk(a.get(name, _ABSENT), b.get(name, _ABSENT), f"{key}.{name}" if key else str(name))
        elif a != b:
            found.append(f"{prefix}{key}: {a!r} -> {b!r}" if key else f"{a!r} -> {b!r}")

    walk(before, now, "")
    more = f" and {len(found) - limit} more" if len(found) > limit else ""
    return ", ".join(found[:limit]) + more


class _Absent:
    """Stands for a key that one of the records compared by :func:`differences` lacks."""

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save one array in ``.npy`` format atomically (readable with memory mapping)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 22) -> str:
    """SHA-256 hex digest of a file, read in chunks (memory stays flat)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def remove_stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> None:
    """Delete temporary files left in ``folder`` by an interrupted atomic write (of ``name`` only,
    when given: a stage clears its own leftovers without touching another stage's writes)."""
    folder = Path(folder)
    if folder.is_dir():
        for tmp in folder.glob(TMP_PREFIX + (f"{glob.escape(name)}.*" if name else "*")):
            tmp.unlink(missing_ok=True)
