"""What produced a report: package versions, the source revision and the machine."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

#: Distributions whose versions the report lists (missing ones are shown as such).
PACKAGES = ("slotbench", "torch", "numpy", "scipy", "pandas", "mlflow", "snakemake", "dvc", "matplotlib",
            "imageio", "pillow", "opencv-python-headless")


def versions() -> dict[str, str]:
    """Python, the platform and each of :data:`PACKAGES` -> version string."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def source_revision(root: str | Path = ".") -> str:
    """The git commit of ``root`` (``+ local changes`` when the tree is dirty), or why there is none."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return commit + (" + local changes" if dirty else "")
