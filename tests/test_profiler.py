"""The MAC profiler: MobileNet v1's Table 2, three independent counts agreeing over the whole zoo,
a model small enough to count by hand, and the command line's formats read back."""
import csv
import io
import json
import os
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import forkserver

import lightnets
from lightnets.cli.flops import main
from lightnets.profiler import count_macs, layer_type, profile
from representatives import FAMILY_REPRESENTATIVES, SOURCE_LAYOUTS

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------
# MobileNet v1, Table 2: resource per layer type, 1.0 MobileNet-224 (% of mult-adds, % of params)
# ---------------------------------------------------------------------------------------------
PAPER_TABLE_2 = {
    "pointwise 1x1": (94.86, 74.59),
    "depthwise 3x3": (3.06, 1.06),
    # Printed as 1.19%, but the column then sums to 99.29%: the stem's 3·3·3·32·112² = 10,838,016
    # mult-adds are 1.91% of 568.7 M, so the cell has its digits transposed. We assert 1.91.
    "conv 3x3": (1.91, 0.02),
    "fully connected": (0.18, 24.33),
}


@pytest.fixture(scope="module")
def mobilenet_profile():
    return profile(lightnets.create_model("mobilenet_v1_100"), (3, 224, 224))


def test_mobilenet_v1_table2_by_type(mobilenet_profile):
    rows = {row["type"]: row for row in mobilenet_profile.by_type}
    assert list(rows) == [*PAPER_TABLE_2, "other"]  # sorted by MACs, "other" last
    for kind, (macs_pct, params_pct) in PAPER_TABLE_2.items():
        assert rows[kind]["macs_pct"] == pytest.approx(macs_pct, abs=0.5), kind
        assert rows[kind]["params_pct"] == pytest.approx(params_pct, abs=0.5), kind
    assert rows["conv 3x3"]["macs"] == 3 * 3 * 3 * 32 * 112 * 112
    assert rows["conv 3x3"]["macs_pct"] == pytest.approx(1.9056, abs=1e-4)
    # The paper counts MACs of convs + FC only: BN is in "other" with its params and no MACs.
    assert rows["other"]["macs"] == 0 and rows["other"]["params"] == 21_888
    # Its params column leaves BN out; shares over conv + FC params match it to 0.05 points.
    conv_fc_params = mobilenet_profile.params - rows["other"]["params"]
    for kind, (_, params_pct) in PAPER_TABLE_2.items():
        assert 100 * rows[kind]["params"] / conv_fc_params == pytest.approx(params_pct, abs=0.05), kind


def test_mobilenet_v1_totals(mobilenet_profile):
    assert mobilenet_profile.total_macs == 568_740_352  # Table 1 / 6: 569 M mult-adds
    # fvcore's all-ops total adds BN (2 per element, affine) and the global average pool (1 per element).
    bn_macs = 2 * sum(bn.num_features * side * side for bn, side in _bn_sides())
    assert mobilenet_profile.total_macs_all == 568_740_352 + bn_macs + 1024 * 7 * 7
    assert mobilenet_profile.params == 4_231_976
    assert sum(row["macs"] for row in mobilenet_profile.by_type) == mobilenet_profile.total_macs
    assert sum(row["params"] for row in mobilenet_profile.by_type) == mobilenet_profile.params
    assert mobilenet_profile.skipped_ops == {}  # ReLU is ignored by fvcore, nothing else lacks a formula


def _bn_sides():
    """Every BatchNorm of 1.0 MobileNet-224 with the side of the map it normalises (Table 1)."""
    model = lightnets.create_model("mobilenet_v1_100")
    yield model.stem.bn, 112
    side = 112
    for block in model.blocks:
        side //= block.conv_dw.stride[0]
        yield block.bn_dw, side
        yield block.bn_pw, side


# ---------------------------------------------------------------------------------------------
# Three counts of conv + FC mult-adds agree, for every family and source layout, and with count_macs of the
# network on the meta device (every registered name's count is recorded in tests/expect/registered_models.json)
# ---------------------------------------------------------------------------------------------


def closed_form_macs(model: nn.Module, input_size) -> int:
    """Sum of the papers' formulas over every conv and FC layer, with output sizes from forward hooks."""
    total = 0

    def count(module, _inputs, output):
        nonlocal total
        if isinstance(module, nn.Linear):
            total += module.in_features * module.out_features * (output.numel() // output.shape[-1])
            return
        m, n, g = module.in_channels, module.out_channels, module.groups
        dk_h, dk_w = module.kernel_size
        df2 = output.shape[-2] * output.shape[-1]
        if g == 1:
            total += dk_h * dk_w * m * n * df2  # standard conv, MobileNet v1 Eq. 1
        elif g == m == n:
            total += dk_h * dk_w * m * df2  # depthwise, Eq. 3 (its pointwise half is a g == 1 conv)
        elif (dk_h, dk_w) == (1, 1):
            total += m * n * df2 // g  # grouped 1x1, ShuffleNet v1 Sec. 3.2
        else:
            total += dk_h * dk_w * m * n * df2 // g

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    handles = [layer.register_forward_hook(count) for layer in layers]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_size))
    finally:
        for handle in handles:
            handle.remove()
    return total


