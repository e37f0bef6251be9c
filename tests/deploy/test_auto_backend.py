"""backend="auto" (issue #41): the fastest path measured for this model, input and batch size on this machine,
cached under a key of what the ranking depends on, never cached from a busy machine, one meaning for
optimize_for_inference and the eval harness's accuracy pass."""
import time

import pytest
import torch
from torch import nn

import lightnets
from lightnets import deploy
from lightnets.deploy import auto


class Sleeper(nn.Module):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        time.sleep(self.seconds)
        return x


@pytest.fixture(autouse=True)
def measured(monkeypatch):
    monkeypatch.delenv("LIGHTNETS_AUTO_BACKEND", raising=False)  # the suite pins auto (tests/conftest.py)


@pytest.fixture
def idle(monkeypatch, tmp_path):
    monkeypatch.setenv("LIGHTNETS_CACHE", str(tmp_path))
    monkeypatch.setattr(auto, "others_busy", lambda: False)
    monkeypatch.setattr(auto, "MIN_ROUND_SECONDS", 0.005)


def test_the_fastest_candidate_wins_and_is_cached(idle, tmp_path):
    model = lightnets.create_model("smallcnn_3x2", num_classes=3)
    example = torch.zeros(2, 1, 28, 28)
    speeds = {"eager": 0.004, "torchscript": 0.0005, "onnxruntime": 0.002}
    built = []

    def build(name):
        built.append(name)
        if name == "onnxruntime":
            raise RuntimeError("cannot export this model")  # a candidate that fails is left out
        return Sleeper(speeds[name])

    choice = deploy.choose_backend(model, example, candidates=("eager", "torchscript", "onnxruntime"), build=build)
    assert (choice.backend, choice.cached, choice.busy) == ("torchscript", False, False)
    assert set(choice.milliseconds) == {"eager", "torchscript"}
    assert choice.milliseconds["eager"] > 4 > choice.milliseconds["torchscript"]
    assert isinstance(choice.runner, Sleeper) and choice.runner.seconds == 0.0005

    def must_not_build(name):
        raise AssertionError("a cached choice is not measured again")

    again = deploy.choose_backend(model, example, candidates=("eager", "torchscript", "onnxruntime"),
                                  build=must_not_build)
    assert (again.backend, again.cached, again.runner) == ("torchscript", True, None)
    assert len(list((tmp_path / "backends").glob("*.json"))) == 1


def test_the_key_follows_the_weights_the_batch_and_the_threads():
    model = lightnets.create_model("smallcnn_3x2", num_classes=3)
    key = auto.auto_cache_key(model, torch.zeros(1, 1, 28, 28))
    assert auto.auto_cache_key(model, torch.zeros(1, 1, 28, 28)) == key
    assert auto.auto_cache_key(model, torch.zeros(8, 1, 28, 28)) != key
    assert auto.auto_cache_key(model, torch.zeros(1, 1, 28, 28), num_threads=torch.get_num_threads() + 1) != key
    with torch.no_grad():
        model.classifier.weight[0, 0] += 1
    assert auto.auto_cache_key(model, torch.zeros(1, 1, 28, 28)) != key


def test_a_busy_machine_measures_but_does_not_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LIGHTNETS_CACHE", str(tmp_path))
    monkeypatch.setattr(auto, "others_busy", lambda: True)
    model = lightnets.create_model("smallcnn_3x2", num_classes=3)
    choice = deploy.choose_backend(model, torch.zeros(1, 1, 28, 28), candidates=("eager",),
                                   build=lambda name: Sleeper(0))
    assert choice.busy and not (tmp_path / "backends").exists()


def test_optimize_for_inference_auto_runs_the_measured_path(idle):
    model = lightnets.create_model("mobilenet_v1_025", small_input=True, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    fast = deploy.optimize_for_inference(model, "auto", example_input=x)
    assert (fast(x) - model(x)).abs().max() < 1e-4
    cached = deploy.choose_backend(model, x)  # the same question: answered from the cache
    assert cached.cached and cached.backend in deploy.AUTO_CANDIDATES
    with pytest.raises(ValueError, match="calibration_images is only used by the int8 backends"):
        deploy.optimize_for_inference(model, "auto", calibration_images=x)


def test_the_environment_can_pin_the_choice(monkeypatch):
    model = lightnets.create_model("smallcnn_3x2", num_classes=3)
    monkeypatch.setenv("LIGHTNETS_AUTO_BACKEND", "torchscript")
    assert deploy.choose_backend(model, torch.zeros(1, 1, 28, 28), build=lambda name: 1 / 0).backend == "torchscript"
    monkeypatch.setenv("LIGHTNETS_AUTO_BACKEND", "tensorrt")
    with pytest.raises(ValueError, match="LIGHTNETS_AUTO_BACKEND=tensorrt is not an installed backend"):
        deploy.choose_backend(model, torch.zeros(1, 1, 28, 28))
