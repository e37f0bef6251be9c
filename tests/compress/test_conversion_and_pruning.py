"""Model compression (lightnets.compress): conversion to depthwise-separable convs, L1-norm filter pruning, fine-tuning
and distillation.

The distillation loss itself is checked by hand in test_train.py; here a short run must move a
student toward its teacher.
"""
from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lightnets
from lightnets import compress
from lightnets.compress.separable import _select_convs
from lightnets.data import load_dataset, normalize_batch
from lightnets.models.restructure import model_input_size
from lightnets.profiler import count_macs

SMALLCNN = "smallcnn_3x2.fmnist"  # shipped, trained: 92.35% top-1 on the Fashion-MNIST test split


@pytest.fixture(scope="module")
def fmnist_test():
    return load_dataset("fashion_mnist", "test")


@pytest.fixture(scope="module")
def trained():
    return lightnets.create_model(SMALLCNN, pretrained=True).eval()


def inputs(model, images):
    cfg = model.pretrained_cfg
    return normalize_batch(images, model.in_chans, model.img_size, cfg["mean"], cfg["std"])


def params(model):
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------------

# (conv, M in, N out, output side) of the 3+2 CNN at 28 px: conv k is followed by a 2x2 pool.
SMALLCNN_CONVS = {"features.conv1.conv": (1, 32, 28), "features.conv2.conv": (32, 64, 14),
                  "features.conv3.conv": (64, 128, 7)}


@pytest.mark.parametrize("layers", [["features.conv1.conv"], ["features.conv2.conv"], ["features.conv3.conv"],
                                    ["features.conv1.conv", "features.conv2.conv"],
                                    ["features.conv2.conv", "features.conv3.conv"]])
