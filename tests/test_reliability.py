"""lightnets as a hostile or careless user meets it: every bad input is a clear lightnets error naming the
argument or file, no pickle payload runs, and no write leaves a half-written folder behind.

The classes of defect (issue #30): 1. writes are atomic; 2. a weight folder describes itself or is refused;
3. downloads cannot poison the cache (also tests/pretrained/test_published_downloads.py); 4. third-party errors stop
at our boundary; 5. arguments mean what they say; 6. command lines print one line, never a traceback.
"""
from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import lightnets
from lightnets.pretrained.download import ChecksumError
from representatives import FAMILY_REPRESENTATIVES
from writers import killed_at
from lightnets.pretrained.native import WeightsFileError, read_weights

pytestmark = pytest.mark.usefixtures("one_thread")

NOT_NUMBERS = [float("nan"), float("inf"), float("-inf"), True, "3", [1]]
SMALL = "smallcnn_3x2"


@pytest.fixture(scope="module")
def small_model() -> torch.nn.Module:
    return lightnets.create_model(SMALL, in_chans=1, num_classes=10).eval()


@pytest.fixture()
def saved(tmp_path, small_model) -> Path:
    return lightnets.save_pretrained(small_model, tmp_path / "weight", metrics={"top1": 50.0})


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --- 5. arguments mean what they say ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, True, "10"])
def test_num_classes_must_be_a_count(value):
    with pytest.raises((ValueError, TypeError), match="num_classes"):
        lightnets.create_model(SMALL, num_classes=value)


@pytest.mark.parametrize("value", [float("nan"), 0, -3, False, "3"])
def test_in_chans_must_be_a_count(value):
    with pytest.raises((ValueError, TypeError), match="in_chans"):
        lightnets.create_model(SMALL, in_chans=value)


@pytest.mark.parametrize("value", [float("nan"), 1.0, -0.1])
def test_drop_rate_must_be_a_probability(value):
    with pytest.raises(ValueError, match="drop_rate"):
        lightnets.create_model("mobilenet_v1_025", drop_rate=value)


@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
def test_every_family_checks_the_common_arguments(name):
    """The checks above sit where every family's entry point passes: one bad value each, per family."""
    with pytest.raises((ValueError, TypeError), match="num_classes"):
        lightnets.create_model(name, num_classes=-1)
    with pytest.raises((ValueError, TypeError), match="in_chans"):
        lightnets.create_model(name, in_chans=0)
    if "drop_rate" in lightnets.model_arguments(name):
        with pytest.raises(ValueError, match="drop_rate"):
            lightnets.create_model(name, drop_rate=1.0)


@pytest.mark.parametrize("value", [*NOT_NUMBERS, 0, -0.5])
def test_alpha_must_be_a_finite_positive_number(value):
    with pytest.raises(ValueError, match="alpha"):
        lightnets.create_model("mobilenet_v1", alpha=value)


@pytest.mark.parametrize("value", [*NOT_NUMBERS, 0, 1.5])
def test_rho_must_be_in_the_unit_interval(value):
    with pytest.raises(ValueError, match="rho"):
        lightnets.create_model("mobilenet_v1", rho=value)


@pytest.mark.parametrize("value", [*NOT_NUMBERS, 0, 1.0])
def test_bn_eps_must_be_small_and_positive(value):
    with pytest.raises(ValueError, match="bn_eps"):
        lightnets.create_model("mobilenet_v1", bn_eps=value)


@pytest.mark.parametrize("kwargs, argument", [
    ({"scale": float("nan")}, "scale"), ({"scale": 0.3}, "scale"), ({"groups": 5}, "groups"),
    ({"groups": float("nan")}, "groups"), ({"shuffle_layout": "inverse"}, "shuffle_layout"),
    ({"shortcut_first": "no"}, "shortcut_first"), ({"stem_channels": 0}, "stem_channels"),
    ({"stem_channels": float("nan")}, "stem_channels"), ({"padding": "same"}, "padding"),
])
def test_layout_options_are_checked(kwargs, argument):
    name = "mobilenet_v1" if argument == "padding" else "shufflenet_v1"
    with pytest.raises(ValueError, match=argument):
        lightnets.create_model(name, **kwargs)


