"""timm → lightnets converter: the converted MobileNet v1 gives timm's logits exactly."""
import pytest
import timm
import torch

import lightnets
from lightnets.pretrained.convert import convert_state_dict, convert_timm_mobilenetv1


@pytest.mark.parametrize("timm_name, our_name", [("mobilenetv1_100", "mobilenet_v1_100"),
                                                 ("mobilenetv1_125", "mobilenet_v1_125")])
def test_converted_timm_mobilenetv1_matches_logits(timm_name, our_name):
    theirs = timm.create_model(timm_name).eval()
    # Random init leaves BN at identity: perturb the statistics so the BN mapping is exercised too.
    with torch.no_grad():
        for module in theirs.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    ours = lightnets.create_model(our_name, act_layer="relu6").eval()
    ours.load_state_dict(convert_timm_mobilenetv1(theirs.state_dict()), strict=True)

    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected, actual = theirs(x), ours(x)
    assert expected.shape == (2, 1000)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def test_converter_maps_blocks_in_paper_order():
    theirs = timm.create_model("mobilenetv1_100")
    converted = convert_timm_mobilenetv1(theirs.state_dict())
    # Stages (1, 2, 2, 6, 2): timm's blocks.3.5 is the 11th separable layer (index 10), 512 → 512.
    assert torch.equal(converted["blocks.10.conv_pw.weight"], theirs.state_dict()["blocks.3.5.conv_pw.weight"])
    assert torch.equal(converted["stem.bn.running_var"], theirs.state_dict()["bn1.running_var"])
    assert len(converted) == len(theirs.state_dict())


def test_converter_rejects_other_state_dicts():
    with pytest.raises(ValueError, match="conv_head"):
        convert_timm_mobilenetv1({"conv_head.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="source_format must be one of"):
        convert_state_dict({}, "keras")
