"""A weight cfg's generic ``url`` (issue #40 item 2): verified and parsed before it takes its cache name, a cached
file that does not parse fetched again once, and every network operation bounded by the download timeout.

A local server on 127.0.0.1 answers each GET with the next body of a queue: a truncated one, then the good one.
"""
from __future__ import annotations

import hashlib
import http.server
import threading
import time

import pytest
import torch
from safetensors.torch import save

import lightnets
from lightnets.pretrained import ChecksumError, WeightsUnavailableError, resolve_weights
from lightnets.pretrained.download import _url_cache_path

ARGS = dict(num_classes=10, in_chans=1, small_input=True, img_size=28)


class QueueServer:
    """Serves ``bodies[path]``, one per GET (the last one repeats); ``stall_s`` delays every answer."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[bytes]] = {}
        self.gets: list[str] = []
        self.stall_s = 0.0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.gets.append(self.path)
                time.sleep(server.stall_s)
                queue = server.bodies.get(self.path)
                if not queue:
                    self.send_error(404)
                    return
                body = queue.pop(0) if len(queue) > 1 else queue[0]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))  # honest: only a parse tells the body is cut
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # a client that gave up waiting
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> "QueueServer":
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch_hub"))
    with QueueServer() as running:
        yield running


@pytest.fixture(scope="module")
def weights() -> tuple[torch.nn.Module, bytes]:
    model = lightnets.create_model("mobilenet_v1_025", **ARGS).eval()
    return model, save({k: v.contiguous() for k, v in model.state_dict().items()})


def cached_files(tmp_path) -> list[str]:
    folder = tmp_path / "torch_hub" / "checkpoints"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_truncated_body_is_never_cached_and_the_next_load_gets_the_good_file(tmp_path, server, weights):
    model, body = weights
    server.bodies["/w/model.safetensors"] = [body[: len(body) // 2], body]
    url = server.url("/w/model.safetensors")
    with pytest.raises(WeightsUnavailableError, match=r"is not a readable safetensors file .*not cached"):
        resolve_weights({"architecture": "mobilenet_v1_025", "url": url})
    assert cached_files(tmp_path) == []
    loaded = lightnets.create_model("mobilenet_v1_025", pretrained=True, pretrained_cfg={"url": url}, **ARGS).eval()
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert _url_cache_path(url).read_bytes() == body and len(cached_files(tmp_path)) == 1


def test_a_cached_file_that_does_not_parse_is_fetched_again_once(tmp_path, server, weights):
    _, body = weights
    url = server.url("/w/model.safetensors")
    cached = _url_cache_path(url)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(body[:100])  # what torch.hub's downloader used to keep after a cut connection
    server.bodies["/w/model.safetensors"] = [body]
    assert resolve_weights({"architecture": "mobilenet_v1_025", "url": url}) == cached
    assert cached.read_bytes() == body and len(server.gets) == 1
    assert resolve_weights({"architecture": "mobilenet_v1_025", "url": url}) == cached
    assert len(server.gets) == 1  # a good cached file is not fetched again

    cached.write_bytes(body[:100])
    server.bodies["/w/model.safetensors"] = [body[:200]]  # the server is still broken: one more try, then an error
    with pytest.raises(WeightsUnavailableError, match="not a readable safetensors file"):
        resolve_weights({"architecture": "mobilenet_v1_025", "url": url})
    assert len(server.gets) == 2


def test_a_body_of_another_sha256_is_refused_and_not_cached(tmp_path, server, weights):
    _, body = weights
    server.bodies["/w/model.safetensors"] = [body]
    expected = hashlib.sha256(b"another file").hexdigest()
    with pytest.raises(ChecksumError, match=rf"sha256 mismatch for the download of .*: expected {expected}, got "
                                            rf"{hashlib.sha256(body).hexdigest()}"):
        resolve_weights(
            {"architecture": "mobilenet_v1_025", "url": server.url("/w/model.safetensors"), "sha256": expected}
        )
    assert cached_files(tmp_path) == []


def test_a_stalled_server_fails_within_the_download_timeout(tmp_path, server, weights, monkeypatch):
    _, body = weights
    server.bodies["/w/model.safetensors"] = [body]
    server.stall_s = 1.5
    monkeypatch.setenv("LIGHTNETS_DOWNLOAD_TIMEOUT", "0.3")  # the one setting of every download, read at each call
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match=r"/w/model\.safetensors sent nothing for 0\.3 s after 0 bytes"):
        resolve_weights({"architecture": "mobilenet_v1_025", "url": server.url("/w/model.safetensors")})
    assert time.monotonic() - started < 1.2 and cached_files(tmp_path) == []
