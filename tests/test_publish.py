"""save_pretrained will not write over a shipped weight or another model's folder unless told to, and a
weight that fails its checksum says what to do about it: restore a bundled one, never delete it (issue #28)."""
import json
import os
import re

import pytest
import torch

import lightnets
from lightnets.pretrained import ChecksumError, manifest, sha256sum
from lightnets.publish import build_index, save_pretrained

ARGS = dict(num_classes=10, in_chans=1, small_input=True, img_size=28)
ROOT = manifest.CHECKOUT_WEIGHTS_DIR.parent


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(name="mobilenet_v1_025"):
    return lightnets.create_model(name, **ARGS).eval()


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """A bundled weights folder holding one indexed weight, pointed at as lightnets' own."""
    weights_dir = tmp_path / "weights"
    save_pretrained(tiny_model(), weights_dir / "mobilenet_v1_025.fmnist", tag="fmnist", metrics={"top1": 12.5})
    build_index(weights_dir)
    monkeypatch.setattr(manifest, "WEIGHTS_DIR", weights_dir)
    return weights_dir


def test_the_readme_command_cannot_replace_a_shipped_weight(monkeypatch):
    # The README's first training command wrote --output weights/mobilenet_v1_050.fmnist from the repo root.
    monkeypatch.chdir(ROOT)
    shipped = manifest.WEIGHTS_DIR / "mobilenet_v1_050.fmnist"
    before = {path.name: sha256sum(path) for path in shipped.iterdir()}
    model = lightnets.create_model("mobilenet_v1_050", **ARGS)
    with pytest.raises(
        ValueError, match=r"weights/mobilenet_v1_050\.fmnist is inside the bundled weights folder .*overwrite=True"
    ):
        save_pretrained(model, "weights/mobilenet_v1_050.fmnist", tag="fmnist")
    assert {path.name: sha256sum(path) for path in shipped.iterdir()} == before


def test_save_pretrained_refuses_the_bundled_folder_unless_told_to_overwrite(weights_dir):
    model = tiny_model()
    for target in (weights_dir / "mobilenet_v1_025.fmnist", weights_dir / "new_weight", weights_dir):
        with pytest.raises(ValueError, match=rf"{target.name} is inside the bundled weights folder .*overwrite=True"):
            save_pretrained(model, target, tag="fmnist")
    assert not (weights_dir / "new_weight").exists()  # refused before anything is written
    with torch.no_grad():
        model.classifier.bias.add_(1.0)
    save_pretrained(model, weights_dir / "mobilenet_v1_025.fmnist", tag="fmnist", overwrite=True)
    loaded = lightnets.create_model(
        "mobilenet_v1_025", pretrained=True, pretrained_path=weights_dir / "mobilenet_v1_025.fmnist"
    )
    torch.testing.assert_close(loaded.classifier.bias, model.classifier.bias)


@pytest.mark.slow
def test_save_pretrained_refuses_a_folder_that_holds_another_model(tmp_path):
    folder = save_pretrained(tiny_model(), tmp_path / "out", tag="fmnist")
    save_pretrained(tiny_model(), folder, tag="fmnist")  # the same model again (a resumed run): fine
    for name, tag in (("smallcnn_3x2", "fmnist"), ("mobilenet_v1_025", "other")):
        with pytest.raises(ValueError, match=rf"out already holds another model \(mobilenet_v1_025\.fmnist\), "
                                             rf"not {name}\.{tag}: .*overwrite=True"):
            save_pretrained(tiny_model(name), folder, tag=tag)
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "config.json").write_text("not json")
    with pytest.raises(ValueError, match="a config.json that save_pretrained did not write"):
        save_pretrained(tiny_model(), tmp_path / "theirs")
    save_pretrained(tiny_model("smallcnn_3x2"), folder, tag="fmnist", overwrite=True)
    assert json.loads((folder / "config.json").read_text())["lightnets"]["architecture"] == "smallcnn_3x2"


def corrupt(path):
    payload = bytearray(path.read_bytes())
    payload[-1] ^= 0xFF
    path.write_bytes(bytes(payload))


def load_bundled():
    return lightnets.create_model("mobilenet_v1_025", pretrained=True, num_classes=10, in_chans=1,
                                  pretrained_cfg=manifest.bundled_cfgs()["mobilenet_v1_025.fmnist"])


@pytest.mark.parametrize("where, advice, not_advised", [
    ("checkout", r"git checkout -- weights/mobilenet_v1_025\.fmnist` in the source checkout", "reinstall"),
    ("installed", r"reinstall lightnets \(`pip install --force-reinstall --no-deps lightnets`\)", "git checkout"),
    ("elsewhere", r"git checkout -- weights/mobilenet_v1_025\.fmnist` in a source checkout, or reinstall lightnets",
     None),
])
def test_a_bundled_weight_that_fails_its_checksum_is_restored_not_deleted(
    weights_dir, monkeypatch, where, advice, not_advised
):
    load_bundled()  # intact: loads
    corrupt(weights_dir / "mobilenet_v1_025.fmnist" / "model.safetensors")
    if where != "elsewhere":  # LIGHTNETS_WEIGHTS_DIR (or a test) points elsewhere: both ways are given
        monkeypatch.setattr(manifest, f"{where.upper()}_WEIGHTS_DIR", weights_dir.resolve())
    with pytest.raises(
        ChecksumError, match=r"sha256 mismatch for .*mobilenet_v1_025\.fmnist/model\.safetensors"
    ) as error:
        load_bundled()
    message = str(error.value)
    assert "It is a bundled weight" in message and "do not delete it" in message
    assert "delete it (" not in message and "delete its" not in message
    assert re.search(advice, message), message
    if not_advised:
        assert not_advised not in message


def test_a_local_folder_that_fails_its_checksum_is_not_called_bundled(tmp_path):
    folder = save_pretrained(tiny_model(), tmp_path / "mine", tag="fmnist")
    sha = sha256sum(folder / "model.safetensors")
    corrupt(folder / "model.safetensors")
    with pytest.raises(ChecksumError, match="write it again .*save_pretrained") as error:
        lightnets.create_model(
            "mobilenet_v1_025", pretrained=True, pretrained_cfg={"file": str(folder), "sha256": sha}, **ARGS
        )
    assert "bundled" not in str(error.value)


def test_build_index_refuses_what_save_pretrained_did_not_write(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        build_index(tmp_path / "missing")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text(json.dumps({"architecture": "resnet18"}))
    with pytest.raises(ValueError, match=r"odd.config\.json was not written by save_pretrained"):
        build_index(tmp_path)


def test_weights_dir_is_found_beside_the_package_in_a_checkout():
    if os.environ.get("LIGHTNETS_WEIGHTS_DIR"):
        pytest.skip("LIGHTNETS_WEIGHTS_DIR points elsewhere")
    assert manifest.PACKAGE_DIR == ROOT / "lightnets"
    assert manifest.WEIGHTS_DIR == ROOT / "weights" and (manifest.WEIGHTS_DIR / "index.json").is_file()
