"""Pictures for the report: labelled side-by-side video strips, encoded as GIF or PNG data URIs.

Every video here is uint8 RGB ``[T, H, W, 3]``; the strips are embedded in the HTML page
(``data:`` URIs), so the report is one self-contained file.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, ImageDraw

#: Smallest displayed tile side in pixels: small videos are enlarged (nearest neighbour) to it.
MIN_TILE = 96
LABEL_HEIGHT = 14
GAP = 2


def enlarge(video: np.ndarray, side: int = MIN_TILE) -> np.ndarray:
    """Nearest-neighbour enlargement of ``[T, H, W, 3]`` by the integer factor that reaches ``side``."""
    factor = max(1, -(-side // video.shape[1]))
    return video.repeat(factor, axis=1).repeat(factor, axis=2)


def _label(text: str, width: int, colour: tuple[int, int, int] | None) -> np.ndarray:
    """A white ``[LABEL_HEIGHT, width, 3]`` caption, with a colour bar underneath when given."""
    image = Image.new("RGB", (width, LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    draw.text((2, 1), text, fill="black")
    if colour is not None:
        draw.rectangle((0, LABEL_HEIGHT - 3, width, LABEL_HEIGHT), fill=tuple(int(c) for c in colour))
    return np.asarray(image)


def strip(tiles: list[np.ndarray], labels: list[str],
          colours: list[tuple[int, int, int] | None] | None = None) -> np.ndarray:
    """Videos side by side, each enlarged and captioned: ``[T, LABEL_HEIGHT + H', W', 3]``.

    Args:
        tiles: videos ``[T, H, W, 3]`` with the same ``T``, ``H`` and ``W``.
        labels: one caption per tile.
        colours: optional colour bar under each caption (e.g. the colour a slot was matched to).
    """
    colours = colours or [None] * len(tiles)
    big = [enlarge(t) for t in tiles]
    t, h, w, _ = big[0].shape
    out = np.full((t, LABEL_HEIGHT + h, len(big) * (w + GAP) - GAP, 3), 255, np.uint8)
    for i, (video, label, colour) in enumerate(zip(big, labels, colours)):
        x = i * (w + GAP)
        out[:, :LABEL_HEIGHT, x:x + w] = _label(label, w, colour)
        out[:, LABEL_HEIGHT:, x:x + w] = video
    return out


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
