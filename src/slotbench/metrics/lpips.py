"""LPIPS (Zhang et al. 2018), VGG-16 backbone, linear heads v0.1: the reconstruction metric
and the VQ-VAE's perceptual loss, without torchvision.

Network (as the ``lpips`` 0.1.4 package computes ``LPIPS(net='vgg')``, inputs in [-1, 1],
no clamping, no resizing)::

    x -> (x - shift) / scale            shift = (-0.030, -0.088, -0.188),
                                        scale = (0.458, 0.448, 0.450)   (per RGB channel)
      -> VGG-16 ``features`` layers 0..29, tapped after relu1_2 (layer 3), relu2_2 (8),
         relu3_3 (15), relu4_3 (22) and relu5_3 (29): 64/128/256/512/512 channels
    per tap k: f / (||f||_2 over channels + 1e-10) for both images, squared difference,
         Dropout(0.5) (active in train mode only, as the package's ``use_dropout=True``),
         1x1 conv C_k -> 1 without bias (the v0.1 head), mean over H x W
    distance = sum over the 5 taps                                       -> [B]

Weights, both checked by SHA-256 before use and loaded with ``torch.load(weights_only=True)``;
both are located by :func:`slotbench.weights.find_weights` (which also downloads a missing
file from its public address unless ``$SLOTBENCH_OFFLINE`` is set):

1. VGG-16 backbone: torchvision's ImageNet state dict ``vgg16-397923af.pth`` (keys
   ``features.N.weight/bias``; the classifier is ignored), public address
   :data:`VGG16_URL`. Looked up, in order, at: an explicit path (used alone), then
   ``$SLOTBENCH_WEIGHTS/vgg16-397923af.pth`` (``SLOTBENCH_WEIGHTS`` defaults to
   ``~/.cache/slotbench/weights``), then torch hub's cache
   ``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth`` (``TORCH_HOME`` defaults to
   ``$XDG_CACHE_HOME/torch``, i.e. ``~/.cache/torch``, as torch itself). A download goes to
   the first writable of the two directories.
2. Linear heads: the ``lpips`` package's ``lpips/weights/v0.1/vgg.pth`` (keys
   ``lin{0..4}.model.1.weight``, ``[1, C, 1, 1]``): an explicit path (used alone), else the
   installed package's file (found with ``importlib.util.find_spec`` without importing the
   package, which would import torchvision; ``pip install --no-deps lpips==0.1.4`` is
   enough), else ``$SLOTBENCH_WEIGHTS/lpips_vgg_v0.1.pth`` (a copy of that file), else a
   download of the same file from the authors' repository (:data:`LPIPS_HEADS_URL`, whose
   bytes were checked to have the wheel's digest).

Digests: the heads file's full SHA-256 :data:`LPIPS_VGG_V01_SHA256` was computed from the
``lpips`` 0.1.4 wheel. For the VGG-16 file only the first 8 hex digits of its SHA-256 are
known here (:data:`VGG16_SHA256_PREFIX`, the ``397923af`` that torchvision's naming convention
embeds in the file name and that ``torch.hub`` checks on download); the full digest could not
be obtained on this project's machines (no network to fetch the 528 MB file), so the VGG file
is checked against that prefix only. Record the full digest in :data:`VGG16_SHA256_PREFIX`'s
place once a verified copy is available (a full 64-hex value is then compared in full).

Missing files raise :class:`MissingWeightsError` (a ``FileNotFoundError``, defined in
:mod:`slotbench.weights` and re-exported here) naming every path searched, the URL and where
to put the file; a digest mismatch raises ``ValueError`` naming the file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import Tensor, nn

from ..weights import MissingWeightsError, check_sha256, find_weights, sha256_file, torch_hub_checkpoints

__all__ = [
    "LPIPS",
    "MissingWeightsError",
    "find_vgg16_weights",
    "find_lpips_heads",
    "load_vgg16_features",
    "load_lpips_heads",
    "sha256_file",
    "VGG16_FILENAME",
    "VGG16_URL",
    "VGG16_SHA256_PREFIX",
    "LPIPS_HEADS_FILENAME",
    "LPIPS_HEADS_URL",
    "LPIPS_VGG_V01_SHA256",
]

VGG16_FILENAME = "vgg16-397923af.pth"
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
#: First 8 hex digits of the SHA-256 of torchvision's ``vgg16-397923af.pth`` (from its name;
#: the full digest is not known here, see the module docstring).
VGG16_SHA256_PREFIX = "397923af"

#: File name of a copy of the ``lpips`` package's ``weights/v0.1/vgg.pth`` under ``$SLOTBENCH_WEIGHTS``.
LPIPS_HEADS_FILENAME = "lpips_vgg_v0.1.pth"
LPIPS_PACKAGE_HEADS = ("weights", "v0.1", "vgg.pth")
#: The same file in the authors' repository (commit 082bb24, 2023-12-19; its bytes have
#: :data:`LPIPS_VGG_V01_SHA256`, checked from a mirror of the repository).
LPIPS_HEADS_URL = (
    "https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/"
    "082bb24f84c091ea94de2867d34c4544f68e0963/lpips/weights/v0.1/vgg.pth"
)
#: SHA-256 of ``lpips/weights/v0.1/vgg.pth`` in the ``lpips`` 0.1.4 wheel (7,289 bytes).
LPIPS_VGG_V01_SHA256 = "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"

#: Shift and scale of the v0.1 ScalingLayer, per RGB channel.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)

#: VGG-16 ``features`` up to relu5_3: conv widths, ``"M"`` = 2x2 max-pool.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
#: Exclusive end index in ``features`` of each tapped slice (relu1_2 ... relu5_3).
TAP_ENDS = (4, 9, 16, 23, 30)
CHANNELS = (64, 128, 256, 512, 512)
HEAD_DROPOUT = 0.5

_DEFAULT = object()  # "use the known digest"


# ---------------------------------------------------------------------------- files
def _check_digest(path: Path, expected: str | None, what: str) -> None:
    """Compare ``path``'s SHA-256 with ``expected`` (a full digest, or a prefix of >= 8 hex
    digits); ``None`` skips the check (tests only)."""
    if expected is not None:
        check_sha256(path, expected, what)


def _torch_hub_checkpoints() -> Path:
    return torch_hub_checkpoints()


def _lpips_package_dir() -> Path | None:
    """Directory of the installed ``lpips`` package, found without importing it."""
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_vgg16_weights(path: str | Path | None = None, download: bool = True) -> Path:
    """Locate torchvision's ImageNet VGG-16 file (see the module docstring for the order),
    downloading it when absent and allowed. Its digest is checked at load time.

    Raises:
        MissingWeightsError: no candidate exists (the message lists them).
    """
    return find_weights(
        VGG16_FILENAME, VGG16_URL, VGG16_SHA256_PREFIX, [torch_hub_checkpoints()],
        explicit_path=path, download=download, verify_existing=False,
        what=f"VGG-16 weights ({VGG16_FILENAME}) for LPIPS",
        hint="LPIPS needs the ImageNet VGG-16 weights of torchvision; torch hub's cache is "
             "under $TORCH_HOME. An explicit path may be passed instead.",
    )


def find_lpips_heads(path: str | Path | None = None, download: bool = True) -> Path:
    """Locate the LPIPS v0.1 VGG linear heads (see the module docstring for the order),
    downloading them when absent and allowed. Their digest is checked at load time.

    Raises:
        MissingWeightsError: no candidate exists (the message lists them).
    """
    package = _lpips_package_dir()
    return find_weights(
        LPIPS_HEADS_FILENAME, LPIPS_HEADS_URL, LPIPS_VGG_V01_SHA256, (),
        explicit_path=path, download=download, verify_existing=False,
        package_files=[package.joinpath(*LPIPS_PACKAGE_HEADS)] if package is not None else [],
        what="LPIPS v0.1 VGG head weights (vgg.pth)",
        hint="Alternatively install the lpips package without its dependencies "
             "(`pip install --no-deps lpips==0.1.4`: only its weight file is read), or copy "
             f"lpips/weights/v0.1/vgg.pth to $SLOTBENCH_WEIGHTS/{LPIPS_HEADS_FILENAME}, or pass "
             "its path explicitly.",
    )


def _load(path: Path) -> dict[str, Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return state


def load_vgg16_features(
    path: str | Path | None = None, expected_sha256: str | None | object = _DEFAULT,
    download: bool = True,
) -> dict[str, Tensor]:
    """The ``features.N.weight/bias`` tensors of the VGG-16 file, keyed ``N.weight/bias``.

    Args:
        path: explicit file (else searched, see :func:`find_vgg16_weights`).
        expected_sha256: by default the known digest (prefix); ``None`` skips the check and is
            meant for tests with stand-in weights only.
        download: allow downloading a missing file (unless ``$SLOTBENCH_OFFLINE`` is set).
    """
    file = find_vgg16_weights(path, download)
    expected = VGG16_SHA256_PREFIX if expected_sha256 is _DEFAULT else expected_sha256
    _check_digest(file, expected, "VGG-16 weights file")  # type: ignore[arg-type]
    state = _load(file)
    out = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    if not out:
        raise ValueError(f"{file} holds no 'features.*' keys: not a torchvision VGG-16 state dict")
    return out


def load_lpips_heads(
    path: str | Path | None = None, expected_sha256: str | None | object = _DEFAULT,
    download: bool = True,
) -> list[Tensor]:
    """The five head weights ``[1, C_k, 1, 1]`` (k = 0..4) of the v0.1 VGG file.

    Args:
        path: explicit file (else searched, see :func:`find_lpips_heads`).
        expected_sha256: by default :data:`LPIPS_VGG_V01_SHA256`; ``None`` skips the check
            and is meant for tests with stand-in weights only.
        download: allow downloading a missing file (unless ``$SLOTBENCH_OFFLINE`` is set).
    """
    file = find_lpips_heads(path, download)
    expected = LPIPS_VGG_V01_SHA256 if expected_sha256 is _DEFAULT else expected_sha256
    _check_digest(file, expected, "LPIPS head weights file")  # type: ignore[arg-type]
    state = _load(file)
    heads = []
    for k, c in enumerate(CHANNELS):
        key = f"lin{k}.model.1.weight"
        if key not in state:
            raise ValueError(f"{file} lacks {key!r}: not an LPIPS v0.1 VGG head file")
        w = state[key]
        if tuple(w.shape) != (1, c, 1, 1):
            raise ValueError(f"{file}: {key} has shape {tuple(w.shape)}, expected (1, {c}, 1, 1)")
        heads.append(w)
    return heads


# ---------------------------------------------------------------------------- network
def _vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features[:30]`` (same indices), with its init (kaiming fan-out
    convs, zero biases)."""
    layers: list[nn.Module] = []
    cin = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            conv = nn.Conv2d(cin, int(item), kernel_size=3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU(inplace=False)]
            cin = int(item)
    assert len(layers) == TAP_ENDS[-1]
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    """LPIPS-VGG v0.1 distance between images in [-1, 1] (see the module docstring).

    ``LPIPS()`` has random weights (tests); :meth:`from_pretrained` loads the real ones and
    returns a frozen module in eval mode. Gradients flow to the inputs (perceptual loss).

    Shapes: ``forward(a, b)``: two ``[B, 3, H, W]`` -> ``[B]``.

    State dict: ``features.N.weight/bias`` (VGG-16 conv N) and ``heads.k.1.weight`` (the
    1x1 head of tap k after its Dropout); the scaling constants are non-persistent buffers.
    Parameters: 14,714,688 (VGG-16 convs) + 1,472 (heads).
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.features = _vgg16_features()
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Dropout(HEAD_DROPOUT), nn.Conv2d(c, 1, kernel_size=1, bias=False))
            for c in CHANNELS
        )

    @classmethod
    def from_pretrained(
        cls,
        vgg_path: str | Path | None = None,
        lin_path: str | Path | None = None,
        *,
        vgg_sha256: str | None | object = _DEFAULT,
        lin_sha256: str | None | object = _DEFAULT,
        download: bool = True,
    ) -> LPIPS:
        """LPIPS with the ImageNet VGG-16 backbone and the v0.1 heads, frozen, in eval mode.

        Args:
            vgg_path, lin_path: explicit files (else searched, see the module docstring).
            vgg_sha256, lin_sha256: expected digests; by default the known ones. ``None``
                skips the check: for tests with stand-in weights only.
            download: allow downloading missing files from their public addresses
                (never when ``$SLOTBENCH_OFFLINE`` is set); a download is always checked
                against the known digest.

        Raises:
            MissingWeightsError: a file was not found (the message lists the paths searched).
            ValueError: a digest mismatch or a file of the wrong layout.
        """
        model = cls()
        features = load_vgg16_features(vgg_path, vgg_sha256, download)
        wanted = model.features.state_dict()
        missing = sorted(set(wanted) - set(features), key=lambda k: int(k.split(".")[0]))
        if missing:
            raise ValueError(f"VGG-16 weights file lacks features.{missing[0]} (and {len(missing) - 1} more)")
        for key, tensor in wanted.items():
            if tuple(features[key].shape) != tuple(tensor.shape):
                raise ValueError(
                    f"VGG-16 weights: features.{key} has shape {tuple(features[key].shape)}, "
                    f"expected {tuple(tensor.shape)}"
                )
        model.features.load_state_dict({k: features[k] for k in wanted})
        for head, weight in zip(model.heads, load_lpips_heads(lin_path, lin_sha256, download)):
            head[1].weight.data.copy_(weight)
        return model.requires_grad_(False).eval()

    def taps(self, x: Tensor) -> list[Tensor]:
        """The five VGG activations (relu1_2 ... relu5_3) of scaled input ``x``."""
        outs = []
        h = x
        start = 0
        for end in TAP_ENDS:
            for layer in self.features[start:end]:
                h = layer(h)
            outs.append(h)
            start = end
        return outs

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if a.shape != b.shape or a.ndim != 4 or a.shape[1] != 3:
            raise ValueError(
                f"LPIPS expects two images of the same shape [B, 3, H, W], got "
                f"{tuple(a.shape)} and {tuple(b.shape)}"
            )
        n = a.shape[0]
        feats = self.taps((torch.cat([a, b], dim=0) - self.shift) / self.scale)
        dist = a.new_zeros(n)
        for f, head in zip(feats, self.heads):
            f = f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            diff = (f[:n] - f[n:]) ** 2
            dist = dist + head(diff).mean(dim=(1, 2, 3))
        return dist
