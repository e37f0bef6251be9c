"""The writers of lightnets follow lightnets._io's rules (issue #40 item 1), each tested through its own entry point:
save_pretrained (and so train --output), the training checkpoint, export_onnx.

Symlinks, FIFOs and read-only targets are made in tmp_path only.
"""
from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest
import torch

import lightnets
from lightnets._io import WriteError
from writers import killed_at, leftovers

SMALL = "smallcnn_3x2"


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return lightnets.create_model(SMALL, in_chans=1, num_classes=10, small_input=True).eval()




# --- save_pretrained -------------------------------------------------------------------------------------------------


def test_save_pretrained_refuses_an_existing_file_naming_it(tmp_path, model):
    file = tmp_path / "weights.bin"
    file.write_bytes(b"the user's own file")
    for overwrite in (False, True):
        with pytest.raises(
            WriteError, match=r"weights.bin is an existing file, not a folder: name a folder, or move the file away"
        ):
            lightnets.save_pretrained(model, file, overwrite=overwrite)
    assert file.read_bytes() == b"the user's own file" and leftovers(tmp_path) == []


def test_save_pretrained_follows_a_symlink_to_a_folder(tmp_path, model, umask_027):
    link = tmp_path / "latest"
    link.symlink_to("run-1")  # dangling: the folder is made where it points
    lightnets.save_pretrained(model, link, metrics={"top1": 1.0})
    lightnets.save_pretrained(model, link, metrics={"top1": 2.0})  # and replaced there
    assert link.is_symlink() and os.readlink(link) == "run-1"
    assert json.loads((tmp_path / "run-1" / "config.json").read_text())["lightnets"]["metrics"] == {"top1": 2.0}
    assert stat.S_IMODE((tmp_path / "run-1").stat().st_mode) == 0o750  # mkdir's mode, not mkdtemp's 0700
    assert leftovers(tmp_path) == []
    loaded = lightnets.create_model(SMALL, pretrained=True, pretrained_path=link)
    assert loaded.num_classes == 10


def test_save_pretrained_refuses_a_read_only_folder_even_as_root(tmp_path, model):
    folder = lightnets.save_pretrained(model, tmp_path / "w", metrics={"top1": 1.0})
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    folder.chmod(0o555)
    try:
        with pytest.raises(WriteError, match=r"w is read-only"):
            lightnets.save_pretrained(model, folder, metrics={"top1": 2.0})
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before and leftovers(tmp_path) == []
    finally:
        folder.chmod(0o755)


def test_build_index_writes_through_a_symlinked_index(tmp_path, model):
    from lightnets.publish import build_index

    weights = tmp_path / "weights"
    lightnets.save_pretrained(model, weights / f"{SMALL}.fmnist", tag="fmnist")
    (tmp_path / "index-kept-elsewhere.json").write_text('{"weights": {}}')
    (weights / "index.json").symlink_to(tmp_path / "index-kept-elsewhere.json")
    build_index(weights)
    assert (weights / "index.json").is_symlink()
    assert list(json.loads((tmp_path / "index-kept-elsewhere.json").read_text())["weights"]) == [f"{SMALL}.fmnist"]


# --- the training checkpoint -----------------------------------------------------------------------------------------


def test_a_checkpoint_is_written_whole_through_a_symlink_and_refused_when_read_only(tmp_path):
    from lightnets.cli.train_checkpoint import save_checkpoint

    (tmp_path / "store").mkdir()
    link = tmp_path / "last.pth"
    link.symlink_to(tmp_path / "store" / "last.pth")
    save_checkpoint(link, {"epoch": 1})
    save_checkpoint(link, {"epoch": 2})
    assert link.is_symlink() and torch.load(tmp_path / "store" / "last.pth", weights_only=True) == {"epoch": 2}
    (tmp_path / "store" / "last.pth").chmod(0o444)
    with pytest.raises(WriteError, match=r"last.pth .*is read-only"):
        save_checkpoint(link, {"epoch": 3})
    assert torch.load(link, weights_only=True) == {"epoch": 2}
    assert leftovers(tmp_path) == [] and leftovers(tmp_path / "store") == []


