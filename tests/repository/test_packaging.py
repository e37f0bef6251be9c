"""The wheel a user installs: every module, the embedded test split and the bundled weights, which an
installed lightnets finds and loads (not only a source checkout)."""
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    # Built from a copy: building in place would leave build/ and egg-info in the checkout.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("lightnets", "eval", "weights"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-v", "-w", str(out), str(source)], check=True, capture_output=True, text=True)
    (path,) = out.glob("lightnets-*.whl")
    return path, build.stdout + build.stderr


@pytest.mark.slow
def test_the_wheel_holds_every_module_the_test_split_and_the_weights(wheel):
    path, build_log = wheel
    assert "BuildBackendWarning" not in build_log  # e.g. a data folder left out of `packages`
    names = set(zipfile.ZipFile(path).namelist())
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "lightnets").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    assert "lightnets/datasets/fashion_mnist/t10k-images-idx3-ubyte.gz" in names
    index = json.loads((ROOT / "weights" / "index.json").read_text())["weights"]
    assert "lightnets/weights/index.json" in names
    for entry in index.values():
        for file in ("model.safetensors", "config.json", "README.md"):
            assert f"lightnets/weights/{entry['folder']}/{file}" in names


def run_installed(wheel: Path, site: Path, script: str) -> str:
    """Unpack the wheel into ``site`` (what pip puts in site-packages) and run ``script`` with only it on the path."""
    zipfile.ZipFile(wheel).extractall(site)
    return subprocess.run([sys.executable, "-c", script], cwd=site.parent, capture_output=True, text=True, check=True,
                          env={"PATH": "", "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"}).stdout


@pytest.mark.slow
def test_an_installed_wheel_finds_and_loads_its_bundled_weights(wheel, tmp_path):
    site = tmp_path / "site"
    script = (
        "import lightnets, lightnets.pretrained.manifest as m, lightnets.pretrained, lightnets.publish;"
        "print(m.WEIGHTS_DIR);"
        "model = lightnets.create_model('smallcnn_3x2.fmnist', pretrained=True);"
        "print(len(lightnets.list_pretrained('*.fmnist*')), model.pretrained_cfg['metrics']['top1'])"
    )
    weights_dir, counts = run_installed(wheel[0], site, script).strip().splitlines()
    assert Path(weights_dir) == site / "lightnets" / "weights"
    index = json.loads((ROOT / "weights" / "index.json").read_text())["weights"]
    assert counts.split() == [str(len(index)), str(index["smallcnn_3x2.fmnist"]["metrics"]["top1"])]


@pytest.mark.slow
def test_the_console_scripts_of_an_installed_wheel_run(wheel, tmp_path):
    # What pip's generated `lightnets-train` etc. do: look the entry point up in the installed metadata, call it.
    script = (
        "import contextlib, io, json\n"
        "from importlib.metadata import entry_points\n"
        "found = {}\n"
        "for ep in entry_points(group='console_scripts'):\n"
        "    if ep.name.startswith('lightnets-'):\n"
        "        out = io.StringIO()\n"
        "        with contextlib.redirect_stdout(out):\n"
        "            try:\n"
        "                ep.load()(['--help'])\n"
        "            except SystemExit as exit:\n"
        "                found[ep.name] = [ep.module, exit.code, out.getvalue().splitlines()[0]]\n"
        "print(json.dumps(found))\n"
    )
    found = json.loads(run_installed(wheel[0], tmp_path / "site", script))
    assert sorted(found) == ["lightnets-eval", "lightnets-export", "lightnets-flops", "lightnets-train",
                             "lightnets-weights"]
    for name, (module, code, usage) in found.items():
        assert code == 0, name  # --help exits cleanly
        prog = usage.removeprefix("usage: ").split(" [")[0]  # named as the script or as `python -m` of its package
        assert prog in (name, f"python -m {module.removesuffix('.__main__')}"), (name, usage)