def flop_counter_mode_macs(model: nn.Module, input_size) -> int:
    """torch's own counter: 2 FLOPs per multiply-add of aten.convolution / mm / addmm, bias adds not counted."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.zeros(1, *input_size))
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2


def meta_device_macs(name: str, kwargs: dict, input_size) -> int:
    """``count_macs`` of the same configuration built on the meta device (what scripts/render_docs.py counts)."""
    with torch.device("meta"):
        model = lightnets.create_model(name, **kwargs)
    return count_macs(model, input_size)


def _assert_three_way_agreement(model: nn.Module, input_size, meta_build: tuple[str, dict]) -> None:
    """fvcore, the closed-form formulas and torch's counter agree; and so does the count of the same configuration
    on the meta device (``meta_build``: its name and kwargs), which runs no arithmetic."""
    result = profile(model, input_size)
    expected = closed_form_macs(model, input_size)
    assert result.total_macs == expected
    assert flop_counter_mode_macs(model, input_size) == expected
    assert meta_device_macs(*meta_build, input_size) == expected
    assert result.total_macs_all > expected  # + BN, pooling
    assert sum(row["macs"] for row in result.by_type) == result.total_macs
    assert sum(row["params"] for row in result.by_type) == result.params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name, kwargs", [(name, {}) for name in FAMILY_REPRESENTATIVES] + list(SOURCE_LAYOUTS.values())
)
def test_counts_agree_small_input(name, kwargs):
    kwargs = dict(small_input=True, img_size=32, num_classes=10, **kwargs)
    _assert_three_way_agreement(lightnets.create_model(name, **kwargs), (3, 32, 32), (name, kwargs))


@pytest.mark.parametrize("name", ["mobilenet_v1_100", "shufflenet_g3"])
@pytest.mark.slow
def test_counts_agree_default_size(name):
    model = lightnets.create_model(name)
    input_size = model.pretrained_cfg["input_size"]
    _assert_three_way_agreement(model, input_size, (name, {}))
    assert count_macs(model, input_size) == profile(model, input_size).total_macs  # the API other code uses
    assert count_macs(model, input_size, ops="all") == profile(model, input_size).total_macs_all


# ---------------------------------------------------------------------------------------------
# A model counted by hand
# ---------------------------------------------------------------------------------------------


def tiny_model() -> nn.Module:
    """3x16x16 → conv 3x3/s2 → BN → ReLU → depthwise-separable (3x3 dw, 1x1 pw) → pool → FC 16→10."""
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),  # 8x8 out: 3·3·3·8·64 = 13,824 MACs, 216 params
        bn=nn.BatchNorm2d(8),  # 16 params; all ops: 2 per element = 1,024
        act=nn.ReLU(),
        block=nn.Sequential(OrderedDict(
            dw=nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),  # 3·3·8·64 = 4,608 MACs, 72 params
            pw=nn.Conv2d(8, 16, 1, bias=False),  # 8·16·64 = 8,192 MACs, 128 params
        )),
        pool=nn.AdaptiveAvgPool2d(1),  # all ops: 1 per input element = 16·64 = 1,024
        flatten=nn.Flatten(),
        fc=nn.Linear(16, 10),  # 160 MACs (bias add not counted), 170 params
    ))


def test_hand_counted_model():
    result = profile(tiny_model(), (3, 16, 16))
    assert result.total_macs == 13_824 + 4_608 + 8_192 + 160 == 26_784
    assert result.total_macs_all == 26_784 + 1_024 + 1_024
    assert result.params == 216 + 16 + 72 + 128 + 170 == 602
    assert [(row["type"], row["macs"], row["params"]) for row in result.by_type] == [
        ("conv 3x3", 13_824, 216),
        ("pointwise 1x1", 8_192, 128),
        ("depthwise 3x3", 4_608, 72),
        ("fully connected", 160, 170),
        ("other", 0, 16),
    ]
    assert result.by_type[0]["macs_pct"] == pytest.approx(100 * 13_824 / 26_784, abs=1e-4)
    modules = {row["module"]: row for row in result.by_module}
    assert modules["block"]["macs"] == 4_608 + 8_192 and modules["block"]["params"] == 200
    assert modules["block"]["depth"] == 1 and modules["block.dw"]["depth"] == 2
    assert modules["block.dw"]["type"] == "depthwise 3x3" and modules["bn"]["type"] == "BatchNorm2d"
    assert modules[""]["macs"] == 26_784 and modules[""]["macs_pct"] == 100.0


def test_all_ops_breakdown():
    result = profile(tiny_model(), (3, 16, 16), ops="all")
    other = result.by_type[-1]
    assert other["type"] == "other" and other["macs"] == 1_024 + 1_024  # BN + average pool
    assert sum(row["macs"] for row in result.by_type) == result.macs == result.total_macs_all
    assert {row["module"]: row["macs"] for row in result.by_module}["bn"] == 1_024


@pytest.mark.parametrize("module, expected", [
    (nn.Conv2d(16, 32, 3), "conv 3x3"),
    (nn.Conv2d(16, 32, (1, 7)), "conv 1x7"),
    (nn.Conv2d(16, 32, 1), "pointwise 1x1"),
    (nn.Conv2d(16, 16, 5, groups=16), "depthwise 5x5"),
    (nn.Conv2d(16, 32, 3, groups=16), "depthwise 3x3"),  # channel multiplier 2
    (nn.Conv2d(240, 60, 1, groups=3), "grouped 1x1"),
    (nn.Conv2d(64, 64, 3, groups=32), "grouped conv 3x3"),
    (nn.Linear(8, 4), "fully connected"),
    (nn.BatchNorm2d(8), "other"),
    (nn.MaxPool2d(2), "other"),
])
def test_layer_type(module, expected):
    assert layer_type(module) == expected


def test_profile_is_clean_and_restores_the_model(recwarn, capfd):
    model = lightnets.create_model("shufflenet_g3", small_input=True, img_size=32).train()
    result = profile(model)  # input size from the model's cfg
    assert result.input_size == (3, 32, 32)
    assert model.training
    # fvcore has no formula for these: reported, not warned or logged.
    assert result.skipped_ops == {"aten::add": 13, "aten::avg_pool2d": 3}
    assert len(recwarn) == 0
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("kwargs, message", [
    ({"input_size": (3, 0, 32)}, "input_size must be (C, H, W) of positive integers, got (3, 0, 32)"),
    ({"input_size": (3, 32, 32), "ops": "conv"}, "ops must be 'conv+fc' or 'all', got 'conv'"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as err:
        profile(tiny_model(), **kwargs)
    assert message in str(err.value)


def test_input_size_is_required_without_a_cfg():
    with pytest.raises(ValueError, match="input_size is required"):
        profile(tiny_model())


@pytest.mark.parametrize("input_size, message", [
    ((3, 8, 8), "MobileNetV1 takes images of at least 32x32, got 8x8"),
    ((1, 224, 224), "MobileNetV1 was built for in_chans=3 but the input has 1 channels"),
])
def test_inputs_the_model_refuses_are_not_counted(input_size, message):
    """forward() skips its input check while fvcore traces it: the profiler runs the check itself."""
    with pytest.raises(ValueError) as err:
        count_macs(lightnets.create_model("mobilenet_v1_025"), input_size)
    assert message in str(err.value)


def test_a_meta_device_model_is_counted_as_given_back():
    """Counting on the meta device leaves the model as it was: its mode, its BatchNorm layers' own forward."""
    with torch.device("meta"):
        model = lightnets.create_model("mobilenet_v1_025").train()
    assert count_macs(model, (3, 224, 224)) == 41_030_272  # MobileNet v1 Table 6: 41 M mult-adds at 0.25×
    assert model.training and all("forward" not in layer.__dict__ for layer in model.modules())
    with pytest.raises(ValueError, match="only ops='conv\\+fc' can be counted"):
        count_macs(model, (3, 224, 224), ops="all")