def test_a_checkpoint_that_fails_mid_write_keeps_the_previous_one(tmp_path, monkeypatch):
    from lightnets.cli.train_checkpoint import save_checkpoint

    path = tmp_path / "last.pth"
    save_checkpoint(path, {"epoch": 1})
    real_save = torch.save

    def half_then_interrupted(obj, target, *args, **kwargs):
        real_save({"epoch": "half"}, target)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", half_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"epoch": 2})
    assert torch.load(path, weights_only=True) == {"epoch": 1} and leftovers(tmp_path) == []


# --- export_onnx -----------------------------------------------------------------------------------------------------


def _onnx_logits(data: bytes, x: torch.Tensor) -> torch.Tensor:
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


def test_export_onnx_follows_a_symlink_and_streams_into_a_fifo(tmp_path, model):
    pytest.importorskip("onnx")
    from lightnets.deploy import export_onnx

    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        expected = model(x)
    (tmp_path / "exports").mkdir()
    link = tmp_path / "model.onnx"
    link.symlink_to(tmp_path / "exports" / "v1.onnx")
    export_onnx(model, link)
    assert link.is_symlink() and leftovers(tmp_path) == [] and leftovers(tmp_path / "exports") == []
    torch.testing.assert_close(
        _onnx_logits((tmp_path / "exports" / "v1.onnx").read_bytes(), x), expected, atol=1e-4, rtol=0
    )

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    export_onnx(model, fifo)
    reader.join(timeout=60)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    torch.testing.assert_close(_onnx_logits(received[0], x), expected, atol=1e-4, rtol=0)


def test_export_onnx_refuses_a_read_only_file_and_a_failed_export_keeps_the_old_one(tmp_path, model, monkeypatch):
    pytest.importorskip("onnx")
    from lightnets.deploy import export_onnx

    path = export_onnx(model, tmp_path / "model.onnx")
    before = path.read_bytes()
    path.chmod(0o444)
    with pytest.raises(WriteError, match=r"model.onnx is read-only"):
        export_onnx(model, path)
    path.chmod(0o644)

    def half_then_fails(model, args, f, *rest, **kwargs):
        Path(f).write_bytes(b"half an onnx file")
        raise RuntimeError("the exporter failed")

    monkeypatch.setattr(torch.onnx, "export", half_then_fails)
    with pytest.raises(RuntimeError, match="the exporter failed"):
        export_onnx(model, path)
    assert path.read_bytes() == before and leftovers(tmp_path) == []


_EXPORTER = """
import sys, torch, lightnets
from lightnets.deploy import export_onnx
path = sys.argv[1]
models = []
for seed in range(2):
    torch.manual_seed(seed)
    models.append(lightnets.create_model("smallcnn_3x2", in_chans=1, num_classes=10, small_input=True).eval())
export_onnx(models[1], path)  # the exporter loaded, and a file in place: every kill below lands in a rewrite
print("ready", flush=True)
i = 0
while True:
    export_onnx(models[i % 2], path)
    i += 1
"""


@pytest.mark.slow
def test_sigkill_during_export_onnx_leaves_a_whole_file(tmp_path):
    """A process exporting two models in turn to one path, killed at 3 points: the file always runs as one of them."""
    pytest.importorskip("onnx")
    x = torch.randn(1, 1, 28, 28)
    expected = []
    for seed in range(2):
        torch.manual_seed(seed)
        with torch.no_grad():
            expected.append(
                lightnets.create_model("smallcnn_3x2", in_chans=1, num_classes=10, small_input=True).eval()(x)
            )
    path = tmp_path / "model.onnx"
    for _, delay, _ in killed_at((0.03, 0.3, 0.8), _EXPORTER, path):
        logits = _onnx_logits(path.read_bytes(), x)
        assert any(torch.allclose(logits, e, atol=1e-3) for e in expected), f"killed after {delay}s: a mixed file"
