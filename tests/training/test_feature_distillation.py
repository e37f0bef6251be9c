"""Feature distillation (issue #31): FitNets hints (Romero et al. 2015) and attention transfer (Zagoruyko and
Komodakis 2017) through forward_intermediates, in finetune(feature_teacher=...) and the trainer's
--distill-features: the losses on hand examples, the pairing, a short run that moves the student's maps
toward the teacher's, and the arguments refused."""
import copy
import json

import pytest
import torch

import lightnets
import lightnets.training.loop
from lightnets.compress import finetune
from lightnets.data import load_dataset
from lightnets.training import FeatureDistillation, attention_loss, hint_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def mobilenet(alpha="025", seed=0):
    torch.manual_seed(seed)
    return lightnets.create_model(f"mobilenet_v1_{alpha}", small_input=True, in_chans=1, img_size=28, num_classes=10)


def test_hint_loss_is_the_mean_squared_difference_after_the_adapter():
    student, teacher = mobilenet("025"), mobilenet("050")
    distill = FeatureDistillation(student, teacher, "hint", pairs=[(4, 4)], weight=2.0)
    adapter = distill.adapters[0]
    assert (adapter.in_channels, adapter.out_channels) == (256, 512)
    with torch.no_grad():
        adapter.weight.zero_()
        adapter.weight[torch.arange(256), torch.arange(256)] = 1.0  # copies the student's 256 maps, zero elsewhere
    student_map, teacher_map = torch.full((2, 256, 1, 1), 3.0), torch.full((2, 512, 1, 1), 2.0)
    # the first 256 channels differ by 1, the rest by 2: mean of 1s and 4s over the teacher's mean square 4, weighted
    assert distill.loss([adapter(student_map)], [teacher_map]).item() == pytest.approx(2.0 * (1 + 4) / 2 / 4)
    assert hint_loss(torch.zeros(1, 2, 3, 3), torch.ones(1, 2, 3, 3)).item() == 1.0
    assert hint_loss(torch.zeros(1, 2, 3, 3), 100 * torch.ones(1, 2, 3, 3)).item() == 1.0  # scale-free


def test_attention_loss_compares_normalised_channel_energy_maps():
    a = torch.rand(2, 8, 4, 4)
    # width and scale do not matter
    assert attention_loss(a, 3 * torch.cat([a, a], dim=1)).item() == pytest.approx(0, abs=1e-12)
    left, right = torch.zeros(1, 1, 1, 2), torch.zeros(1, 5, 1, 2)
    left[..., 0], right[..., 1] = 1.0, 2.0  # all energy at opposite positions: unit vectors (1, 0) and (0, 1)
    assert attention_loss(left, right).item() == pytest.approx(1.0)  # ((1 − 0)² + (0 − 1)²) / 2
    distill = FeatureDistillation(mobilenet("025"), mobilenet("050"), "attention")
    assert distill.weight == 50 and all(isinstance(a, torch.nn.Identity) for a in distill.adapters)


def test_default_pairs_are_the_deepest_maps_at_each_common_reduction():
    student = mobilenet("025")
    teacher = lightnets.create_model("vgg11_bn", small_input=True, in_chans=1, img_size=28, num_classes=10)
    distill = FeatureDistillation(student, teacher, "hint")
    for s, t in distill.pairs:
        assert student.feature_info[s]["reduction"] == teacher.feature_info[t]["reduction"]
        assert all(info["reduction"] != teacher.feature_info[t]["reduction"] for info in teacher.feature_info[t + 1:])
    assert len(distill.pairs) == len(
        {i["reduction"] for i in student.feature_info} & {i["reduction"] for i in teacher.feature_info}
    )
    images = torch.randn(2, 1, 28, 28)
    logits, maps = distill.student_outputs(student, images)
    _, teacher_maps = distill.teacher_outputs(images)
    torch.testing.assert_close(logits, student(images))
    assert [m.shape[:2] for m in maps] == [m.shape[:2] for m in teacher_maps]  # sizes may round differently
    assert distill.loss(maps, teacher_maps).item() > 0  # ... and are pooled to the smaller


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "gram"}, "kind must be one of 'hint', 'attention'"),
    ({"weight": 0.0}, "weight must be a finite number > 0"),
    ({"weight": float("nan")}, "weight must be a finite number > 0"),
    ({"pairs": [(0, 9)]}, r"feature pair \(0, 9\) must be"),
    ({"pairs": [(1, 1), (1, 2)]}, "use a student map twice"),
])
def test_bad_feature_distillation_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FeatureDistillation(mobilenet("025"), mobilenet("050"), **kwargs)
    with pytest.raises(ValueError, match="forward_intermediates"):
        FeatureDistillation(mobilenet("025"), torch.nn.Linear(2, 2))


