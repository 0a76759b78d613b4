"""One place to find (and, where allowed, download) the pretrained files slotbench needs.

Lookup order of :func:`find_weights`:

1. an explicit path, when one is given: it is used alone (no fall-back to another file and no
   download: a wrong explicit path is a mistake to report, not to paper over);
2. ``package_files``: exact files shipped inside an installed package (e.g. the ``lpips``
   package's head weights), which come with the code that expects them;
3. ``<weights dir>/<filename>``, the weights dir being ``$SLOTBENCH_WEIGHTS`` or, when that is
   unset, ``$XDG_CACHE_HOME/slotbench/weights`` (``~/.cache/slotbench/weights``);
4. ``<d>/<filename>`` for each of the caller's ``search_dirs`` (e.g. torch hub's cache
   ``$TORCH_HOME/hub/checkpoints``, see :func:`torch_hub_checkpoints`);
5. ``extra_files``: exact files elsewhere (e.g. StyleGAN-V's dnnlib download cache, whose
   names carry a URL hash).

If none exists and downloading is allowed (``download=True`` and ``$SLOTBENCH_OFFLINE`` unset,
empty or ``0``), the file is fetched from ``url`` with :mod:`urllib` in 1 MiB chunks (a tqdm
progress bar on stderr) into a temporary file beside the target, in the first writable
directory of 3-4; its SHA-256 is computed while streaming and compared with ``sha256`` before
the temporary file is renamed onto ``<dir>/<filename>``. Otherwise :class:`MissingWeightsError`
names every path searched, the URL and where to put the file.

Digests (``sha256``):

* a full 64-hex SHA-256: compared in full;
* a prefix of at least 8 hex digits: compared as a prefix. This exists because for some
  public files only a prefix is published, e.g. torchvision's checkpoints embed the first 8
  hex digits of their SHA-256 in the file name (``vgg16-397923af.pth``) and ``torch.hub``
  checks exactly that prefix on download; without network access to the file, that prefix
  is all that can be known here. A prefix still catches truncated or wrong files, but not a
  deliberate collision; record the full digest once a verified copy is at hand;
* ``None``: no digest is known (e.g. StyleGAN-V's I3D detector, see
  :mod:`slotbench.metrics.fvd`): the file is accepted and its SHA-256 printed (and returned
  by :func:`describe_file`) so that it can be recorded.

A digest mismatch raises :class:`WeightsDigestError` (a ``ValueError``) naming the file; a
downloaded file with the wrong digest is deleted before the error.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path

from tqdm import tqdm

from .io import TMP_PREFIX, sha256_file

__all__ = [
    "MissingWeightsError",
    "WeightsDigestError",
    "find_weights",
    "download_file",
    "check_sha256",
    "sha256_file",
    "weights_dir",
    "torch_hub_checkpoints",
    "offline",
    "describe_file",
    "ENV_WEIGHTS",
    "ENV_OFFLINE",
]

#: Directory searched (and downloaded into) first.
ENV_WEIGHTS = "SLOTBENCH_WEIGHTS"
#: When set to anything but ``""`` or ``"0"``, nothing is downloaded.
ENV_OFFLINE = "SLOTBENCH_OFFLINE"

_HEX = re.compile(r"^[0-9a-f]+$")
_CHUNK = 1 << 20
_USER_AGENT = "slotbench (python urllib)"


class MissingWeightsError(FileNotFoundError):
    """A pretrained file was not found (and could not or may not be downloaded); the message
    lists every path searched, the download address and where to put the file."""


class WeightsDigestError(ValueError):
    """A pretrained file's SHA-256 differs from the known one."""


# ---------------------------------------------------------------------------- locations
def weights_dir() -> Path:
    """``$SLOTBENCH_WEIGHTS``, else ``$XDG_CACHE_HOME/slotbench/weights`` (``~/.cache/...``)."""
    explicit = os.environ.get(ENV_WEIGHTS)
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(cache).expanduser() / "slotbench" / "weights"