def test_public_api():
    assert lightnets.profile is profile and lightnets.count_macs is count_macs


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_by_type_json_parses_back(capsys, mobilenet_profile):
    code, out, err = _cli(capsys, "--model", "mobilenet_v1_100", "--by-type", "--format", "json")
    assert code == 0 and err == ""
    rows = json.loads(out)
    assert rows == [{key: row[key] for key in ("type", "macs", "macs_pct", "params", "params_pct")}
                    for row in mobilenet_profile.by_type]


def test_cli_by_type_csv_parses_back(capsys, mobilenet_profile):
    code, out, _ = _cli(capsys, "--model", "mobilenet_v1_100", "--by-type", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["type"], int(r["macs"]), int(r["params"]), float(r["macs_pct"])) for r in rows] == [
        (r["type"], r["macs"], r["params"], r["macs_pct"]) for r in mobilenet_profile.by_type]


def _markdown_rows(text):
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]


def test_cli_by_type_table_and_markdown(capsys):
    code, out, _ = _cli(capsys, "--model", "mobilenet_v1_100", "--by-type", "--format", "md")
    assert code == 0
    assert out.startswith("mobilenet_v1_100 @ 3x224x224: 568.74 MMACs conv+FC, 578.88 MMACs all ops, 4,231,976 params")
    rows = {row["layer type"]: row for row in _markdown_rows(out)}
    assert rows["pointwise 1x1"]["% MACs"] == "94.86" and rows["fully connected"]["params"] == "1,025,000"
    assert rows["**total**"]["MMACs conv+FC"] == "**568.74**"
    code, out, _ = _cli(capsys, "--model", "mobilenet_v1_100", "--by-type")
    lines = out.splitlines()
    assert lines[2].split() == ["layer", "type", "MMACs", "conv+FC", "%", "MACs", "params", "%", "params"]
    assert lines[4].split() == ["pointwise", "1x1", "539.49", "94.86", "3,139,584", "74.19"]
    assert len({len(line) for line in lines[2:5]}) == 1  # aligned columns


