"""Pictures for the report, encoded as GIF or PNG data URIs.

Every video here is uint8 RGB ``[T, H, W, 3]`` (e.g. a :func:`slotbench.visualize.strip`); the
pictures are embedded in the HTML page (``data:`` URIs), so the report is one self-contained file.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def gif_uri(video: np.ndarray, fps: float = 4.0) -> str:
    """An animated, looping GIF of ``[T, H, W, 3]`` as a ``data:image/gif`` URI (via imageio)."""
    import imageio.v3 as iio

    data = iio.imwrite("<bytes>", video, extension=".gif", duration=1000.0 / fps, loop=0)
    return "data:image/gif;base64," + base64.b64encode(data).decode("ascii")


def png_uri(image: np.ndarray | bytes) -> str:
    """A PNG (uint8 ``[H, W, 3]`` array or encoded bytes) as a ``data:image/png`` URI."""
    if isinstance(image, np.ndarray):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        image = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(image).decode("ascii")
