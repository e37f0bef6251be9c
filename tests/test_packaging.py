"""The wheel a user installs: every module, the embedded test split and the bundled weights, which an
installed lightnets finds and loads (not only a source checkout)."""
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    # Built from a copy: building in place would leave build/ and egg-info in the checkout.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("lightnets", "eval", "weights"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-v",
                            "-w", str(out), str(source)], check=True, capture_output=True, text=True)
    (path,) = out.glob("lightnets-*.whl")
    return path, build.stdout + build.stderr


@pytest.mark.slow
def test_the_wheel_holds_every_module_the_test_split_and_the_weights(wheel):
    path, build_log = wheel
    assert "BuildBackendWarning" not in build_log  # e.g. a data folder left out of `packages`
    names = set(zipfile.ZipFile(path).namelist())
    modules = {str(p.relative_to(ROOT)) for d in ("lightnets", "eval") for p in (ROOT / d).rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    assert "lightnets/datasets/fashion_mnist/t10k-images-idx3-ubyte.gz" in names
    index = json.loads((ROOT / "weights" / "index.json").read_text())["weights"]
    assert "lightnets/weights/index.json" in names
    for entry in index.values():
        for file in ("model.safetensors", "config.json", "README.md"):
            assert f"lightnets/weights/{entry['folder']}/{file}" in names


@pytest.mark.slow
def test_an_installed_wheel_finds_and_loads_its_bundled_weights(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel[0]).extractall(site)  # what pip puts in site-packages
    script = (
        "import lightnets, lightnets.manifest as m, lightnets.hub as h;"
        "print(m.WEIGHTS_DIR);"
        "model = lightnets.create_model('smallcnn_3x2.fmnist', pretrained=True);"
        "print(len(lightnets.list_pretrained('*.fmnist')), model.pretrained_cfg['metrics']['top1'])"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True,
                            env={"PATH": "", "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"})
    weights_dir, counts = result.stdout.strip().splitlines()
    assert Path(weights_dir) == site / "lightnets" / "weights"
    index = json.loads((ROOT / "weights" / "index.json").read_text())["weights"]
    assert counts.split() == [str(len(index)), str(index["smallcnn_3x2.fmnist"]["metrics"]["top1"])]
