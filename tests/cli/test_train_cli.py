"""The training command line (lightnets.cli.train) without training: its help, the settings and arguments it
refuses (each with a one-line error), --model-arg / --finetune-from / --teacher resolution, the log a resume
reconciles."""
import argparse
import json
from argparse import Namespace
from pathlib import Path

import pytest
import torch

import lightnets
import lightnets.cli.train
import lightnets.cli.train_model
import lightnets.deploy
from lightnets.cli.train import train
from lightnets.cli.train_model import build_model, parse_model_args
from lightnets.publish import save_pretrained


@pytest.mark.parametrize(
    "teacher", ["smallcnn_3x2.fmnist,", ",smallcnn_3x2.fmnist", "smallcnn_3x2.fmnist,,vgg11_bn.fmnist"]
)
def test_a_teacher_list_with_an_empty_name_is_refused(teacher):
    with pytest.raises(ValueError, match="an empty name between commas"):
        lightnets.cli.train_model.teacher_sources(teacher)


def test_a_teacher_file_without_a_config_is_refused(tmp_path):
    folder = save_pretrained(lightnets.create_model("smallcnn_3x2"), tmp_path / "teacher")
    (folder / "config.json").unlink()
    with pytest.raises(ValueError, match="no config.json beside it names the architecture"):
        lightnets.cli.train_model.build_teacher(str(folder / "model.safetensors"))


def test_parse_model_args():
    assert parse_model_args(["alpha=0.5", "small_input=true", "act_layer=relu6", "x=True"]) == \
        {"alpha": 0.5, "small_input": True, "act_layer": "relu6", "x": True}
    assert parse_model_args(["a=off", "b=No", "c=yes", "d=ON"]) == {"a": False, "b": False, "c": True, "d": True}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_model_args(["alpha"])


def test_compile_without_a_cpp_compiler_is_refused_before_any_work(monkeypatch):
    monkeypatch.setattr(lightnets.deploy, "cpp_compiler", lambda: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(
        ValueError, match=r"--compile on the CPU needs a C\+\+ compiler .* drop --compile to train eagerly"
    ):
        train(["--model", "mobilenet_v1_025", "--compile", "--dataset", "no-such-dataset"])


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--lr", "-0.1"], "--lr must be > 0, got -0.1"),
    (["--distill-alpha", "1.5"], r"--distill-alpha must be in \[0, 1\], got 1.5"),
    (["--label-smoothing", "1"], r"--label-smoothing must be in \[0, 1\), got 1.0"),
    (["--limit", "0"], "--limit must be >= 1, got 0"),
    (["--layer-decay", "0"], r"--layer-decay must be in \(0, 1\], got 0.0"),
    (["--reprob", "1.5"], r"--reprob must be in \[0, 1\], got 1.5"),
    (["--mixup", "-0.2"], r"--mixup must be >= 0 \(0: off\), got -0.2"),
    (["--mix-prob", "2"], r"--mix-prob must be in \[0, 1\], got 2.0"),
])
def test_impossible_settings_are_refused_before_any_work(argv, message):
    with pytest.raises(ValueError, match=message):
        train(["--model", "mobilenet_v1_025", *argv, "--dataset", "no-such-dataset"])  # refused before the data


