"""Registry, tags, kwarg checking and the timm bridge."""
import pytest
import timm
import torch

import lightnets
from lightnets.registry import UnknownModelError, split_model_name


def test_list_models_glob_and_names():
    names = lightnets.list_models("mobilenet_v1*")
    assert {"mobilenet_v1", "mobilenet_v1_025", "mobilenet_v1_050", "mobilenet_v1_075", "mobilenet_v1_100"} <= set(
        names
    )
    assert names == sorted(names)
    assert lightnets.list_models("no_such_*") == []
    assert all(not n.startswith("mobilenet") for n in lightnets.list_models(exclude="mobilenet*"))


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModelError) as err:
        lightnets.create_model("mobilenet_v1_05")
    message = str(err.value)
    assert "unknown model 'mobilenet_v1_05'" in message and "mobilenet_v1_050" in message
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)


def test_unknown_tag_lists_tags():
    with pytest.raises(UnknownModelError, match="has no tag 'nope'"):
        lightnets.create_model("mobilenet_v1_050.nope")


def test_unknown_kwarg_is_an_error_not_dropped():
    with pytest.raises(TypeError, match=r"unknown argument\(s\) widht; it accepts: .*alpha"):
        lightnets.create_model("mobilenet_v1", widht=0.5)


def test_variant_refuses_to_override_its_fixed_argument():
    with pytest.raises(ValueError, match=r"fixes alpha=0.5; .*create_model\('mobilenet_v1', alpha=0.75\)"):
        lightnets.create_model("mobilenet_v1_050", alpha=0.75)
    assert lightnets.create_model("mobilenet_v1_050", alpha=0.5).alpha == 0.5


def test_pretrained_without_weights_is_a_clear_error():
    name = next((n for n in lightnets.list_models() if not lightnets.list_models(n, pretrained=True)), None)
    assert name is not None
    with pytest.raises(ValueError, match=f"model '{name}' has no pretrained weights"):
        lightnets.create_model(name, pretrained=True)


def test_split_model_name():
    assert split_model_name("mobilenet_v1_050.fmnist") == ("mobilenet_v1_050", "fmnist")
    assert split_model_name("shufflenet_g3") == ("shufflenet_g3", "")


def test_cfg_follows_the_built_model():
    model = lightnets.create_model("mobilenet_v1_050", num_classes=10, in_chans=1, img_size=96)
    cfg = model.pretrained_cfg
    assert cfg["architecture"] == "mobilenet_v1_050"
    assert cfg["input_size"] == (1, 96, 96) and cfg["num_classes"] == 10


@pytest.mark.parametrize("name", ["shufflenet_g3", "mobilenet_v1_050", "sepcnn_separable", "smallcnn_3x2_dw12"])
def test_timm_create_model_builds_our_models(name):
    model = timm.create_model(name, num_classes=10)
    ours = lightnets.create_model(name, num_classes=10)
    assert type(model) is type(ours)
    assert [p.shape for p in model.parameters()] == [p.shape for p in ours.parameters()]
    assert name in timm.list_models(name)


@pytest.mark.slow
def test_timm_names_never_clash():
    # timm owns vgg16; ours is registered there under a prefix and timm's own stays timm's.
    assert lightnets.timm_name("vgg16") == "lightnets_vgg16"
    assert type(timm.create_model("vgg16")).__module__.startswith("timm.")
    ours = timm.create_model("lightnets_vgg16", num_classes=10)
    assert type(ours).__module__.startswith("lightnets.")
    for name in lightnets.list_models():
        assert timm.is_model(lightnets.timm_name(name))


def test_timm_passes_kwargs_through():
    model = timm.create_model("mobilenet_v1", alpha=0.25, num_classes=3, in_chans=1)
    assert model(torch.zeros(1, 1, 224, 224)).shape == (1, 3)
    with pytest.raises(TypeError, match="unknown argument"):
        timm.create_model("mobilenet_v1", not_an_arg=1)


def test_a_bare_name_without_weights_is_the_papers_architecture_with_its_own_cfg():
    # mobilenet_v1_050's default weight is the 1-channel 28-pixel .fmnist one; without pretrained=True none
    # of it may leak into the cfg of the 224-pixel RGB model that is built
    model = lightnets.create_model("mobilenet_v1_050")
    assert (model.in_chans, model.img_size, model.num_classes, model.small_input) == (3, 224, 1000, False)
    cfg = model.pretrained_cfg
    assert cfg["tag"] is None and cfg["input_size"] == (3, 224, 224) and cfg["mean"] == (0.485, 0.456, 0.406)
    assert not {"sha256", "metrics", "file", "label_names", "model_args"} & set(cfg)


def test_a_tag_without_weights_builds_the_architecture_its_weights_were_trained_with():
    from lightnets.profiler import count_macs

    shipped = lightnets.get_pretrained_cfg("mobilenet_v1_050.fmnist")
    model = lightnets.create_model("mobilenet_v1_050.fmnist")  # as timm does: the tag's classes, channels, arguments
    assert (model.in_chans, model.img_size, model.num_classes, model.small_input) == (1, 28, 10, True)
    assert model.pretrained_cfg["tag"] == "fmnist"
    assert count_macs(model, model.pretrained_cfg["input_size"]) == shipped["macs"] == 10_865_216
    # the user's still win
    other = lightnets.create_model("mobilenet_v1_050.fmnist", small_input=False, img_size=64, num_classes=3)
    assert (other.small_input, other.img_size, other.num_classes) == (False, 64, 3)
    with pytest.raises(ValueError, match="MobileNetV1 takes images of at least 32x32, got img_size=28"):
        lightnets.create_model("mobilenet_v1_050.fmnist", small_input=False)  # the tag's 28 px needs the small form


def test_weights_load_at_another_input_size_when_the_model_pools_globally():
    from lightnets.registry import has_fixed_input_size

    base = lightnets.create_model("mobilenet_v1_025.fmnist", pretrained=True).eval()
    resized = lightnets.create_model("mobilenet_v1_025.fmnist", pretrained=True, img_size=32).eval()
    assert resized.pretrained_cfg["input_size"] == (1, 32, 32)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(resized(x), base(x), atol=0, rtol=0)  # the same weights: the size is only the cfg's
    assert has_fixed_input_size("smallcnn_3x2") and not has_fixed_input_size("mobilenet_v1_025")
    with pytest.raises(ValueError, match="weights smallcnn_3x2.fmnist were trained with img_size=28; got img_size=32"):
        lightnets.create_model("smallcnn_3x2.fmnist", pretrained=True, img_size=32)  # its FC layer is sized for 28
    with pytest.raises(ValueError, match="were trained with small_input=True"):
        lightnets.create_model("mobilenet_v1_025.fmnist", pretrained=True, small_input=False)
