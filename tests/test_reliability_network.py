"""Issue #40, items 4 and 5: a misbehaving network and a damaged ``--resume`` checkpoint each end in one error a
user can act on, never an httpx / huggingface_hub exception or a traceback; and ``python -m eval --output``,
killed at any point, leaves a whole table.

The network tests run against a local Hub stand-in on 127.0.0.1 (tests/hub_server.py) taught to misbehave:
cut a body short, stall, redirect in a loop, announce a file larger than any weight, answer 503; each with
``LIGHTNETS_DOWNLOAD_TIMEOUT`` (the one stall timeout of every download path) set to 1 s.
"""
from __future__ import annotations

import functools
import io
import json
import os
import pickle
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants as hf_constants

import lightnets
import lightnets.cli.train
from lightnets.evaluation.cli import main as eval_main
from lightnets.pretrained import WeightsUnavailableError, manifest
from lightnets.publish import save_pretrained
from writers import killed_at

from hub_server import FakeHub

REPO = "lightnets-test/smallcnn_3x2.fmnist"
ARGS = dict(num_classes=10, in_chans=1, small_input=True)
STALL_S = 1.0  # LIGHTNETS_DOWNLOAD_TIMEOUT in these tests


class MisbehavingHub(FakeHub):
    """FakeHub whose answers for a file can go wrong: ``hub.mode[(method, filename)] = kind`` with kind one of
    ``truncate`` (half the body, the whole length announced, then the connection closes), ``stall`` (the
    headers, then nothing), ``stall-head`` (nothing at all), ``loop`` (a redirect to itself), ``huge`` (a
    Content-Length of 50 GB), ``503``."""

    def __init__(self, repos: dict[str, Path]) -> None:
        self.mode: dict[tuple[str, str], str] = {}
        self.released = threading.Event()  # ends the stalls when the test is done
        super().__init__(repos)

    def __exit__(self, *exc_info: object) -> None:
        self.released.set()
        super().__exit__(*exc_info)

    def _handler_class(self) -> type:
        hub = self
        base = super()._handler_class()

        class Handler(base):
            def _answer(self, send_body: bool) -> None:
                kind = hub.mode.get((self.command, self.path.rsplit("/", 1)[-1]))
                if kind is None:
                    return super()._answer(send_body)
                hub.requests.append((self.command, self.path))
                if kind == "stall-head":
                    hub.released.wait(10)
                    return None
                if kind == "loop":
                    self.send_response(302)
                    self.send_header("Location", self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if kind == "503":
                    return self._error(503, None)
                repo_id = "/".join(self.path.lstrip("/").split("/")[:2])
                body = (hub.repos[repo_id] / self.path.rsplit("/", 1)[-1]).read_bytes()
                self.send_response(200)
                self.send_header("X-Repo-Commit", hub.head(repo_id))
                self.send_header("ETag", '"0123456789abcdef"')
                self.send_header("Content-Length", str(50 << 30 if kind == "huge" else len(body)))
                self.end_headers()
                self.wfile.flush()
                if kind == "stall":
                    hub.released.wait(10)
                elif kind == "truncate" and send_body:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True

        return Handler


@pytest.fixture
def weight(tmp_path):
    torch.manual_seed(5)
    model = lightnets.create_model("smallcnn_3x2", **ARGS).eval()
    return model, save_pretrained(model, tmp_path / "published", tag="fmnist")


@pytest.fixture
def hub(tmp_path, monkeypatch, weight):
    """The weight served as Hub repo REPO; huggingface_hub pointed at it, with an empty cache and its own default
    settings (a test that passes has them set per call by lightnets, not by this fixture)."""
    with MisbehavingHub({REPO: weight[1]}) as server:
        monkeypatch.setattr(hf_constants, "ENDPOINT", server.endpoint)
        monkeypatch.setattr(
            hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        )
        monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(manifest, "WEIGHTS_DIR", tmp_path / "no_bundled_weights")
        monkeypatch.setenv("LIGHTNETS_DOWNLOAD_TIMEOUT", str(STALL_S))
        yield server


def from_hub(**cfg):
    return lightnets.create_model("smallcnn_3x2", pretrained=True, pretrained_cfg={"hf_hub_id": REPO, **cfg}, **ARGS)


def not_cached() -> bool:
    """No weight in the huggingface_hub cache, and no partial download either."""
    cache = Path(hf_constants.HF_HUB_CACHE)
    return not list(cache.glob("models--*/snapshots/*/model.safetensors")) and not list(cache.rglob("*.incomplete"))


def one_error(call, pattern: str) -> tuple[str, float]:
    """``call()`` raises one WeightsUnavailableError matching ``pattern``, on one line; its message and how long it
    took."""
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match=pattern) as raised:
        call()
    message = str(raised.value)
    assert "\n" not in message and "Traceback" not in message
    assert type(raised.value) is WeightsUnavailableError
    return message, time.monotonic() - started


