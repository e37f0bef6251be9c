"""Weights in Hub layout, resolved for real: a local Hub stand-in on 127.0.0.1, the huggingface_hub
cache, offline mode, checksums, adaptation of head and stem, and timm's ``hf-hub:`` loader."""
import functools
import json
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub.utils import _http as hf_http
from safetensors import safe_open
from safetensors.torch import save_file

import lightnets
from lightnets import pretrained, publish
from lightnets.cli import weights as weights_cli
from lightnets.pretrained import ChecksumError, WeightsUnavailableError, load_checkpoint, manifest
from lightnets.publish import save_pretrained

from hub_server import FakeHub

# A tiny Fashion-MNIST-shaped model: 1×28×28 in, 10 classes out.
ARGS = dict(num_classes=10, in_chans=1, small_input=True, img_size=28)
REPO = "lightnets-test/mobilenet_v1_025.fmnist"


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model():
    model = lightnets.create_model("mobilenet_v1_025", **ARGS)
    with torch.no_grad():  # non-trivial BN statistics, so a lost buffer changes the logits
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def logits(model, in_chans=1):
    torch.manual_seed(1)
    with torch.no_grad():
        return model.eval()(torch.randn(2, in_chans, 28, 28))


@pytest.fixture
def saved(tmp_path):
    model = tiny_model()
    folder = save_pretrained(model, tmp_path / "published", metrics={"top1": 12.5}, tag="fmnist",
                             label_names=[f"class{i}" for i in range(10)])
    return model, folder


@pytest.fixture
def fake_hub(tmp_path, monkeypatch, saved):
    """The saved folder served as Hub repo REPO; huggingface_hub pointed at it with an empty cache."""
    _, folder = saved
    with FakeHub({REPO: folder}, upload_root=tmp_path / "hub_uploads") as server:
        monkeypatch.setattr(hf_constants, "ENDPOINT", server.endpoint)
        monkeypatch.setattr(
            hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        )
        monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        # huggingface_hub retries 5xx five times with 1-8 s waits; one quick retry keeps the 500 test fast.
        monkeypatch.setattr(
            hf_http, "http_backoff", functools.partial(hf_http.http_backoff, max_retries=1, base_wait_time=0.01)
        )
        monkeypatch.setattr(manifest, "WEIGHTS_DIR", tmp_path / "no_bundled_weights")
        yield server


def from_hub(**cfg):
    return lightnets.create_model(
        "mobilenet_v1_025", pretrained=True, pretrained_cfg={"hf_hub_id": REPO, **cfg}, **ARGS
    )


def test_save_pretrained_writes_the_hub_layout(saved):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == lightnets.timm_name("mobilenet_v1_025")
    assert config["num_classes"] == 10 and config["num_features"] == 256
    assert config["model_args"] == {"alpha": 0.25, "img_size": 28, "drop_rate": 0.0, "act_layer": "relu",
                                    "small_input": True, "padding": "symmetric", "bn_eps": 1e-5, "num_classes": 10,
                                    "in_chans": 1}
    assert config["pretrained_cfg"]["input_size"] == [1, 28, 28]
    assert config["pretrained_cfg"]["label_names"][3] == "class3"
    assert config["lightnets"]["metrics"] == {"top1": 12.5}
    assert config["lightnets"]["params"] == sum(p.numel() for p in model.parameters())
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert f.metadata() == {"format": "pt", "architecture": "mobilenet_v1_025", "tag": "fmnist",
                                "lightnets_version": lightnets.__version__, "dtype": "float32"}
    card = (folder / "README.md").read_text()
    assert "# mobilenet_v1_025.fmnist" in card and f"| params | {config['lightnets']['params']:,} |" in card
    assert "lightnets.create_model('mobilenet_v1_025.fmnist', pretrained=True)" in card
    untagged = (save_pretrained(model, folder.parent / "untagged") / "README.md").read_text()
    # without a tag, pretrained=True alone would load the bundled default weight: the card points at the folder
    assert (
        "lightnets.create_model('mobilenet_v1_025', pretrained=True, pretrained_path='path/to/this/folder')" in untagged
    )