@pytest.mark.parametrize("value", ["yes", 1, 0, None, "False"])
def test_pretrained_must_be_a_bool(value):
    with pytest.raises(TypeError, match="pretrained must be True or False"):
        lightnets.create_model(SMALL, pretrained=value)


def test_pretrained_path_without_pretrained_is_an_error(saved):
    with pytest.raises(ValueError, match=r"pretrained_path=.* is only read with pretrained=True"):
        lightnets.create_model(SMALL, pretrained_path=saved)


@pytest.mark.parametrize("value", [None, 3, Path("smallcnn_3x2")])
def test_model_name_must_be_a_string(value):
    with pytest.raises(TypeError, match="model_name must be a string"):
        lightnets.create_model(value)


@pytest.mark.parametrize("bad_input, error, message", [
    ([[0.0]], TypeError, "expects a torch.Tensor"),
    (None, TypeError, "expects a torch.Tensor"),
    ("image.png", TypeError, "expects a torch.Tensor"),
    (torch.zeros(1, 1, 28, 28, dtype=torch.uint8), TypeError, "floating-point"),
    (torch.zeros(1, 1, 28, 28, dtype=torch.long), TypeError, "floating-point"),
    (torch.zeros(1, 28, 28), ValueError, r"\(N, C, H, W\)"),
    (torch.zeros(1, 3, 28, 28), ValueError, "in_chans=1 but the input has 3 channels"),
    (torch.zeros(1, 1, 20, 20), ValueError, "fixed input size"),
])
def test_the_forward_pass_explains_bad_input(small_model, bad_input, error, message):
    with pytest.raises(error, match=message):
        small_model(bad_input)


@pytest.mark.parametrize("name", ["mobilenet_v1_025", "shufflenet_g3_050", "vgg11_bn"])
@pytest.mark.slow
def test_a_too_small_map_names_the_minimum(name):
    model = lightnets.create_model(name).eval()
    with pytest.raises(ValueError, match="takes images of at least"):
        model(torch.zeros(1, 3, 8, 8))


@pytest.mark.parametrize("kwargs, argument", [
    ({"epochs": 0}, "epochs"), ({"epochs": 0.5}, "epochs"), ({"epochs": float("nan")}, "epochs"),
    ({"epochs": -1}, "epochs"), ({"lr": 0}, "lr"), ({"lr": float("nan")}, "lr"), ({"lr": float("inf")}, "lr"),
    ({"lr": -0.1}, "lr"), ({"weight_decay": -1e-4}, "weight_decay"), ({"weight_decay": float("nan")}, "weight_decay"),
    ({"batch_size": 0}, "batch_size"), ({"batch_size": 2.5}, "batch_size"), ({"batch_size": True}, "batch_size"),
    ({"label_smoothing": 1.0}, "label_smoothing"), ({"label_smoothing": float("nan")}, "label_smoothing"),
    ({"distill_alpha": 1.5}, "distill_alpha"), ({"temperature": 0}, "temperature"),
    ({"temperature": float("inf")}, "temperature"), ({"bn_l1": -1e-4}, "bn_l1"), ({"bn_l1": float("nan")}, "bn_l1"),
])
def test_finetune_refuses_bad_settings_before_training(small_model, kwargs, argument):
    from lightnets.compress import finetune
    from lightnets.data import load_dataset

    before = {k: v.clone() for k, v in small_model.state_dict().items()}
    with pytest.raises(ValueError, match=argument):
        finetune(small_model, load_dataset("fashion_mnist", limit=8), **kwargs)
    assert all(torch.equal(before[k], v) for k, v in small_model.state_dict().items())


def test_finetune_refuses_an_empty_dataset(small_model):
    from lightnets.compress import finetune
    from lightnets.data import load_dataset

    empty = load_dataset("fashion_mnist", limit=8)
    empty.images, empty.labels = empty.images[:0], empty.labels[:0]
    with pytest.raises(ValueError, match="empty dataset"):
        finetune(small_model, empty)


