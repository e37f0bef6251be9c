"""The published ImageNet weights: every tag, loaded from its source's own file format, gives the source's logits.

Offline: the sources' own model code (pytorchcv, Keras 3 on the torch backend) builds each network with
random weights and BatchNorm statistics, saves it in the format the source publishes, and lightnets loads
that file. megvii's code is not a package; its conversion is checked against a functional forward written
here from its network's description (ShuffleNet-Series/ShuffleNetV1: blocks.py, network.py).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lightnets
from lightnets.pretrained.download import WeightsUnavailableError
from lightnets.pretrained.published import SOURCES, published_cfgs

# Keras 3 warns about numpy's copy keyword on every weight it touches.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:keras")

MEGVII_TAGS = sorted(t for t in published_cfgs() if t.endswith(".megvii_in1k"))
# The conversions run on one tag per layout a source publishes; every tag's cfg is checked cheaply below.
OSMR_LAYOUTS = ["mobilenet_v1_025.osmr_in1k", "shufflenet_g1_025.osmr_in1k", "shufflenet_g8.osmr_in1k"]
KERAS_LAYOUTS = ["mobilenet_v1_025.keras_r128_in1k", "mobilenet_v1_075.keras_r224_in1k"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LIGHTNETS_CACHE", str(tmp_path / "cache"))


def test_the_issue_names_exactly_these_tags():
    expected = {f"mobilenet_v1_{w}.osmr_in1k" for w in ("025", "050", "075", "100")}
    expected |= {f"shufflenet_g{g}.osmr_in1k" for g in (1, 2, 3, 4, 8)}
    expected |= {f"shufflenet_g{g}_{s}.osmr_in1k" for g in (1, 3) for s in ("025", "050", "075")}
    expected |= {f"shufflenet_g{g}{s}.megvii_in1k" for g in (3, 8) for s in ("_050", "", "_150", "_200")}
    expected |= {
        f"mobilenet_v1_{w}.keras_r{r}_in1k" for w in ("025", "050", "075", "100") for r in (128, 160, 192, 224)
    }
    assert len(expected) == 39
    expected |= {"mobilenet_v1_100.timm_in1k", "mobilenet_v1_125.timm_in1k"}
    assert set(lightnets.list_pretrained("*in1k")) == expected == set(published_cfgs())


@pytest.mark.parametrize("tag", sorted(published_cfgs()))
def test_every_published_tag_builds_and_describes_its_weight(tag):
    cfg = lightnets.get_pretrained_cfg(tag)
    assert cfg["license"] == SOURCES[cfg["source"]]["license"]
    assert cfg.get("url") or cfg.get("hf_hub_id") or cfg.get("download_page")
    assert 0 < cfg["metrics"]["top1"] < cfg["metrics"]["top5"] < 100 and cfg["metrics"]["reported_by"]
    assert len(cfg["mean"]) == len(cfg["std"]) == 3 and 0 < cfg["crop_pct"] <= 1 and cfg["interpolation"]
    with torch.device("meta"):  # the network only: no weight is allocated
        model = lightnets.create_model(tag)
    assert model.num_classes == 1000 and model.pretrained_cfg["input_size"] == cfg["input_size"]
    for key, value in cfg["model_args"].items():  # the tag builds the layout its weights were trained with
        assert getattr(model, key) == value or (key == "act_layer" and model.act_layer is torch.nn.ReLU6)


@pytest.mark.parametrize("name, default", [
    ("mobilenet_v1_050", "osmr_in1k"), ("mobilenet_v1_100", "osmr_in1k"),  # the paper's network: the default
    ("shufflenet_g3", None), ("shufflenet_g1_025", None), ("shufflenet_g8_200", None),  # only source variants
])
def test_a_bare_name_defaults_to_the_imagenet_weight_of_its_own_network(name, default):
    assert lightnets.get_pretrained_cfg(name)["tag"] == default


def test_every_group_and_scale_is_a_registered_name():
    names = {f"shufflenet_g{g}" + ("" if s == "100" else f"_{s}") for g in (1, 2, 3, 4, 8)
             for s in ("025", "050", "075", "100", "150", "200")}
    assert names <= set(lightnets.list_models("shufflenet_g*"))


def _calibrated(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BN scale/shift, and running statistics of a random batch (momentum 1): logits of order 1-10,
    so a 1e-4 tolerance means something."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 1.0
            with torch.no_grad():
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 224, 224, generator=generator))
    return model.eval()


@pytest.mark.parametrize("tag", OSMR_LAYOUTS)
def test_pytorchcv_files_load_with_pytorchcvs_logits(tag, tmp_path):
    from pytorchcv.model_provider import get_model

    cfg = lightnets.get_pretrained_cfg(tag)
    theirs = _calibrated(get_model(cfg["source_name"], pretrained=False))
    pth = tmp_path / f"{cfg['source_name']}.pth"
    torch.save(theirs.state_dict(), pth)  # what pytorchcv's release zips hold
    with zipfile.ZipFile(f"{pth}.zip", "w") as archive:
        archive.write(pth, pth.name)
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        expected = theirs(x)
        for source in (pth, Path(f"{pth}.zip")):
            ours = lightnets.create_model(tag, pretrained=True, pretrained_path=source).eval()
            assert (ours(x) - expected).abs().max() <= 1e-4
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


def test_pytorchcvs_shufflenet_needs_its_concat_order(tmp_path):
    from pytorchcv.model_provider import get_model

    theirs = _calibrated(get_model("shufflenet_g3_w1", pretrained=False))
    torch.save(theirs.state_dict(), tmp_path / "g3.pth")
    ours = lightnets.create_model("shufflenet_g3.osmr_in1k", pretrained=True, pretrained_path=tmp_path / "g3.pth")
    paper_order = lightnets.create_model("shufflenet_g3", shortcut_first=True).eval()
    paper_order.load_state_dict(ours.state_dict())
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        assert (paper_order(x) - theirs(x)).abs().max() > 1e-2  # the option is what makes the weights fit


def _keras_model(tag: str):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip(f"Keras runs on the {keras.backend.backend()} backend in this process")
    size = lightnets.get_pretrained_cfg(tag)["input_size"][1]
    alpha = int(tag.split(".")[0][-3:]) / 100
    model = keras.applications.MobileNet(
        input_shape=(size, size, 3), alpha=alpha, weights=None, classifier_activation=None
    )
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 2.0, var.shape)])
    return model, size


def _add_tf1_suffix(path: Path) -> None:
    """Rename every weight ``layer/name`` to ``layer/name:0``, as Keras 2 / TF 1 wrote them (the published files)."""
    import h5py

    with h5py.File(path, "r+") as f:
        for layer in f.attrs["layer_names"]:
            group = f[layer]
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
            for name in names:
                group.move(name, f"{name}:0")
            group.attrs["weight_names"] = [f"{n}:0".encode() for n in names]


@pytest.mark.parametrize("tag", KERAS_LAYOUTS)
def test_keras_files_load_with_keras_logits(tag, tmp_path):
    import h5py

    model, size = _keras_model(tag)
    from keras.src.legacy.saving import legacy_h5_format

    path = tmp_path / f"{tag}.h5"
    with h5py.File(path, "w") as f:  # the legacy weight format Keras Applications publishes
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    if tag.endswith(("r128_in1k", "r192_in1k")):
        _add_tf1_suffix(path)
    x = np.random.default_rng(1).uniform(-1, 1, (2, size, size, 3)).astype("float32")
    expected = np.asarray(model(x, training=False).detach().cpu())
    ours = lightnets.create_model(tag, pretrained=True, pretrained_path=path).eval()
    with torch.no_grad():
        actual = ours(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    assert np.abs(actual - expected).max() <= 1e-4


def test_keras_weights_need_tf_padding(tmp_path):
    """With PyTorch's symmetric padding the same weights give other logits: the option matters."""
    tag = "mobilenet_v1_025.keras_r128_in1k"
    model, size = _keras_model(tag)
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(tmp_path / "k.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    ours = lightnets.create_model(tag, pretrained=True, pretrained_path=tmp_path / "k.h5").eval()
    symmetric = lightnets.create_model("mobilenet_v1_025", act_layer="relu6", bn_eps=1e-3, img_size=size).eval()
    symmetric.load_state_dict(ours.state_dict())
    x = np.random.default_rng(2).uniform(-1, 1, (1, size, size, 3)).astype("float32")
    expected = torch.from_numpy(np.asarray(model(x, training=False).detach().cpu()))
    with torch.no_grad():
        exact = (ours(torch.from_numpy(x).permute(0, 3, 1, 2)) - expected).abs().max()
        padded_wrong = (symmetric(torch.from_numpy(x).permute(0, 3, 1, 2)) - expected).abs().max()
    assert padded_wrong > 100 * exact


# --- megvii: a functional forward of ShuffleNet-Series' ShuffleNetV1 over its own state-dict keys --------------

MEGVII_WIDTHS = {("3", "0.5x"): [12, 120, 240, 480], ("8", "0.5x"): [16, 192, 384, 768],
                 ("3", "1.0x"): [24, 240, 480, 960]}


def _megvii_state_dict(groups: int, widths: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under megvii's key names (first_conv.{0,1}, features.i.branch_main_{1,2}.k, classifier.0)."""
    generator = torch.Generator().manual_seed(seed)

    def conv(out_chs, in_chs, k):
        return torch.randn(out_chs, in_chs, k, k, generator=generator) * (2 / (in_chs * k * k)) ** 0.5

    def bn(prefix, chs, sd):
        sd[f"{prefix}.weight"] = torch.rand(chs, generator=generator) + 0.5
        sd[f"{prefix}.bias"] = torch.randn(chs, generator=generator) * 0.1
        sd[f"{prefix}.running_mean"] = torch.randn(chs, generator=generator) * 0.1
        sd[f"{prefix}.running_var"] = torch.rand(chs, generator=generator) + 0.5
        sd[f"{prefix}.num_batches_tracked"] = torch.tensor(0)

    sd = {"first_conv.0.weight": conv(widths[0], 3, 3) / 255}  # megvii's inputs are 0-255
    bn("first_conv.1", widths[0], sd)
    in_chs, index = widths[0], 0
    for stage, units in enumerate((4, 8, 4)):
        out_chs = widths[stage + 1]
        for unit in range(units):
            mid, main = out_chs // 4, out_chs - in_chs if unit == 0 else out_chs
            first_groups = 1 if stage == 0 and unit == 0 else groups
            sd[f"features.{index}.branch_main_1.0.weight"] = conv(mid, in_chs // first_groups, 1)
            bn(f"features.{index}.branch_main_1.1", mid, sd)
            sd[f"features.{index}.branch_main_1.3.weight"] = conv(mid, 1, 3)
            bn(f"features.{index}.branch_main_1.4", mid, sd)
            sd[f"features.{index}.branch_main_2.0.weight"] = conv(main, mid // groups, 1)
            bn(f"features.{index}.branch_main_2.1", main, sd)
            in_chs, index = out_chs, index + 1
    sd["classifier.0.weight"] = torch.randn(1000, in_chs, generator=generator) * 0.05
    return sd


def _megvii_forward(sd: dict[str, torch.Tensor], groups: int, bgr_255: torch.Tensor) -> torch.Tensor:
    """ShuffleNetV1 as megvii's network.py computes it: BGR 0-255 in, shuffle by reshape (C/g, g) after the
    depthwise BN, stride-2 units cat(avg-pooled input, relu(main)), stride-1 units relu(main + input)."""
    def bn(x, prefix):
        return F.batch_norm(x, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"], sd[f"{prefix}.weight"],
                            sd[f"{prefix}.bias"], False, 0.0, 1e-5)

    x = F.relu(bn(F.conv2d(bgr_255, sd["first_conv.0.weight"], stride=2, padding=1), "first_conv.1"))
    x = F.max_pool2d(x, 3, 2, 1)
    index = 0
    for stage, units in enumerate((4, 8, 4)):
        for unit in range(units):
            p = f"features.{index}"
            stride = 2 if unit == 0 else 1
            first_groups = 1 if stage == 0 and unit == 0 else groups
            y = F.relu(bn(F.conv2d(x, sd[f"{p}.branch_main_1.0.weight"], groups=first_groups), f"{p}.branch_main_1.1"))
            y = bn(
                F.conv2d(y, sd[f"{p}.branch_main_1.3.weight"], stride=stride, padding=1, groups=y.shape[1]),
                f"{p}.branch_main_1.4",
            )
            b, c, h, w = y.shape
            y = y.reshape(b, c // groups, groups, h, w).permute(0, 2, 1, 3, 4).reshape(b, c, h, w)
            y = bn(F.conv2d(y, sd[f"{p}.branch_main_2.0.weight"], groups=groups), f"{p}.branch_main_2.1")
            x = torch.cat((F.avg_pool2d(x, 3, 2, 1), F.relu(y)), 1) if stride == 2 else F.relu(y + x)
            index += 1
    return F.linear(x.mean((2, 3)), sd["classifier.0.weight"])


@pytest.mark.parametrize("tag, groups, size", [("shufflenet_g3_050.megvii_in1k", 3, "0.5x"),
                                               ("shufflenet_g8_050.megvii_in1k", 8, "0.5x"),
                                               ("shufflenet_g3.megvii_in1k", 3, "1.0x")])
def test_megvii_checkpoints_load_with_megviis_logits(tag, groups, size, tmp_path):
    sd = _megvii_state_dict(groups, MEGVII_WIDTHS[str(groups), size])
    # train.py saves {"state_dict": model.state_dict()} of an nn.DataParallel model: every key has "module."
    path = tmp_path / "checkpoint-300000.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    ours = lightnets.create_model(tag, pretrained=True, pretrained_path=path).eval()
    rgb = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        expected = _megvii_forward(sd, groups, rgb.flip(1) * 255)  # megvii's transform: BGR, 0-255
        # Uncalibrated random statistics make logits of order 1e4: compare relative to their size.
        assert (ours(rgb) - expected).abs().max() <= 1e-6 * expected.abs().max()
    assert ours.pretrained_cfg["mean"] == (0.0, 0.0, 0.0) and ours.pretrained_cfg["std"] == (1.0, 1.0, 1.0)


def test_megviis_shuffle_is_the_inverse_permutation():
    from lightnets.layers import channel_shuffle

    x = torch.arange(6.0).view(1, 6, 1, 1)
    paper = channel_shuffle(x, 2).flatten().tolist()  # view (g=2, 3), transpose
    megvii = x.reshape(1, 3, 2, 1, 1).permute(0, 2, 1, 3, 4).reshape(1, 6, 1, 1).flatten().tolist()
    assert paper == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0] and megvii == [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]
    assert channel_shuffle(x, 3).flatten().tolist() == megvii  # what shuffle_layout="megvii" builds


@pytest.mark.parametrize("tag", MEGVII_TAGS)
def test_megvii_without_a_file_says_where_to_get_it(tag):
    with pytest.raises(WeightsUnavailableError) as error:
        lightnets.create_model(tag, pretrained=True)
    message = str(error.value)
    assert "\n" not in message and "1drv.ms" in message and "pretrained_path=" in message and tag in message