def torch_hub_checkpoints() -> Path:
    """torch hub's checkpoint cache, ``$TORCH_HOME/hub/checkpoints`` (``TORCH_HOME`` defaults
    to ``$XDG_CACHE_HOME/torch``, i.e. ``~/.cache/torch``, as in torch itself)."""
    torch_home = os.environ.get("TORCH_HOME")
    if not torch_home:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        torch_home = os.path.join(cache, "torch")
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


def offline() -> bool:
    """True when ``$SLOTBENCH_OFFLINE`` forbids downloads."""
    return os.environ.get(ENV_OFFLINE, "").strip() not in ("", "0")


# ---------------------------------------------------------------------------- digests
def _normalise_digest(expected: str | None) -> str | None:
    if expected is None:
        return None
    expected = expected.strip().lower()
    if not _HEX.match(expected) or not 8 <= len(expected) <= 64:
        raise ValueError(
            f"expected SHA-256 must be 8 to 64 hex digits (a full digest or a known prefix), "
            f"got {expected!r}"
        )
    return expected


def _digest_matches(actual: str, expected: str) -> bool:
    return actual == expected if len(expected) == 64 else actual.startswith(expected)


def _mismatch_message(path: Path | str, actual: str, expected: str, what: str) -> str:
    kind = "" if len(expected) == 64 else f" (known prefix, {len(expected)} hex digits)"
    return (
        f"{what} {path} has SHA-256 {actual}, expected {expected}{kind}: the file is corrupt or "
        f"not the right one; delete or replace it"
    )


def check_sha256(path: str | Path, expected: str | None, what: str = "weights file") -> str:
    """The SHA-256 of ``path``, after checking it against ``expected`` (full digest or prefix
    of >= 8 hex digits; ``None`` checks nothing).

    Raises:
        WeightsDigestError: the digest differs (the message names the file).
        ValueError: ``expected`` is not 8-64 hex digits.
    """
    expected = _normalise_digest(expected)
    path = Path(path)
    actual = sha256_file(path)
    if expected is not None and not _digest_matches(actual, expected):
        raise WeightsDigestError(_mismatch_message(path, actual, expected, what))
    return actual


def describe_file(path: str | Path) -> dict:
    """``{"path", "bytes", "sha256"}`` of a file (for recording which weights were used)."""
    path = Path(path)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)}


# ---------------------------------------------------------------------------- download
def _writable_dir(dirs: Iterable[Path]) -> Path | None:
    for d in dirs:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK | os.X_OK):
            return d
    return None