# --- 4. network failures on the Hub path ----------------------------------------------------------------------


@pytest.mark.parametrize("method, kind, what", [
    ("GET", "truncate", "the connection closed before the whole file arrived"),
    ("GET", "stall", r"the server sent nothing for 1 s \(LIGHTNETS_DOWNLOAD_TIMEOUT=1\)"),
    ("HEAD", "stall-head", r"the server sent nothing for 1 s \(LIGHTNETS_DOWNLOAD_TIMEOUT=1\)"),
    ("HEAD", "loop", "the server redirected in a loop"),
    ("GET", "loop", "the server redirected in a loop"),
    ("GET", "503", "the server answered HTTP 503"),
    ("HEAD", "503", "the server answered HTTP 503"),
])
@pytest.mark.slow
def test_a_network_failure_on_the_hub_is_one_error_naming_repo_file_and_what_to_do(hub, method, kind, what):
    hub.mode[(method, "model.safetensors")] = kind
    message, seconds = one_error(from_hub, rf"smallcnn_3x2: could not download model\.safetensors from "
                                           rf"{re.escape(hub.endpoint)}/{REPO}.*: {what}")
    assert re.search(r"load again|check HF_ENDPOINT", message)
    assert seconds < 3 * STALL_S + 2, f"{kind} took {seconds:.1f} s: retried instead of failing"
    assert not_cached()


@pytest.mark.slow
def test_a_stall_says_how_to_wait_longer(hub):
    hub.mode[("GET", "model.safetensors")] = "stall"
    message, _ = one_error(from_hub, "sent nothing")
    assert message.endswith("give it longer with LIGHTNETS_DOWNLOAD_TIMEOUT")


def test_the_timeout_is_read_at_each_call(hub, monkeypatch):
    hub.mode[("GET", "model.safetensors")] = "stall"
    monkeypatch.setenv("LIGHTNETS_DOWNLOAD_TIMEOUT", "0.5")
    _, seconds = one_error(from_hub, r"sent nothing for 0\.5 s")
    assert seconds < 2.5
    # restored after the call
    assert (hf_constants.HF_HUB_DOWNLOAD_TIMEOUT, hf_constants.HF_HUB_ETAG_TIMEOUT) == (10, 10)


def test_a_bad_timeout_setting_is_named(hub, monkeypatch):
    monkeypatch.setenv("LIGHTNETS_DOWNLOAD_TIMEOUT", "-3")
    with pytest.raises(ValueError, match=r"LIGHTNETS_DOWNLOAD_TIMEOUT='-3' is not a number of seconds > 0"):
        from_hub()


def test_a_file_larger_than_any_weight_of_the_architecture_is_refused_before_it_is_downloaded(hub, weight):
    model, _ = weight
    hub.mode[("HEAD", "model.safetensors")] = "huge"
    numbers = sum(t.numel() for t in model.state_dict().values())
    limit = 8 * numbers + (1 << 20)
    message, _ = one_error(from_hub, rf"smallcnn_3x2: model\.safetensors of Hub repo .*/{REPO} is "
                                     rf"{50 << 30:,} bytes, more than a weight of smallcnn_3x2 can be")
    assert (
        f"8 bytes (float64) for each of its {numbers:,} parameters and buffers, plus 1 MiB of header: {limit:,} bytes"
        in message
    )
    assert "it was not downloaded" in message and "check hf_hub_id and hf_hub_filename" in message
    assert hub.gets("model.safetensors") == 0


