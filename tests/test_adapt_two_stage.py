"""Two-stage fine-tuning: the head, then the network; the best candidate on held-out strokes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_poregrain.adapt.two_stage import CANDIDATES, two_stage
from napari_poregrain.classes import IGNORE
from napari_poregrain.sample import Sample
from napari_poregrain.synthetic import make_sample
from napari_poregrain.training import finetune_config


def _corrected(seed=31, size=(128, 128), step=4):
    image, truth = make_sample(size, seed=seed)
    labels = np.full(truth.shape, IGNORE, np.uint8)
    labels[::step, ::step] = truth[::step, ::step]
    return Sample(image, labels=labels, name=f"s{seed}")


def test_head_only_keeps_the_better_of_head_and_zero_shot(tiny_model):
    result = two_stage([_corrected()], tiny_model, head_only=True, device="cpu")
    assert set(result.scores) == {"zero-shot", "head"} and "network" not in result.seconds
    assert result.stage == "head"  # a random network: the head wins by far
    assert result.scores["head"] > result.scores["zero-shot"] + 0.2
    assert result.model.head is not None and result.model.net is tiny_model.net
    assert "saved head" in result.message


def test_two_stages_score_every_candidate_and_keep_the_best(tiny_model):
    cfg = finetune_config(steps=4, crop=64, batch=2, device="cpu")
    result = two_stage([_corrected()], tiny_model, config=cfg, device="cpu")
    scored = {k: v for k, v in result.scores.items() if v is not None}
    assert result.stage in CANDIDATES and result.scores[result.stage] == max(scored.values())
    assert (result.model.head is not None) == result.stage.endswith("head")
    assert "network" in result.seconds


def test_a_bad_correction_is_refused_before_any_work(tiny_model):
    sample = _corrected()
    one = np.where(sample.labels == IGNORE, IGNORE, 1).astype(np.uint8)
    with pytest.raises(ValueError, match="only grain pixels"):
        two_stage([sample.with_labels(one)], tiny_model, head_only=True, device="cpu")