def download_file(
    url: str,
    dest: str | Path,
    sha256: str | None,
    progress: bool = True,
    timeout: float = 60.0,
    what: str = "weights file",
) -> Path:
    """Stream ``url`` to ``dest`` atomically, checking its SHA-256 (full or prefix).

    The bytes go to a temporary file beside ``dest`` (prefix ``.tmp-``) and are renamed onto
    ``dest`` only when complete and verified; on any failure the temporary file is removed
    and ``dest`` is untouched.

    Raises:
        WeightsDigestError: the downloaded bytes have another digest (nothing is kept).
        OSError / urllib.error.URLError: the transfer failed, including a body shorter or
            longer than the server's ``Content-Length`` and a broken chunked transfer (these
            matter most when no digest is known: nothing else would catch them).
    """
    expected = _normalise_digest(sha256)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{dest.name}.", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                      disable=not progress, file=sys.stderr, dynamic_ncols=True) as bar:
                received = 0
                try:
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                except http.client.HTTPException as err:  # e.g. IncompleteRead: not an OSError
                    raise OSError(f"transfer from {url} broke off after {received} bytes: "
                                  f"{type(err).__name__}: {err}") from err
            if total is not None and received != total:
                raise OSError(f"transfer from {url} ended after {received} of the {total} bytes "
                              f"announced (Content-Length)")
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if expected is not None and not _digest_matches(actual, expected):
            raise WeightsDigestError(
                _mismatch_message(url, actual, expected, f"{what} downloaded from")
                + " (the download was discarded)"
            )
        if expected is None:
            print(
                f"note: no SHA-256 is known for {dest.name}; downloaded file's SHA-256 is {actual} "
                f"(record it to pin this file)",
                file=sys.stderr,
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


# ---------------------------------------------------------------------------- lookup
def find_weights(
    filename: str,
    url: str | None,
    sha256: str | None,
    search_dirs: Sequence[str | Path] = (),
    explicit_path: str | Path | None = None,
    download: bool = True,
    *,
    package_files: Sequence[str | Path] = (),
    extra_files: Sequence[str | Path] = (),
    verify_existing: bool = True,
    what: str | None = None,
    hint: str | None = None,
    progress: bool = True,
) -> Path:
    """Path of the pretrained file ``filename`` (see the module docstring for the order).

    Args:
        filename: file name under the weights dir and ``search_dirs`` (and of a download).
        url: public download address (``None``: cannot be downloaded).
        sha256: full SHA-256, a known prefix (>= 8 hex digits) or ``None`` (unknown).
        search_dirs: further directories, searched after the weights dir, in order.
        explicit_path: a file to use alone.
        download: allow a download when nothing is found (also needs ``$SLOTBENCH_OFFLINE`` unset).
        package_files: exact files searched before the weights dir.
        extra_files: exact files searched after ``search_dirs``.
        verify_existing: check the digest of a file found on disk too (a download is always
            checked); callers that check at load time with an overridable digest pass False.
        what: human name of the file for messages (default: ``filename``).
        hint: extra sentence for the error message (e.g. another way to obtain the file).
        progress: show a progress bar while downloading.

    Returns:
        The path of an existing file.

    Raises:
        MissingWeightsError: not found, and not downloadable (offline, no URL, no writable
            directory, or the transfer failed); the message lists every path searched.
        WeightsDigestError: a found or downloaded file has the wrong digest.
    """
    what = what or filename
    sha256 = _normalise_digest(sha256)
    if explicit_path is not None:
        path = Path(explicit_path).expanduser()
        if path.is_file():
            if verify_existing:
                check_sha256(path, sha256, what)
            return path
        raise MissingWeightsError(
            f"{what} not found at the explicit path {path} (an explicit path is used alone)."
            + (f"\nIt can be downloaded from {url}" if url else "")
            + (f"\n{hint}" if hint else "")
        )

    dirs = [weights_dir()] + [Path(d).expanduser() for d in search_dirs]
    candidates = (
        [Path(p).expanduser() for p in package_files]
        + [d / filename for d in dirs]
        + [Path(p).expanduser() for p in extra_files]
    )
    for path in candidates:
        if path.is_file():
            if verify_existing:
                check_sha256(path, sha256, what)
            return path

    searched = "\n".join(f"  - {p}" for p in candidates)
    place = " or ".join(str(d / filename) for d in dirs)
    reason = ""
    if url and download and not offline():
        target_dir = _writable_dir(dirs)
        if target_dir is not None:
            target = target_dir / filename
            print(f"downloading {what} from {url} to {target}", file=sys.stderr)
            try:
                return download_file(url, target, sha256, progress=progress, what=what)
            except WeightsDigestError:
                raise
            except (OSError, urllib.error.URLError, ValueError) as err:
                reason = f"\nThe download from {url} failed: {type(err).__name__}: {err}"
        else:
            reason = "\nNo searched directory is writable, so it was not downloaded."
    elif url and download:
        reason = f"\nNot downloaded: ${ENV_OFFLINE} is set."
    elif url:
        reason = "\nNot downloaded: downloading was not allowed by the caller."
    digest_note = (
        f"SHA-256 {sha256}" + ("" if len(sha256) == 64 else " (known prefix)")
        if sha256 else "no SHA-256 is known for it"
    )
    raise MissingWeightsError(
        f"{what} not found; searched, in order:\n{searched}{reason}\n"
        + (f"Download it from {url} ({digest_note}) and put it at {place}"
           f" (set ${ENV_WEIGHTS} to choose the first directory)." if url else
           f"Put it at {place} (set ${ENV_WEIGHTS} to choose the first directory).")
        + (f"\n{hint}" if hint else "")
    )
