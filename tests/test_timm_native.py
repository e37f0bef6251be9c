"""timm's contract, asserted for every registered model (issue #32; the rest of that issue is still open)."""
import pytest
import torch

import lightnets


@pytest.mark.parametrize("name", lightnets.list_models())
def test_every_model_traces_with_torch_fx_and_has_timms_head_hidden_size(name):
    """torch.fx.symbolic_trace (timm's FX feature extraction, quantisation and pruning tools rely on it):
    the eager input checks step aside for the tracer's proxies."""
    model = lightnets.create_model(name).eval()
    graph = torch.fx.symbolic_trace(model)
    x = torch.rand(1, *model.pretrained_cfg["input_size"])
    with torch.no_grad():
        torch.testing.assert_close(graph(x), model(x), atol=1e-5, rtol=1e-5)
        # timm's head_hidden_size: the width of forward_head(..., pre_logits=True), what the classifier reads.
        assert model.forward_head(model.forward_features(x), pre_logits=True).shape[-1] == model.head_hidden_size


@pytest.mark.parametrize("name", ["shufflenet_g3", "shufflenet_g1_025", "mobilenet_v1_050", "mobilenet_v1_125"])
def test_timms_default_cfg_describes_the_network_the_bare_name_builds(name):
    import timm

    cfg = timm.get_pretrained_cfg(lightnets.timm_name(name)).to_dict()
    model = timm.create_model(lightnets.timm_name(name))
    assert tuple(cfg["input_size"]) == model.pretrained_cfg["input_size"] and cfg["num_classes"] == model.num_classes


def test_a_name_with_only_fashion_mnist_weights_has_no_imagenet_default():
    """vgg11_bn builds 3×224×224 / 1000 classes: its 1×28×28 Fashion-MNIST weight is not its default."""
    assert lightnets.get_pretrained_cfg("vgg11_bn")["tag"] is None
    with pytest.raises(ValueError, match=r"no pretrained weight for its own layout .*vgg11_bn\.fmnist"):
        lightnets.create_model("vgg11_bn", pretrained=True)
    assert lightnets.create_model("vgg11_bn.fmnist", pretrained=True).num_classes == 10