def test_a_diverging_finetune_restores_the_starting_weights(monkeypatch):
    import lightnets.compress.finetuning as finetuning
    from lightnets.data import load_dataset

    model = lightnets.create_model(SMALL, in_chans=1, num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def diverge(model, *args, **kwargs):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.fill_(float("nan"))
        raise FloatingPointError("non-finite loss at step 3")

    monkeypatch.setattr(finetuning, "fit", diverge)
    with pytest.raises(FloatingPointError, match="restored the weights the model started from"):
        finetuning.finetune(model, load_dataset("fashion_mnist", limit=8))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --- 1. writes are atomic, checked before the first byte ----------------------------------------------------


@pytest.mark.parametrize("metrics, message", [
    ({"top1": float("nan")}, r"metrics\['top1'\] is nan"),
    ({"top1": float("inf")}, r"metrics\['top1'\] is inf"),
    ({"per_class": [1.0, float("nan")]}, r"metrics\['per_class'\]\[1\] is nan"),
    ({"when": object()}, r"metrics\['when'\] is a object"),
    ({"tensor": torch.tensor(1.0)}, r"metrics\['tensor'\] is a Tensor"),
    ({1: 2.0}, "keys must be strings"),
])
def test_a_bad_metric_is_refused_and_the_old_folder_stays(saved, small_model, metrics, message):
    before = _folder_files(saved)
    with pytest.raises(ValueError, match=message):
        lightnets.save_pretrained(small_model, saved, metrics=metrics)
    assert _folder_files(saved) == before
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")]  # no staging folder left


@pytest.mark.parametrize("labels", [["a"] * 9, ["a"] * 11, []])
def test_label_names_must_name_every_class(tmp_path, small_model, labels):
    with pytest.raises(ValueError, match="label_names has"):
        lightnets.save_pretrained(small_model, tmp_path / "w", label_names=labels)
    assert not (tmp_path / "w").exists()


def test_saving_the_same_weights_twice_gives_the_same_bytes(tmp_path, small_model):
    first = lightnets.save_pretrained(small_model, tmp_path / "a", metrics={"top1": 1.0, "b": 2})
    second = lightnets.save_pretrained(small_model, tmp_path / "b", metrics={"top1": 1.0, "b": 2})
    assert _folder_files(first) == _folder_files(second)


def test_saving_over_a_folder_replaces_it_whole_and_keeps_other_files(saved, small_model):
    (saved / "notes.txt").write_text("mine")
    other = lightnets.create_model(SMALL, in_chans=1, num_classes=10)
    lightnets.save_pretrained(other, saved, metrics={"top1": 60.0})
    assert (saved / "notes.txt").read_text() == "mine"
    assert json.loads((saved / "config.json").read_text())["lightnets"]["metrics"] == {"top1": 60.0}
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")]


_SAVER = """
import sys, torch, lightnets
folder = sys.argv[1]
models = [lightnets.create_model("vgg11_bn", in_chans=1, num_classes=10, small_input=True) for _ in range(2)]
for seed, model in enumerate(models):
    torch.manual_seed(seed)
    for p in model.parameters():
        torch.nn.init.normal_(p)
print("ready", flush=True)
i = 0
while True:
    lightnets.save_pretrained(models[i % 2], folder, metrics={"top1": float(i % 2)})
    i += 1
"""



@pytest.mark.slow
def test_sigkill_during_save_pretrained_leaves_a_complete_folder(tmp_path):
    """A process rewriting a 37 MB folder in a loop, killed at 3 points: the folder always loads whole."""
    folder = tmp_path / "weight"
    for attempt, _, _ in killed_at([0.05, 0.6, 1.7], _SAVER, folder):
        if not folder.exists():  # killed before the first save completed: nothing, not half of something
            continue
        config = json.loads((folder / "config.json").read_text())
        model = lightnets.create_model("vgg11_bn", pretrained=True, pretrained_path=folder)
        expected = lightnets.create_model("vgg11_bn", in_chans=1, num_classes=10, small_input=True)
        torch.manual_seed(int(config["lightnets"]["metrics"]["top1"]))  # the weights the config says it holds
        for p in expected.parameters():
            torch.nn.init.normal_(p)
        assert torch.equal(model.classifier.weight, expected.classifier.weight), f"attempt {attempt}: mixed folder"
    assert folder.exists()


_TRAINER = """
import sys, time
from lightnets.cli.train import train
from lightnets.data import load_dataset
output, work = sys.argv[1:]
data = load_dataset("fashion_mnist", limit=64)
run = 0
while True:  # one short run after another, each replacing --output with weights of another seed
    run += 1
    start = time.perf_counter()
    train(["--model", "smallcnn_3x2", "--epochs", "1", "--batch-size", "32", "--lr", "0.5", "--seed", str(run),
           "--no-progress", "--work-dir", f"{work}/{run}", "--output", output, "--overwrite"], data, data)
    if run == 1:  # the kills are timed in runs, not seconds: a busy machine runs slower
        print(f"ready {time.perf_counter() - start}", flush=True)
"""


@pytest.mark.slow
def test_sigkill_during_lightnets_train_output_leaves_a_complete_folder(tmp_path):
    """lightnets-train killed at 3 points of a loop of runs that each rewrite --output: the folder is always a
    whole weight, whose recorded test top-1/top-5 are what its own weights score on the same 64 images."""
    from lightnets.data import load_dataset
    from lightnets.training.loop import evaluate

    data = load_dataset("fashion_mnist", limit=64)
    folder = tmp_path / "weight"
    seen = set()
    # killed that many run-lengths after the first run
    for attempt, _, _ in killed_at([0.4, 1.3, 2.2], _TRAINER, folder, tmp_path / "runs", in_runs=True):
        if not folder.exists():  # killed before the first run finished: nothing, not half of something
            continue
        config = json.loads((folder / "config.json").read_text())
        recorded = config["lightnets"]["metrics"]
        model = lightnets.create_model("smallcnn_3x2", pretrained=True, pretrained_path=folder).eval()
        scored = evaluate(model, data.images, data.labels)
        assert (scored["top1"], scored["top5"]) == (recorded["top1"], recorded["top5"]), (
            f"attempt {attempt}: mixed folder"
        )
        seen.add(config["lightnets"]["training"]["seed"])
    assert folder.exists() and len(seen) > 1  # the kills landed in different runs


# --- 2. a weight folder describes itself or is refused ------------------------------------------------------


@pytest.mark.parametrize("config_text, message", [
    (None, "has no config.json"),
    ("", "not readable JSON"),
    ("{", "not readable JSON"),
    ("[1, 2]", "holds a JSON list"),
    ('"smallcnn_3x2"', "holds a JSON str"),
    ("3", "holds a JSON int"),
    ("null", "holds a JSON NoneType"),
    (b"\xff\xfe", "not readable JSON"),
])
def test_a_folder_without_a_well_formed_config_is_refused(saved, config_text, message):
    config = saved / "config.json"
    if config_text is None:
        config.unlink()
    elif isinstance(config_text, bytes):
        config.write_bytes(config_text)
    else:
        config.write_text(config_text)
    with pytest.raises(WeightsFileError, match=message) as error:
        lightnets.create_model(SMALL, pretrained=True, pretrained_path=saved)
    assert str(saved) in str(error.value)


@pytest.mark.parametrize("other", ["mobilenet_v1_025", "shufflenet_g3", "vgg11_bn", "sepcnn_regular"])
def test_a_folder_of_another_architecture_is_refused(saved, other):
    with pytest.raises(ValueError, match=rf"holds weights of {SMALL}, not {other}"):
        lightnets.create_model(other, pretrained=True, pretrained_path=saved)


def test_a_folder_whose_classifier_contradicts_its_config_is_refused(saved):
    config = json.loads((saved / "config.json").read_text())
    config["num_classes"] = 7
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsFileError, match="says 7 classes but the classifier"):
        lightnets.create_model(SMALL, pretrained=True, pretrained_path=saved)