def test_save_pretrained_records_the_models_own_arguments_not_those_of_a_shipped_weight(tmp_path):
    # mobilenet_v1_025's default cfg is the shipped .fmnist weight (small_input, img_size=28); a model
    # built without it and with other arguments must be saved with the arguments that built it.
    model = lightnets.create_model("mobilenet_v1_025", act_layer="relu6", img_size=64, num_classes=3)
    config = json.loads((save_pretrained(model, tmp_path / "own") / "config.json").read_text())
    assert config["model_args"]["act_layer"] == "relu6" and config["model_args"]["img_size"] == 64
    assert config["model_args"]["small_input"] is False
    rebuilt = lightnets.create_model("mobilenet_v1_025", pretrained=True, pretrained_path=str(tmp_path / "own"))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x), atol=0, rtol=0)


def test_save_pretrained_refuses_arguments_that_do_not_rebuild_the_model(tmp_path):
    with pytest.raises(ValueError, match="does not rebuild this model"):
        save_pretrained(tiny_model(), tmp_path, model_args={"alpha": 0.25, "img_size": 28})  # small_input lost
    wide = lightnets.create_model("mobilenet_v1", alpha=0.5, num_classes=10)
    with pytest.raises(ValueError, match="does not rebuild this model"):
        save_pretrained(wide, tmp_path, model_args={"alpha": 0.25})


def test_fp16_folder_loads_close_to_the_fp32_model(tmp_path):
    model = tiny_model()
    folder = save_pretrained(model, tmp_path, fp16=True)
    assert (folder / "model.safetensors").stat().st_size < 0.6 * 4 * sum(p.numel() for p in model.parameters())
    loaded = lightnets.create_model("mobilenet_v1_025", pretrained=True, pretrained_path=str(folder), **ARGS)
    assert loaded.stem.conv.weight.dtype == torch.float32
    torch.testing.assert_close(logits(loaded), logits(model), atol=1e-2, rtol=1e-2)


def test_download_cache_hit_and_offline_reload(fake_hub, saved):
    model, _ = saved
    torch.testing.assert_close(logits(from_hub()), logits(model), atol=0, rtol=0)
    assert fake_hub.gets("model.safetensors") == 1
    snapshots = list(Path(hf_constants.HF_HUB_CACHE).glob("models--lightnets-test--*/snapshots/*/model.safetensors"))
    assert len(snapshots) == 1

    from_hub()  # cached: the server answers a HEAD, but the file is not sent again
    assert fake_hub.gets("model.safetensors") == 1

    requests_before = len(fake_hub.requests)
    hf_constants.HF_HUB_OFFLINE = True  # restored by monkeypatch
    torch.testing.assert_close(logits(from_hub()), logits(model), atol=0, rtol=0)
    assert len(fake_hub.requests) == requests_before


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_corrupt_cached_download_is_fetched_again_once(fake_hub, saved, damage):
    model, _ = saved
    from_hub()
    (snapshot,) = Path(hf_constants.HF_HUB_CACHE).glob("models--lightnets-test--*/snapshots/*/model.safetensors")
    blob = snapshot.resolve()
    blob.write_bytes(blob.read_bytes()[:100] if damage == "truncate" else b"not safetensors at all")
    torch.testing.assert_close(logits(from_hub()), logits(model), atol=0, rtol=0)
    assert fake_hub.gets("model.safetensors") == 2


def test_offline_without_cache_is_a_clear_error(fake_hub):
    hf_constants.HF_HUB_OFFLINE = True
    # the repo's config.json comes first: without it the model would be built with the wrong arguments
    with pytest.raises(
        WeightsUnavailableError, match="HF_HUB_OFFLINE is set and config.json of .* is not in the cache"
    ):
        from_hub()
    assert fake_hub.requests == []


def test_checksum_mismatch_names_file_and_both_checksums(fake_hub, saved):
    _, folder = saved
    actual = pretrained.sha256sum(folder / "model.safetensors")
    with pytest.raises(
        ChecksumError, match=rf"sha256 mismatch for .*model\.safetensors: expected {'0' * 64}, got {actual}"
    ):
        from_hub(sha256="0" * 64)
    from_hub(sha256=actual)  # the right checksum loads


@pytest.mark.parametrize("cfg, message", [
    ({"hf_hub_id": "lightnets-test/no-such-repo"}, "Hub repo .*no-such-repo not found"),
    ({"hf_hub_filename": "other.safetensors"}, "has no file 'other.safetensors'"),
    ({"revision": "v9"}, "revision 'v9' not found"),
])
def test_missing_repo_file_or_revision_is_a_clear_error(fake_hub, cfg, message):
    with pytest.raises(WeightsUnavailableError, match=message):
        from_hub(**cfg)


