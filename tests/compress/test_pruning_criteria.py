"""lightnets.prune with each ranking criterion (issue #31): APoZ (Hu et al. 2016), channel pruning with
reconstruction (He et al. 2017) and network slimming (Liu et al. 2017) next to L1, on hand-made networks
where the channels to prune are known, and on every family."""
import copy
import math

import pytest
import torch
from torch import nn

import lightnets
from lightnets.compress import CRITERIA, prunable_layers, prune

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = [("smallcnn_3x2", {}), ("sepcnn_both", {}), ("mobilenet_v1_025", {"small_input": True}),
            ("shufflenet_g3_050", {"small_input": True}), ("shufflenet_g8_050", {"small_input": True}),
            ("vgg11_bn", {"small_input": True})]


def small(name, **kwargs):
    torch.manual_seed(0)
    return lightnets.create_model(name, in_chans=1, img_size=28, **kwargs).eval()


def randomise_batch_norm_scales(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data = torch.rand(module.num_features, generator=generator) + 0.1
    return model


def without(weight, removed):
    return weight[[i for i in range(len(weight)) if i not in removed]]


def test_apoz_removes_the_channels_that_are_always_zero_after_the_relu():
    model = small("smallcnn_3x2")
    dead = {3, 7, 20}
    with torch.no_grad():
        model.features.conv1.bn.bias[list(dead)] = -100.0  # BN output far below zero: the ReLU zeroes them always
    images = torch.randn(32, 1, 28, 28)
    pruned = prune(model, {"features.conv1.conv": 3 / 32}, "apoz", calibration=images)
    torch.testing.assert_close(pruned.features.conv1.conv.weight, without(model.features.conv1.conv.weight, dead))
    with torch.no_grad():  # the channels were zero anyway: the pruned model computes the same logits
        torch.testing.assert_close(pruned(images), model(images), atol=1e-5, rtol=1e-5)
    # L1 does not see it: the dead channels' weights are as large as any
    assert not torch.equal(prune(model, {"features.conv1.conv": 3 / 32}).features.conv1.conv.weight,
                           pruned.features.conv1.conv.weight)


def test_slimming_removes_the_channels_of_smallest_batch_norm_scale():
    model = randomise_batch_norm_scales(small("vgg11_bn", small_input=True))
    zeroed = {1, 5, 9, 33}
    with torch.no_grad():
        model.features[1].weight[list(zeroed)] = 0.0
    pruned = prune(model, {"features.0": 4 / 64}, "slimming")
    torch.testing.assert_close(pruned.features[0].weight, without(model.features[0].weight, zeroed))


def test_slimming_with_one_ratio_prunes_below_one_global_threshold():
    """Liu et al.: one threshold over every prunable conv's |γ|; the layers with the small scales lose them."""
    model = randomise_batch_norm_scales(small("vgg11_bn", small_input=True))
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():  # 10 near-zero scales in the first layer, 20 in the third, none elsewhere
        norms[0].weight[:10] = 1e-3
        norms[2].weight[:20] = 1e-3
    total = sum(n.num_features for n in norms)  # every conv is prunable (the classifier is rebuilt too)
    pruned = prune(model, 30 / total, "slimming")
    widths = [m.out_channels for m in pruned.modules() if isinstance(m, nn.Conv2d)]
    original = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [a - b for a, b in zip(original, widths)] == [10, 0, 20, 0, 0, 0, 0, 0]


def test_slimming_meets_its_ratio_when_many_scales_are_tied_at_zero():
    """Sparsity training in a float16 file leaves hundreds of γ exactly 0: the global ratio still removes its
    count of channels, not every tied one (which made the 2× and the 4× budget the same model)."""
    model = randomise_batch_norm_scales(small("vgg11_bn", small_input=True))
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for norm in norms:
            norm.weight[: norm.num_features // 2] = 0.0  # half of every layer tied at zero
    total = sum(n.num_features for n in norms)
    original = sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
    for ratio in (0.1, 0.25, 0.4):
        pruned = prune(model, ratio, "slimming")
        removed = original - sum(m.out_channels for m in pruned.modules() if isinstance(m, nn.Conv2d))
        assert abs(removed - ratio * total) <= len(norms), (ratio, removed)  # one channel of rounding per conv
        kept = [m.weight for m in pruned.modules() if isinstance(m, nn.BatchNorm2d)]
        assert sum(int((w != 0).sum()) for w in kept) == total // 2  # only zeros went, every non-zero γ stayed
        assert all(float(w.abs().min()) == 0.0 for w in kept)  # the ties spread over the convs: each keeps some


@pytest.fixture(scope="module", params=FAMILIES, ids=[name for name, _ in FAMILIES])
def family(request):
    """One model per family (random BatchNorm scales), its calibration images and its prunable convs, built once for
    the four criteria (prune does not modify the model)."""
    name, kwargs = request.param
    model = randomise_batch_norm_scales(small(name, **kwargs))
    images = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return model, images, prunable_layers(model)


@pytest.mark.parametrize("criterion", CRITERIA)
@pytest.mark.slow
def test_every_family_prunes_under_every_criterion(family, criterion, monkeypatch):
    from lightnets.compress import criteria, reconstruction

    model, images, prunable = family
    # What this test checks is what pruning builds on each family (every reader of every conv scored and refit);
    # how the LASSO path ranks channels is checked on hand-made layers (test_reconstruction_keeps_the_channels...,
    # test_lasso_path_scores_rank...). 20 FISTA iterations per λ instead of 200 run the same code in a third of
    # the time on ShuffleNet (the path is most of it there).
    monkeypatch.setattr(reconstruction, "_FISTA_ITERATIONS", 20)
    scored = {}
    scores = criteria.criterion_scores
    monkeypatch.setattr(criteria, "criterion_scores", lambda *args: scored.update(scores(*args)) or scored)
    pruned = prune(model, 0.3, criterion, calibration=images)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        assert pruned(images).shape == model(images).shape
    assert pruned.num_features == pruned.forward_features(images).shape[1]
    # the criterion ranked every prunable conv's filters (a conv it left out would fall back to L1 norms)
    assert sorted(scored) == (sorted(prunable) if criterion != "l1" else [])
    assert all(bool(torch.isfinite(s).all()) and len(s) == model.get_submodule(conv).out_channels
               for conv, s in scored.items())


def test_prune_l1_is_prune_with_the_l1_criterion():
    model = small("mobilenet_v1_025", small_input=True)
    a, b = lightnets.prune_l1(model, 0.4), lightnets.prune(model, 0.4, "l1")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


class _NoReluAfterFirstConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.act2 = nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.act2(self.conv2(self.bn1(self.conv1(x))))
        return self.head(x.mean((2, 3)))


@pytest.mark.parametrize("kwargs, error, message", [
    ({"criterion": "taylor"}, ValueError,
     "criterion must be one of 'l1', 'apoz', 'reconstruction', 'slimming', got 'taylor'"),
    ({"criterion": "reconstruction"}, ValueError, "criterion='reconstruction' needs calibration images"),
    ({"criterion": "reconstruction", "calibration": torch.full((2, 1, 28, 28), math.nan)}, ValueError, "finite float"),
    ({"criterion": "apoz"}, ValueError, "criterion='apoz' needs calibration images"),
    ({"criterion": "apoz", "calibration": torch.zeros(4, 1, 28, 28, dtype=torch.uint8)}, ValueError, "float tensor"),
    ({"criterion": "apoz", "calibration": [1, 2]}, ValueError, "got list"),
    ({"ratio": 1.0}, ValueError, r"ratio must be a fraction of filters to remove in \[0, 1\), got 1.0"),
    ({"ratio": math.nan}, ValueError, "ratio must be a fraction"),
    ({"ratio": -0.1, "criterion": "slimming"}, ValueError, "ratio must be a fraction"),
])
def test_bad_arguments_are_clear_errors(kwargs, error, message):
    model = small("smallcnn_3x2")
    with pytest.raises(error, match=message):
        prune(model, **{"ratio": 0.3, **kwargs})


def test_apoz_and_slimming_name_the_conv_they_cannot_rank():
    model = _NoReluAfterFirstConv().eval()
    with pytest.raises(ValueError, match="'conv1' is not followed by one"):
        prune(model, 0.25, "apoz", calibration=torch.randn(4, 1, 8, 8), input_size=(1, 8, 8))
    with pytest.raises(ValueError, match="by the BatchNorm after it; 'features.0' has none"):
        prune(small("vgg11", small_input=True), 0.25, "slimming")


def test_a_criterion_ranks_only_the_convs_a_ratio_per_conv_prunes():
    """prune(model, {conv: ratio}) scores that conv's filters alone: conv1's missing ReLU does not stop APoZ from
    pruning conv2, and reconstruction solves the LASSO of that conv's readers only (of ShuffleNet g3's 33 readers,
    one for a unit's conv1)."""
    from lightnets.compress import criteria

    class NoReluAfterFirstConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
            self.conv2, self.act2, self.conv3 = nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1)

        def forward(self, x):
            return self.conv3(self.act2(self.conv2(self.bn1(self.conv1(x))))).mean((2, 3))

    images = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    model = NoReluAfterFirstConv().eval()
    with pytest.raises(ValueError, match="'conv1' is not followed by one"):
        prune(model, {"conv1": 0.25}, "apoz", calibration=images, input_size=(1, 8, 8))
    assert prune(model, {"conv2": 0.25}, "apoz", calibration=images, input_size=(1, 8, 8)).conv2.out_channels == 6
    scored = []
    scores = criteria.criterion_scores
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(criteria, "criterion_scores", lambda graph, criterion, convs, *rest: scored.append(convs)
                      or scores(graph, criterion, convs, *rest))
        prune(small("smallcnn_3x2"), {"features.conv2.conv": 0.5}, "reconstruction",
              calibration=torch.randn(4, 1, 28, 28))
    assert scored == [["features.conv2.conv"]]


def test_the_bn_l1_penalty_drives_batch_norm_scales_toward_zero():
    """--bn-l1 (FitConfig.bn_l1): the same run with the penalty ends with Σ|γ| smaller by what the L1
    subgradient predicts, λ·lr·steps per scale (plain SGD; the task gradients of the two runs barely differ)."""
    from lightnets.training.loop import FitConfig, fit

    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(64) % 10

    def scale_sum(bn_l1):
        model = small("smallcnn_3x2")
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        fit(model, images, labels, optimizer, FitConfig(batch_size=16, bn_l1=bn_l1), order=torch.arange(64).repeat(2),
            steps=8)
        return sum(float(m.weight.abs().sum()) for m in model.modules() if isinstance(m, nn.BatchNorm2d))

    scales = sum(m.num_features for m in small("smallcnn_3x2").modules() if isinstance(m, nn.BatchNorm2d))
    expected = scales * 1e-2 * 0.05 * 8
    assert scale_sum(0.0) - scale_sum(1e-2) == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("value", ["-1e-4", "nan", "inf"])
def test_bn_l1_must_be_a_finite_number_at_least_zero(value):
    from lightnets.cli.train import build_parser, check_args

    with pytest.raises(ValueError, match="--bn-l1 must be"):
        check_args(build_parser().parse_args(["--model", "smallcnn_3x2", f"--bn-l1={value}"]))


@pytest.mark.parametrize("option", ["--lr", "--weight-decay", "--label-smoothing", "--mixup"])
def test_no_float_option_of_the_trainer_takes_nan(option):
    from lightnets.cli.train import build_parser, check_args

    with pytest.raises(ValueError, match=f"{option} must be a finite number, got nan"):
        check_args(build_parser().parse_args(["--model", "smallcnn_3x2", option, "nan"]))


class _TwoConvs(nn.Module):
    """conv1 → ReLU → 1×1 conv2 → mean → head: conv2 is the layer that reads conv1's channels."""

    def __init__(self):
        super().__init__()
        self.conv1, self.act = nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.ReLU()
        self.conv2 = nn.Conv2d(8, 6, 1, bias=False)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(self.conv2(self.act(self.conv1(x))).mean((2, 3)))


def two_convs(seed=0):
    torch.manual_seed(seed)
    return _TwoConvs().eval()


def test_reconstruction_keeps_the_channels_the_next_layer_reads_where_l1_does_not():
    model = two_convs()
    with torch.no_grad():
        model.conv1.weight[4:] *= 10  # the largest filters ...
        model.conv2.weight[:, 4:] = 0  # ... whose channels conv2 ignores
    images = torch.randn(64, 1, 8, 8)
    pruned = prune(model, {"conv1": 0.5}, "reconstruction", calibration=images, input_size=(1, 8, 8))
    torch.testing.assert_close(pruned.conv1.weight, model.conv1.weight[:4])
    with torch.no_grad():  # the same logits, up to the refit's ridge shrinking conv2 a little
        torch.testing.assert_close(pruned(images), model(images), atol=1e-3, rtol=1e-2)
    l1 = prune(model, {"conv1": 0.5}, input_size=(1, 8, 8))
    torch.testing.assert_close(l1.conv1.weight, model.conv1.weight[4:])


def test_the_least_squares_refit_reconstructs_a_layer_that_a_subset_of_channels_determines():
    """conv1's channels 4-7 are 2× channels 0-3 (ReLU keeps the factor) and conv2 reads them at a tenth: the
    LASSO keeps 0-3 (their contribution is five times larger), and conv2 refit on them is exact up to the
    ridge: W'_c = W_c + 0.2·W_c."""
    from lightnets.compress import reconstruction

    model = two_convs()
    with torch.no_grad():
        model.conv1.weight[4:] = 2 * model.conv1.weight[:4]
        model.conv2.weight[:, 4:] = 0.1 * model.conv2.weight[:, :4]
    images = torch.randn(64, 1, 8, 8)
    refits = []
    original_refit = reconstruction.refit_readers
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reconstruction, "refit_readers", lambda *a: refits.append(original_refit(*a)) or refits[-1])
        pruned = prune(model, {"conv1": 0.5}, "reconstruction", calibration=images, input_size=(1, 8, 8))
    torch.testing.assert_close(pruned.conv1.weight, model.conv1.weight[:4])
    before, after = refits[0]["conv2"]
    # before: ‖0.2·Y'‖² / ‖1.2·Y'‖²; after: what the ridge leaves (measured 1.4e-4)
    assert before == pytest.approx(0.2 ** 2 / 1.2 ** 2, rel=1e-3) and after < 1e-3
    # exact up to the ridge's shrinkage (ε = 1% of the mean input energy)
    torch.testing.assert_close(pruned.conv2.weight, 1.2 * model.conv2.weight[:, :4], atol=3e-2, rtol=0)
    fresh = torch.randn(8, 1, 8, 8)  # as good on any image as on the calibration ones
    with torch.no_grad():
        torch.testing.assert_close(pruned(fresh), model(fresh), atol=1e-3, rtol=1e-2)