@pytest.mark.parametrize("sha", ["", "abc", "g" * 64, "A" * 64, None, 12, "0" * 63])
def test_a_malformed_sha256_in_the_manifest_is_an_error(tmp_path, monkeypatch, small_model, sha):
    from lightnets.pretrained import manifest
    from lightnets.pretrained.download import resolve_weights

    weights_dir = tmp_path / "weights"
    lightnets.save_pretrained(small_model, weights_dir / f"{SMALL}.mine", tag="mine")
    entry = {"folder": f"{SMALL}.mine"}
    if sha is not None:
        entry["sha256"] = sha
    (weights_dir / "index.json").write_text(json.dumps({"weights": {f"{SMALL}.mine": entry}}))
    monkeypatch.setattr(manifest, "WEIGHTS_DIR", weights_dir)
    with pytest.raises(ChecksumError, match="not 64 hex digits"):
        resolve_weights({"architecture": SMALL, "tag": "mine"})


@pytest.mark.parametrize(
    "index_text", ["{", "[]", '{"weights": 3}', '{"weights": {"a.b": 1}}', '{"weights": {"a.b": {}}}']
)
@pytest.mark.slow
def test_a_broken_manifest_does_not_break_import_but_fails_the_load_that_needs_it(tmp_path, index_text):
    (tmp_path / "index.json").write_text(index_text)
    code = ("import warnings, lightnets\n"
            "warnings.simplefilter('ignore')\n"
            "lightnets.create_model('smallcnn_3x2')\n"
            "try:\n    lightnets.create_model('smallcnn_3x2.fmnist', pretrained=True)\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "LIGHTNETS_WEIGHTS_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "index.json" in result.stdout and "lightnets-weights index" in result.stdout


# --- 4. third-party errors stop at our boundary; nothing unpickles a payload --------------------------------


@pytest.mark.parametrize("keep", [0, 7, 8, 20, 100, 1000, -1000, -8, -1])
def test_a_truncated_safetensors_file_names_itself(saved, keep):
    weights = saved / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:keep] if keep >= 0 else data[:len(data) + keep])
    with pytest.raises((WeightsFileError, ChecksumError, ValueError)) as error:
        lightnets.create_model(SMALL, pretrained=True, pretrained_path=saved)
    assert "model.safetensors" in str(error.value) and "Traceback" not in str(error.value)


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin", ".ckpt", ".pth.tar", ".pth.zip"])
@pytest.mark.parametrize("wrapping", ["bare", "state_dict"])
def test_a_pickle_payload_never_runs_through_any_route(tmp_path, suffix, wrapping):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    checkpoint = {"x": Payload()} if wrapping == "bare" else {"state_dict": {"x": Payload()}}
    path = tmp_path / f"evil{suffix}"
    if suffix.endswith(".zip"):
        torch.save(checkpoint, tmp_path / "evil.pth")
        with zipfile.ZipFile(path, "w") as archive:
            archive.write(tmp_path / "evil.pth", "evil.pth")
    else:
        torch.save(checkpoint, path)
    routes = [
        lambda: lightnets.create_model(SMALL, pretrained=True, pretrained_path=path),
        lambda: lightnets.create_model("mobilenet_v1_025.osmr_in1k", pretrained=True, pretrained_path=path),
        lambda: lightnets.load_checkpoint(lightnets.create_model(SMALL), path),
    ]
    for route in routes:
        with pytest.raises(WeightsFileError, match="not a weights-only PyTorch checkpoint") as error:
            route()
        assert str(path.name) in str(error.value) and "weights_only=False" not in str(error.value)
    assert not marker.exists()


