"""Published weights fetched by URL, against a local HTTP server: download, verify, convert once, cache.

The server on 127.0.0.1 serves a pytorchcv-style ``.pth.zip`` and a Keras-style ``.h5``; it can also truncate
a file (with an honest or a lying Content-Length), answer with an error, or redirect.
"""
from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import pytest
import torch

import lightnets
from lightnets.cli.weights import main as weights_main
from lightnets.pretrained.download import ChecksumError, WeightsUnavailableError
from lightnets.pretrained.native import WeightsFileError

TAG = "mobilenet_v1_025.osmr_in1k"


class _Server:
    """Serves ``files`` (path -> bytes); ``mode[path]`` = "truncate" | "lie" | "500" | "redirect:<path>"."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.mode: dict[str, str] = {}
        self.gets: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.gets.append(self.path)
                mode = server.mode.get(self.path, "")
                if mode == "500":
                    self.send_error(500, "broken")
                    return
                if mode.startswith("redirect:"):
                    self.send_response(302)
                    self.send_header("Location", mode.removeprefix("redirect:"))
                    self.end_headers()
                    return
                if self.path not in server.files:
                    self.send_error(404)
                    return
                body = server.files[self.path]
                sent = body[: len(body) // 2] if mode in ("truncate", "lie") else body
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) if mode == "lie" else len(sent)))
                self.end_headers()
                self.wfile.write(sent)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def __enter__(self) -> "_Server":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LIGHTNETS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def pytorchcv_zip(tmp_path_factory) -> tuple[bytes, str, torch.nn.Module]:
    """pytorchcv's mobilenet_wd4 with random weights, zipped as its releases are: (zip bytes, sha1 of the .pth,
    model)."""
    from pytorchcv.model_provider import get_model

    model = get_model("mobilenet_wd4", pretrained=False).eval()
    folder = tmp_path_factory.mktemp("pytorchcv")
    pth = folder / "mobilenet_wd4-2249-1ad5e8fe.pth"
    torch.save(model.state_dict(), pth)
    with zipfile.ZipFile(folder / "w.zip", "w") as archive:
        archive.write(pth, pth.name)
    return (folder / "w.zip").read_bytes(), hashlib.sha1(pth.read_bytes()).hexdigest(), model


def _load(url: str, sha1: str) -> torch.nn.Module:
    return lightnets.create_model(TAG, pretrained=True, pretrained_cfg={"url": url, "sha1": sha1}).eval()


def test_download_verifies_converts_and_caches_so_the_second_load_unpickles_nothing(cache, pytorchcv_zip, monkeypatch):
    body, sha1, theirs = pytorchcv_zip
    with _Server() as server:
        server.files["/v0.0.62/mobilenet_wd4.pth.zip"] = body
        url = server.url("/v0.0.62/mobilenet_wd4.pth.zip")
        ours = _load(url, sha1)
        x = torch.rand(1, 3, 224, 224)
        with torch.no_grad():
            assert (ours(x) - theirs(x)).abs().max() <= 1e-4
        cached = list(cache.glob("converted/*/*.safetensors"))
        assert len(cached) == 1 and not list((cache / "downloads").rglob("*.zip"))  # the archive is not kept

        def no_unpickling(*args, **kwargs):
            raise AssertionError("torch.load called on the second load")

        monkeypatch.setattr(torch, "load", no_unpickling)
        again = _load(url, sha1)
        assert len(server.gets) == 1  # no second download
    with torch.no_grad():
        assert torch.equal(again(x), ours(x))


def test_a_checksum_mismatch_is_an_error_and_caches_nothing(cache, pytorchcv_zip):
    body, sha1, _ = pytorchcv_zip
    with _Server() as server:
        server.files["/w.pth.zip"] = body
        with pytest.raises(ChecksumError, match=r"sha1 mismatch .*/w\.pth\.zip: expected 0{40}"):
            _load(server.url("/w.pth.zip"), "0" * 40)
    assert not list(cache.rglob("*.safetensors")) and not list(cache.rglob("*.zip"))


@pytest.mark.parametrize("mode, error, message", [
    ("truncate", WeightsFileError, r"not a readable zip archive"),
    ("lie", WeightsUnavailableError, r"could not download|stopped after"),
    ("500", WeightsUnavailableError, r"answered HTTP 500"),
])
def test_a_broken_download_is_a_clear_error_and_leaves_no_file(cache, pytorchcv_zip, mode, error, message):
    body, sha1, _ = pytorchcv_zip
    with _Server() as server:
        server.files["/w.pth.zip"] = body
        server.mode["/w.pth.zip"] = mode
        with pytest.raises(error, match=message) as raised:
            _load(server.url("/w.pth.zip"), sha1)
    assert "Traceback" not in str(raised.value) and "weights_only=False" not in str(raised.value)
    assert not [p for p in cache.rglob("*") if p.is_file()]


def test_redirects_are_followed(cache, pytorchcv_zip):
    body, sha1, _ = pytorchcv_zip
    with _Server() as server:  # GitHub release URLs redirect to their storage
        server.files["/storage/w.pth.zip"] = body
        server.mode["/releases/w.pth.zip"] = "redirect:/storage/w.pth.zip"
        _load(server.url("/releases/w.pth.zip"), sha1)
        assert server.gets == ["/releases/w.pth.zip", "/storage/w.pth.zip"]


def test_a_truncated_h5_is_a_clear_error(cache, tmp_path):
    pytest.importorskip("h5py")
    import h5py
    import numpy as np

    with h5py.File(tmp_path / "w.h5", "w") as f:
        f.attrs["layer_names"] = [b"conv1"]
        group = f.create_group("conv1")
        group.attrs["weight_names"] = [b"conv1/kernel:0"]
        group.create_dataset("conv1/kernel:0", data=np.zeros((3, 3, 3, 8), dtype="float32"))
    body = (tmp_path / "w.h5").read_bytes()
    with _Server() as server:
        server.files["/mobilenet_2_5_128_tf.h5"] = body
        server.mode["/mobilenet_2_5_128_tf.h5"] = "truncate"
        with pytest.raises(
            WeightsFileError, match=r"mobilenet_2_5_128_tf\.h5 is not a readable Keras HDF5 weight file"
        ):
            lightnets.create_model("mobilenet_v1_025.keras_r128_in1k", pretrained=True,
                                   pretrained_cfg={"url": server.url("/mobilenet_2_5_128_tf.h5")})


def test_a_corrupt_cache_entry_is_converted_again(cache, pytorchcv_zip):
    body, sha1, _ = pytorchcv_zip
    with _Server() as server:
        server.files["/w.pth.zip"] = body
        _load(server.url("/w.pth.zip"), sha1)
        (cached,) = cache.glob("converted/*/*.safetensors")
        cached.write_bytes(cached.read_bytes()[:100])
        _load(server.url("/w.pth.zip"), sha1)
        assert len(server.gets) == 2 and cached.stat().st_size > 100


def test_a_pickle_with_a_payload_never_runs(cache, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"state_dict": {"x": Payload()}}, tmp_path / "evil.pth")
    with zipfile.ZipFile(tmp_path / "evil.pth.zip", "w") as archive:
        archive.write(tmp_path / "evil.pth", "evil.pth")
    for path in (tmp_path / "evil.pth", tmp_path / "evil.pth.zip"):
        with pytest.raises(WeightsFileError, match="not a weights-only PyTorch checkpoint") as raised:
            lightnets.create_model(TAG, pretrained=True, pretrained_path=path)
        assert "weights_only=False" not in str(raised.value)
    assert not marker.exists()


def test_convert_command_writes_a_hub_folder_that_loads(cache, tmp_path, pytorchcv_zip):
    body, _, theirs = pytorchcv_zip
    (tmp_path / "w.pth.zip").write_bytes(body)
    assert weights_main(["convert", TAG, str(tmp_path / "w.pth.zip"), "--output", str(tmp_path / "out")]) == 0
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"model.safetensors", "config.json", "README.md"}
    ours = lightnets.create_model(TAG, pretrained=True, pretrained_path=tmp_path / "out").eval()
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max() <= 1e-4
    assert "reported_by" in (tmp_path / "out" / "config.json").read_text()
    assert "| reported by its source, not measured by lightnets | |" in (tmp_path / "out" / "README.md").read_text()


def test_convert_command_mistakes_are_one_line(cache, tmp_path, capsys):
    assert weights_main(["convert", "mobilenet_v1_025", "--output", str(tmp_path / "o")]) == 2
    assert weights_main(["convert", TAG, str(tmp_path / "missing.pth"), "--output", str(tmp_path / "o")]) == 2
    assert weights_main(["convert", "shufflenet_g8.megvii_in1k", "--output", str(tmp_path / "o")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert (
        len(errors) == 3
        and "give a tagged name" in errors[0]
        and "no such file" in errors[1]
        and "1drv.ms" in errors[2]
    )


def test_timm_create_model_keeps_the_tags_checksum_and_converter(cache, monkeypatch):
    import timm

    import lightnets.pretrained.load as load

    seen = {}

    def fake_download(cfg, name, *_):
        seen.update(cfg.to_dict())
        raise WeightsUnavailableError("stop here")

    monkeypatch.setattr(load, "converted_from_url", fake_download)
    with pytest.raises(WeightsUnavailableError, match="stop here"):
        timm.create_model("shufflenet_g3.osmr_in1k", pretrained=True)
    registered = lightnets.get_pretrained_cfg("shufflenet_g3.osmr_in1k")
    assert seen["sha1"] == registered["sha1"] and seen["url"] == registered["url"]
    assert seen["source_format"] == "pytorchcv_shufflenet" and seen["model_args"] == {"shortcut_first": False}
