"""The embedded synthetic dataset ``shapes``: MOVi-like videos rendered with pure NumPy.

Each video shows K objects (2D shapes) that move with constant velocities, bounce off the
frame borders, optionally rotate, and occlude each other in a fixed random depth order.
Two looks imitate the Kubric MOVi family:

* ``solid`` (MOVi-Solid-like): every object has one saturated colour, the background is a
  single random colour per video;
* ``textured`` (MOVi-Tex/E-like): objects carry procedural textures (stripes, checkers or
  smooth noise blobs in 2-3 colours) attached to the object's own frame, on a textured
  background larger than the frame whose visible window pans with a constant camera velocity.

The segmentation uses id 0 for the background and 1..K for the objects, with the same id in
every frame. Rendering is vectorised over all frames of an object at once (hard masks from
analytic inside-tests, no anti-aliasing), so thousands of small videos are made per minute
on one core. Video ``i`` of a split depends only on ``(config, seed, i)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from tqdm import tqdm

__all__ = [
    "DEFAULT_CONFIG",
    "LOOKS",
    "SHAPES",
    "check_config",
    "generate_split",
    "generate_video",
]

LOOKS = ("solid", "textured")
SHAPES = ("square", "circle", "triangle", "diamond", "star", "ellipse")
_KEYS = (
    "look",
    "resolution",
    "video_len",
    "min_objects",
    "max_objects",
    "shapes",
    "min_size",
    "max_size",
    "max_speed",
    "orientation",
    "max_spin",
    "shading",
    "distinct_colours",
)

DEFAULT_CONFIG: dict = {
    "look": "solid",
    "resolution": 64,
    "video_len": 24,
    "min_objects": 2,
    "max_objects": 5,
    "shapes": list(SHAPES),
    "min_size": 0.12,
    "max_size": 0.22,
    "max_speed": 0.03,
    "orientation": "random",
    "max_spin": 0.08,
    "shading": 0.0,
    "distinct_colours": True,
}

ORIENTATIONS = ("random", "upright")
# Camera speed of the textured background (fraction of the frame side per frame).
_CAMERA_SPEED = (0.01, 0.025)
# Minimal RGB distance (in [0, 1]^3) between colours that must differ; relaxed if needed.
_MIN_COLOUR_DIST = 0.4


# --------------------------------------------------------------------------- config


def check_config(config: Mapping) -> dict:
    """Check the keys of a ``shapes`` config; return a plain dict with the values normalised.

    Raises ``ValueError`` with a message naming the offending key or value. Keys other than
    the thirteen documented ones are ignored.
    """
    missing = [key for key in _KEYS if key not in config]
    if missing:
        raise ValueError(f"synthetic config lacks the key(s) {missing}")
    cfg = {key: config[key] for key in _KEYS}
    if cfg["look"] not in LOOKS:
        raise ValueError(f"unknown look {cfg['look']!r}; expected one of {list(LOOKS)}")
    for key, low in (("resolution", 8), ("video_len", 1), ("min_objects", 0), ("max_objects", 0)):
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
        cfg[key] = int(value)
    if cfg["min_objects"] > cfg["max_objects"]:
        raise ValueError(
            f"min_objects ({cfg['min_objects']}) > max_objects ({cfg['max_objects']})"
        )
    if cfg["max_objects"] > 254:
        raise ValueError(f"max_objects must be <= 254 (uint8 ids), got {cfg['max_objects']}")
    shapes = cfg["shapes"]
    if isinstance(shapes, str) or not shapes:
        raise ValueError(f"shapes must be a non-empty list of names, got {shapes!r}")
    for name in shapes:
        if name not in SHAPES:
            raise ValueError(f"unknown shape {name!r}; expected names from {list(SHAPES)}")
    cfg["shapes"] = list(shapes)
    for key in ("min_size", "max_size", "max_speed"):
        cfg[key] = float(cfg[key])
    if cfg["min_size"] <= 0 or cfg["max_size"] <= 0:
        raise ValueError(
            f"object sizes must be positive, got min_size={cfg['min_size']}, "
            f"max_size={cfg['max_size']}"
        )
    if cfg["min_size"] > cfg["max_size"]:
        raise ValueError(f"min_size ({cfg['min_size']}) > max_size ({cfg['max_size']})")
    if cfg["max_size"] > 0.5:
        raise ValueError(
            f"max_size must be <= 0.5 (objects fit in the frame), got {cfg['max_size']}"
        )
    if not cfg["max_speed"] >= 0:
        raise ValueError(f"max_speed must be >= 0, got {cfg['max_speed']}")
    if cfg["orientation"] not in ORIENTATIONS:
        raise ValueError(
            f"unknown orientation {cfg['orientation']!r}; expected one of {list(ORIENTATIONS)}"
        )
    cfg["max_spin"] = float(cfg["max_spin"])
    if not cfg["max_spin"] >= 0:
        raise ValueError(f"max_spin must be >= 0, got {cfg['max_spin']}")
    cfg["shading"] = float(cfg["shading"])
    if not 0.0 <= cfg["shading"] <= 1.0:
        raise ValueError(f"shading must be in [0, 1], got {cfg['shading']}")
    if not isinstance(cfg["distinct_colours"], (bool, np.bool_)):
        raise ValueError(f"distinct_colours must be true or false, got {cfg['distinct_colours']!r}")
    cfg["distinct_colours"] = bool(cfg["distinct_colours"])
    return cfg


# --------------------------------------------------------------------------- shapes
# Inside-tests in the object's own frame (u, v), in units of the object's size. Every shape
# lies in the unit disk, so an object whose centre keeps a distance ``size`` from the borders
# is never cut by them.

_SQRT_HALF = np.float32(np.sqrt(0.5))
_SIN30 = np.float32(0.5)
_COS30 = np.float32(np.sqrt(3) / 2)


def _square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) <= _SQRT_HALF


def _circle(u, v):
    return u * u + v * v <= 1.0


def _ellipse(u, v):
    w = v * np.float32(1 / 0.55)
    return u * u + w * w <= 1.0


def _diamond(u, v):
    return np.abs(u) * np.float32(1 / 0.6) + np.abs(v) <= 1.0


def _triangle(u, v):
    # Equilateral, circumradius 1: inradius 0.5, outward normals at -90, 30 and 150 degrees.
    a = _SIN30 * v
    b = _COS30 * u
    return (v >= -0.5) & (a + b <= 0.5) & (a - b <= 0.5)


# Five-pointed star, outer radius 1, inner radius 0.45: fold the polar angle into the sector
# between an outer vertex (angle 0) and the next inner vertex (angle pi/5), then test against
# the straight edge joining them.
_STAR_INNER = 0.45
_STAR_SECTOR = np.float32(2 * np.pi / 5)
_p2 = _STAR_INNER * np.array([np.cos(np.pi / 5), np.sin(np.pi / 5)])
_edge_normal = np.array([_p2[1], 1.0 - _p2[0]])  # perpendicular to p2 - (1, 0)
_STAR_N = (_edge_normal / _edge_normal[0]).astype(np.float32)  # so that n . (1, 0) = 1


def _star(u, v):
    r = np.sqrt(u * u + v * v)
    a = np.arctan2(v, u) % _STAR_SECTOR
    phi = _STAR_SECTOR / 2 - np.abs(a - _STAR_SECTOR / 2)
    return r * (np.cos(phi) + _STAR_N[1] * np.sin(phi)) <= 1.0


_INSIDE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "square": _square,
    "circle": _circle,
    "triangle": _triangle,
    "diamond": _diamond,
    "star": _star,
    "ellipse": _ellipse,
}


# --------------------------------------------------------------------------- colours & textures


def _hsv_to_rgb(h, s, v):
    """Vectorised HSV -> RGB, all in [0, 1]; returns shape ``h.shape + (3,)``."""
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.astype(int) % 6
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], axis=-1)


def _sample_colours(rng, n, avoid, s_range, v_range, batch=32):
    """``n`` RGB colours (float, [0, 1]) that differ from ``avoid`` and from one another.

    Candidates are drawn in batches from HSV boxes; the first one at RGB distance at least
    ``_MIN_COLOUR_DIST`` from all references is taken. The distance is relaxed when no
    candidate qualifies (only happens with very many colours).
    """
    refs = [np.asarray(c, dtype=float) for c in avoid]
    chosen = []
    for _ in range(n):
        threshold = _MIN_COLOUR_DIST
        while True:
            cand = _hsv_to_rgb(
                rng.random(batch), rng.uniform(*s_range, batch), rng.uniform(*v_range, batch)
            )
            if refs:
                dist = np.linalg.norm(cand[:, None, :] - np.stack(refs)[None], axis=-1).min(1)
                ok = dist >= threshold
            else:
                ok = np.ones(batch, dtype=bool)
            if ok.any():
                colour = cand[int(np.argmax(ok))]
                chosen.append(colour)
                refs.append(colour)
                break
            threshold *= 0.8
    return np.array(chosen).reshape(n, 3)


def _to_uint8(rgb):
    return np.round(np.asarray(rgb) * 255).astype(np.uint8)


def _sample_texture(rng, freq, kinds=(0, 1, 2)):
    """Random texture parameters; ``freq`` scales the pattern (cycles per unit length).

    Kinds: 0 stripes, 1 checkerboard, 2 smooth noise blobs.
    """
    kind = int(kinds[rng.integers(len(kinds))])
    n = int(rng.integers(2, 4))  # 2 or 3 colours
    if kind == 0:  # stripes at a random angle
        theta = rng.uniform(0, np.pi)
        params = (np.cos(theta), np.sin(theta), rng.uniform(freq, 2 * freq), rng.random())
    elif kind == 1:  # checkerboard
        params = (rng.uniform(0.8 * freq, 1.6 * freq), rng.random(), rng.random())
    else:  # smooth noise blobs: a sum of three plane waves, quantised
        # Directions roughly 120 degrees apart, so the blobs are not stripe-like.
        angle = rng.uniform(0, 2 * np.pi) + 2 * np.pi / 3 * np.arange(3) + rng.uniform(-0.3, 0.3, 3)
        k = rng.uniform(2.0 * freq, 4.0 * freq, 3)
        params = (k * np.cos(angle), k * np.sin(angle), rng.uniform(0, 2 * np.pi, 3))
    return kind, n, params


def _texture(texture, u, v):
    """Colour index (uint8, in [0, n)) of a texture at coordinates ``u``, ``v``."""
    kind, n, params = texture
    if kind == 0:
        c, s, f, phase = (np.float32(p) for p in params)
        idx = np.floor((u * c + v * s) * f + phase)
    elif kind == 1:
        f, pu, pv = (np.float32(p) for p in params)
        idx = np.floor(u * f + pu) + np.floor(v * f + pv)
    else:
        ku, kv, phase = params
        w = sum(np.sin(u * np.float32(a) + v * np.float32(b) + np.float32(p))
                for a, b, p in zip(ku, kv, phase))
        # Thresholds giving roughly equal areas for 2 or 3 colours.
        cuts = (0.0,) if n == 2 else (-0.53, 0.53)
        idx = sum((w > np.float32(t)).astype(np.float32) for t in cuts)
        return np.asarray(idx, dtype=np.uint8)
    return (idx % n).astype(np.uint8)


# --------------------------------------------------------------------------- rendering


def _bounce(start, velocity, low, high, t):
    """Positions at times ``t`` of points moving from ``start`` and reflecting off [low, high]."""
    span = high - low
    unfolded = (start - low)[:, None] + velocity[:, None] * t[None, :]
    period = np.where(span > 0, 2 * span, 1.0)[:, None]
    folded = np.mod(unfolded, period)
    folded = span[:, None] - np.abs(folded - span[:, None])
    return low[:, None] + np.where(span[:, None] > 0, folded, 0.0)


# Elevation of the light: the z component of its unit direction (1 = straight from the camera).
_LIGHT_Z = (0.35, 0.7)


def _sample_light(rng: np.random.Generator) -> np.ndarray:
    """A unit light direction ``[3]`` (x right, y down, z towards the camera), random azimuth."""
    azimuth = rng.uniform(0, 2 * np.pi)
    z = rng.uniform(*_LIGHT_Z)
    r = np.sqrt(1 - z * z)
    return np.array([r * np.cos(azimuth), r * np.sin(azimuth), z], dtype=np.float32)


def _dome_shade(nx: np.ndarray, ny: np.ndarray, light: np.ndarray, strength: float) -> np.ndarray:
    """Lambertian brightness factor in ``[1 - strength, 1]`` of a dome (a hemisphere of radius 1
    in units of the object's size) at world-frame offsets ``nx``, ``ny`` from its centre; every
    shape lies in the unit disk, so it is shaded like a lit ball cut to its outline."""
    nz = np.sqrt(np.maximum(0.0, 1.0 - nx * nx - ny * ny))
    lambert = np.maximum(0.0, nx * light[0] + ny * light[1] + nz * light[2])
    return np.float32(1.0 - strength) + np.float32(strength) * lambert


def _background_shade(coord: np.ndarray, light: np.ndarray, strength: float) -> np.ndarray:
    """Brightness factor ``[H, W]`` of the floor: a linear ramp towards the light's azimuth from
    ``1 - strength / 2`` (far side) to 1 (near side)."""
    az = light[:2] / max(float(np.linalg.norm(light[:2])), 1e-6)
    proj = (coord[None, :] - 0.5) * az[0] + (coord[:, None] - 0.5) * az[1]  # in [-0.71, 0.71]
    ramp = np.clip(proj / np.float32(np.sqrt(0.5)), -1.0, 1.0) * 0.5 + 0.5
    return np.float32(1.0 - strength / 2) + np.float32(strength / 2) * ramp


def _apply_shade(frames: np.ndarray, shade: np.ndarray | None) -> np.ndarray:
    """``frames`` uint8 ``[T, H, W, 3]`` times the brightness factor ``shade`` ``[T, H, W]``
    (unchanged when there is no light, ``shade`` None)."""
    if shade is None:
        return frames
    return np.round(frames.astype(np.float32) * shade[..., None]).astype(np.uint8)


def _generate(cfg: dict, rng: np.random.Generator):
    """Render one video from a checked config; returns (video, seg, num_objects)."""
    res, T = cfg["resolution"], cfg["video_len"]
    k = int(rng.integers(cfg["min_objects"], cfg["max_objects"] + 1))
    textured = cfg["look"] == "textured"

    # Object parameters (all in units of the frame side).
    shape = rng.integers(len(cfg["shapes"]), size=k)
    size = rng.uniform(cfg["min_size"], cfg["max_size"], k)
    pos0 = rng.uniform(size[:, None], 1 - size[:, None], (k, 2))
    direction = rng.uniform(0, 2 * np.pi, k)
    speed = cfg["max_speed"] * np.sqrt(rng.random(k))  # uniform in the disk
    vel = speed[:, None] * np.stack([np.cos(direction), np.sin(direction)], axis=1)
    angle0 = rng.uniform(0, 2 * np.pi, k)
    spin = rng.uniform(-cfg["max_spin"], cfg["max_spin"], k)  # radians per frame
    if cfg["orientation"] == "upright":  # drawn anyway: the rest of the video stays the same
        angle0 = np.zeros(k)
    draw_order = rng.permutation(k)  # far to near; ids are 1 + object index

    t = np.arange(T, dtype=float)
    px = _bounce(pos0[:, 0], vel[:, 0], size, 1 - size, t)  # [k, T]
    py = _bounce(pos0[:, 1], vel[:, 1], size, 1 - size, t)
    angle = angle0[:, None] + spin[:, None] * t[None, :]

    # Colours: background first, then objects that differ from it.
    if textured:
        # No stripes: panning along the stripes would not be visible.
        bg_texture = _sample_texture(rng, freq=4.0, kinds=(1, 2))
        bg_colours = _sample_colours(rng, bg_texture[1], [], (0.15, 0.6), (0.25, 0.85))
        obj_textures = [_sample_texture(rng, freq=1.2) for _ in range(k)]
        obj_colours = [
            _sample_colours(rng, tex[1], bg_colours, (0.5, 1.0), (0.5, 1.0))
            for tex in obj_textures
        ]
        camera_dir = rng.uniform(0, 2 * np.pi)
        camera_speed = rng.uniform(*_CAMERA_SPEED) * res
    else:
        bg_colour = _sample_colours(rng, 1, [], (0.0, 0.6), (0.15, 0.95))
        if cfg["distinct_colours"]:
            obj_colours = _sample_colours(rng, k, bg_colour, (0.5, 1.0), (0.5, 1.0))
        else:  # each object avoids the background only, so two objects may look alike
            obj_colours = np.concatenate(
                [_sample_colours(rng, 1, bg_colour, (0.5, 1.0), (0.5, 1.0)) for _ in range(k)]
            ).reshape(k, 3)
    # Drawn last, so that shading 0 leaves every other draw (and the old videos) unchanged.
    light = _sample_light(rng) if cfg["shading"] > 0 else None

    coord = ((np.arange(res) + 0.5) / res).astype(np.float32)
    seg = np.zeros((T, res, res), dtype=np.uint8)
    shade = None  # brightness factor [T, H, W] when lit
    if light is not None:
        shade = np.broadcast_to(_background_shade(coord, light, cfg["shading"]), (T, res, res)).copy()
    if textured:
        colour_idx = np.zeros((T, res, res), dtype=np.int16)  # 0 = background
    for obj in draw_order:
        # Object-frame coordinates for all frames at once, broadcast to [T, H, W].
        c = (np.cos(angle[obj]) / size[obj]).astype(np.float32)[:, None, None]
        s = (np.sin(angle[obj]) / size[obj]).astype(np.float32)[:, None, None]
        dx = coord[None, None, :] - px[obj].astype(np.float32)[:, None, None]  # [T, 1, W]
        dy = coord[None, :, None] - py[obj].astype(np.float32)[:, None, None]  # [T, H, 1]
        u = dx * c + dy * s
        v = dy * c - dx * s
        mask = _INSIDE[cfg["shapes"][shape[obj]]](u, v)
        np.putmask(seg, mask, obj + 1)
        if shade is not None:
            inv = np.float32(1.0 / size[obj])
            np.putmask(shade, mask, _dome_shade(dx * inv, dy * inv, light, cfg["shading"]))
        if textured:  # texture evaluated on the object's pixels only
            colour_idx[mask] = _texture(obj_textures[obj], u[mask], v[mask]) + (1 + 3 * obj)

    if not textured:
        palette = _to_uint8(np.concatenate([bg_colour, obj_colours]))
        return _apply_shade(np.take(palette, seg, axis=0), shade), seg, k

    # Background canvas larger than the frame; the visible window moves by the camera velocity.
    travel = camera_speed * max(T - 1, 0)
    pad = int(np.ceil(travel)) + 1
    cam_v = camera_speed * np.array([np.cos(camera_dir), np.sin(camera_dir)])
    offsets = np.round(pad / 2 + cam_v[None, :] * (t - (T - 1) / 2)[:, None]).astype(int)
    offsets = np.clip(offsets, 0, pad)  # [T, 2] (x, y)
    canvas_coord = ((np.arange(res + pad) + 0.5) / res).astype(np.float32)
    canvas_idx = _texture(bg_texture, canvas_coord[None, :], canvas_coord[:, None])
    canvas = _to_uint8(bg_colours)[canvas_idx]  # [H + pad, W + pad, 3]
    window = np.arange(res)
    rows = offsets[:, 1, None] + window  # [T, H]
    cols = offsets[:, 0, None] + window  # [T, W]
    frames = canvas[rows[:, :, None], cols[:, None, :]]  # [T, H, W, 3], a new array

    palette = np.zeros((1 + 3 * k, 3), dtype=np.uint8)
    for obj in range(k):
        colours = _to_uint8(obj_colours[obj])
        palette[1 + 3 * obj : 1 + 3 * obj + len(colours)] = colours
    foreground = colour_idx > 0
    frames[foreground] = palette[colour_idx[foreground]]
    return _apply_shade(frames, shade), seg, k


def generate_video(config: Mapping, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """One video: RGB uint8 ``[T, H, W, 3]``, segmentation uint8 ``[T, H, W]``, and K."""
    return _generate(check_config(config), rng)


def generate_split(
    config: dict, num_videos: int, seed: int, progress: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns video uint8 [N, T, H, W, 3], seg uint8 [N, T, H, W] (0 = background, 1..K object
    ids consistent through time), num_objects int16 [N].

    Video ``i`` is drawn from ``np.random.default_rng(SeedSequence(seed).spawn(N)[i])``, so it
    does not depend on ``num_videos``: a longer split extends a shorter one.
    """
    cfg = check_config(config)
    if num_videos < 0:
        raise ValueError(f"num_videos must be >= 0, got {num_videos}")
    res, T = cfg["resolution"], cfg["video_len"]
    videos = np.empty((num_videos, T, res, res, 3), dtype=np.uint8)
    segs = np.empty((num_videos, T, res, res), dtype=np.uint8)
    counts = np.empty(num_videos, dtype=np.int16)
    children = np.random.SeedSequence(seed).spawn(num_videos)
    for i in tqdm(range(num_videos), desc="shapes", unit="video", disable=not progress):
        videos[i], segs[i], counts[i] = _generate(cfg, np.random.default_rng(children[i]))
    return videos, segs, counts


# --------------------------------------------------------------------------- previews
