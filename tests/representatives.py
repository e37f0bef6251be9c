"""The configurations behavioural tests run on."""
# One configuration per family (STYLE.md principle 7): behavioural tests run on these, at small inputs.
# Every registered name is still covered, by tests/models/test_registered_models.py's expect-file.
FAMILY_REPRESENTATIVES = ["mobilenet_v1_025", "shufflenet_g3_050", "sepcnn_both", "smallcnn_3x2_dw12", "vgg11_bn"]
# One configuration per source layout that departs from the paper's network (the options a published
# weight builds with: lightnets/pretrained/published.py).
SOURCE_LAYOUTS = {
    "keras": ("mobilenet_v1_025", {"padding": "tf", "act_layer": "relu6", "bn_eps": 1e-3}),
    "timm": ("mobilenet_v1_025", {"act_layer": "relu6"}),
    "megvii": ("shufflenet_g8_050", {"shuffle_layout": "megvii"}),
    "osmr": ("shufflenet_g1_025", {"shortcut_first": False, "stem_channels": 6}),
}


def with_nontrivial_batchnorm(model, seed: int = 1):
    """``model`` with seeded BatchNorm statistics and affine parameters away from (0, 1), so that folding or
    converting them has something to get wrong; returned in eval mode."""
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
    return model.eval()