def test_cli_tree_depth(capsys):
    code, out, _ = _cli(capsys, "--model", "mobilenet_v1_100", "--depth", "1", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and [row["module"] for row in rows] == ["", "stem", "blocks", "classifier"]
    assert sum(row["macs"] for row in rows[1:]) == rows[0]["macs"] == 568_740_352


def test_cli_glob_summary_markdown(capsys):
    code, out, _ = _cli(capsys, "--model", "mobilenet_v1_0[25]*", "--model", "mobilenet_v1_075", "--format", "md")
    assert code == 0
    rows = _markdown_rows(out)
    assert [row["model"] for row in rows] == ["mobilenet_v1_025", "mobilenet_v1_050", "mobilenet_v1_075"]
    # Table 6: 41 / 149 / 325 M mult-adds, 0.5 / 1.3 / 2.6 M params.
    assert [row["MMACs conv+FC"] for row in rows] == ["41.03", "149.50", "325.40"]
    assert [row["params"] for row in rows] == ["470,072", "1,331,592", "2,585,560"]
    assert [row["MMACs all ops"] for row in rows] == ["43.56", "154.56", "333.00"]


def test_cli_model_kwargs(capsys):
    code, out, _ = _cli(capsys, "--model", "mobilenet_v1_100", "--small-input", "--img-size", "32",
                        "--in-chans", "1", "--num-classes", "10", "--format", "json", "--model", "mobilenet_v1_050")
    rows = json.loads(out)
    assert code == 0 and rows[0]["input_size"] == [1, 32, 32]
    assert rows[0]["params"] == 4_231_976 - 1024 * 990 - 990 - 32 * 2 * 9  # 10 classes, 1-channel stem


@pytest.mark.parametrize("argv, message", [
    (["--model", "mobilenetv1"], "unknown model 'mobilenetv1'; did you mean mobilenet_v1"),
    (["--model", "resnet*"], "no model matches 'resnet*'"),
    (["--model", "mobilenet_v1_0*", "--by-type"], "--by-type describes one model; 3 match mobilenet_v1_0*"),
    (["--model", "mobilenet_v1_100", "--num-classes", "-1"], "num_classes must be an integer >= 0"),
    (["--model", "mobilenet_v1_025", "--img-size", "8"], "MobileNetV1 takes images of at least 32x32, got img_size=8"),
])
def test_cli_errors_are_one_line(capsys, argv, message):
    code, out, err = _cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


@pytest.mark.slow
def test_cli_module_output_is_clean():
    """``python -m lightnets.flops`` in a fresh process: fvcore's import and trace warnings are silenced,
    the operators it skipped are summarised in one line on stderr. Forked from a process that has imported torch,
    timm and lightnets (tests/forkserver.py), not fvcore (``import lightnets`` leaves the profiler to first use)."""
    result = forkserver.server(os.environ).run(
        ["-m", "lightnets.flops", "--model", "shufflenet_g3", "--by-type", "--format", "csv"], cwd=ROOT, env=os.environ
    )
    assert result.returncode == 0, result.stderr
    assert (
        result.stderr
        == "not counted (no fvcore formula, 0 MACs): aten::add x13, aten::avg_pool2d x3, aten::max_pool2d x1\n"
    )
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    # ShuffleNet spends its MACs in grouped 1x1 convs (87%); only stage 2's first unit has a plain 1x1.
    assert [row["type"] for row in rows] == ["grouped 1x1", "conv 3x3", "pointwise 1x1", "depthwise 3x3",
                                             "fully connected", "other"]
    assert float(rows[0]["macs_pct"]) == pytest.approx(87.33, abs=0.01)
    assert sum(float(row["macs_pct"]) for row in rows) == pytest.approx(100, abs=1e-3)
