import copy

import torch

from napari_poregrain.model import load_checkpoint
from napari_poregrain.sample import Sample
from napari_poregrain.synthetic import SHIFTED, make_sample
from napari_poregrain.training import Trainer, finetune_config
from napari_poregrain.training.averaging import WeightMix, interpolate


def test_interpolate_mixes_every_float_tensor_and_keeps_counters(tiny_model):
    start = tiny_model.net
    tuned = copy.deepcopy(start)
    with torch.no_grad():
        for v in tuned.state_dict().values():
            if v.is_floating_point():
                v.add_(1.0)
            else:
                v.add_(7)
    mixed = interpolate(start.state_dict(), tuned, 0.25).state_dict()
    for key, value in start.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(mixed[key], value + 0.25)
        else:
            assert torch.equal(mixed[key], value + 7)  # BatchNorm counters: the tuned model's
    assert WeightMix(start, 1.0).of(tuned, 5) is tuned  # mix 1: off
    assert WeightMix(start, 0.5).of(tuned, 0) is tuned  # step 0: the starting model itself


def _trainer(tiny_model, tmp_path, mix):
    image, labels = make_sample((160, 160), seed=11, style=SHIFTED)
    cfg = finetune_config(
        steps=12, steps_per_epoch=12, crop=64, batch=2, amp=False, mix=mix, device="cpu"
    )
    sample = Sample(image, labels=labels)
    return Trainer([sample], cfg, tiny_model, tmp_path / f"m{mix}.safetensors")


def _fit(tiny_model, tmp_path, mix):
    return _trainer(tiny_model, tmp_path, mix).fit()


def test_a_mixed_fine_tune_saves_the_interpolation_of_the_same_run(tiny_model, tmp_path):
    full, half = _fit(tiny_model, tmp_path, 1.0), _fit(tiny_model, tmp_path, 0.5)
    assert full.path is not None and half.path is not None, (full.message, half.message)
    assert full.best_epoch == half.best_epoch  # the epoch is chosen on the fine-tuned weights
    start = tiny_model.net.state_dict()
    tuned = load_checkpoint(full.path).net.state_dict()
    mixed = load_checkpoint(half.path)
    assert mixed.meta.provenance["recipe"]["mix"] == 0.5
    assert any("saved 0.5 of the learnt change" in n for n in half.notes), half.notes
    for key, value in mixed.net.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.5 * tuned[key] + 0.5 * start[key])


def test_an_interpolation_no_better_than_the_start_gives_way_to_the_whole_change(
    tiny_model, tmp_path
):
    full = _fit(tiny_model, tmp_path, 1.0)
    trainer = _trainer(tiny_model, tmp_path, 0.5)
    trainer.fit()
    trainer.mixer.baseline = 1.0  # as if the starting model had scored perfectly
    trainer.mixer.settle(trainer)
    assert "saved the whole change" in trainer.result.notes[-1]
    saved = load_checkpoint(trainer.result.path)
    assert saved.meta.provenance["epoch"] == full.best_epoch  # the chosen epoch, not the last
    tuned = load_checkpoint(full.path).net.state_dict()
    for key, value in saved.net.state_dict().items():
        torch.testing.assert_close(value, tuned[key])


def test_a_fine_tune_cancelled_after_its_first_save_still_checks_the_mixed_weights(
    tiny_model, tmp_path
):
    image, labels = make_sample((160, 160), seed=11, style=SHIFTED)
    cfg = finetune_config(
        steps=24, steps_per_epoch=6, crop=64, batch=2, amp=False, mix=0.5, device="cpu"
    )
    trainer = Trainer([Sample(image, labels=labels)], cfg, tiny_model, tmp_path / "c.safetensors")

    def cancel_after_a_save(event):
        if event.kind == "epoch" and event.best:
            trainer.cancel()

    trainer.progress = cancel_after_a_save
    result = trainer.fit()
    assert result.cancelled and result.steps < 24 and result.path is not None
    # the interpolation was scored after the cancel, and the note says what was saved
    assert any("of the learnt change" in n for n in result.notes), result.notes
    assert load_checkpoint(result.path).meta.provenance["epoch"] == result.best_epoch
