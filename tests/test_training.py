"""Training engine: real short runs on small synthetic images (ResNet-18, CPU)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_poregrain.analysis.metrics import ConfusionMatrix
from napari_poregrain.classes import IGNORE, PORE
from napari_poregrain.inference.predict import predict
from napari_poregrain.model import load_checkpoint, new_model, save_checkpoint
from napari_poregrain.preprocess import Normalization
from napari_poregrain.sample import Sample
from napari_poregrain.synthetic import make_sample
from napari_poregrain.training import TrainConfig, load_training_log, log_path_for, train
from napari_poregrain.training.data import CropSampler, prepare_data
from napari_poregrain.training.loss import SegmentationLoss, lr_factor

# Small and fast: 64-pixel crops, no photometric noise unless a test wants it.
FAST = dict(crop=64, batch=4, steps_per_epoch=5, device="cpu", lr=2e-3)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _weights(path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).net.state_dict()


def _miou(model, image, truth) -> float:
    pred = predict(image, model, tile=128, device="cpu").labels
    return ConfusionMatrix().update(truth, pred).mean_iou()


def test_short_fine_tune_lowers_the_loss_and_raises_held_out_iou(tmp_path):
    torch.manual_seed(0)
    start = new_model("resnet18", name="start")
    image, labels = make_sample((160, 160), seed=11)
    held_image, held_truth = make_sample((160, 160), seed=12)
    before = _miou(start, held_image, held_truth)
    cfg = TrainConfig(**FAST, steps=40, seed=0, patience=None)
    result = train([(image, labels)], cfg, start, tmp_path / "tuned.safetensors")
    assert not result.cancelled and result.steps == 40
    losses = [row["train_loss"] for row in result.history if row["train_loss"] is not None]
    assert len(losses) == 8
    assert np.mean(losses[-2:]) < 0.7 * losses[0], losses
    tuned = load_checkpoint(result.path)
    after = _miou(tuned, held_image, held_truth)
    assert after > before + 0.15, (before, after)
    # the best epoch is what was saved, and the log says so
    log = load_training_log(log_path_for(result.path))
    assert [int(r["epoch"]) for r in log] == list(range(9))  # epoch 0 = the starting model
    best = [int(r["epoch"]) for r in log if r["best"] == 1][-1]
    assert best == result.best_epoch == tuned.meta.provenance["epoch"]
    assert result.best_metrics["mean_iou"] == max(r["val_miou"] for r in log)


def test_ignored_pixels_count_in_neither_loss_nor_gradient():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 32, 32, requires_grad=True)
    target = torch.randint(0, 3, (2, 32, 32))
    target[:, :, 16:] = IGNORE
    loss_fn = SegmentationLoss()
    loss = loss_fn(logits, target)
    loss.backward()
    assert torch.all(logits.grad[..., 16:] == 0)
    assert torch.any(logits.grad[..., :16] != 0)
    changed = logits.detach().clone()
    changed[..., 16:] = torch.randn_like(changed[..., 16:]) * 10
    assert torch.equal(loss_fn(changed, target), loss.detach())
    # a batch with no labelled pixel gives a finite zero loss, not NaN
    assert loss_fn(logits.detach(), torch.full_like(target, IGNORE)).item() == 0


def test_seeded_run_is_repeatable_and_blind_to_ignored_pixels(tmp_path):
    """A deterministic CPU run gives identical weights; scrambling the image under 255 labels
    that no crop can reach (and keeping its intensity percentiles) changes nothing."""
    image, labels = make_sample((96, 224), seed=3)
    labels = labels.copy()
    labels[:, 96:] = IGNORE  # crops centre on labelled pixels: windows end before column 144
    scrambled = image.copy()
    block = scrambled[:, 160:]
    scrambled[:, 160:] = np.random.default_rng(1).permutation(block.ravel()).reshape(block.shape)
    val = [make_sample((64, 64), seed=4)]
    cfg = TrainConfig(**{**FAST, "batch": 2}, steps=3, scale_range=(1.0, 1.0), seed=5)
    runs = []
    for i, img in enumerate((image, image, scrambled)):
        res = train([(img, labels)], cfg, None, tmp_path / f"run{i}.safetensors", val_pairs=val)
        runs.append(res)
    w = [_weights(r.path) for r in runs]
    for k in w[0]:
        assert torch.equal(w[0][k], w[1][k]), k
        assert torch.equal(w[0][k], w[2][k]), k
    hist = [[{k: v for k, v in row.items() if k != "seconds"} for row in r.history] for r in runs]
    assert hist[0] == hist[1] == hist[2]
    # and the comparison is sensitive: another seed trains another model
    other = train(
        [(image, labels)],
        TrainConfig(**{**FAST, "batch": 2}, steps=3, scale_range=(1.0, 1.0), seed=6),
        None,
        tmp_path / "other.safetensors",
        val_pairs=val,
    )
    assert any(not torch.equal(w[0][k], v) for k, v in _weights(other.path).items())


def test_ema_saves_the_averaged_weights(tmp_path):
    """The EMA starts as the weights after step 1; with a decay near 1 it stays there, so a
    3-step EMA run saves (almost) what a 1-step run saves, unlike a plain 3-step run."""
    image, labels = make_sample((96, 96), seed=3)
    base = dict(**FAST, scale_range=(1.0, 1.0), seed=5, val_fraction=0.0)
    run = {
        name: _weights(
            train([(image, labels)], TrainConfig(**base, **kw), None, tmp_path / name).path
        )
        for name, kw in {
            "one.safetensors": dict(steps=1),
            "three.safetensors": dict(steps=3),
            "ema.safetensors": dict(steps=3, ema=0.999999),
        }.items()
    }
    one, three, ema = run["one.safetensors"], run["three.safetensors"], run["ema.safetensors"]
    floats = [k for k in one if one[k].is_floating_point()]
    gap = max(float((ema[k] - one[k]).abs().max()) for k in floats)
    moved = max(float((three[k] - one[k]).abs().max()) for k in floats)
    assert gap < 1e-4 < moved
    with pytest.raises(ValueError, match="EMA decay"):
        TrainConfig(ema=1.0).validate()


def test_cancel_keeps_the_starting_model_byte_for_byte(tmp_path):
    torch.manual_seed(0)
    start_path = save_checkpoint(
        new_model("resnet18", name="start"), tmp_path / "start.safetensors"
    )
    start_bytes = start_path.read_bytes()
    start = load_checkpoint(start_path)
    start_weights = {k: v.clone() for k, v in start.net.state_dict().items()}
    stop_at = 7
    seen: list = []

    def progress(event):
        seen.append(event)

    def should_stop():
        return any(e.kind == "step" and e.step >= stop_at for e in seen)

    out = tmp_path / "tuned.safetensors"
    result = train(
        [make_sample((128, 128), seed=1)],
        TrainConfig(**{**FAST, "batch": 2}, steps=50, seed=0),
        start,
        out,
        progress=progress,
        should_stop=should_stop,
    )
    assert result.cancelled and result.steps == stop_at  # stops before the next step
    assert start_path.read_bytes() == start_bytes
    for k, v in start.net.state_dict().items():  # the in-memory starting model, too
        assert torch.equal(v, start_weights[k]), k
    # the last best checkpoint (epoch 5 at the latest) is intact and loads
    assert result.path == out and result.best_epoch in (0, 1)
    saved = load_checkpoint(out)
    assert saved.meta.provenance["epoch"] == result.best_epoch
    assert saved.meta.provenance["parent"]["sha256"] == _sha(start_path)
    assert len(load_training_log(log_path_for(out))) == 2  # epochs 0 and 1


def test_early_stopping_saves_nothing_when_nothing_beats_the_starting_model(tmp_path):
    torch.manual_seed(0)
    start = new_model("resnet18", name="start")
    cfg = TrainConfig(**{**FAST, "lr": 1e-12, "batch": 1}, steps=40, patience=2, freeze_bn=True)
    result = train([make_sample((128, 128), seed=2)], cfg, start, tmp_path / "m.safetensors")
    assert result.stopped_early and result.steps == 10 and result.best_epoch is None
    assert [(r["epoch"], r["best"]) for r in result.history] == [(0, 0), (1, 0), (2, 0)]
    assert result.path is None and not result.improved
    assert "beat the starting model" in result.message
    assert list(tmp_path.iterdir()) == []  # neither a copy of the starting model nor a log


def test_provenance_and_log(tmp_path):
    pairs = [make_sample((96, 128), seed=1), make_sample((128, 96), seed=2)]
    out = tmp_path / "m.safetensors"
    cfg = TrainConfig(**FAST, steps=5, encoder="resnet18")
    result = train(pairs, cfg, None, out, names=["a.tif", "b.tif"], name="my model", half=True)
    model = load_checkpoint(out)
    prov = model.meta.provenance
    assert model.meta.name == "my model"
    assert prov["kind"] == "scratch" and prov["parent"] is None
    assert [d["name"] for d in prov["data"]] == ["a.tif", "b.tif"]
    assert prov["split"]["validation"].startswith("held-out block")
    assert prov["recipe"]["total_steps"] == 5 and prov["recipe"]["crop"] == 64
    assert set(prov["validation"]["per_class_iou"]) == {"matrix", "grain", "pore"}
    assert "created" in prov
    log = load_training_log(result.log_path)
    assert result.log_path == tmp_path / "m.csv" and len(log) == 1
    assert {"train_loss", "val_loss", "val_iou_pore", "val_miou", "lr"} <= set(log[0])


def test_held_out_block_is_never_trained_on():
    image, labels = make_sample((200, 120), seed=7)
    labels = labels.copy()
    labels[:20] = IGNORE
    train_r, val_r, desc = prepare_data(
        [Sample(image, labels=labels)], TrainConfig(crop=64), Normalization()
    )
    (t,), (v,) = train_r, val_r
    assert t.labels.shape[0] + v.labels.shape[0] == 200  # rows split, the longer axis
    np.testing.assert_array_equal(np.concatenate([t.labels, v.labels]), labels)
    labelled = np.count_nonzero(labels != IGNORE)
    assert math.isclose(np.count_nonzero(v.labels != IGNORE) / labelled, 0.2, abs_tol=0.02)
    assert "held-out" in desc["split"]["validation"]


def _quiet(**kw) -> TrainConfig:
    """No photometric or scale augmentation: crops are exact copies of the data."""
    return TrainConfig(
        crop=64, brightness=0, contrast=0, gamma=0, noise=0, scale_range=(1, 1), **kw
    )


def test_crops_are_augmented_jointly():
    image, labels = make_sample((256, 256), seed=0)
    cfg = _quiet()
    train_r, _, _ = prepare_data([Sample(image, labels=labels)], cfg, Normalization())
    region = train_r[0]
    # image == f(label) before augmentation: a flip or turn of only one of them breaks this
    region.u = (region.labels / 4 + 0.1).astype(np.float32)
    sampler = CropSampler(train_r, cfg, Normalization())
    rng = np.random.default_rng(0)
    for _ in range(30):
        x, y = sampler.sample(rng)
        assert x.shape == (1, 64, 64) and y.shape == (64, 64) and y.dtype == torch.int64
        u = (x[0] * 0.25 + 0.5 + 0.5) / 2  # the network input back to [0, 1]
        torch.testing.assert_close(u, y.float() / 4 + 0.1, atol=1e-5, rtol=0)


def test_rare_pores_are_sampled_often():
    labels = np.zeros((256, 256), np.uint8)
    labels[:, :100] = 1
    labels[200:204, 200:204] = PORE  # 16 pore pixels in 65536
    image = (labels * 60 + 40).astype(np.uint8)

    def pore_crops(balance: float) -> int:
        cfg = _quiet(class_balance=balance, val_fraction=0)
        regions, _, _ = prepare_data([Sample(image, labels=labels)], cfg, Normalization())
        sampler = CropSampler(regions, cfg, Normalization())
        rng = np.random.default_rng(0)
        return sum(bool((sampler.sample(rng)[1] == PORE).any()) for _ in range(150))

    balanced, by_frequency = pore_crops(0.75), pore_crops(0.0)
    assert balanced >= 40 and balanced > 2 * by_frequency, (balanced, by_frequency)


def test_scale_and_photometric_augmentation_keep_masks_valid():
    image, labels = make_sample((160, 160), seed=0)
    labels = labels.copy()
    labels[:40] = IGNORE
    cfg = TrainConfig(crop=64, scale_range=(0.7, 1.4))
    train_r, _, _ = prepare_data([Sample(image, labels=labels)], cfg, Normalization())
    sampler = CropSampler(train_r, cfg, Normalization())
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = sampler.sample(rng)
        assert torch.isfinite(x).all()
        assert set(torch.unique(y).tolist()) <= {0, 1, 2, IGNORE}
        assert (y != IGNORE).any()


def test_warm_up_then_cosine():
    f = [lr_factor(s, 100, 10, 0.01) for s in range(100)]
    assert f[0] < f[5] < f[9] <= 1 and all(a >= b for a, b in zip(f[10:], f[11:]))
    assert f[-1] == pytest.approx(0.01, abs=1e-3)


@pytest.mark.parametrize(
    "pairs_fn, message",
    [
        (
            lambda: [(np.zeros((96, 96), np.uint8), np.full((96, 96), IGNORE, np.uint8))],
            "no labelled",
        ),
        (lambda: [(np.zeros((96, 96), np.uint8), np.zeros((96, 80), np.uint8))], "shape"),
        (lambda: [make_sample((24, 96), seed=0)], "smaller than the 32-pixel minimum"),
        (lambda: [(np.zeros((96, 96), np.uint8), np.full((96, 96), 7, np.uint8))], "values [7]"),
        (lambda: [], "no training images"),
    ],
)
def test_bad_input_is_refused_in_one_sentence(tmp_path, pairs_fn, message):
    with pytest.raises(ValueError, match=None) as info:
        train(pairs_fn(), TrainConfig(**FAST, steps=2), None, tmp_path / "m.safetensors")
    text = str(info.value)
    assert message in text and "\n" not in text
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_existing_output_is_never_overwritten(tmp_path):
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="already exists"):
        train([make_sample((64, 64), seed=0)], TrainConfig(**FAST, steps=1), None, out)
    assert out.read_bytes() == b"mine"
    log = tmp_path / "n.csv"
    log.write_text("mine")
    with pytest.raises(FileExistsError, match="n.csv"):
        train(
            [make_sample((64, 64), seed=0)],
            TrainConfig(**FAST, steps=1),
            None,
            tmp_path / "n.safetensors",
        )
    assert log.read_text() == "mine" and not (tmp_path / "n.safetensors").exists()


def test_region_smaller_than_the_window_is_mirrored_with_ignored_labels():
    image, labels = make_sample((80, 200), seed=0)
    cfg = replace(_quiet(val_fraction=0), scale_range=(0.5, 1.0))  # window 128 > 80 rows
    regions, _, _ = prepare_data([Sample(image, labels=labels)], cfg, Normalization())
    sampler = CropSampler(regions, cfg, Normalization())
    u, lab = sampler._window(np.random.default_rng(0))
    w = sampler.window
    assert w > 80 and u.shape == lab.shape == (w, w)
    assert (lab[80:] == IGNORE).all() and (lab[:80] != IGNORE).any()
    np.testing.assert_array_equal(u[80:82], u[78:76:-1])  # reflected about the last row
