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