def test_imagenet_classes_in_the_weight_raise_the_limit_for_a_model_with_fewer(weight):
    from lightnets.pretrained.load import weight_size_limit
    from lightnets.weight_cfg import WeightCfg

    model, _ = weight
    own = weight_size_limit(model, WeightCfg(num_classes=10))
    wider = weight_size_limit(model, WeightCfg(num_classes=1000))
    features = model.get_classifier().in_features
    assert wider.max_bytes - own.max_bytes == 8 * 990 * (features + 1)
    assert weight_size_limit(model, WeightCfg(restructured=True)) is None  # a pruned weight's layers are its own


@pytest.mark.slow
def test_a_stalled_hub_leaves_the_cache_in_use(hub, weight):
    model, _ = weight
    from_hub()  # cached
    for method in ("HEAD", "GET"):
        hub.mode[(method, "model.safetensors")] = "stall-head"
        hub.mode[(method, "config.json")] = "stall-head"
    started = time.monotonic()
    loaded = from_hub().eval()
    assert time.monotonic() - started < 2 * STALL_S + 2
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_the_hub_download_is_not_retried_behind_the_users_back(hub, monkeypatch):
    """huggingface_hub's own retries (5 resumes, a 60 s metadata retry with back-off) are off for our calls only."""
    from huggingface_hub import file_download

    before = (file_download.http_get, file_download._ETAG_RETRY_TIMEOUT, file_download._DEFAULT_RETRY_ON_EXCEPTIONS)
    hub.mode[("GET", "model.safetensors")] = "truncate"
    one_error(from_hub, "closed before the whole file arrived")
    assert sum(1 for method, path in hub.requests if method == "GET" and path.endswith("model.safetensors")) == 1
    assert (file_download.http_get, file_download._ETAG_RETRY_TIMEOUT,
            file_download._DEFAULT_RETRY_ON_EXCEPTIONS) == before


# --- the same promises on the url path (lightnets._io.download) ------------------------------------------------


@pytest.fixture
def torch_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch_hub"))
    return tmp_path / "torch_hub"


def from_url(url):
    return lightnets.create_model("smallcnn_3x2", pretrained=True, pretrained_cfg={"url": url}, **ARGS)


@pytest.mark.parametrize("kind, what", [
    ("stall", r"sent nothing for 1 s after 0 bytes \(a slow server needs a longer LIGHTNETS_DOWNLOAD_TIMEOUT, now 1\)"),
    ("truncate", r"stopped after \d+ of \d+ bytes"),
    ("loop", r"redirected in a loop \(HTTP 302"),
    ("503", "answered HTTP 503"),
])
@pytest.mark.slow
def test_a_network_failure_on_the_url_path_is_one_error(hub, torch_hub, kind, what):
    hub.mode[("GET", "model.safetensors")] = kind
    url = f"{hub.endpoint}/{REPO}/resolve/main/model.safetensors"
    _, seconds = one_error(functools.partial(from_url, url), rf"smallcnn_3x2: .*{re.escape(url)}.*{what}")
    assert seconds < 2 * STALL_S + 2
    assert not [p for p in torch_hub.rglob("*") if p.is_file()]


def test_an_oversized_url_is_refused_before_its_body_is_read(hub, torch_hub):
    hub.mode[("GET", "model.safetensors")] = "huge"
    url = f"{hub.endpoint}/{REPO}/resolve/main/model.safetensors"
    one_error(functools.partial(from_url, url), rf"{re.escape(url)} is {50 << 30:,} bytes, more than a weight of "
                                                rf"smallcnn_3x2 can be \(8 bytes \(float64\) for each of its")
    assert not [p for p in torch_hub.rglob("*") if p.is_file()]


# --- 5. --resume with a damaged checkpoint ---------------------------------------------------------------------

TRAIN = ["--model", "smallcnn_3x2", "--dataset", "fashion_mnist", "--limit", "8", "--limit-test", "8", "--epochs", "1",
         "--batch-size", "4", "--no-progress"]


