"""lightnets.training, the parts of every training run: the distillation loss by hand, augmentation and mixing,
the teacher ensemble, LR schedules, the autocast dtype, and the loop (fit) and in-memory evaluation themselves."""
import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

import lightnets
from lightnets.training import (FitConfig, augment, distillation_loss, ensemble_logits, evaluate, fit, lr_lambda,
                                mix_batch, prepare_for)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_distillation_loss_hand_example():
    student, teacher, target = torch.tensor([[1.0, 0.0]] * 2), torch.tensor([[0.0, 1.0]] * 2), torch.tensor([0, 0])
    # At T = 2 the tempered logits differ by 0.5, so KL(p‖q) = (σ(0.5) − σ(−0.5))·0.5 = 0.5·tanh(0.25) = 0.1224593;
    # times T² = 4: 0.4898373. The hard term is CE = ln(1 + e^−1) = 0.3132617.
    soft, hard = 4 * 0.5 * math.tanh(0.25), math.log1p(math.exp(-1))
    loss = distillation_loss(student, teacher, target, alpha=0.5, temperature=2.0)
    assert loss.item() == pytest.approx(0.5 * soft + 0.5 * hard, abs=1e-6)
    assert distillation_loss(student, teacher, target, alpha=0.0, temperature=2.0).item() == pytest.approx(
        hard, abs=1e-6
    )
    assert distillation_loss(student, student, target, alpha=1.0).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="alpha must be in"):
        distillation_loss(student, teacher, target, alpha=1.5)