def test_server_error_is_a_clear_error(fake_hub):
    fake_hub.fail_with = 500
    with pytest.raises(WeightsUnavailableError, match="could not download config.json from .* not cached: .*500"):
        from_hub()


def test_push_uploads_the_folder_and_it_loads_back_from_the_hub(fake_hub, saved, capsys):
    model, folder = saved
    url = publish.push_to_hub(folder, "lightnets-test/pushed", token="hf_test_token")
    commit = fake_hub.commits["lightnets-test/pushed"][-1]
    assert url == f"{fake_hub.endpoint}/lightnets-test/pushed/commit/{commit}"
    uploaded = fake_hub.repos["lightnets-test/pushed"]
    assert sorted(p.name for p in uploaded.iterdir()) == sorted(p.name for p in folder.iterdir())
    for path in folder.iterdir():
        assert (uploaded / path.name).read_bytes() == path.read_bytes(), path.name
    assert set(fake_hub.tokens) == {"Bearer hf_test_token"}
    assert fake_hub.cards == [(folder / "README.md").read_text()]  # its metadata block parsed as YAML
    # what was pushed is what pretrained=True then downloads, checksum included
    loaded = from_hub(hf_hub_id="lightnets-test/pushed", sha256=pretrained.sha256sum(folder / "model.safetensors"))
    torch.testing.assert_close(logits(loaded), logits(model), atol=0, rtol=0)

    # again, through the command line: the repo exists (create_repo's 409 is fine), a second commit lands
    assert weights_cli.main(["push", str(folder), "lightnets-test/pushed"]) == 0
    assert len(fake_hub.commits["lightnets-test/pushed"]) == 2
    assert (
        capsys.readouterr().out.strip()
        == f"{fake_hub.endpoint}/lightnets-test/pushed/commit/{fake_hub.commits['lightnets-test/pushed'][-1]}"
    )


def test_push_refuses_a_folder_that_is_not_in_hub_layout_before_any_request(fake_hub, tmp_path):
    folder = tmp_path / "loose"
    folder.mkdir()
    save_file({"w": torch.zeros(1)}, str(folder / "model.safetensors"))
    with pytest.raises(
        ValueError, match=r"is not a Hub-layout folder: config\.json is missing \(write it with save_pretrained\)"
    ):
        publish.push_to_hub(folder, "lightnets-test/loose", token="hf_test_token")
    assert fake_hub.requests == []