@pytest.fixture(scope="module")
def other_run(tmp_path_factory) -> Path:
    """The work dir of a finished one-epoch run of another model (smallcnn_3x2_dw1: a depthwise first layer)."""
    work_dir = tmp_path_factory.mktemp("other") / "run"
    argv = [arg if arg != "smallcnn_3x2" else "smallcnn_3x2_dw1" for arg in TRAIN]
    assert lightnets.cli.train.main([*argv, "--work-dir", str(work_dir)]) == 0
    return work_dir


class _Payload:
    """A pickle that would create ``marker`` if it were ever unpickled unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _damaged(kind: str, other_run: Path, marker: Path) -> bytes:
    """The bytes of a ``last.pth`` damaged in the way ``kind`` names."""
    real = (other_run / "last.pth").read_bytes()
    if kind == "truncated":
        return real[: len(real) // 2]
    if kind == "empty":
        return b""
    if kind == "random bytes":
        return bytes(
            torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8).tolist()
        )
    buffer = io.BytesIO()
    if kind == "pickled object":  # torch.save's own format, with a Python object where the weights should be
        torch.save({"model": _Payload(marker), "epoch": 1}, buffer)
    elif kind == "plain pickle":
        pickle.dump({"model": _Payload(marker), "epoch": 1}, buffer)
    elif kind == "foreign":  # another program's checkpoint: a bare state dict
        torch.save(lightnets.create_model("smallcnn_3x2", **ARGS).state_dict(), buffer)
    else:  # an older checkpoint (without settings, and no args.json beside it) of another model
        state = torch.load(other_run / "last.pth", weights_only=True)
        del state["settings"]
        if kind == "other shapes, no settings":  # the same architecture with 5 classes: its classifier differs
            state["model"] = lightnets.create_model("smallcnn_3x2", **{**ARGS, "num_classes": 5}).state_dict()
        torch.save(state, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("kind, reason", [
    ("truncated", "it is cut short or corrupt"),
    ("empty", "it is cut short or corrupt"),
    ("random bytes", "it is not a PyTorch checkpoint"),
    ("pickled object", r"it holds Python objects other than tensors, which are not unpickled "
                       r"\(nothing in it was run\)"),
    ("plain pickle", "it is not a PyTorch checkpoint"),
    ("foreign", r"it is not the checkpoint of a lightnets-train run "
                r"\(no model, optimizer, scheduler, scaler, epoch in it\)"),
    ("other model, no settings", r"it holds the weights of another model than this smallcnn_3x2 \(\d+ of this model's "
                                 r"tensors missing, e\.g\. \S+; \d+ tensors it does not have, e\.g\. \S+\)"),
    ("other shapes, no settings", r"it holds the weights of another model than this smallcnn_3x2 \(classifier\.weight "
                                  r"is \(5, \d+\) there, \(10, \d+\) here, and 1 more shapes differ\)"),
])
@pytest.mark.slow
def test_resume_from_a_damaged_checkpoint_is_one_line_naming_the_file_and_the_choices(tmp_path, capsys, other_run, kind,
                                                                                       reason):
    work_dir = tmp_path / "run"
    work_dir.mkdir()
    checkpoint = work_dir / "last.pth"
    checkpoint.write_bytes(_damaged(kind, other_run, tmp_path / "pwned"))
    before = checkpoint.read_bytes()
    capsys.readouterr()
    assert lightnets.cli.train.main([*TRAIN, "--work-dir", str(work_dir), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "weights_only=False" not in err, err
    assert re.fullmatch(
        rf"lightnets-train: error: --resume: {re.escape(str(checkpoint))} cannot be resumed from: {reason}.*"
        rf"\. It was left as it is: run again without --resume to start over .*, or give another --work-dir\n",
        err,
    ), err
    assert checkpoint.read_bytes() == before and sorted(p.name for p in work_dir.iterdir()) == ["last.pth"]
    assert not (tmp_path / "pwned").exists()


def test_resume_from_another_models_run_names_the_file_the_setting_and_the_choices(tmp_path, capsys, other_run):
    work_dir = tmp_path / "run"
    work_dir.mkdir()
    for name in ("last.pth", "args.json", "log.jsonl"):
        (work_dir / name).write_bytes((other_run / name).read_bytes())
    before = {path.name: path.read_bytes() for path in work_dir.iterdir()}
    capsys.readouterr()
    assert lightnets.cli.train.main([*TRAIN, "--work-dir", str(work_dir), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"lightnets-train: error: --resume: {work_dir / 'last.pth'} holds a run with other settings (--model "
        f"'smallcnn_3x2_dw1' then, 'smallcnn_3x2' now); resume it with the same settings, run again without "
        f"--resume to start over, or start this one in another --work-dir\n"
    )
    assert {path.name: path.read_bytes() for path in work_dir.iterdir()} == before


# --- python -m eval --output, killed at any point --------------------------------------------------------------

_EVALUATOR = """
import sys
from lightnets.evaluation.cli import main
output = sys.argv[1]
run = 0
while True:  # one short measurement after another, each replacing --output with a table of another --seed
    main(["--model", "smallcnn_3x2", "--model", "smallcnn_3x2_dw1", "--dataset", "synthetic", "--no-accuracy",
          "--repeats", "1", "--warmup", "0", "--format", "json", "--output", output, "--no-progress",
          "--seed", str(run)])
    if run == 0:
        print("ready", flush=True)  # the first table is written: the kills land in the loop from here
    run += 1
