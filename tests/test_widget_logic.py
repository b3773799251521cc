"""The docks' logic without a viewer or Qt: Samples from layers, jobs, history, names."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import zarr
from napari.layers import Image, Labels, Shapes

from napari_poregrain._widgets._finetune_job import (
    TrainingCurves,
    check_pair,
    model_out_path,
    result_text,
    train_config,
    training_arrays,
)
from napari_poregrain._widgets._iou_history import IoUHistory, ReportJob, shown_cells
from napari_poregrain._widgets._layers import (
    checksum,
    region_mask,
    sample_from_layers,
    scale_nm,
)
from napari_poregrain._widgets._measure_job import MeasureJob
from napari_poregrain._widgets._pairs import class_rank, newest_pair
from napari_poregrain._widgets._progress import StepProgress
from napari_poregrain.classes import IGNORE
from napari_poregrain.model import MODEL_DIR_ENV
from napari_poregrain.training import TrainEvent, TrainResult

RECT = [np.array([[2, 2], [2, 5], [5, 5], [5, 2]])]  # rows and columns 2..5 (corners included)


def _pair(shape=(8, 10)):
    grains = np.zeros(shape, np.uint8)
    grains[0, :3] = 1
    pores = np.zeros(shape, np.uint8)
    pores[7, 5:] = 3  # any non-zero value is pore
    return Labels(grains, name="grains"), Labels(pores, name="pores")


# -- Samples from layers -----------------------------------------------------------------------
def test_sample_keeps_the_layer_data_and_reads_bar_units_and_labels():
    data = np.arange(80, dtype=np.uint8).reshape(8, 10)
    image = Image(data, name="sem", scale=(0.01, 0.01), units=("micrometer", "micrometer"))
    image.metadata["data_bar_row"] = 6
    grains, pores = _pair()
    region = Shapes(RECT, shape_type="rectangle", name="roi", scale=(0.01, 0.01))
    with pytest.raises(ValueError, match=r"'grains' has scale \(1, 1\) but 'sem' has"):
        sample_from_layers(image, grains, pores, region)  # not laid over the image
    grains.scale = pores.scale = (0.01, 0.01)
    s = sample_from_layers(image, grains, pores, region)
    assert s.pixels is data and s.name == "sem" and not s.rgb
    assert s.data_bar_row == 6 and s.pixel_size_nm == 10.0
    assert s.labels[0, :3].tolist() == [1, 1, 1] and s.labels[7, 5:].tolist() == [2] * 5
    assert s.labels.sum() == 3 + 10
    assert s.valid.sum() == 16 and s.valid[2:6, 2:6].all()
    assert s.usable_mask().sum() == 16  # inside the region and above the bar


def test_sample_of_a_lazy_multiscale_rgb_layer_is_not_read():
    level0 = zarr.create_array(store={}, shape=(16, 12, 3), chunks=(8, 8, 3), dtype="uint8")
    level1 = zarr.create_array(store={}, shape=(8, 6, 3), chunks=(8, 6, 3), dtype="uint8")
    image = Image([level0, level1], multiscale=True, rgb=True, name="big")
    s = sample_from_layers(image)
    assert s.pixels is level0 and s.rgb and s.shape == (16, 12)
    assert s.labels is None and s.valid is None and s.pixel_size_nm is None


@pytest.mark.parametrize(
    ("scale", "units", "nm"),
    [
        ((1.0, 1.0), None, None),  # no scale: no pixel size
        ((0.01, 0.01), None, None),  # no units (napari's "pixel"): lengths in px
        ((0.01, 0.01), ("pixel", "pixel"), None),
        ((2e-5, 2e-5), ("mm", "mm"), (20.0, 20.0)),
        ((5.0, 5.0), ("nm", "nm"), (5.0, 5.0)),
        ((0.02, 0.01), ("micrometer", "micrometer"), (20.0, 10.0)),
    ],
)
def test_scale_nm_from_scale_and_units(scale, units, nm):
    kwargs = {} if units is None else {"units": units}
    assert scale_nm(Image(np.zeros((4, 4)), scale=scale, **kwargs)) == nm


def test_non_square_pixels_have_no_pixel_size():
    image = Image(np.zeros((4, 4)), scale=(0.02, 0.01), units=("micrometer", "micrometer"))
    assert sample_from_layers(image).pixel_size_nm is None


def test_bad_layers_get_one_sentence():
    image = Image(np.zeros((6, 6), np.uint8), name="sem")
    grains, pores = _pair()
    with pytest.raises(ValueError, match="are 8x10 but the image is 6x6"):
        sample_from_layers(image, grains, pores)
    pores.data[0, 0] = 1
    with pytest.raises(ValueError, match="1 pixels are marked both grain and pore"):
        sample_from_layers(Image(np.zeros((8, 10))), grains, pores)
    with pytest.raises(ValueError, match="holds no shapes; draw one first"):
        sample_from_layers(image, region=Shapes(name="empty"))


def test_region_mask_maps_through_world_coordinates():
    image = Image(np.zeros((40, 40), np.uint8), scale=(2, 2))
    shapes = Shapes([np.array([[0, 0], [0, 20], [20, 20], [20, 0]])], shape_type="rectangle")
    mask = region_mask(shapes, image, (40, 40))  # 20 world units = 10 image pixels
    assert mask[:10, :10].all() and not mask[12:, :].any() and not mask[:, 12:].any()
    stack = region_mask(shapes, image, (3, 40, 40))
    assert stack.shape == (3, 40, 40) and (stack == mask).all()


def test_checksum_tells_edited_data_apart():
    a = np.zeros((4, 4), np.uint8)
    b = a.copy()
    assert checksum(a) == checksum(b)
    b[0, 0] = 1
    assert checksum(a) != checksum(b)


# -- fine-tune ---------------------------------------------------------------------------------
def test_newest_pair_prefers_exact_names_of_the_image_shape():
    wrong = Labels(np.zeros((5, 5), np.uint8), name="grains")
    g2, p2 = Labels(np.zeros((8, 10), np.uint8), name="grains [2]"), *_pair()[1:]
    picked = newest_pair([wrong, g2, p2], (8, 10))
    assert picked == {1: g2, 2: p2}
    image = Image(np.zeros((8, 10)), name="sem")
    with pytest.raises(ValueError, match="must be two different layers"):
        check_pair(image, g2, g2)
    with pytest.raises(ValueError, match="choose the grains and pores Labels layers of sem"):
        check_pair(image, g2, None)


def test_training_pair_arrays_cut_the_bar_and_ignore_outside_the_region():
    image = Image(np.ones((8, 10), np.uint8), name="sem")
    image.metadata["data_bar_row"] = 6
    grains, pores = _pair()
    region = Shapes(RECT, shape_type="rectangle")
    pair = check_pair(image, grains, pores, region)
    (sample,) = pair.samples()
    pixels, labels = training_arrays(sample)
    assert pixels.shape == labels.shape == (6, 10)
    assert (labels[2:6, 2:6] == 0).all() and (labels != IGNORE).sum() == 16
    deep = Image(np.zeros((2, 2, 8, 10)), name="deep")
    with pytest.raises(ValueError, match="deep: fine-tuning needs a 2-D image or a stack"):
        check_pair(deep, grains, pores).samples()


def test_a_stack_trains_on_its_labelled_slices_only():
    stack = Image(np.zeros((3, 8, 10), np.uint8), name="stack")
    grains, pores = (Labels(np.zeros((3, 8, 10), np.uint8), name=n) for n in ("grains", "pores"))
    with pytest.raises(ValueError, match="mark no pixel in any of the stack's 3 slices"):
        check_pair(stack, grains, pores).samples()
    grains.data[1, 2, 2] = 1
    pores.data[2, 0, 0] = 1
    samples = check_pair(stack, grains, pores).samples()
    assert [s.name for s in samples] == ["stack[1]", "stack[2]"]
    assert samples[0].labels.shape == (8, 10) and samples[0].labels[2, 2] == 1


def test_newest_pair_skips_kept_copies_and_never_repeats_a_layer():
    kept = Labels(np.zeros((8, 10), np.uint8), name="grains (kept 10:00:00)")
    grains, pores = _pair()
    newer = Labels(np.zeros((8, 10), np.uint8), name="grains")
    assert newest_pair([kept, grains, pores, newer]) == {1: newer, 2: pores}
    assert newest_pair([kept]) == {1: kept}
    assert newest_pair([grains]) == {1: grains}  # not offered as pores too
    assert class_rank("grains by size (nm)", 1) is None and class_rank("pores", 1) is None


def test_model_names_and_config(tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    assert model_out_path(" mine.safetensors ") == tmp_path / "mine.safetensors"
    (tmp_path / "taken.safetensors").write_bytes(b"")
    for name, message in [("a/b", "name of letters"), ("taken", "already exists")]:
        with pytest.raises(ValueError, match=message):
            model_out_path(name)
    (tmp_path / "logged.csv").write_text("")
    with pytest.raises(ValueError, match="logged.csv already exists"):
        model_out_path("logged")
    config = train_config(by_steps=False, length=3, crop=64, batch=2)
    assert config.epochs == 3 and config.steps is None
    with pytest.raises(ValueError, match="batch"):
        train_config(by_steps=True, length=3, crop=64, batch=0)


def test_training_curves_and_result_text(tmp_path):
    curves = TrainingCurves()
    assert curves.add(TrainEvent("step", 1, 2, 1, loss=0.5)) is None
    status = curves.add(TrainEvent("epoch", 2, 2, 1, val_iou=[0.9, None, 0.5], val_miou=0.7))
    assert status == "Epoch 1: validation mean IoU 0.700"
    assert curves.steps == [1] and curves.losses == [0.5] and curves.val_steps == [2]
    assert np.isnan(curves.ious["grain"][0]) and curves.ious["pore"] == [0.5]
    log = tmp_path / "m.csv"
    saved = TrainResult(tmp_path / "m.safetensors", log, 1, {"mean_iou": 0.5})
    assert result_text(saved).startswith("Saved m (epoch 1, validation mean IoU 0.500)")
    assert result_text(TrainResult(None, log, None, None, cancelled=True)).startswith("Cancelled")


# -- IoU report --------------------------------------------------------------------------------
def test_report_job_history_and_csv(tmp_path):
    truth = np.array([[0, 0, 1, 1, 255], [0, 1, 1, 2, 255], [2, 2, 0, 1, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 1, 2], [0, 1, 0, 2, 1], [2, 1, 0, 2, 0]], np.uint8)
    ref = sample_from_layers(Labels(truth, name="truth")).with_labels(truth)
    job = ReportJob(ref, prediction=pred, row={"time": "2025-01-01 10:00:00", "model": "m"})
    report = job(None, None)
    assert report.cm.matrix.tolist() == [[3, 1, 0], [1, 3, 1], [0, 1, 2]]
    assert report.disagreement.tolist() == [[0, 1, 0, 0, 0], [0, 0, 2, 0, 0], [0, 4, 0, 2, 0]]
    history = IoUHistory()
    for k in ("image", "reference", "region"):
        report.row[k] = ""
    history.add(report)
    row = history.add(report)
    assert len(history) == 2 and row["round"] == 2 and row["labelled_pixels"] == 12
    assert shown_cells(row)[:3] == ["2", "10:00:00", "m"]
    rows = list(csv.DictReader(history.export(tmp_path / "h.csv").read_text().splitlines()))
    assert [r["round"] for r in rows] == ["1", "2"]
    assert float(rows[0]["iou_grain"]) == pytest.approx(3 / 7)
    assert history.series("mean_iou")[0] == pytest.approx((3 / 5 + 3 / 7 + 1 / 2) / 3)
    history.clear()
    assert len(history) == 0
    with pytest.raises(ValueError, match="Choose an image layer and a model"):
        ReportJob(ref)


# -- measure -----------------------------------------------------------------------------------
def _measure_layers():
    grains, pores = _pair((20, 20))
    grains.data[2:6, 2:6] = 1
    pores.data[10:14, 10:14] = 1
    for ly in (grains, pores):
        ly.scale = (0.01, 0.01)
        ly.units = ("µm", "µm")
    image = Image(np.zeros((20, 20), np.uint8), name="sem", scale=(0.01, 0.01))
    image.metadata["data_bar_row"] = 18
    return grains, pores, image


def test_measure_job_reads_layers_and_measures():
    grains, pores, image = _measure_layers()
    job = MeasureJob.from_layers(grains, pores, image=image, min_size=1, confidence_threshold=0.5)
    s = job.sample
    assert s.pixel_size_nm == pytest.approx(10.0) and s.data_bar_row == 18
    assert s.name == "layers grains=grains, pores=pores"
    assert job.geometry["scale"] == (0.01, 0.01)
    payloads = []
    m = job(payloads.append, lambda: False)
    assert m.unit == "nm" and m.region_pixels == 18 * 20  # the rows above the bar
    assert m.summary["pores"]["count"] == 2 and payloads[-1] == (3, 3)
    typed = MeasureJob.from_layers(grains, pores, pixel_text="px", min_size=1)
    assert typed.sample.pixel_size_nm is None and typed.sample.data_bar_row is None


def test_measure_job_refuses_inconsistent_layers():
    grains, pores, image = _measure_layers()
    image.scale = (1, 1)  # a pair not laid over the image is refused, not measured misplaced
    with pytest.raises(ValueError, match="not drawn over each other"):
        MeasureJob.from_layers(grains, pores, image=image)
    with pytest.raises(ValueError, match="choose a grains or a pores"):
        MeasureJob.from_layers(None, None)
    pores.scale = (0.02, 0.02)
    with pytest.raises(ValueError, match="different scales|not drawn over each other"):
        MeasureJob.from_layers(grains, pores)
    pores.scale = (0.02, 0.01)
    with pytest.raises(ValueError, match="different pixel sizes in y and x"):
        MeasureJob.from_layers(None, pores)
    far = Shapes([np.array([[50, 50], [50, 60], [60, 60], [60, 50]])], shape_type="rectangle")
    with pytest.raises(ValueError, match="do not cover the labels"):
        MeasureJob.from_layers(grains, None, region=far)
    with pytest.raises(ValueError, match="has shape"):
        MeasureJob.from_layers(grains, None, image=Image(np.zeros((5, 5))))


def test_step_progress_emits_pairs():
    got = []
    StepProgress(got.append)(2, 5)
    assert got == [(2, 5)]


def test_scale_to_nm_refuses_what_is_not_a_length():
    from napari_poregrain.analysis.units import scale_to_nm

    assert scale_to_nm((0.5, 0.5), ("angstrom", "angstrom")) == (0.05, 0.05)
    with pytest.raises(ValueError, match="some in pixels, some not"):
        scale_to_nm((1, 1), ("nm", "pixel"))
    with pytest.raises(ValueError, match="cannot convert the unit 'bogus'"):
        scale_to_nm((1, 1), ("bogus", "bogus"))
    with pytest.raises(ValueError, match="layer 'sem': cannot convert the unit 'second'"):
        scale_nm(Image(np.zeros((4, 4)), name="sem", units=("s", "s")))