def test_conversion_costs_follow_mobilenet_eq5(layers):
    model = lightnets.create_model("smallcnn_3x2", in_chans=1)
    converted = compress.to_separable(model, layers)
    saved_macs = saved_params = 0
    for name in layers:
        m, n, side = SMALLCNN_CONVS[name]
        saved_macs += 9 * m * n * side**2 - (9 * m * side**2 + m * n * side**2)  # Eq. 2 − Eq. 5
        saved_params += 9 * m * n - (9 * m + 2 * m + m * n)  # the new BN has γ, β per channel
    assert count_macs(model, (1, 28, 28)) - count_macs(converted, (1, 28, 28)) == saved_macs
    assert params(model) - params(converted) == saved_params
    change = compress.compare_cost(model, converted)
    assert (change.macs_before - change.macs_after, change.params_before - change.params_after) == (
        saved_macs,
        saved_params,
    )
    assert converted(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("form,layers", [("both", (4, 6, 7)), ("separable", (0, 1, 3, 4, 6, 7))])
def test_converting_sepcnn_regular_builds_the_registered_form(form, layers):
    """features = layers 1, 2, pool, 3, 4, pool, 5, 6, pool: Both = layers 4–6, Separable = all six."""
    regular = lightnets.create_model("sepcnn_regular", in_chans=1, img_size=28)
    converted = compress.to_separable(regular, [f"features.{i}" for i in layers])
    target = lightnets.create_model(f"sepcnn_{form}", in_chans=1, img_size=28)
    assert count_macs(converted, (1, 28, 28)) == count_macs(target, (1, 28, 28))
    assert params(converted) == params(target)


def test_conversion_keeps_every_other_weight_bit_identical():
    model = lightnets.create_model("smallcnn_3x2", in_chans=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    converted = compress.to_separable(model, ["features.conv2"])  # a block holding one conv names that conv
    assert (
        isinstance(converted.features.conv2.conv.conv_dw, nn.Conv2d)
        and converted.features.conv2.conv.conv_dw.groups == 32
    )
    new = converted.state_dict()
    for key, value in before.items():
        assert torch.equal(model.state_dict()[key], value)  # the input model is untouched
        if not key.startswith("features.conv2.conv."):
            assert torch.equal(new[key], value), key
    assert isinstance(converted.features.conv2.bn, nn.BatchNorm2d)  # the original BN follows the pointwise conv


def test_layer_rules_pick_deepest_and_costliest():
    model = lightnets.create_model("sepcnn_regular")
    assert _select_convs(model, "deepest:2", None) == ["features.6.conv", "features.7.conv"]
    # Per layer at 32 px: 64→64 @32² costs 37.7 M, 128→128 @16² 37.7 M, 256→256 @8² 37.7 M; 64→128 @16² 18.9 M.
    costliest = _select_convs(model, "costliest:1", None)
    assert costliest == ["features.1.conv"]


def test_freeze_untouched_trains_only_the_new_layers(fmnist_test):
    model = lightnets.create_model("smallcnn_3x2", in_chans=1, small_input=True)
    model.pretrained_cfg.update(mean=(0.286,), std=(0.353,))
    converted = compress.to_separable(model, ["features.conv3"], freeze="untouched")
    trainable = {name for name, p in converted.named_parameters() if p.requires_grad}
    assert trainable == {
        f"features.conv3.conv.{name}" for name in ("conv_dw.weight", "bn_dw.weight", "bn_dw.bias", "conv_pw.weight")
    }
    frozen = {k: v.clone() for k, v in converted.state_dict().items() if not k.startswith("features.conv3.conv.")}
    new_before = converted.features.conv3.conv.conv_pw.weight.clone()
    compress.finetune(converted, load_dataset("fashion_mnist", limit=256), epochs=1, batch_size=64, lr=0.05)
    after = converted.state_dict()
    assert all(torch.equal(after[k], v) for k, v in frozen.items())  # BN running statistics included
    assert not torch.equal(converted.features.conv3.conv.conv_pw.weight, new_before)


def test_rank1_kernel_is_converted_exactly():
    conv = nn.Conv2d(8, 16, 3, padding=1, bias=True)
    with torch.no_grad():
        conv.weight.copy_(torch.einsum("ni,ik->nik", torch.randn(16, 8), torch.randn(8, 9)).reshape(16, 8, 3, 3))
    model = nn.Sequential(conv, nn.ReLU())
    x = torch.randn(16, 8, 10, 10)
    converted = compress.to_separable(model, ["0"], init="lowrank", calibration=x).eval()
    torch.testing.assert_close(converted(x), model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_lowrank_init_keeps_logits_close_on_real_images(trained, fmnist_test):
    calibration = inputs(trained, load_dataset("fashion_mnist", "test", limit=10000).images[-512:])
    x = inputs(trained, fmnist_test.images[:1000])
    with torch.no_grad():
        reference = trained(x)
        for layer, init in (("features.conv2", "random"), ("features.conv2", "lowrank"), ("features.conv3", "lowrank")):
            logits = compress.to_separable(trained, [layer], init=init, calibration=calibration).eval()(x)
            error = ((logits - reference).norm() / reference.norm()).item()
            agreement = (logits.argmax(1) == reference.argmax(1)).float().mean().item()
            # Measured on these images, relative logit error and top-1 agreement with the original:
            # conv2 random 1.46, 0.10; conv2 low-rank 0.33, 0.90; conv3 low-rank 0.49, 0.89.
            if init == "random":
                assert error > 1.0 and agreement < 0.2, (layer, error, agreement)
            else:
                assert error < 0.55 and agreement > 0.85, (layer, error, agreement)


def test_conversion_errors_name_the_problem():
    model = lightnets.create_model("mobilenet_v1_025", small_input=True)
    with pytest.raises(ValueError, match=r"no layer named 'stem.cnv'.*'stem.conv'"):
        compress.to_separable(model, ["stem.cnv"])
    with pytest.raises(ValueError, match="depthwise conv, not a standard"):
        compress.to_separable(model, ["blocks.0.conv_dw"])
    with pytest.raises(ValueError, match="1x1 conv, not a standard"):
        compress.to_separable(model, ["blocks.0.conv_pw"])
    with pytest.raises(ValueError, match="grouped conv"):
        compress.to_separable(lightnets.create_model("shufflenet_g3"), ["stage2.1.conv1"])
    with pytest.raises(ValueError, match="BatchNorm2d, not a standard"):
        compress.to_separable(model, ["stem.bn"])
    with pytest.raises(ValueError, match=r"'deepest:N' or 'costliest:N' with N from 1 to 1"):
        compress.to_separable(model, "deepest:2")
    with pytest.raises(ValueError, match="init must be"):
        compress.to_separable(model, ["stem.conv"], init="svd")
    with pytest.raises(ValueError, match="freeze must be"):
        compress.to_separable(model, ["stem.conv"], freeze="all")
    with pytest.raises(ValueError, match="needs calibration"):
        compress.to_separable(model, ["stem.conv"], init="lowrank")
    with pytest.raises(ValueError, match="names a conv twice"):
        compress.to_separable(lightnets.create_model("smallcnn_3x2"), ["features.conv1", "features.conv1.conv"])


# ---------------------------------------------------------------------------------------------
# Pruning
# ---------------------------------------------------------------------------------------------

# A representative of every family, built for small images; ShuffleNet in its three kinds of groups.
FAMILIES = [
    ("mobilenet_v1_025", {"small_input": True, "num_classes": 10}),
    ("shufflenet_g1", {"small_input": True, "num_classes": 10}),
    ("shufflenet_g3", {"small_input": True, "num_classes": 10}),
    ("shufflenet_g4", {"small_input": True, "num_classes": 10}),
    ("shufflenet_g8_050", {"small_input": True, "num_classes": 10}),
    ("sepcnn_both", {}),
    ("smallcnn_3x2", {"in_chans": 1}),
    ("smallcnn_3x2_dw12", {"in_chans": 1}),
    ("vgg11_bn", {"small_input": True, "num_classes": 10}),
]


def randomized(name, kwargs):
    """A model in eval mode whose BatchNorms are not the identity (so a wrong channel shows in the output)."""
    model = lightnets.create_model(name, **kwargs).eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
            module.bias.data.normal_(0, 0.1)
    return model


def masked(model, graph, removed):
    """The model with the removed channels silenced in place: zero filters, zero BN scale and shift."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for name, _, ids_out in graph.uses:
            module = model.get_submodule(name)
            gone = torch.tensor([i in removed for i in ids_out.tolist()])
            if isinstance(module, nn.BatchNorm2d):
                module.weight[gone] = 0
                module.bias[gone] = 0
            elif isinstance(module, nn.Conv2d):
                module.weight[gone] = 0
                if module.bias is not None:
                    module.bias[gone] = 0
    return model


@pytest.mark.slow
@pytest.mark.parametrize("name,kwargs", FAMILIES, ids=[name for name, _ in FAMILIES])
def test_every_family_prunes_to_a_smaller_model_that_computes_the_masked_one(name, kwargs):
    model = randomized(name, kwargs)
    size = model_input_size(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ShuffleNet g8 0.5x: some bottlenecks cannot lose a channel evenly
        pruned = compress.prune_l1(model, 0.5)
    change = compress.compare_cost(model, pruned)
    assert change.params_after < 0.7 * change.params_before and change.macs_after < 0.9 * change.macs_before
    assert change.params_after == params(pruned)
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    smaller = [
        n for n, m in pruned.named_modules() if isinstance(m, nn.Conv2d) and m.out_channels < convs[n].out_channels
    ]
    assert len(smaller) >= 2
    assert all(m.weight.shape[0] == m.out_channels for m in pruned.modules() if isinstance(m, nn.Conv2d))
    # Exactness: the pruned model computes what the original computes with those channels silenced.
    graph = compress.ChannelGraph(model, size)
    removed = set()
    for members in _components(graph).values():
        try:
            removed |= graph.select(members, 0.5)
        except ValueError:
            pass
    x = torch.randn(3, *size)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), masked(model, graph, removed)(x), atol=1e-5, rtol=1e-4)


def _components(graph):
    components = {}
    for name, component in graph.layers().items():
        components.setdefault(component, []).append(name)
    return components


def test_removed_filters_are_those_of_smallest_l1_norm():
    model = lightnets.create_model("smallcnn_3x2", in_chans=1).eval()
    conv = model.features.conv2.conv
    with torch.no_grad():
        conv.weight.mul_(
            torch.linspace(2.0, 0.1, 64).view(64, 1, 1, 1) / conv.weight.abs().sum((1, 2, 3), keepdim=True)
        )
    pruned = compress.prune_l1(model, {"features.conv2.conv": 0.25})
    assert pruned.features.conv2.conv.weight.shape == (48, 32, 3, 3)
    torch.testing.assert_close(pruned.features.conv2.conv.weight, conv.weight[:48], rtol=0, atol=0)
    torch.testing.assert_close(pruned.features.conv2.bn.running_var, model.features.conv2.bn.running_var[:48])
    assert pruned.features.conv3.conv.weight.shape == (128, 48, 3, 3)
    assert pruned.features.conv1.conv.weight.shape == (32, 1, 3, 3)  # not named: untouched


def test_classifier_and_depthwise_layers_follow_the_pruned_conv():
    model = lightnets.create_model("mobilenet_v1_025", small_input=True, num_classes=10)
    pruned = compress.prune_l1(model, {"blocks.11.conv_pw": 0.5, "blocks.12.conv_pw": 0.25})
    # α = 0.25: blocks 11 and 12 have 256 filters each.
    assert pruned.blocks[12].conv_dw.weight.shape == (128, 1, 3, 3) and pruned.blocks[12].conv_dw.groups == 128
    assert pruned.blocks[12].bn_dw.num_features == 128 and pruned.blocks[12].conv_pw.weight.shape == (192, 128, 1, 1)
    assert pruned.classifier.weight.shape == (10, 192) and pruned.num_features == 192
    pruned.reset_classifier(5)
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_shufflenet_joined_and_grouped_layers_stay_consistent():
    model = lightnets.create_model("shufflenet_g3", small_input=True, num_classes=10)
    pruned = compress.prune_l1(model, 0.5)
    unit = pruned.stage3[1]
    # Stage 3 at g = 3: 480 channels, bottleneck 120 = a 3 × 40 shuffle grid. conv2's groups read 40 shuffled
    # channels each, so grid columns 13 and 26 straddle two groups and stay; the other 38 columns form three
    # runs of 13, 12, 13, each losing round(0.5 · n) = 6: 40 − 18 = 22 columns, 66 channels.
    assert (unit.conv1.in_channels, unit.conv1.out_channels, unit.conv1.groups) == (240, 66, 3)
    assert (unit.conv_dw.groups, unit.conv2.in_channels, unit.conv2.out_channels) == (66, 66, 240)
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="joined by an add and must be pruned with one ratio"):
        compress.prune_l1(model, {"stage2.1.conv2": 0.5, "stage2.2.conv2": 0.25})


def test_plain_sequential_prunes_and_its_output_layer_is_refused():
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 4)
    )
    pruned = compress.prune_l1(model, {"0": 0.5}, input_size=(3, 8, 8))
    assert pruned[0].out_channels == 8 and pruned[3].in_channels == 8
    assert pruned(torch.randn(2, 3, 8, 8)).shape == (2, 4)
    with pytest.raises(ValueError, match="reach the model's input or output"):
        compress.prune_l1(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), {"0": 0.5}, input_size=(3, 8, 8))


def test_pruning_errors_name_the_problem():
    model = lightnets.create_model("mobilenet_v1_025", small_input=True)
    with pytest.raises(ValueError, match=r"no prunable conv named 'blocks.0.conv_pww'.*'blocks.0.conv_pw'"):
        compress.prune_l1(model, {"blocks.0.conv_pww": 0.5})
    with pytest.raises(ValueError, match="'blocks.0.conv_dw' .*depthwise.* produces no filters"):
        compress.prune_l1(model, {"blocks.0.conv_dw": 0.5})
    for ratio in (1.0, -0.1, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match=r"ratio must be a fraction of filters to remove in \[0, 1\)"):
            compress.prune_l1(model, ratio)
    with pytest.raises(ValueError, match=r"ratio\['stem.conv'\] must be"):
        compress.prune_l1(model, {"stem.conv": 1})
    with pytest.raises(ValueError, match="would leave zero channels .*8 prunable per group, 8 removed"):
        compress.prune_l1(model, {"stem.conv": 0.97})


# ---------------------------------------------------------------------------------------------
# Fine-tuning, distillation, sensitivity, iterative schedule
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_pruned_model_recovers_accuracy_after_a_short_finetune(trained, fmnist_test):
    """Recorded run: prune the trained 3+2 CNN by half, fine-tune 100 steps on test images 0–4,999, score
    8,000–9,999."""
    tune_set = load_dataset("fashion_mnist", "test", limit=5000)
    held_out = copy.copy(fmnist_test)
    held_out.images, held_out.labels = fmnist_test.images[8000:], fmnist_test.labels[8000:]
    before = compress.top1_accuracy(trained, held_out)
    pruned = compress.prune_l1(trained, 0.5)
    pruned_top1 = compress.top1_accuracy(pruned, held_out)
    compress.finetune(pruned, tune_set, epochs=100 * 64 / 5000, batch_size=64, lr=0.01)
    after = compress.top1_accuracy(pruned, held_out)
    # Measured: 92.95% → 22.3% pruned → 89.0% after the 100 steps, as after 150 (88.9% here, 89.15% when this test
    # was written); the bounds leave ~1 point for other CPUs' numerics.
    assert pruned_top1 < before - 50
    assert after > before - 5, (before, pruned_top1, after)


@pytest.mark.slow
def test_distillation_moves_the_student_toward_the_teacher(trained, fmnist_test):
    student = lightnets.create_model("smallcnn_3x2", in_chans=1)
    student.pretrained_cfg.update(mean=(0.286,), std=(0.353,))
    x = inputs(trained, fmnist_test.images[:500])

    def kl_to_teacher():
        with torch.no_grad():
            teacher_p = F.log_softmax(trained(x), 1)
            return F.kl_div(
                F.log_softmax(student.eval()(x), 1), teacher_p, log_target=True, reduction="batchmean"
            ).item()

    before = kl_to_teacher()
    compress.finetune(student, load_dataset("fashion_mnist", limit=1280), epochs=2, batch_size=64, lr=0.05,
                     teacher=trained, distill_alpha=1.0, temperature=2.0)
    after = kl_to_teacher()
    assert after < 0.6 * before, (before, after)  # measured: 1.68 → 0.56 nats in these 40 steps


@pytest.mark.slow
def test_sensitivity_scan_rows_table_and_plot(trained, tmp_path, capsys):
    data = load_dataset("fashion_mnist", "test", limit=300)
    rows = compress.sensitivity_scan(trained, data, ratios=(0.25, 0.75), plot=str(tmp_path / "scan.png"))
    assert [(r["layer"], r["ratio"]) for r in rows] == [
        (f"features.conv{k}.conv", ratio) for k in (1, 2, 3) for ratio in (0.25, 0.75)
    ]
    base = compress.top1_accuracy(trained, data)
    for row in rows:
        assert row["drop"] == pytest.approx(base - row["top1"])
        assert row["top1"] == pytest.approx(
            compress.top1_accuracy(compress.prune_l1(trained, {row["layer"]: row["ratio"]}), data)
        )
    # Li et al. Fig. 2b: removing more filters of a layer costs more accuracy.
    assert all(rows[i]["top1"] >= rows[i + 1]["top1"] for i in (0, 2, 4))
    assert (tmp_path / "scan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "features.conv2.conv" in capsys.readouterr().out


@pytest.mark.slow
def test_sensitivity_scan_reports_a_ratio_a_layer_cannot_take_alone(capsys):
    # shufflenet_g8_050's first bottleneck: 48 channels, an 8 × 6 shuffle grid. Each grid column becomes 8
    # consecutive inputs of conv2, whose groups read 6 each, so every column straddles two groups unevenly
    # and none can go. A later bottleneck can lose filters.
    model = lightnets.create_model("shufflenet_g8_050", small_input=True, in_chans=1, num_classes=10).eval()
    data = load_dataset("fashion_mnist", "test", limit=20)
    rows = compress.sensitivity_scan(model, data, ratios=(0.5,), layers=["stage2.0.conv1", "stage3.1.conv1"])
    assert [(r["layer"], r["top1"] is None, r["drop"] is None) for r in rows] == [
        ("stage2.0.conv1", True, True), ("stage3.1.conv1", False, False)]
    assert "without leaving the groups of a grouped conv uneven" in rows[0]["error"]
    assert "without leaving the groups of a grouped conv uneven" in capsys.readouterr().out


@pytest.mark.slow
def test_sensitivity_scan_covers_each_joined_set_once():
    # ShuffleNet's trunk: the stem and each unit's conv2 write channels that residual adds join (4 + 8 + 4 units,
    # plus the stem), so pruning one prunes all 17; the scan lists the set once, under its first conv.
    model = lightnets.create_model("shufflenet_g3_050", small_input=True, in_chans=1, num_classes=10).eval()
    sets = compress.joined_layers(model)
    trunk = ["stem.conv"] + [f"stage{s}.{u}.conv2" for s, units in ((2, 4), (3, 8), (4, 4)) for u in range(units)]
    assert sets["stem.conv"] == trunk
    assert all(members == [first] for first, members in sets.items() if first != "stem.conv") and len(sets) == 17
    data = load_dataset("fashion_mnist", "test", limit=20)
    rows = compress.sensitivity_scan(model, data, ratios=(0.25,), verbose=False)
    assert [r["layer"] for r in rows] == list(sets)
    assert rows[0]["joined"] == trunk[1:] and rows[1]["joined"] == []
    pruned = compress.prune_l1(model, {"stage3.4.conv2": 0.25})  # any member prunes the set: the 12-filter stem loses 3
    assert (
        pruned.stem.conv.out_channels == 9 and pruned.stage4[3].conv2.out_channels < model.stage4[3].conv2.out_channels
    )


@pytest.mark.slow
def test_shuffle_columns_that_straddle_groups_still_let_the_others_prune_evenly():
    # shufflenet_g3_050 stage2.0: conv1 has 30 filters, a 3 × 10 shuffle grid; column b lands on conv2 inputs
    # 3b..3b+2 and conv2's groups read 10 each, so columns 3 and 6 straddle two groups and stay. The others
    # form runs of 3, 2 and 3 columns in groups 0, 1, 2.
    model = lightnets.create_model("shufflenet_g3_050", small_input=True, in_chans=1, num_classes=10).eval()
    expected = {
        # each run alone would lose round(1.5), round(1.0), round(1.5) = 2, 1, 2: uneven, so each loses
        # round(0.5 · 8/3) = 1
        0.5: 21,
        0.75: 12,  # round(2.25), round(1.5), round(2.25) = 2, 2, 2 columns: 18 of 30 filters go
    }
    for ratio, filters in expected.items():
        unit = compress.prune_l1(model, {"stage2.0.conv1": ratio}).stage2[0]
        assert unit.conv1.out_channels == unit.conv_dw.groups == unit.conv2.in_channels == filters
        assert unit.conv2.groups == 3 and unit.conv2.weight.shape == (108, filters // 3, 1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every conv of the 0.5x g3 model prunes at these ratios, none is skipped
        for ratio in (0.25, 0.5, 0.75):
            assert compress.prune_l1(model, ratio)(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["shufflenet_g4", "shufflenet_g8"])
def test_overlapping_group_layouts_prune_evenly_through_the_integer_program(name):
    # g=4's trunk: stage2.0.conv2 writes 4 groups of 62 channels after the 24-channel stem, the next conv1s
    # read 4 groups of 68, stage 3 and 4 double both. No per-cell rounding keeps all of these even; the
    # integer program does (e.g. 25%: 4 of the stem's 24, 16 per conv2 group, 17 per conv1 group).
    model = randomized(name, {"small_input": True, "num_classes": 10})
    trunk = model.stage4[-1].conv2.out_channels
    for ratio in (0.25, 0.5, 0.75):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing skipped
            pruned = compress.prune_l1(model, ratio)
        assert pruned.stem.conv.out_channels < model.stem.conv.out_channels
        if name == "shufflenet_g4" and ratio == 0.25:
            assert (pruned.stem.conv.out_channels, pruned.stage2[0].conv2.out_channels,
                    pruned.stage2[1].conv1.in_channels) == (24 - 4, 248 - 4 * 16, 272 - 4 * 17)
        kept = pruned.stage4[-1].conv2.out_channels
        assert abs(kept / trunk - (1 - ratio)) < 0.02, (ratio, kept, trunk)
        for module in pruned.modules():
            if isinstance(module, nn.Conv2d) and 1 < module.groups < module.in_channels:
                assert module.in_channels % module.groups == 0 and module.out_channels % module.groups == 0
        assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_without_scipy_overlapping_groups_are_skipped_with_a_warning(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "scipy.optimize", None)  # import fails as if scipy were not installed
    model = lightnets.create_model("shufflenet_g4", small_input=True, num_classes=10).eval()
    with pytest.warns(UserWarning) as caught:
        pruned = compress.prune_l1(model, 0.25)
    messages = [str(w.message) for w in caught]
    assert any("install scipy" in m for m in messages)
    assert any(m.startswith("prune_l1: skipped stem.conv, stage2.0.conv2") for m in messages)
    assert pruned.stem.conv.out_channels == model.stem.conv.out_channels
    assert pruned.stage2[0].conv1.out_channels < model.stage2[0].conv1.out_channels  # the rest still prunes


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_finetune_trains_on_the_device_the_model_is_on(trained):
    student = copy.deepcopy(trained).cuda()
    before = [p.detach().clone() for p in student.parameters()]
    record = compress.finetune(student, load_dataset("fashion_mnist", limit=256), epochs=1, batch_size=64,
                              teacher=copy.deepcopy(trained).cuda())
    assert record["steps"] == 4 and math.isfinite(record["loss"])
    assert all(p.device.type == "cuda" for p in student.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))


def test_iterative_prune_applies_each_step_to_the_last_model():
    model = lightnets.create_model("smallcnn_3x2", in_chans=1)
    tuned = []
    models = compress.iterative_prune(model, (0.25, {"features.conv3.conv": 0.5}), tuned.append)
    assert tuned == models
    assert [m.features.conv3.conv.out_channels for m in models] == [96, 48]
    assert [m.features.conv1.conv.out_channels for m in models] == [24, 24]


@pytest.mark.parametrize("name, kwargs, convert", [
    ("mobilenet_v1_025", {"small_input": True}, None),
    ("smallcnn_3x2", {}, ["features.conv2"]),
    # grouped convs keep their groups; the integer program's layout
    ("shufflenet_v1", {"groups": 4, "scale": 0.5, "small_input": True}, None),
    ("sepcnn_regular", {"small_input": True}, "deepest:2"),
])
@pytest.mark.slow
def test_a_pruned_or_converted_model_saves_and_loads_back(name, kwargs, convert, tmp_path):
    import json

    torch.manual_seed(0)
    model = lightnets.create_model(name, num_classes=10, in_chans=1, img_size=28, **kwargs)
    with torch.no_grad():  # BN statistics that a lost or misplaced buffer would show in the logits
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    derived = compress.to_separable(model, convert) if convert else model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # layers that cannot be pruned are skipped with a warning
        derived = compress.prune_l1(derived, 0.5).eval()
    folder = lightnets.save_pretrained(derived, tmp_path / "derived", metrics={"top1": 1.0})
    info = json.loads((folder / "config.json").read_text())["lightnets"]
    assert info["restructured"] is True
    assert info["params"] == sum(p.numel() for p in derived.parameters()) < sum(p.numel() for p in model.parameters())
    assert info["macs"] == count_macs(derived, (1, 28, 28))
    loaded = lightnets.create_model(name, pretrained=True, pretrained_path=str(folder)).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), derived(x), atol=0, rtol=0)
    assert loaded.num_features == derived.num_features
    checkpoint = lightnets.load_checkpoint(
        lightnets.create_model(name, num_classes=10, in_chans=1, img_size=28, **kwargs), folder
    ).eval()  # also what `python -m eval --checkpoint` loads with
    with torch.no_grad():
        torch.testing.assert_close(checkpoint(x), derived(x), atol=0, rtol=0)
    with pytest.raises(ValueError, match="does not fit"):  # a model built for other classes is an error, not adapted
        lightnets.load_checkpoint(
            lightnets.create_model(name, num_classes=5, in_chans=1, img_size=28, **kwargs), folder
        )
    # fine-tuning the compressed model for another task: a new head, 3-channel input
    adapted = lightnets.create_model(
        name, pretrained=True, pretrained_path=str(folder), num_classes=5, in_chans=3
    ).eval()
    assert adapted(torch.randn(2, 3, 28, 28)).shape == (2, 5)
    assert adapted.get_classifier().in_features == derived.get_classifier().in_features


def test_a_changed_model_no_longer_claims_the_weights_it_came_from():
    model = lightnets.create_model(SMALLCNN, pretrained=True)
    assert model.pretrained_cfg["metrics"]["top1"] == 92.35 and model.pretrained_cfg["sha256"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        changed = [compress.to_separable(model, ["features.conv2"]), compress.prune_l1(model, 0.25),
                   compress.prune_l1(compress.to_separable(model, ["features.conv2"]), 0.25)]
    for derived in changed:
        cfg = derived.pretrained_cfg
        assert cfg["derived_from"] == SMALLCNN and cfg["tag"] is None
        assert not {"sha256", "metrics", "file", "params", "macs"} & set(cfg)
        # still how to feed it
        assert cfg["mean"] == model.pretrained_cfg["mean"] and cfg["architecture"] == "smallcnn_3x2"
    assert model.pretrained_cfg["metrics"]["top1"] == 92.35  # the original is untouched