def refit_errors_of(*args, **kwargs):
    """prune(*args, **kwargs) and the errors its refit reported."""
    pruned, _, errors = before_and_after_the_refit(*args, **kwargs)
    return pruned, errors


def before_and_after_the_refit(*args, **kwargs):
    """prune(*args, **kwargs), the same pruned network as the refit received it (its channels chosen, its
    weights not refit yet), and the errors the refit reported."""
    from lightnets.compress import reconstruction

    unrefit, reports = [], []
    refit = reconstruction.refit_readers

    def spy(original, pruned, *rest):
        unrefit.append(copy.deepcopy(pruned))
        reports.append(refit(original, pruned, *rest))
        return reports[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reconstruction, "refit_readers", spy)
        pruned = prune(*args, **kwargs)
    return pruned, unrefit[0], reports[0]


def calibrated(name, **kwargs):
    """A random model whose BatchNorm statistics are those of its calibration images (random weights with
    default statistics shrink the deep maps toward zero, which makes every reconstruction trivially good)."""
    model = small(name, **kwargs)
    images = torch.randn(256, 1, 28, 28)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():
        model.train()(images)
    return model.eval(), images


@pytest.mark.parametrize("name, kwargs, conv, reader", [
    ("smallcnn_3x2", {}, "features.conv1.conv", "features.conv2.conv"),
    ("mobilenet_v1_025", {"small_input": True}, "blocks.3.conv_pw", "blocks.4.conv_pw"),
    ("shufflenet_g3_050", {"small_input": True}, "stage3.1.conv1", "stage3.1.conv2"),  # grouped, through the shuffle
])
@pytest.mark.slow
def test_the_refit_lowers_the_readers_error_to_what_it_reports(name, kwargs, conv, reader):
    """The reader's error after the refit is its measured output error over the calibration images, below the
    error of the same channels without the refit; and the network's logits move closer to the original's."""
    model, images = calibrated(name, **kwargs)
    # the unrefit network is the one the refit received: no second prune (its LASSO scoring is most of the time)
    pruned, unrefit, errors = before_and_after_the_refit(model, {conv: 0.5}, "reconstruction", calibration=images)
    assert list(errors) == [reader]
    outputs = {}
    for key, network in (("original", model), ("refit", pruned), ("unrefit", unrefit)):
        handle = network.get_submodule(reader).register_forward_hook(
            lambda m, a, out, key=key: outputs.__setitem__(key, out)
        )
        with torch.no_grad():
            outputs[key + " logits"] = network(images)
        handle.remove()

    def relative(key):
        return float(((outputs[key] - outputs["original"]) ** 2).sum() / (outputs["original"] ** 2).sum())

    before, after = errors[reader]
    assert relative("unrefit") == pytest.approx(before, rel=1e-4)
    assert relative("refit") == pytest.approx(after, rel=1e-3, abs=1e-7)
    assert after < before - 1e-3
    logits = {
        key: float(((outputs[key + " logits"] - outputs["original logits"]) ** 2).mean())
        for key in ("refit", "unrefit")
    }
    assert logits["refit"] < logits["unrefit"]