def measured(kind, student, teacher, images):
    """The feature term (unweighted) of a copy of ``student`` in training mode, as the fine-tune sees it."""
    student = copy.deepcopy(student).train()
    distill = FeatureDistillation(student, teacher, kind)  # identity adapters: equal widths
    with torch.no_grad():
        _, maps = distill.student_outputs(student, images)
        _, wanted = distill.teacher_outputs(images)
        return distill.loss(maps, wanted).item() / distill.weight


@pytest.mark.parametrize("kind", ["hint", "attention"])
@pytest.mark.slow
def test_a_short_run_moves_the_students_maps_toward_the_teachers(kind):
    """The same fine-tune (same seed, images, schedule) with and without the feature term: with it the student's
    maps end closer to the trained teacher's, by the measure the term optimises (measured: 0.65× for hints,
    0.66× for attention)."""
    teacher = lightnets.create_model("mobilenet_v1_025.fmnist", pretrained=True).eval()
    data = load_dataset("fashion_mnist", "test", limit=512)
    images = (data.images[:128].float() / 255 - 0.286) / 0.353
    runs = {}
    for distil in (False, True):
        student = mobilenet("025")
        student.load_state_dict(teacher.state_dict())
        with torch.no_grad():  # a perturbed copy of the teacher: the maps start apart
            for param in student.parameters():
                param.add_(0.3 * param.std() * torch.randn_like(param))
        start = measured(kind, student, teacher, images)
        finetune(student, data, epochs=2, batch_size=64, lr=0.01, feature_teacher=teacher if distil else None,
                 feature_loss=kind)
        runs[distil] = measured(kind, student, teacher, images)
    assert runs[True] < 0.8 * runs[False] and runs[True] < start


def test_a_teacher_that_also_gives_soft_targets_runs_once_per_batch(monkeypatch):
    teacher = lightnets.create_model("mobilenet_v1_025.fmnist", pretrained=True).eval()
    calls = []
    monkeypatch.setattr(
        teacher, "forward", lambda x: calls.append(1) or teacher.forward_head(teacher.forward_features(x))
    )
    finetune(mobilenet("025"), load_dataset("fashion_mnist", "test", limit=64), epochs=1, batch_size=32,
             teacher=teacher, feature_teacher=teacher, feature_loss="attention")
    assert calls == []  # its logits came from the feature pass
    other = lightnets.create_model("mobilenet_v1_025.fmnist", pretrained=True).eval()
    finetune(mobilenet("025"), load_dataset("fashion_mnist", "test", limit=64), epochs=1, batch_size=32,
             teacher=teacher, feature_teacher=other, feature_loss="attention")
    assert len(calls) == 2