@pytest.mark.parametrize("keep", [0, 10, 100, -100, -10])
def test_a_truncated_zip_names_itself(tmp_path, small_model, keep):
    torch.save(small_model.state_dict(), tmp_path / "w.pth")
    with zipfile.ZipFile(tmp_path / "w.pth.zip", "w") as archive:
        archive.write(tmp_path / "w.pth", "w.pth")
    data = (tmp_path / "w.pth.zip").read_bytes()
    (tmp_path / "w.pth.zip").write_bytes(data[:keep] if keep >= 0 else data[:len(data) + keep])
    with pytest.raises(WeightsFileError, match=r"w\.pth\.zip"):
        lightnets.create_model("mobilenet_v1_025.osmr_in1k", pretrained=True, pretrained_path=tmp_path / "w.pth.zip")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04garbage", b"\x80\x04K\x01."])
@pytest.mark.parametrize("suffix", [".pth", ".h5", ".safetensors", ".zip"])
def test_a_file_that_is_not_what_its_name_says_is_named(tmp_path, content, suffix):
    path = tmp_path / f"w{suffix}"
    path.write_bytes(content)
    with pytest.raises(WeightsFileError) as error:
        read_weights(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("suffix", [".onnx", ".txt", ".npz", ""])
def test_an_unknown_weight_format_lists_the_known_ones(tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    path.write_bytes(b"x")
    with pytest.raises(WeightsFileError, match="must end in one of"):
        read_weights(path)


# --- 6. command lines: one line, exit 2 ----------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["convert", "nope.osmr_in1k", "--output", "o"], "unknown model"),
    (["convert", "mobilenet_v1_025", "--output", "o"], "give a tagged name"),
    (["convert", "mobilenet_v1_025.osmr_in1k", "missing.pth", "--output", "o"], "no such file"),
    (["push", "missing-folder", "org/repo"], "missing-folder"),
])
def test_weights_cli_mistakes_are_one_line(tmp_path, monkeypatch, capsys, argv, message):
    from lightnets.cli.weights import main

    monkeypatch.chdir(tmp_path)
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