def test_augment_crops_and_flips_each_image_independently():
    images = (torch.arange(6 * 10 * 10) % 200 + 1).to(torch.uint8).reshape(6, 1, 10, 10)
    out = augment(images, padding=2, flip=True, generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    found = []
    for i in range(6):
        candidates = [(dy, dx, flip) for dy in range(5) for dx in range(5) for flip in (False, True)
                      if torch.equal(out[i], (lambda crop: crop.flip(-1) if flip else crop)(
                          padded[i, :, dy:dy + 10, dx:dx + 10]))]
        assert candidates, f"image {i} is not a padded crop (or its mirror) of the input"
        found.append(candidates[0])
    assert len(set(found)) > 1  # not one shift for the whole batch
    assert torch.equal(augment(images, 0, False, torch.Generator()), images)


def test_random_erasing_fills_one_rectangle_per_chosen_image_with_noise():
    images = torch.zeros(400, 1, 28, 28, dtype=torch.uint8)
    out = augment(images, 0, False, torch.Generator().manual_seed(0), erase_prob=1.0)
    for image in out:
        rows, cols = image[0].nonzero(as_tuple=True)  # noise pixels (1/256 of them happen to draw 0)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert 10 <= box <= 784 / 3 + 20  # 2-33% of the image (16-261 pixels), up to rounding each side
        assert len(rows) >= 0.9 * box  # one filled rectangle, not scattered pixels
    assert len({tuple(image[0].nonzero().min(0).values.tolist()) for image in out}) > 100  # each its own place
    erased = augment(images, 0, False, torch.Generator().manual_seed(1), erase_prob=0.25).flatten(1).any(1)
    assert 70 <= erased.sum() <= 130  # 100 expected: a binomial(400, 0.25) lands here but for 1 in 1000 seeds
    replay = augment(images, 0, False, torch.Generator().manual_seed(1), erase_prob=0.25).flatten(1).any(1)
    assert torch.equal(erased, replay)  # from the generator alone: a resumed run replays its epochs
    plain = augment(images[:8], 2, True, torch.Generator().manual_seed(2))
    assert torch.equal(augment(images[:8], 2, True, torch.Generator().manual_seed(2), erase_prob=0.0), plain)


def _numbered(n: int = 8, size: int = 16) -> torch.Tensor:
    """Image i filled with 10·(i + 1): every pixel tells which image it came from."""
    return (torch.arange(1, n + 1, dtype=torch.uint8) * 10).view(n, 1, 1, 1).expand(n, 1, size, size).contiguous()


def test_mixup_blends_each_image_with_its_mirror_by_a_beta_drawn_share():
    images = _numbered()
    lams = []
    for seed in range(300):
        mixed, lam = mix_batch(images, torch.Generator().manual_seed(seed), mixup_alpha=1.0)
        expected = (lam * images.float() + (1 - lam) * images.flip(0).float()).round()
        assert mixed.dtype == torch.uint8 and torch.equal(mixed.float(), expected)
        lams.append(lam)
    # Beta(1, 1) is uniform: mean 1/2, and about a tenth of the draws in each tenth of [0, 1]
    assert 0.45 < sum(lams) / len(lams) < 0.55 and min(lams) < 0.05 and max(lams) > 0.95
    # a small alpha puts λ near 0 or 1 (Beta(0.2, 0.2) is U-shaped): images mostly stay themselves
    small = [mix_batch(images, torch.Generator().manual_seed(seed), mixup_alpha=0.2)[1] for seed in range(300)]
    assert sum(min(lam, 1 - lam) < 0.1 for lam in small) > 150


def test_cutmix_pastes_one_box_from_the_mirror_whose_area_is_one_minus_lambda():
    images = _numbered()
    areas = set()
    for seed in range(100):
        mixed, lam = mix_batch(images, torch.Generator().manual_seed(seed), cutmix_alpha=1.0)
        from_mirror = mixed != images  # no image equals its mirror here, so every pasted pixel differs
        assert torch.equal(mixed[from_mirror], images.flip(0)[from_mirror])
        assert torch.equal(from_mirror, from_mirror[:1].expand_as(from_mirror))  # the same box in every image
        rows, cols = from_mirror[0, 0].nonzero(as_tuple=True)
        pasted = len(rows)
        if pasted:
            assert pasted == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # one filled rectangle
        assert lam == pytest.approx(1 - pasted / 256)
        areas.add(pasted)
    assert len(areas) > 20


def test_mixing_choice_probability_and_replay():
    images = _numbered()
    modes = []
    for seed in range(200):
        mixed, lam = mix_batch(images, torch.Generator().manual_seed(seed), mixup_alpha=1.0, cutmix_alpha=1.0, prob=0.5)
        mirror_or_own = ((mixed == images) | (mixed == images.flip(0))).all()
        modes.append("none" if lam == 1.0 and torch.equal(mixed, images) else "cutmix" if mirror_or_own else "mixup")
    # half the batches are left alone, the rest split evenly between the two
    assert 70 <= modes.count("none") <= 130 and modes.count("cutmix") >= 30 and modes.count("mixup") >= 30
    replay = mix_batch(images, torch.Generator().manual_seed(7), 0.4, 1.0, 0.5)
    again = mix_batch(images, torch.Generator().manual_seed(7), 0.4, 1.0, 0.5)
    assert torch.equal(replay[0], again[0]) and replay[1] == again[1]
    # off: the same tensor back and the generator untouched, so runs without mixing replay as before
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    assert mix_batch(images, generator)[0] is images and torch.equal(generator.get_state(), state)
    with pytest.raises(ValueError, match="alphas must be >= 0"):
        mix_batch(images, generator, mixup_alpha=-1.0)


def test_ensemble_logits_average_the_members_probabilities():
    first, second = torch.randn(4, 10), torch.randn(4, 10) * 3
    ensembled = ensemble_logits([first, second])
    assert torch.allclose(ensembled.softmax(-1), (first.softmax(-1) + second.softmax(-1)) / 2, atol=1e-6)
    assert torch.allclose(ensembled.exp().sum(-1), torch.ones(4), atol=1e-5)  # log-probabilities already
    assert ensemble_logits([first]) is first  # one teacher teaches with its own logits
    with pytest.raises(ValueError, match="at least one"):
        ensemble_logits([])


def test_lr_schedules():
    cosine = lr_lambda("cosine", total_steps=100, warmup_steps=10)
    assert cosine(0) == pytest.approx(0.1) and cosine(9) == pytest.approx(1.0)
    assert cosine(55) == pytest.approx(0.5) and cosine(100) == pytest.approx(0.0, abs=1e-12)
    onecycle = lr_lambda("onecycle", total_steps=100, warmup_steps=0)
    assert (
        onecycle(0) == pytest.approx(0.04)
        and onecycle(30) == pytest.approx(1.0)
        and onecycle(100) == pytest.approx(1e-3)
    )


def test_autocast_dtype_follows_the_hardware(monkeypatch):
    from lightnets.training import runtime as train_module

    cpu = torch.device("cpu")
    monkeypatch.setattr(train_module, "_cpu_has_native_bf16", lambda: False)
    assert train_module.autocast_dtype(cpu, "auto") is None  # emulated bf16 is slower than float32
    with pytest.warns(UserWarning, match="no native bf16 .* many times slower than in float32 \\(--amp off\\)"):
        assert train_module.autocast_dtype(cpu, "bf16") is torch.bfloat16
    monkeypatch.setattr(train_module, "_cpu_has_native_bf16", lambda: True)
    # Native bf16 slows depthwise-heavy models (MobileNet v1 α=1.0: 281 → 400 ms a step): opt-in only.
    assert train_module.autocast_dtype(cpu, "auto") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert train_module.autocast_dtype(cpu, "bf16") is torch.bfloat16
    assert train_module.autocast_dtype(cpu, "off") is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert train_module.autocast_dtype(torch.device("cuda"), "auto") is torch.float16  # with loss scaling
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert train_module.autocast_dtype(torch.device("cuda"), "auto") is torch.bfloat16


def _toy(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randint(
        0, 256, (n, 1, 28, 28), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    ), torch.arange(n) % 4


def test_fit_replays_from_its_generator_and_leaves_frozen_batchnorms_alone():
    images, labels = _toy()
    torch.manual_seed(0)
    start = lightnets.create_model("smallcnn_3x2", in_chans=1, num_classes=4)
    start.features.conv1.requires_grad_(False)
    frozen = {name: value.clone() for name, value in start.state_dict().items() if name.startswith("features.conv1.")}
    config = FitConfig(batch_size=16, pad=2, erase_prob=0.5, mixup=0.4, cutmix=1.0, frozen_bn_eval=True)
    runs = []
    for _ in range(2):
        model = copy.deepcopy(start)
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
        torch.manual_seed(1)  # dropout draws from the global generator
        runs.append((model, fit(model, images, labels, optimizer, config, generator=torch.Generator().manual_seed(3))))
    (first, stats), (second, _) = runs
    assert (stats.steps, stats.images, len(stats.losses)) == (4, 64, 4) and math.isfinite(stats.loss)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name  # every random choice came from the generator
    assert all(torch.equal(first.state_dict()[name], value) for name, value in frozen.items())  # running stats too
    assert first.training and not first.features.conv1.bn.training
    assert not torch.equal(first.features.conv2.conv.weight, start.features.conv2.conv.weight)


def test_fit_refuses_a_short_order_and_stops_at_a_non_finite_loss():
    images, labels = _toy(32)
    model = lightnets.create_model("smallcnn_3x2", in_chans=1, num_classes=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with pytest.raises(ValueError, match="3 steps of 16 images need 48 indices in order, it has 20"):
        fit(model, images, labels, optimizer, FitConfig(batch_size=16), order=torch.arange(20), steps=3)
    with torch.no_grad():
        model.get_classifier().weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"loss is nan at finetune step 0; lower lr \(now 0.05\)"):
        fit(model, images, labels, optimizer, FitConfig(batch_size=16, hint="lower lr (now 0.05)"), desc="finetune")


def test_evaluate_counts_as_by_hand():
    images, labels = _toy(50)
    model = lightnets.create_model("smallcnn_3x2", in_chans=1, num_classes=4)
    result = evaluate(model, images, labels, batch_size=16)  # four batches, the last one short
    with torch.no_grad():
        logits = model(prepare_for(model)(images))
    assert result["count"] == 50 and not model.training
    assert result["top1"] == round(100 * (logits.argmax(1) == labels).float().mean().item(), 2)
    assert result["top5"] == 100.0  # 4 classes: always in the top 5
    assert result["loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), abs=1e-4)
