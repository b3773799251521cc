"""Confusion matrix, IoU and disagreement map checked against hand-computed numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_poregrain.analysis.metrics import (
    ConfusionMatrix,
    confusion_matrix,
    disagreement_map,
    format_table,
)
from napari_poregrain.synthetic import make_sample

# reference (255 = ignore, 9 = also outside the classes) and prediction
TRUTH = np.array(
    [
        [0, 0, 1, 1, 255],
        [0, 1, 1, 2, 9],
        [2, 2, 0, 1, 255],
    ],
    dtype=np.uint8,
)
PRED = np.array(
    [
        [0, 1, 1, 1, 2],
        [0, 1, 0, 2, 1],
        [2, 1, 0, 2, 0],
    ],
    dtype=np.uint8,
)
# counted pixels (truth, pred):
#   (0,0) x3  (0,1) x1
#   (1,1) x3  (1,0) x1  (1,2) x1
#   (2,2) x2  (2,1) x1
EXPECTED = [[3, 1, 0], [1, 3, 1], [0, 1, 2]]


def test_hand_computed_matrix_and_scores():
    cm = confusion_matrix(TRUTH, PRED)
    assert cm.matrix.dtype == np.int64
    assert cm.matrix.tolist() == EXPECTED
    assert cm.total == 12  # 15 pixels, 3 ignored
    iou = cm.per_class_iou()
    # matrix: TP 3, FP 1 (grain row), FN 1 -> 3/5
    # grain:  TP 3, FP 1+1, FN 1+1 -> 3/7
    # pore:   TP 2, FP 1, FN 1 -> 2/4
    assert iou == pytest.approx([3 / 5, 3 / 7, 2 / 4])
    assert cm.mean_iou() == pytest.approx((3 / 5 + 3 / 7 + 1 / 2) / 3)
    assert cm.pixel_accuracy() == pytest.approx(8 / 12)
    assert cm.precision() == pytest.approx([3 / 4, 3 / 5, 2 / 3])
    assert cm.recall() == pytest.approx([3 / 4, 3 / 5, 2 / 3])


def test_asymmetric_precision_recall():
    truth = np.array([[1, 1, 1, 0]])
    pred = np.array([[1, 0, 0, 0]])
    cm = confusion_matrix(truth, pred)
    assert cm.precision() == pytest.approx([1 / 3, 1.0, None])
    assert cm.recall() == pytest.approx([1.0, 1 / 3, None])


def test_absent_class_is_none_and_left_out_of_mean():
    truth = np.array([[0, 0, 1, 1], [255, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 1, 1]])  # the 2 sits on an ignored pixel
    cm = confusion_matrix(truth, pred)
    assert cm.matrix.tolist() == [[2, 1, 0], [0, 4, 0], [0, 0, 0]]
    iou = cm.per_class_iou()
    assert iou[0] == pytest.approx(2 / 3)
    assert iou[1] == pytest.approx(4 / 5)
    assert iou[2] is None
    assert cm.mean_iou() == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert cm.precision()[2] is None and cm.recall()[2] is None


def test_class_only_in_prediction_scores_zero():
    truth = np.array([[0, 0, 0, 1]])
    pred = np.array([[0, 2, 0, 1]])
    cm = confusion_matrix(truth, pred)
    assert cm.per_class_iou() == pytest.approx([2 / 3, 1.0, 0.0])
    assert cm.recall()[2] is None and cm.precision()[2] == 0.0


def test_empty_matrix_is_all_none():
    cm = confusion_matrix(np.full((3, 3), 255), np.zeros((3, 3), np.uint8))
    d = cm.to_dict()
    assert d["per_class_iou"] == {"matrix": None, "grain": None, "pore": None}
    assert d["mean_iou"] is None and d["pixel_accuracy"] is None
    assert d["n_images"] == 1
    assert "n/a" in format_table(cm)


def test_to_dict_shape_is_json():
    d = confusion_matrix(TRUTH, PRED).to_dict()
    assert set(d) == {
        "per_class_iou",
        "mean_iou",
        "pixel_accuracy",
        "confusion_matrix",
        "n_images",
    }
    assert list(d["per_class_iou"]) == ["matrix", "grain", "pore"]
    assert d["confusion_matrix"] == EXPECTED
    back = json.loads(json.dumps(d))
    assert back == d


def test_streaming_equals_concatenated():
    pairs = []
    for seed in range(4):
        image, truth = make_sample((48 + 8 * seed, 64), seed=seed)
        rng = np.random.default_rng(seed)
        pred = truth.copy()
        flip = rng.random(truth.shape) < 0.2
        pred[flip] = rng.integers(0, 3, int(flip.sum()))
        truth = truth.copy()
        truth[rng.random(truth.shape) < 0.05] = 255
        pairs.append((truth, pred))
    streamed = ConfusionMatrix()
    for t, p in pairs:
        streamed.update(t, p)
    whole = confusion_matrix(
        np.concatenate([t for t, _ in pairs]), np.concatenate([p for _, p in pairs])
    )
    assert streamed.matrix.tolist() == whole.matrix.tolist()
    assert streamed.n_images == 4
    assert streamed.per_class_iou() == pytest.approx(whole.per_class_iou())
    # merging two halves gives the same counts too
    a, b = ConfusionMatrix(), ConfusionMatrix()
    for t, p in pairs[:2]:
        a.update(t, p)
    for t, p in pairs[2:]:
        b.update(t, p)
    assert a.merge(b).matrix.tolist() == streamed.matrix.tolist()
    assert a.n_images == 4


def test_batch_counts_images():
    cm = ConfusionMatrix().update(np.zeros((5, 4, 4), np.int64), np.zeros((5, 4, 4), np.int64))
    assert cm.n_images == 5 and cm.matrix[0, 0] == 80


def test_valid_mask_ignores_outside():
    valid = np.zeros(TRUTH.shape, bool)
    valid[:, :2] = True
    cm = confusion_matrix(TRUTH, PRED, valid)
    # column 0..1: (0,0)(0,1)(0,0)(1,1)(2,2)(2,1)
    assert cm.matrix.tolist() == [[2, 1, 0], [0, 1, 0], [0, 1, 1]]


def test_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="outside 0..2"):
        confusion_matrix(np.zeros((2, 2), int), np.full((2, 2), 3))
    with pytest.raises(TypeError, match="integer"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 2), int))


def test_disagreement_codes_and_precedence():
    dis = disagreement_map(TRUTH, PRED)
    expected = np.array(
        [
            [0, 1, 0, 0, 0],  # (0->1) false grain; 255 ignored
            [0, 0, 2, 0, 0],  # (1->0) missed grain; 9 ignored
            [0, 4, 0, 2, 0],  # (2->1) missed pore wins over false grain; (1->2) missed grain
        ],
        dtype=np.uint8,
    )
    assert dis.dtype == np.uint8
    np.testing.assert_array_equal(dis, expected)
    dis2 = disagreement_map(np.array([[0, 0, 2]]), np.array([[2, 0, 0]]))
    np.testing.assert_array_equal(dis2, [[3, 0, 4]])


def test_table_lists_classes_and_mean():
    text = format_table(confusion_matrix(TRUTH, PRED))
    for word in ("matrix", "grain", "pore", "mean IoU", "pixel accuracy"):
        assert word in text
    assert f"{3 / 7:.4f}" in text


def test_chunked_counting_and_wide_dtypes(monkeypatch):
    import napari_poregrain.analysis.metrics as metrics

    rng = np.random.default_rng(1)
    truth = rng.integers(-2, 5, (37, 41)).astype(np.int64)  # -2, -1, 3, 4 are ignored
    pred = rng.integers(0, 3, truth.shape).astype(np.int32)
    pred[~((truth >= 0) & (truth <= 2))] = 1000  # never looked at
    t, p = truth.ravel(), pred.ravel()
    expected = [[int(np.count_nonzero((t == a) & (p == b))) for b in range(3)] for a in range(3)]
    whole = confusion_matrix(truth, pred)
    monkeypatch.setattr(metrics, "_CHUNK", 7)
    chunked = confusion_matrix(truth, pred)
    assert whole.matrix.tolist() == expected == chunked.matrix.tolist()
    pred[0, 0], truth[0, 0] = 7, 1
    before = ConfusionMatrix()
    with pytest.raises(ValueError, match="1 labelled pixels"):
        before.update(truth, pred)
    assert before.total == 0  # a refused pair adds nothing


def test_update_sample_scores_only_the_samples_usable_pixels():
    from napari_poregrain.sample import Sample

    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, (12, 10)).astype(np.uint8)
    truth[0, :4] = 255
    pred = rng.integers(0, 3, (12, 10)).astype(np.uint8)
    pred[9:] = 7  # below the data bar: never looked at
    valid = np.ones(truth.shape, bool)
    valid[:, 8:] = False
    pred[:, 8:] = 9  # outside the region: never looked at
    sample = Sample(np.zeros((12, 10), np.uint8), truth, data_bar_row=9, valid=valid)
    cm = ConfusionMatrix().update_sample(sample, pred)
    by_hand = ConfusionMatrix().update(truth[:9, :8], pred[:9, :8])
    np.testing.assert_array_equal(cm.matrix, by_hand.matrix)
    assert cm.total == 9 * 8 - 4 and cm.n_images == 1
    with pytest.raises(ValueError, match="no labels"):
        ConfusionMatrix().update_sample(Sample(truth, name="bare"), pred)


def test_update_sample_of_a_stack_counts_each_slice():
    from napari_poregrain.sample import Sample

    truth = np.zeros((3, 4, 4), np.uint8)
    truth[:, :2] = 1
    cm = ConfusionMatrix().update_sample(Sample(truth, truth), truth)
    assert cm.n_images == 3 and cm.pixel_accuracy() == 1.0