@pytest.mark.parametrize("argv, message", [
    (["--model", "mobilenetv1_025"], "unknown model 'mobilenetv1_025'; did you mean mobilenet_v1_025"),
    (["--model", "mobilenet_v1_025", "--model-arg", "depth=3", "--limit", "8", "--dataset", "synthetic"],
     "mobilenet_v1_025 got unknown argument(s) depth"),
    (["--finetune-from", "smallcnn_3x2.fmnist", "--model", "mobilenet_v1_025", "--dataset", "synthetic",
      "--limit", "8"],
     "--model mobilenet_v1_025 is not the architecture of --finetune-from smallcnn_3x2.fmnist (smallcnn_3x2)"),
    (["--finetune-from", str(Path("no/such/folder")), "--dataset", "synthetic", "--limit", "8"],
     "unknown model 'no/such/folder'"),
])
def test_cli_errors_are_one_line(capsys, argv, message):
    assert lightnets.cli.train.main([*argv, "--epochs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lightnets-train: error: ") and message in err and "Traceback" not in err


def test_a_bad_argument_value_is_one_line_too(capsys):
    with pytest.raises(SystemExit) as exit_info:
        lightnets.cli.train.main(["--model", "mobilenet_v1_025", "--epochs", "many"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "lightnets-train: error: argument --epochs: invalid int value: 'many'"
    )


def test_help_is_grouped_and_shows_each_default_once():
    """--help groups the options and states every default once (tests/repository/test_architecture.py checks
    that it answers before torch is imported)."""
    text = lightnets.cli.train.build_parser().format_help()
    for group in ("model:", "data:", "optimisation:", "schedule:", "augmentation:", "distillation:", "runtime:",
                  "output:"):
        assert f"\n{group}\n" in text
    for default in ("(default: 30)", "(default: 0.05)", "(default: fashion_mnist)", "(default: sgd)",
                    "(default: cosine)", "(default: 0)", "(default: 128)", "(default: the cache)",
                    "(default: cuda if available)"):
        assert default in text.replace("\n" + " " * 24, " "), default
    parser = lightnets.cli.train.build_parser()
    for action in parser._actions:
        shown = parser._get_formatter()._get_help_string(action)
        assert shown.count("default:") <= 1, action.dest
        if action.default is not None and action.default is not False and action.default not in ([], argparse.SUPPRESS):
            assert "default:" in shown, action.dest  # 0 and 0.0 (--seed, --reprob) are defaults too


def test_the_log_is_reconciled_with_the_checkpoint(tmp_path):
    from lightnets.cli.train_checkpoint import reconcile_log

    log = tmp_path / "log.jsonl"
    log.write_text('{"epoch": 1, "top1": 50.0}\n{"epoch": 2, "to')  # killed while writing epoch 2's line
    reconcile_log(log, 2, {"epoch": 2, "top1": 60.0})
    assert [json.loads(line) for line in log.read_text().splitlines()] == [
        {"epoch": 1, "top1": 50.0},
        {"epoch": 2, "top1": 60.0},
    ]
    log.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3}\n')  # lines past the checkpoint's epoch go
    reconcile_log(log, 2, None)
    assert log.read_text() == '{"epoch": 1}\n{"epoch": 2}\n'


def test_training_from_scratch_builds_the_model_at_the_datas_size():
    args = Namespace(model="smallcnn_3x2", model_arg=[], finetune_from=None)
    # CIFAR-10: its FC layer sized for 32
    model, model_args = build_model(args, num_classes=10, in_chans=3, img_size=32)
    assert model.img_size == 32 and model_args["img_size"] == 32


def test_finetune_runs_at_the_datas_own_size_when_the_model_pools_globally():
    args = Namespace(model=None, model_arg=[], finetune_from="mobilenet_v1_025.fmnist")
    # CIFAR-10 from the Fashion-MNIST weight
    model, model_args = build_model(args, num_classes=10, in_chans=3, img_size=32)
    assert (model.img_size, model.in_chans, model.small_input) == (32, 3, True)
    assert model_args == {"small_input": True, "img_size": 32}
    shipped = lightnets.create_model("mobilenet_v1_025.fmnist", pretrained=True)
    torch.testing.assert_close(model.blocks[3].conv_pw.weight, shipped.blocks[3].conv_pw.weight)
    # a model whose classifier flattens the feature map keeps the size it was trained at
    fixed, fixed_args = build_model(Namespace(model=None, model_arg=[], finetune_from="smallcnn_3x2.fmnist"),
                                    num_classes=10, in_chans=3, img_size=32)
    assert fixed.img_size == 28 and fixed_args["img_size"] == 28


def test_finetune_from_a_hub_folder_gets_a_new_head_and_input_channels(tmp_path):
    source = lightnets.create_model("mobilenet_v1_025", num_classes=10, in_chans=1, small_input=True, img_size=28)
    save_pretrained(source, tmp_path / "src")
    args = Namespace(model=None, model_arg=[], finetune_from=str(tmp_path / "src"))
    model, model_args = build_model(args, num_classes=4, in_chans=3, img_size=28)
    assert (model.num_classes, model.in_chans, model.small_input) == (4, 3, True)
    assert model_args == {"alpha": 0.25, "img_size": 28, "drop_rate": 0.0, "act_layer": "relu", "small_input": True,
                          "padding": "symmetric", "bn_eps": 1e-5}
    torch.testing.assert_close(model.stem.conv.weight, source.stem.conv.weight.repeat(1, 3, 1, 1) / 3)
    torch.testing.assert_close(model.blocks[5].conv_pw.weight, source.blocks[5].conv_pw.weight)