@pytest.mark.slow
def test_the_trainer_distils_features_resumes_its_adapters_and_records_it(tmp_path, monkeypatch):
    from lightnets.cli.train import train

    fmnist = load_dataset("fashion_mnist", split="test", limit=64)
    terms = []
    real = FeatureDistillation.loss

    def recording(self, student_maps, teacher_maps):
        value = real(self, student_maps, teacher_maps)
        terms.append((self.kind, self.weight, [tuple(m.shape) for m in teacher_maps], value.item()))
        return value

    monkeypatch.setattr(FeatureDistillation, "loss", recording)
    argv = ["--model", "mobilenet_v1_025", "--model-arg", "small_input=true", "--no-progress", "--warmup-epochs", "0",
            "--batch-size", "32", "--dataset", "fashion_mnist", "--teacher", "mobilenet_v1_050.fmnist",
            "--distill-features", "hint", "--feature-weight", "0.5", "--feature-pairs", "3:3,4:4",
            "--work-dir", str(tmp_path / "run"), "--output", str(tmp_path / "out")]
    train(argv + ["--epochs", "1"], fmnist, fmnist)
    assert [(kind, weight, shapes) for kind, weight, shapes, _ in terms] == [
        ("hint", 0.5, [(32, 256, 4, 4), (32, 512, 2, 2)])
    ] * 2
    state = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    assert sorted(state["feature_adapters"]) == ["adapters.0.weight", "adapters.1.weight"]  # 128→256 and 256→512
    card = json.loads((tmp_path / "out" / "config.json").read_text())
    assert card["lightnets"]["training"]["distill_features"] == "hint"
    with pytest.raises(ValueError, match="--feature-weight 0.5 then, 1.0 now"):
        train([a if a != "0.5" else "1.0" for a in argv] + ["--epochs", "1", "--resume"], fmnist, fmnist)


@pytest.mark.parametrize("extra, message", [
    (["--distill-features", "hint"], "--distill-features matches one teacher's feature maps"),
    (["--distill-features", "hint", "--teacher", "a.b,c.d"], "one model"),
    (["--feature-weight", "2"], "apply to --distill-features"),
    (["--distill-features", "attention", "--teacher", "x.y", "--feature-weight", "nan"],
     "--feature-weight must be a finite"),
    (["--distill-features", "attention", "--teacher", "x.y", "--feature-pairs", "3-3"], "each pair is STUDENT:TEACHER"),
])
def test_the_trainer_refuses_feature_options_that_cannot_work(extra, message):
    from lightnets.cli.train import build_parser, check_args

    with pytest.raises(ValueError, match=message):
        check_args(build_parser().parse_args(["--model", "smallcnn_3x2", *extra]))


@pytest.mark.slow
def test_fit_adapters_starts_the_hint_term_at_its_least_squares_minimum():
    """A pruned model's 1×1 adapters fitted to its teacher's maps: the hint term (in training mode, as the
    fine-tune computes it) is far below the random adapters' and no small change of an adapter lowers it
    (up to the fit's small ridge)."""
    teacher = lightnets.create_model("mobilenet_v1_050.fmnist", pretrained=True).eval()
    student = lightnets.prune(teacher, 0.5)
    images = (load_dataset("fashion_mnist", "test", limit=128).images.float() / 255 - 0.286) / 0.353
    distill = FeatureDistillation(student, teacher, "hint", pairs=[(3, 3), (4, 4)])

    for module in student.modules():  # training mode, as the term sees the maps, without moving the statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 0.0
    student.train()

    def term():
        with torch.no_grad():
            _, maps = distill.student_outputs(student, images)
            return distill.loss(maps, distill.teacher_outputs(images)[1]).item()

    random_start = term()
    distill.fit_adapters(student, images)
    fitted = term()
    assert fitted < 0.5 * random_start
    generator = torch.Generator().manual_seed(0)
    for adapter in distill.adapters:
        original = adapter.weight.detach().clone()
        for _ in range(3):
            with torch.no_grad():
                adapter.weight.copy_(
                    original + 1e-2 * original.std() * torch.randn(original.shape, generator=generator)
                )
            assert term() >= fitted * (1 - 1e-3)
        with torch.no_grad():
            adapter.weight.copy_(original)