@pytest.mark.slow
def test_a_reader_with_too_few_calibration_rows_is_left_as_pruned():
    """The classifier reads 64 features: 16 images give 16 rows, too few to fit 64 columns without interpolating."""
    model, images = calibrated("mobilenet_v1_025", small_input=True)
    pruned, errors = refit_errors_of(model, {"blocks.12.conv_pw": 0.5}, "reconstruction", calibration=images[:16])
    before, after = errors["classifier"]
    assert before == after
    torch.testing.assert_close(pruned.classifier.weight, model.classifier.weight[:, pruned_positions(model, pruned)])


def pruned_positions(model, pruned):
    kept = pruned.blocks[12].conv_pw.weight.flatten(1)
    return [
        i for i, row in enumerate(model.blocks[12].conv_pw.weight.flatten(1)) if any(torch.equal(row, k) for k in kept)
    ]


def test_lasso_path_scores_rank_contributions_by_how_much_of_the_target_they_explain():
    from lightnets.compress.reconstruction import lasso_path_scores

    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(50, 4)).Q.T  # orthonormal contributions, scaled 4, 3, 2, 0
    contributions = basis * torch.tensor([[4.0], [3.0], [2.0], [0.0]])
    scores = lasso_path_scores(contributions @ contributions.T)
    assert scores.argsort(descending=True).tolist()[:3] == [0, 1, 2]
    assert scores[3] == 0 and scores[0] > scores[1] > scores[2] > 0
    batch = lasso_path_scores(
        torch.stack([contributions @ contributions.T, contributions.flip(0) @ contributions.flip(0).T])
    )
    torch.testing.assert_close(batch[1], scores.flip(0))


def test_finetune_takes_the_bn_l1_penalty_to_the_loop():
    from lightnets.compress import finetune
    from lightnets.data import load_dataset

    data = load_dataset("fashion_mnist", "test", limit=64)
    scale_sums = []
    for bn_l1 in (0.0, 0.05):
        model = small("smallcnn_3x2")
        finetune(model, data, epochs=1, batch_size=32, lr=0.05, bn_l1=bn_l1)
        scale_sums.append(sum(float(m.weight.abs().sum()) for m in model.modules() if isinstance(m, nn.BatchNorm2d)))
    assert scale_sums[1] < scale_sums[0] - 0.5