"""


def _temporaries(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


@pytest.mark.slow
def test_sigkill_during_eval_output_leaves_a_whole_table_and_no_temporary(tmp_path):
    """``python -m eval --output`` in a loop, SIGKILLed at 3 points: the file is always a whole table (JSON that
    parses, both models' rows, the command of the run that wrote it). A kill inside the write itself may leave that
    process's temporary, which the next write removes; at the end no temporary is left."""
    output = tmp_path / "zoo.json"
    seeds = set()
    for attempt, _, pid in killed_at([0.05, 0.9, 2.4], _EVALUATOR, output):
        table = json.loads(output.read_text())  # whole, never half of one
        assert [row["model"] for row in table["rows"]] == ["smallcnn_3x2", "smallcnn_3x2_dw1"], f"attempt {attempt}"
        seed = re.fullmatch(r"python -m eval .* --seed (\d+)", table["settings"]["command"])
        assert seed, table["settings"]["command"]
        seeds.add(int(seed.group(1)))
        # at most the temporary of the write the kill interrupted: every earlier one was removed by the next write
        assert all(f"-{pid}." in name for name in _temporaries(output)), (attempt, _temporaries(output))
    assert len(seeds) > 1  # the kills landed after different writes

    assert eval_main(["--model", "smallcnn_3x2", "--dataset", "synthetic", "--no-accuracy", "--repeats", "1",
                      "--warmup", "0", "--format", "json", "--output", str(output), "--no-progress"]) == 0
    assert json.loads(output.read_text())["rows"][0]["model"] == "smallcnn_3x2" and _temporaries(output) == []


def test_a_killed_writers_temporary_is_removed_by_the_next_write_and_a_live_ones_is_not(tmp_path):
    from lightnets import _io
    from lightnets._io.files import _writer

    host = _writer().rsplit("-", 1)[0]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = tmp_path / f".zoo.md.{host}-{int(dead.stdout)}.k2j4x9q1.tmp.md"  # its process has exited
    alive = tmp_path / f".zoo.md.{host}-{os.getppid()}.a1b2c3d4.tmp.md"  # a running process's: mid-write
    other_host = tmp_path / f".zoo.md.otherhost-{int(dead.stdout)}.z9y8x7w6.tmp.md"  # a shared folder's other writer
    for path in (killed, alive, other_host):
        path.write_text("half")
    _io.write_text(tmp_path / "zoo.md", "| whole |\n")
    assert (tmp_path / "zoo.md").read_text() == "| whole |\n"
    assert _temporaries(tmp_path / "zoo.md") == sorted([alive.name, other_host.name])