@pytest.mark.parametrize("repo_id", ["not a repo", "a/b/c", "../etc", "-x/y"])
def test_an_invalid_hub_repo_id_is_a_lightnets_error(repo_id):
    from lightnets.pretrained.download import WeightsUnavailableError

    with pytest.raises(WeightsUnavailableError, match="is not a Hub repo id"):
        lightnets.create_model(SMALL, pretrained=True, pretrained_cfg={"hf_hub_id": repo_id})


@pytest.mark.parametrize("device", ["cuda", "cuda:3", "tpu", "gpu0"])
def test_train_refuses_a_device_this_machine_lacks_in_one_line(capsys, device):
    from lightnets.cli.train import main

    if device.startswith("cuda") and torch.cuda.is_available() and device == "cuda":
        pytest.skip("this machine has a GPU")
    assert main(["--model", SMALL, "--device", device, "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device" in err[0] and "Traceback" not in err[0]


@pytest.fixture()
def broken_image_folder(tmp_path) -> Path:
    from PIL import Image

    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (40, 40)).save(tmp_path / name / "ok.png")
    return tmp_path


@pytest.mark.parametrize("bad", ["not an image", "truncated png", "bomb"])
@pytest.mark.slow
def test_eval_names_the_image_it_cannot_decode_in_one_line(broken_image_folder, capsys, monkeypatch, bad):
    import importlib

    from PIL import Image

    path = broken_image_folder / "cat" / "bad.png"
    if bad == "not an image":
        path.write_text("hello")
    elif bad == "truncated png":
        Image.new("RGB", (64, 64), "red").save(path)
        path.write_bytes(path.read_bytes()[:60])
    else:  # more pixels than twice PIL's limit: PIL refuses it as a decompression bomb
        Image.new("L", (64, 64)).save(path)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    eval_main = importlib.import_module("lightnets.evaluation.cli").main
    status = eval_main(["--model", SMALL, "--no-pretrained", "--dataset", f"imagefolder:{broken_image_folder}",
                        "--no-progress", "--latency-batch-sizes", "1"])
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert status == 2 and len(err) == 1 and "bad.png" in err[0] and "Traceback" not in err[0]


@pytest.mark.parametrize("name, shape", [
    ("mobilenet_v1_025", (100_000, 3, 224, 224)),  # a huge batch
    ("shufflenet_g3", (1, 3, 60_000, 60_000)),  # 3.6·10⁹-pixel images
    ("vgg11_bn", (2_000, 3, 224, 224)),
    ("sepcnn_regular", (1, 3, 100_000, 100_000)),
])
@pytest.mark.slow
def test_a_forward_pass_too_large_for_memory_is_refused_before_it_starts(name, shape):
    """The input is an expanded view (no memory of its own): the model refuses it from its feature_info's
    sizes, before allocating its first feature map, with the estimate."""
    model = lightnets.create_model(name).eval()
    x = torch.zeros(1, 3, 1, 1).expand(*shape)
    with pytest.raises(ValueError, match=rf"a forward pass of a {re.escape(str(shape))} batch needs about [\d.]+ GiB "
                                         r"for its largest feature maps, more than half of this machine's"):
        model(x)


@pytest.mark.parametrize("name, kwargs", [
    ("mobilenet_v1", {"alpha": 100}), ("mobilenet_v1", {"num_classes": 10**9}),
    ("shufflenet_g3", {"num_classes": 10**10}), ("smallcnn_3x2", {"img_size": 100_000}),
    ("vgg11_bn", {"num_classes": 10**9}),
])
def test_an_absurd_size_is_refused_before_allocating_with_the_estimate(name, kwargs):
    with pytest.raises(ValueError, match=r"G parameters: [\d.]+ GiB in float32, more than half of this machine's"):
        lightnets.create_model(name, **kwargs)
