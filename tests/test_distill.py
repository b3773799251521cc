import copy

import numpy as np
import torch

from napari_poregrain.classes import IGNORE
from napari_poregrain.sample import Sample
from napari_poregrain.synthetic import SHIFTED, make_sample
from napari_poregrain.training import Trainer, finetune_config
from napari_poregrain.training.distill import Teacher


def test_the_distillation_term_is_zero_for_the_teacher_itself_and_grows_with_change(tiny_model):
    net = tiny_model.net.eval()
    teacher = Teacher(net, torch.device("cpu"), None)
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        same = teacher.loss(x, net(x))
        other = teacher.loss(x, net(x) + torch.randn(2, 3, 64, 64))
    assert float(same) < 1e-6
    assert float(other) > 0.1
    labels = torch.full((2, 64, 64), IGNORE)
    labels[:, :32] = 1  # the top half labelled
    with torch.no_grad():
        changed = net(x) + torch.randn(2, 3, 64, 64)
        full = Teacher(net, torch.device("cpu"), None, labelled=1.0).loss(x, changed, labels)
        free = Teacher(net, torch.device("cpu"), None, labelled=0.0).loss(x, changed, labels)
        top = Teacher(net, torch.device("cpu"), None, labelled=0.0).loss(x, changed, labels * 0)
    assert 0.3 * float(full) < float(free) < 0.7 * float(full)  # only the unlabelled half counts
    assert float(top) == 0.0  # every pixel labelled: the labels alone rule
    assert all(not p.requires_grad for p in teacher.net.parameters())
    assert any(p.requires_grad for p in net.parameters())  # the student is left trainable


def _drift(tiny_model, tmp_path, distill):
    """Fine-tune without matrix labels; how far predictions on new pixels moved."""
    image, labels = make_sample((160, 160), seed=11, style=SHIFTED)
    labels = np.where(labels == 0, IGNORE, labels).astype(np.uint8)  # no matrix labelled
    cfg = finetune_config(
        steps=16, steps_per_epoch=16, crop=64, batch=2, amp=False, mix=1.0, distill=distill,
        device="cpu", lr=3e-3,
    )  # fmt: skip
    out = tmp_path / f"d{distill}.safetensors"
    trainer = Trainer([Sample(image, labels=labels)], cfg, tiny_model, out)
    trainer._setup()
    batches = iter(trainer.loader)
    for _ in range(16):
        trainer.train_step(next(batches))
    other, _ = make_sample((96, 96), seed=12, style=SHIFTED)
    x = torch.from_numpy(other[None, None].astype(np.float32) / 255)
    with torch.no_grad():
        before = torch.softmax(tiny_model.net.eval()(x), 1)
        after = torch.softmax(trainer.net.eval()(x), 1)
    return float((after - before).abs().mean())


def test_distillation_keeps_predictions_closer_to_the_starting_model(tiny_model, tmp_path):
    start = copy.deepcopy(tiny_model.net.state_dict())
    free, kept = _drift(tiny_model, tmp_path, 0.0), _drift(tiny_model, tmp_path, 5.0)
    assert kept < 0.7 * free, (kept, free)
    for key, value in tiny_model.net.state_dict().items():  # the starting model is untouched
        assert torch.equal(value, start[key])
