"""Tests of the LPIPS-VGG metric (slotbench.metrics.lpips), offline, with stand-in weights."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from slotbench.metrics import lpips as lp
from slotbench.metrics.lpips import LPIPS, MissingWeightsError

CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on the shared 2-core machine, 2 threads contend badly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(b=2, res=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, res, res, generator=g) * 2 - 1


def _random_lpips(seed=0) -> LPIPS:
    torch.manual_seed(seed)
    model = LPIPS().eval()
    with torch.no_grad():
        for head in model.heads:  # trained heads are non-negative; random ones need not be
            head[1].weight.abs_()
    return model


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """Random stand-in weight files: a torchvision-style VGG-16 state dict under the hub file
    name (in a TORCH_HOME layout) and an LPIPS head file, plus the module they define."""
    root = tmp_path_factory.mktemp("weights")
    model = _random_lpips(seed=1)
    vgg_state = {f"features.{k}": v.clone() for k, v in model.features.state_dict().items()}
    vgg_state["classifier.6.bias"] = torch.zeros(10)  # ignored, as torchvision's classifier
    torch_home = root / "torch_home"
    vgg_file = torch_home / "hub" / "checkpoints" / lp.VGG16_FILENAME
    vgg_file.parent.mkdir(parents=True)
    torch.save(vgg_state, vgg_file)
    heads = {f"lin{k}.model.1.weight": h[1].weight.detach().clone() for k, h in enumerate(model.heads)}
    weights_dir = root / "slotbench_weights"
    weights_dir.mkdir()
    heads_file = weights_dir / lp.LPIPS_HEADS_FILENAME
    torch.save(heads, heads_file)
    return types.SimpleNamespace(
        model=model, torch_home=torch_home, vgg_file=vgg_file, weights_dir=weights_dir,
        heads_file=heads_file, root=root,
    )


@pytest.fixture
def offline_env(monkeypatch, tmp_path):
    """No lpips package, empty SLOTBENCH_WEIGHTS and TORCH_HOME unless a test sets them, and
    no downloads (SLOTBENCH_OFFLINE); the default weights dir points into tmp_path."""
    monkeypatch.setattr(lp, "_lpips_package_dir", lambda: None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty_xdg_cache"))
    monkeypatch.setenv("SLOTBENCH_OFFLINE", "1")
    monkeypatch.delenv("SLOTBENCH_WEIGHTS", raising=False)
    return monkeypatch


# ---------------------------------------------------------------- network
def test_layout_and_parameter_counts():
    model = LPIPS()
    convs = [k.split(".")[0] for k in model.features.state_dict() if k.endswith(".weight")]
    assert tuple(int(i) for i in convs) == CONV_INDICES  # torchvision's `features` indices
    assert sum(p.numel() for p in model.features.parameters()) == 14_714_688
    assert sum(p.numel() for p in model.heads.parameters()) == 1_472
    assert len(model.features) == 30
    assert [h[1].in_channels for h in model.heads] == [64, 128, 256, 512, 512]
    assert set(model.state_dict()) == {f"features.{i}.{p}" for i in CONV_INDICES for p in ("weight", "bias")} | {
        f"heads.{k}.1.weight" for k in range(5)
    }


def test_identical_zero_different_positive_symmetric():
    model = _random_lpips()
    a, b = _images(seed=0), _images(seed=1)
    with torch.no_grad():
        same = model(a, a)
        ab, ba = model(a, b), model(b, a)
    assert same.shape == (2,)
    torch.testing.assert_close(same, torch.zeros(2))
    assert torch.all(ab > 0)
    torch.testing.assert_close(ab, ba)


def test_matches_formula_computed_by_hand():
    """Independent functional re-computation: scaling, VGG taps, unit norm, heads, mean, sum."""
    model = _random_lpips(seed=3)
    sd = model.state_dict()
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def taps(x):
        x = (x - shift) / scale
        out = []
        for i in range(30):
            if i in CONV_INDICES:
                x = F.relu(F.conv2d(x, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], padding=1))
            elif i in (4, 9, 16, 23):
                x = F.max_pool2d(x, 2, 2)
            if i in (3, 8, 15, 22, 29):
                out.append(x)
        return out

    a, b = _images(seed=4), _images(seed=5)
    expected = torch.zeros(2)
    for k, (fa, fb) in enumerate(zip(taps(a), taps(b))):
        fa = fa / (fa.norm(dim=1, keepdim=True) + 1e-10)
        fb = fb / (fb.norm(dim=1, keepdim=True) + 1e-10)
        w = sd[f"heads.{k}.1.weight"].view(1, -1, 1, 1)
        expected += ((fa - fb) ** 2 * w).sum(dim=1).mean(dim=(1, 2))
    with torch.no_grad():
        torch.testing.assert_close(model(a, b), expected, rtol=1e-4, atol=1e-6)
    # inputs are not clamped: values outside [-1, 1] change the distance
    with torch.no_grad():
        assert not torch.allclose(model(a * 3, b), model((a * 3).clamp(-1, 1), b))


def test_head_dropout_only_in_train_mode():
    model = _random_lpips()
    a, b = _images(seed=0), _images(seed=1)
    with torch.no_grad():
        ref = model(a, b)
        torch.testing.assert_close(model.eval()(a, b), ref)
        torch.manual_seed(0)
        noisy = model.train()(a, b)
    assert not torch.allclose(noisy, ref)


def test_shape_mismatch_rejected():
    model = LPIPS()
    with pytest.raises(ValueError, match="same shape"):
        model(_images(res=32), _images(res=16))


# ---------------------------------------------------------------- weight files
def test_from_pretrained_finds_standins_via_env(standin, offline_env):
    offline_env.setenv("TORCH_HOME", str(standin.torch_home))
    offline_env.setenv("SLOTBENCH_WEIGHTS", str(standin.weights_dir))
    assert lp.find_vgg16_weights() == standin.vgg_file
    assert lp.find_lpips_heads() == standin.heads_file
    model = LPIPS.from_pretrained(vgg_sha256=None, lin_sha256=None)  # stand-ins: no digest
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    for key, value in standin.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    a, b = _images(seed=0), _images(seed=1)
    with torch.no_grad():
        torch.testing.assert_close(model(a, b), standin.model(a, b))
    # gradients still reach the inputs (perceptual loss)
    a.requires_grad_(True)
    model(a, b).sum().backward()
    assert a.grad is not None and torch.any(a.grad != 0)


def test_slotbench_weights_comes_before_torch_home(standin, offline_env, tmp_path):
    offline_env.setenv("TORCH_HOME", str(standin.torch_home))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / lp.VGG16_FILENAME).write_bytes(standin.vgg_file.read_bytes())
    offline_env.setenv("SLOTBENCH_WEIGHTS", str(mine))
    assert lp.find_vgg16_weights() == mine / lp.VGG16_FILENAME
    # an explicit path is used alone
    with pytest.raises(MissingWeightsError) as err:
        lp.find_vgg16_weights(tmp_path / "nowhere.pth")
    assert str(tmp_path / "nowhere.pth") in str(err.value)
    assert str(mine) not in str(err.value)


def test_heads_found_in_installed_package_first(standin, offline_env, tmp_path):
    package = tmp_path / "site" / "lpips"
    (package / "weights" / "v0.1").mkdir(parents=True)
    (package / "weights" / "v0.1" / "vgg.pth").write_bytes(standin.heads_file.read_bytes())
    offline_env.setattr(lp, "_lpips_package_dir", lambda: package)
    offline_env.setenv("SLOTBENCH_WEIGHTS", str(standin.weights_dir))
    assert lp.find_lpips_heads() == package / "weights" / "v0.1" / "vgg.pth"


def test_missing_weights_error_lists_searched_paths(offline_env, tmp_path):
    weights = tmp_path / "w"
    offline_env.setenv("SLOTBENCH_WEIGHTS", str(weights))
    with pytest.raises(MissingWeightsError) as err:
        LPIPS.from_pretrained()
    assert isinstance(err.value, FileNotFoundError)
    msg = str(err.value)
    assert str(weights / lp.VGG16_FILENAME) in msg
    assert str(tmp_path / "empty_torch_home" / "hub" / "checkpoints" / lp.VGG16_FILENAME) in msg
    assert lp.VGG16_URL in msg
    with pytest.raises(MissingWeightsError) as err:
        lp.find_lpips_heads()
    assert str(weights / lp.LPIPS_HEADS_FILENAME) in str(err.value)
    assert "pip install --no-deps lpips" in str(err.value)
    assert lp.LPIPS_HEADS_URL in str(err.value)
    assert "SLOTBENCH_OFFLINE is set" in str(err.value)
    # MissingWeightsError lives in slotbench.weights and is re-exported here
    from slotbench import weights

    assert MissingWeightsError is weights.MissingWeightsError


def test_heads_downloaded_when_missing(offline_env, tmp_path):
    """With downloads allowed, missing heads are fetched from LPIPS_HEADS_URL (here a file://
    copy of the installed package's file, which has the known digest), verified and kept."""
    package = _package_dir()
    if package is None:
        pytest.skip("the lpips package is not installed (pip install --no-deps lpips==0.1.4)")
    source = package / "weights" / "v0.1" / "vgg.pth"
    offline_env.delenv("SLOTBENCH_OFFLINE")
    offline_env.setattr(lp, "LPIPS_HEADS_URL", source.as_uri())
    weights = tmp_path / "w"
    offline_env.setenv("SLOTBENCH_WEIGHTS", str(weights))
    found = lp.find_lpips_heads()
    assert found == weights / lp.LPIPS_HEADS_FILENAME
    assert lp.sha256_file(found) == lp.LPIPS_VGG_V01_SHA256
    assert len(lp.load_lpips_heads()) == 5  # now found on disk, digest checked
    # a stand-in with another digest is refused and not kept
    found.unlink()
    bad = tmp_path / "bad.pth"
    bad.write_bytes(source.read_bytes() + b"x")
    offline_env.setattr(lp, "LPIPS_HEADS_URL", bad.as_uri())
    with pytest.raises(ValueError, match="SHA-256"):
        lp.find_lpips_heads()
    assert not found.exists() and not list(weights.iterdir())


def test_digest_mismatch_is_refused(standin, offline_env):
    offline_env.setenv("TORCH_HOME", str(standin.torch_home))
    offline_env.setenv("SLOTBENCH_WEIGHTS", str(standin.weights_dir))
    with pytest.raises(ValueError, match=str(standin.vgg_file)):  # default: known digest
        LPIPS.from_pretrained()
    with pytest.raises(ValueError, match=str(standin.heads_file)):
        LPIPS.from_pretrained(vgg_sha256=None)
    with pytest.raises(ValueError, match="SHA-256"):
        lp.load_lpips_heads(expected_sha256="0" * 64)


def test_digest_accepted_when_it_matches(standin):
    vgg_digest = lp.sha256_file(standin.vgg_file)
    heads_digest = lp.sha256_file(standin.heads_file)
    model = LPIPS.from_pretrained(
        standin.vgg_file, standin.heads_file, vgg_sha256=vgg_digest[:8], lin_sha256=heads_digest
    )
    assert not model.training
    assert lp.VGG16_SHA256_PREFIX == lp.VGG16_FILENAME.split("-")[1].split(".")[0]


def test_wrong_layout_rejected(tmp_path):
    bad = tmp_path / "heads.pth"
    torch.save({"lin0.model.0.weight": torch.zeros(1, 64, 1, 1)}, bad)  # use_dropout=False keys
    with pytest.raises(ValueError, match="lin0.model.1.weight"):
        lp.load_lpips_heads(bad, expected_sha256=None)


# ---------------------------------------------------------------- the lpips package
def _package_dir() -> Path | None:
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def test_installed_package_heads_digest():
    package = _package_dir()
    if package is None:
        pytest.skip("the lpips package is not installed (pip install --no-deps lpips==0.1.4)")
    heads = package / "weights" / "v0.1" / "vgg.pth"
    assert lp.sha256_file(heads) == lp.LPIPS_VGG_V01_SHA256
    assert len(lp.load_lpips_heads(heads)) == 5


def test_equals_lpips_package(monkeypatch):
    """Same random VGG weights + the package's shipped heads: our LPIPS == lpips.LPIPS('vgg').

    torchvision is not installable here; when it is absent a stand-in ``torchvision.models``
    provides only ``vgg16(pretrained=False).features`` (the package reads nothing else), so
    this compares the package's scaling, slicing, normalisation, heads and reduction with ours.
    """
    if _package_dir() is None:
        pytest.skip("the lpips package is not installed (pip install --no-deps lpips==0.1.4)")
    pytest.importorskip("scipy")
    pytest.importorskip("tqdm")
    ours = LPIPS()
    if importlib.util.find_spec("torchvision") is None:
        tv = types.ModuleType("torchvision")
        tv.models = types.ModuleType("torchvision.models")
        tv.models.vgg16 = lambda pretrained=False, **_: types.SimpleNamespace(
            features=torch.nn.Sequential(*lp._vgg16_features(), torch.nn.MaxPool2d(2, 2))
        )
        monkeypatch.setitem(sys.modules, "torchvision", tv)
        monkeypatch.setitem(sys.modules, "torchvision.models", tv.models)
    before = set(sys.modules)
    try:
        import lpips as package

        ref = package.LPIPS(net="vgg", pnet_rand=True, verbose=False).eval()
    finally:
        for name in set(sys.modules) - before:
            if name == "lpips" or name.startswith("lpips."):
                del sys.modules[name]
    slices = [ref.net.slice1, ref.net.slice2, ref.net.slice3, ref.net.slice4, ref.net.slice5]
    state = {}
    for s in slices:
        state.update(s.state_dict())
    ours.features.load_state_dict(state)
    heads = lp.load_lpips_heads(_package_dir() / "weights" / "v0.1" / "vgg.pth")
    for head, w in zip(ours.heads, heads):
        head[1].weight.data.copy_(w)
    ours.eval()
    a, b = _images(seed=6), _images(seed=7)
    with torch.no_grad():
        torch.testing.assert_close(ours(a, b), ref(a, b).flatten(), rtol=1e-5, atol=1e-6)
