"""slotbench.weights: lookup order, offline mode, file:// and local HTTP downloads with digest checks."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from slotbench import weights as w
from slotbench.weights import MissingWeightsError, WeightsDigestError, find_weights

PAYLOAD = b"stand-in weights \x00\x01\x02" * 1000
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No SLOTBENCH_WEIGHTS / SLOTBENCH_OFFLINE; the default weights dir inside tmp_path."""
    monkeypatch.delenv("SLOTBENCH_WEIGHTS", raising=False)
    monkeypatch.delenv("SLOTBENCH_OFFLINE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("TORCH_HOME", raising=False)
    return monkeypatch


@pytest.fixture
def source(tmp_path):
    """A stand-in file served through a file:// URL."""
    src = tmp_path / "server" / "model.bin"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    return src


def _no_temporaries(*dirs):
    return not any(p.name.startswith(".tmp-") for d in dirs if d.exists() for p in d.iterdir())


def test_default_dirs_follow_the_environment(env, tmp_path):
    assert w.weights_dir() == tmp_path / "xdg" / "slotbench" / "weights"
    env.setenv("SLOTBENCH_WEIGHTS", str(tmp_path / "mine"))
    assert w.weights_dir() == tmp_path / "mine"
    assert w.torch_hub_checkpoints() == tmp_path / "xdg" / "torch" / "hub" / "checkpoints"
    env.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert w.torch_hub_checkpoints() == tmp_path / "th" / "hub" / "checkpoints"
    for value, expected in (("", False), ("0", False), ("1", True), ("yes", True)):
        env.setenv("SLOTBENCH_OFFLINE", value)
        assert w.offline() is expected


def test_lookup_order(env, tmp_path, source):
    mine, hub, pkg, extra = (tmp_path / d for d in ("mine", "hub", "pkg", "extra"))
    env.setenv("SLOTBENCH_WEIGHTS", str(mine))
    env.setenv("SLOTBENCH_OFFLINE", "1")
    kwargs = dict(package_files=[pkg / "heads.pth"], extra_files=[extra / "x_model.bin"])
    for d in (mine, hub, pkg, extra):
        d.mkdir()
    (extra / "x_model.bin").write_bytes(PAYLOAD)
    assert find_weights("model.bin", None, DIGEST, [hub], **kwargs) == extra / "x_model.bin"
    (hub / "model.bin").write_bytes(PAYLOAD)
    assert find_weights("model.bin", None, DIGEST, [hub], **kwargs) == hub / "model.bin"
    (mine / "model.bin").write_bytes(PAYLOAD)
    assert find_weights("model.bin", None, DIGEST, [hub], **kwargs) == mine / "model.bin"
    (pkg / "heads.pth").write_bytes(PAYLOAD)
    assert find_weights("model.bin", None, DIGEST, [hub], **kwargs) == pkg / "heads.pth"


def test_explicit_path_is_used_alone(env, tmp_path, source):
    env.setenv("SLOTBENCH_WEIGHTS", str(tmp_path / "mine"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "model.bin").write_bytes(PAYLOAD)
    assert find_weights("model.bin", source.as_uri(), DIGEST, explicit_path=source) == source
    missing = tmp_path / "nowhere.bin"
    with pytest.raises(MissingWeightsError) as err:
        find_weights("model.bin", source.as_uri(), DIGEST, explicit_path=missing)
    assert str(missing) in str(err.value) and str(tmp_path / "mine") not in str(err.value)
    assert not missing.exists()  # an explicit path is never downloaded to


def test_download_file_url_full_digest(env, tmp_path, source):
    mine = tmp_path / "mine"
    env.setenv("SLOTBENCH_WEIGHTS", str(mine))
    hub = tmp_path / "hub"
    path = find_weights("model.bin", source.as_uri(), DIGEST, [hub], progress=False)
    assert path == mine / "model.bin"  # the first writable search dir
    assert path.read_bytes() == PAYLOAD
    assert not hub.exists() or not any(hub.iterdir())
    assert _no_temporaries(mine)
    # found on disk the next time (no second download)
    source.unlink()
    assert find_weights("model.bin", source.as_uri(), DIGEST, [hub]) == path


def test_download_prefix_digest_and_default_dir(env, tmp_path, source):
    path = find_weights("model.bin", source.as_uri(), DIGEST[:8], progress=False)
    assert path == tmp_path / "xdg" / "slotbench" / "weights" / "model.bin"
    assert path.read_bytes() == PAYLOAD


def test_download_skips_unwritable_dirs(env, tmp_path, source):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    env.setenv("SLOTBENCH_WEIGHTS", str(blocker / "weights"))  # cannot be created
    hub = tmp_path / "hub"
    path = find_weights("model.bin", source.as_uri(), DIGEST, [hub], progress=False)
    assert path == hub / "model.bin"


def test_wrong_digest_is_refused_and_nothing_kept(env, tmp_path, source):
    mine = tmp_path / "mine"
    env.setenv("SLOTBENCH_WEIGHTS", str(mine))
    with pytest.raises(WeightsDigestError, match="SHA-256") as err:
        find_weights("model.bin", source.as_uri(), "0" * 64, progress=False)
    assert isinstance(err.value, ValueError)
    assert DIGEST in str(err.value) and source.as_uri() in str(err.value)
    assert not (mine / "model.bin").exists() and _no_temporaries(mine)
    with pytest.raises(WeightsDigestError, match="known prefix"):
        find_weights("model.bin", source.as_uri(), "deadbeef", progress=False)
    assert not (mine / "model.bin").exists() and _no_temporaries(mine)


def test_existing_file_digest(env, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    env.setenv("SLOTBENCH_WEIGHTS", str(mine))
    (mine / "model.bin").write_bytes(PAYLOAD + b"corrupt")
    with pytest.raises(WeightsDigestError, match=str(mine / "model.bin")):
        find_weights("model.bin", None, DIGEST)
    # callers that check at load time may skip it here
    assert find_weights("model.bin", None, DIGEST, verify_existing=False) == mine / "model.bin"
    assert w.check_sha256(mine / "model.bin", None) == hashlib.sha256(PAYLOAD + b"corrupt").hexdigest()


@pytest.mark.parametrize("bad", ["abc", "xyz" * 10, "0" * 65])
def test_digest_format_checked(env, bad):
    with pytest.raises(ValueError, match="hex digits"):
        find_weights("model.bin", None, bad)


def test_offline_error_names_everything(env, tmp_path, source):
    mine, hub = tmp_path / "mine", tmp_path / "hub"
    env.setenv("SLOTBENCH_WEIGHTS", str(mine))
    env.setenv("SLOTBENCH_OFFLINE", "1")
    with pytest.raises(MissingWeightsError) as err:
        find_weights("model.bin", source.as_uri(), DIGEST, [hub], extra_files=[tmp_path / "x"],
                     hint="Another way: ask a colleague.")
    msg = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    for expected in (mine / "model.bin", hub / "model.bin", tmp_path / "x"):
        assert str(expected) in msg
    assert source.as_uri() in msg and DIGEST in msg
    assert "SLOTBENCH_OFFLINE is set" in msg and "put it at" in msg and "ask a colleague" in msg
    assert not mine.exists() or not any(mine.iterdir())
    # download=False from the caller
    env.delenv("SLOTBENCH_OFFLINE")
    with pytest.raises(MissingWeightsError, match="not allowed by the caller"):
        find_weights("model.bin", source.as_uri(), DIGEST, download=False)


def test_failed_download_is_a_missing_weights_error(env, tmp_path):
    gone = tmp_path / "gone.bin"
    with pytest.raises(MissingWeightsError, match="download from .* failed") as err:
        find_weights("model.bin", gone.as_uri(), DIGEST, progress=False)
    assert "put it at" in str(err.value)
    assert _no_temporaries(tmp_path / "xdg" / "slotbench" / "weights")


class _BrokenTransfer(http.server.BaseHTTPRequestHandler):
    """Serves a body that stops short: 30 % of an announced Content-Length, or a chunk cut off."""

    protocol_version = "HTTP/1.1"
    chunked = False

    def do_GET(self):
        self.send_response(200)
        if self.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"4000\r\n" + PAYLOAD[:5000])  # a 16 KiB chunk announced, 5000 bytes sent
        else:
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:len(PAYLOAD) * 3 // 10])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("chunked", [False, True], ids=["short-content-length", "broken-chunk"])
def test_transfer_cut_short_is_refused_without_a_digest(env, tmp_path, chunked):
    """With no SHA-256 to catch it, a body shorter than announced must not be kept as the file."""
    handler = type("Handler", (_BrokenTransfer,), {"chunked": chunked})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/model.bin"
    try:
        for _ in range(2):  # a second call downloads again: nothing truncated was cached
            with pytest.raises(MissingWeightsError, match="download from .* failed: OSError") as err:
                find_weights("model.bin", url, None, progress=False)
            assert ("broke off" if chunked else f"of the {len(PAYLOAD)} bytes announced") in str(err.value)
            folder = tmp_path / "xdg" / "slotbench" / "weights"
            assert not (folder / "model.bin").exists() and _no_temporaries(folder)
    finally:
        server.shutdown()
        server.server_close()


def test_unknown_digest_download_is_accepted_and_reported(env, tmp_path, source, capsys):
    path = find_weights("model.bin", source.as_uri(), None, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert DIGEST in capsys.readouterr().err
    assert w.describe_file(path) == {"path": str(path), "bytes": len(PAYLOAD), "sha256": DIGEST}