def test_hub_cli_errors_are_one_line(fake_hub, tmp_path, capsys):
    (tmp_path / "loose").mkdir()
    assert weights_cli.main(["push", str(tmp_path / "loose"), "lightnets-test/loose"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lightnets-weights: error: ") and "is not a Hub-layout folder" in err
    assert err.count("\n") == 1 and fake_hub.requests == []


def test_push_to_a_failing_server_is_an_error(fake_hub, saved):
    _, folder = saved
    fake_hub.fail_with = 500
    with pytest.raises(Exception, match="500"):
        publish.push_to_hub(folder, "lightnets-test/pushed", token="hf_test_token")
    assert "lightnets-test/pushed" not in fake_hub.commits


def test_timm_hf_hub_loader_builds_our_model_with_the_weights(fake_hub, saved):
    model, _ = saved
    loaded = timm.create_model(f"hf-hub:{REPO}", pretrained=True)
    assert type(loaded) is type(model) and loaded.num_classes == 10 and loaded.in_chans == 1
    torch.testing.assert_close(logits(loaded), logits(model), atol=0, rtol=0)


def test_timm_checkpoint_is_converted_on_load(tmp_path, monkeypatch, fake_hub):
    theirs = timm.create_model("mobilenetv1_100").eval()
    timm_folder = tmp_path / "timm_repo"
    timm_folder.mkdir()
    save_file({k: v.contiguous() for k, v in theirs.state_dict().items()}, str(timm_folder / "model.safetensors"))
    fake_hub.repos["timm/mobilenetv1_100.test"] = timm_folder
    ours = lightnets.create_model("mobilenet_v1_100", pretrained=True, act_layer="relu6", pretrained_cfg={
        "hf_hub_id": "timm/mobilenetv1_100.test", "source_format": "timm_mobilenetv1"})
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs(x), atol=1e-5, rtol=0)


def test_url_source_downloads_safetensors_only(fake_hub, monkeypatch, tmp_path, saved):
    model, _ = saved
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch_hub"))
    url = f"{fake_hub.endpoint}/{REPO}/resolve/main/model.safetensors"
    loaded = lightnets.create_model("mobilenet_v1_025", pretrained=True, pretrained_cfg={"url": url}, **ARGS)
    torch.testing.assert_close(logits(loaded), logits(model), atol=0, rtol=0)
    with pytest.raises(ValueError, match="only .safetensors URLs"):
        lightnets.create_model("mobilenet_v1_025", pretrained=True, pretrained_cfg={"url": url[:-12] + ".pth"}, **ARGS)


def test_bundled_weights_resolve_through_the_index_and_are_verified(tmp_path, monkeypatch, saved):
    model, folder = saved
    weights_dir = tmp_path / "weights"
    bundled = save_pretrained(model, weights_dir / "mobilenet_v1_025.fmnist", tag="fmnist", metrics={"top1": 12.5})
    assert weights_cli.main(["index", "--weights-dir", str(weights_dir)]) == 0  # lightnets-weights index
    entries = json.loads((weights_dir / "index.json").read_text())["weights"]
    assert list(entries) == ["mobilenet_v1_025.fmnist"]
    assert entries["mobilenet_v1_025.fmnist"]["sha256"] == pretrained.sha256sum(bundled / "model.safetensors")
    cfg = manifest.bundled_cfgs(weights_dir)["mobilenet_v1_025.fmnist"]
    assert cfg["file"] == "mobilenet_v1_025.fmnist" and cfg["input_size"] == (1, 28, 28)
    assert cfg["model_args"] == {"alpha": 0.25, "img_size": 28, "drop_rate": 0.0, "act_layer": "relu",
                                 "small_input": True, "padding": "symmetric", "bn_eps": 1e-5}
    assert cfg["metrics"] == {"top1": 12.5}

    monkeypatch.setattr(manifest, "WEIGHTS_DIR", weights_dir)
    loaded = lightnets.create_model("mobilenet_v1_025", pretrained=True, pretrained_cfg=cfg, num_classes=10, in_chans=1)
    torch.testing.assert_close(logits(loaded), logits(model), atol=0, rtol=0)

    payload = bytearray((bundled / "model.safetensors").read_bytes())
    payload[-1] ^= 0xFF
    (bundled / "model.safetensors").write_bytes(bytes(payload))
    with pytest.raises(ChecksumError, match="mobilenet_v1_025.fmnist/model.safetensors"):
        lightnets.create_model("mobilenet_v1_025", pretrained=True, pretrained_cfg=cfg, num_classes=10, in_chans=1)


def test_new_head_and_input_channels_adapt_the_weights(saved):
    model, folder = saved
    adapted = lightnets.create_model("mobilenet_v1_025", pretrained=True, pretrained_path=str(folder),
                                     **{**ARGS, "num_classes": 5, "in_chans": 3}).eval()
    # timm's adapt_input_conv: 1 → 3 channels repeats the filter and scales by 1/3, so a grey image
    # repeated over 3 channels gives the same stem output.
    torch.testing.assert_close(adapted.stem.conv.weight, model.stem.conv.weight.repeat(1, 3, 1, 1) / 3)
    assert adapted.classifier.weight.shape == (5, 256)
    torch.testing.assert_close(adapted.blocks[12].conv_pw.weight, model.blocks[12].conv_pw.weight)
    grey = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(adapted.forward_features(grey.repeat(1, 3, 1, 1)), model.forward_features(grey),
                                   atol=1e-5, rtol=1e-5)

    summed = lightnets.create_model("mobilenet_v1_025", pretrained=True, pretrained_path=str(folder), **ARGS)
    three = lightnets.create_model("mobilenet_v1_025", **{**ARGS, "in_chans": 3})
    pretrained.load_pretrained(three, {"first_conv": "stem.conv"}, pretrained_path=str(folder))
    back = save_pretrained(three, folder.parent / "three")
    pretrained.load_pretrained(summed, {}, pretrained_path=str(back))  # 3 → 1 channel: the filters are summed
    torch.testing.assert_close(summed.stem.conv.weight, three.stem.conv.weight.sum(1, keepdim=True))


def test_load_checkpoint_reads_training_checkpoints_and_explains_misfits(tmp_path, saved):
    model, folder = saved
    checkpoint = {"epoch": 3, "model": {f"module.{k}": v for k, v in model.state_dict().items()}}
    torch.save(checkpoint, tmp_path / "last.pth")
    fresh = lightnets.create_model("mobilenet_v1_025", **ARGS)
    load_checkpoint(fresh, tmp_path / "last.pth")
    torch.testing.assert_close(logits(fresh), logits(model), atol=0, rtol=0)

    with pytest.raises(ValueError, match=r"classifier.weight is \(10, 256\) in the file, \(1000, 256\) in the model"):
        load_checkpoint(lightnets.create_model("mobilenet_v1_025", small_input=True, img_size=28, in_chans=1), folder)
    with pytest.raises(
        ValueError, match=r"shape mismatch: stem.conv.weight is \(8, 1, 3, 3\) in the file, \(16, 1, 3, 3\)"
    ):
        load_checkpoint(lightnets.create_model("mobilenet_v1_050", **ARGS), folder)
    partial = {k: v for k, v in model.state_dict().items() if k != "classifier.bias"}
    save_file(partial, str(tmp_path / "partial.safetensors"))
    with pytest.raises(ValueError, match=r"1 missing keys, e.g. \['classifier.bias'\]"):
        load_checkpoint(fresh, tmp_path / "partial.safetensors")
    load_checkpoint(fresh, tmp_path / "partial.safetensors", strict=False)
    with pytest.raises(WeightsUnavailableError, match="no weight file"):
        load_checkpoint(fresh, tmp_path / "nothing_here")


def test_a_folder_rebuilds_its_model_and_a_depthwise_stem_is_not_adapted(tmp_path):
    model = lightnets.create_model("smallcnn_3x2_dw1", small_input=True, in_chans=1, num_classes=10).eval()
    folder = save_pretrained(model, tmp_path / "dw1", tag="fmnist")
    loaded = lightnets.create_model("smallcnn_3x2_dw1", pretrained=True, pretrained_path=folder).eval()
    assert loaded.pretrained_cfg["tag"] is None and loaded.pretrained_cfg["input_size"] == (1, 28, 28)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    with pytest.raises(ValueError, match="depthwise conv.*in_chans=3"):
        lightnets.create_model("smallcnn_3x2_dw1", pretrained=True, pretrained_path=folder, in_chans=3)


def test_a_hub_repo_describes_its_own_model(fake_hub, tmp_path):
    # Other arguments than the bundled mobilenet_v1_025.fmnist weight (3 channels, 5 classes, 40 px, ImageNet
    # stem): the repo's config.json says how to build it, through lightnets and through timm's hf-hub: loader.
    torch.manual_seed(3)
    model = lightnets.create_model("mobilenet_v1_025", num_classes=5, img_size=40).eval()
    fake_hub.repos["lightnets-test/other"] = save_pretrained(model, tmp_path / "other", metrics={"top1": 1.0})
    x = torch.randn(1, 3, 40, 40)
    for repo in ("lightnets-test/other", "lightnets-test/other@main"):  # timm's way of pinning a revision
        loaded = lightnets.create_model("mobilenet_v1_025", pretrained=True, pretrained_cfg={"hf_hub_id": repo}).eval()
        assert (loaded.num_classes, loaded.in_chans, loaded.img_size, loaded.small_input) == (5, 3, 40, False)
        assert loaded.pretrained_cfg["tag"] is None and "metrics" not in loaded.pretrained_cfg
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    via_timm = timm.create_model("hf-hub:lightnets-test/other", pretrained=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(via_timm(x), model(x), atol=0, rtol=0)


def test_url_downloads_are_cached_per_url_not_per_file_name(fake_hub, monkeypatch, tmp_path, saved):
    model, _ = saved
    torch.manual_seed(4)
    other = tiny_model()
    fake_hub.repos["lightnets-test/other"] = save_pretrained(other, tmp_path / "other")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch_hub"))
    for repo, expected in ((REPO, model), ("lightnets-test/other", other)):  # both URLs end in model.safetensors
        url = f"{fake_hub.endpoint}/{repo}/resolve/main/model.safetensors"
        loaded = lightnets.create_model("mobilenet_v1_025", pretrained=True, pretrained_cfg={"url": url}, **ARGS)
        torch.testing.assert_close(logits(loaded), logits(expected), atol=0, rtol=0)
    assert len(list((tmp_path / "torch_hub" / "checkpoints").glob("*-model.safetensors"))) == 2


@pytest.mark.parametrize("base, target", [(1, 3), (3, 1), (3, 4), (1, 2), (3, 3), (2, 5)])
def test_first_conv_adaptation_is_timms(base, target):
    from timm.models import adapt_input_conv as timm_adapt_input_conv

    weight = torch.randn(8, base, 3, 3)
    ours = pretrained.adapt_input_conv(weight, target)
    assert ours.shape == (8, target, 3, 3)
    torch.testing.assert_close(ours, timm_adapt_input_conv(target, weight.clone(), base_chans=base))


def test_a_weight_file_with_its_config_beside_it_rebuilds_its_model(saved):
    model, folder = saved
    loaded = lightnets.create_model(
        "mobilenet_v1_025", pretrained=True, pretrained_path=str(folder / "model.safetensors")
    )
    assert (loaded.num_classes, loaded.in_chans, loaded.small_input, loaded.img_size) == (10, 1, True, 28)
    torch.testing.assert_close(logits(loaded), logits(model), atol=0, rtol=0)


def test_a_bare_weight_file_keeps_the_tags_architecture(saved, tmp_path):
    # no config.json beside it: the tag's small_input / img_size still build the model (a stride change
    # alone would load every tensor into the wrong network without an error)
    model, folder = saved
    bare = tmp_path / "bare" / "weights.safetensors"
    bare.parent.mkdir()
    bare.write_bytes((folder / "model.safetensors").read_bytes())
    loaded = lightnets.create_model("mobilenet_v1_025.fmnist", pretrained=True, pretrained_path=str(bare))
    assert (loaded.small_input, loaded.img_size, loaded.in_chans, loaded.num_classes) == (True, 28, 1, 10)
    torch.testing.assert_close(logits(loaded), logits(model), atol=0, rtol=0)


def test_a_repo_of_weights_only_loads_with_the_callers_arguments(fake_hub, saved, tmp_path):
    model, folder = saved
    (tmp_path / "weights_only").mkdir()
    (tmp_path / "weights_only" / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    fake_hub.repos["lightnets-test/weights-only"] = tmp_path / "weights_only"
    loaded = from_hub(hf_hub_id="lightnets-test/weights-only")  # its config.json is a 404: ARGS describe it
    torch.testing.assert_close(logits(loaded), logits(model), atol=0, rtol=0)


@pytest.mark.parametrize("config_text, message", [("{", "not readable JSON"), ("[1]", "holds a JSON list"),
                                                  ('{"model_args": 3}', "model_args is 3")])
def test_a_repo_whose_config_is_malformed_is_refused_naming_it(fake_hub, saved, tmp_path, config_text, message):
    """Not read as "no config": the caller's arguments might then build another network the weights fit."""
    from lightnets.pretrained.native import WeightsFileError

    _, folder = saved
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    (broken / "config.json").write_text(config_text)
    fake_hub.repos["lightnets-test/broken"] = broken
    with pytest.raises(WeightsFileError, match=message) as error:
        from_hub(hf_hub_id="lightnets-test/broken")
    assert "config.json" in str(error.value)


def test_restructured_weights_keep_their_flag_through_the_index(tmp_path):
    import warnings

    from lightnets import compress

    model = tiny_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruned = compress.prune_l1(model, 0.5).eval()
    weights_dir = tmp_path / "weights"
    save_pretrained(pruned, weights_dir / "mobilenet_v1_025.pruned", tag="pruned")
    assert publish.build_index(weights_dir)["mobilenet_v1_025.pruned"]["restructured"] is True
    cfg = manifest.bundled_cfgs(weights_dir)["mobilenet_v1_025.pruned"]
    assert cfg["restructured"] is True
    cfg["file"] = str(weights_dir / cfg["file"])
    loaded = lightnets.create_model("mobilenet_v1_025", pretrained=True, pretrained_cfg=cfg)
    torch.testing.assert_close(logits(loaded), logits(pruned), atol=0, rtol=0)
    # timm's local-dir: loader hands the folder over as the cfg's file; its config.json says to restructure
    via_timm = timm.create_model(f"local-dir:{weights_dir / 'mobilenet_v1_025.pruned'}", pretrained=True)
    torch.testing.assert_close(logits(via_timm), logits(pruned), atol=0, rtol=0)
