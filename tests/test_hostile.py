"""Hostile inputs (see HOSTILE.md): every case ends in a result or one clear error type.

Property-based (hypothesis): random shapes, dtypes, NaN/inf and huge values thrown at
``predict``, the image reader (incl. truncated files), the confusion matrix and the checkpoint
loader. Small ``max_examples`` and a tiny model keep the whole file well under a minute.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import tifffile
import torch
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from safetensors.torch import save as st_save

from napari_poregrain.analysis.metrics import confusion_matrix
from napari_poregrain.inference.predict import predict
from napari_poregrain.io.images import ImageReadError, read_sample
from napari_poregrain.model import CheckpointError, load_checkpoint, new_model
from napari_poregrain.preprocess import Normalization, intensity_range, normalize, to_grey
from napari_poregrain.synthetic import make_sample

FAST = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DTYPES = ["bool", "uint8", "uint16", "int16", "int32", "int64", "float16", "float32", "float64"]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -1.0, 1e6, -1e30, 1e30, 1e300, -1e300, 5e-324]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return new_model("resnet18", name="hostile")


@st.composite
def images(draw, max_side: int = 24):
    """Arrays of 0-4 dimensions (some empty), any pixel dtype, with special values for floats."""
    dtype = np.dtype(draw(st.sampled_from([*DTYPES, "complex64"])))
    shape = draw(
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=max_side)  # most: 2-D
        | hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=max_side)
    )
    assume(np.prod(shape) <= 2048)
    assume(len(shape) != 3 or shape[0] <= 2 or shape[-1] in (3, 4))  # a stack: slice by slice
    arr = draw(hnp.arrays(dtype, shape, elements=_elements(dtype)))
    if dtype.kind == "f" and arr.size and draw(st.booleans()):
        flat = arr.reshape(-1)
        for i in draw(st.lists(st.integers(0, flat.size - 1), max_size=4)):
            with np.errstate(over="ignore"):
                flat[i] = draw(st.sampled_from(SPECIAL))
    return arr


def _elements(dtype: np.dtype):
    if dtype.kind == "f" or dtype.kind == "c":
        return st.floats(-1e4, 1e4, width=min(32, dtype.itemsize * 8) if dtype.kind == "f" else 32)
    return None


def _check_prediction(result, image: np.ndarray) -> None:
    labels = result.labels
    spatial = image.shape[:-1] if labels.ndim < image.ndim else image.shape
    assert labels.shape == spatial and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1, 2}


@FAST
@given(image=images())
def test_predict_gives_a_class_map_or_one_value_error(model, image):
    try:
        result = predict(image, model, tile=64, device="cpu")
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    _check_prediction(result, image)


@pytest.fixture(scope="module")
def reference(model):
    grey = make_sample((64, 64), seed=3)[0]
    return grey, predict(grey, model, tile=64, device="cpu").labels


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("scale", [1e-300, 1e-30, 1e30, 1e300])
def test_scaled_float_images_give_the_same_classes_or_are_refused(model, reference, scale, dtype):
    grey, expected = reference
    with np.errstate(over="ignore", under="ignore"):
        image = (grey.astype(np.float64) * scale).astype(dtype)
    if dtype == "float64" and scale in (1e-300, 1e300):  # no float32 can hold them: refused
        with pytest.raises(ValueError, match="float32 .* rescale the image"):
            predict(image, model, tile=64, device="cpu")
        return
    if not np.isfinite(image).any():  # float32 turned every value into inf
        with pytest.raises(ValueError, match="no finite pixel value"):
            predict(image, model, tile=64, device="cpu")
        return
    got = predict(image, model, tile=64, device="cpu").labels
    if np.isfinite(image).all() and np.unique(image).size > 2:
        assert (got == expected).mean() > 0.99  # a percentile stretch ignores the scale
    else:  # float32 flushed the values to 0 or inf: handled, whatever the classes
        assert got.shape == expected.shape


def test_empty_stack_and_huge_float64_are_one_clear_error(model):
    with pytest.raises(ValueError, match="has no pixels"):
        predict(np.zeros((0, 64, 64)), model, tile=64)
    with pytest.raises(ValueError, match="beyond the float32 range"):
        predict(make_sample((64, 64), seed=1)[0] * 1e300, model, tile=64)
    with pytest.raises(ValueError, match="no finite pixel value"):
        predict(np.full((64, 64), np.nan), model, tile=64)


@FAST
@given(image=images(max_side=40))
def test_grey_and_normalisation_are_finite_or_refused(image):
    try:
        grey = to_grey(image)
        low, high = intensity_range(grey, Normalization())
    except ValueError as exc:
        assert str(exc)
        return
    assert np.isfinite([low, high]).all() and high > low
    assert np.isfinite(normalize(grey, low, high, Normalization())).all()


@st.composite
def image_files(draw):
    """(suffix, bytes): a valid TIFF or PNG of a random array, possibly truncated."""
    suffix = draw(st.sampled_from([".tif", ".png"]))
    if suffix == ".tif":
        dtype = np.dtype(draw(st.sampled_from(DTYPES[1:])))
        shape = draw(st.sampled_from([(0, 5), (1, 1), (7, 9), (8, 8, 3), (2, 6, 6)]))
        arr = draw(hnp.arrays(dtype, shape, elements=_elements(dtype)))
        if dtype.kind == "f" and arr.size and draw(st.booleans()):
            with np.errstate(over="ignore"):
                arr.reshape(-1)[0] = draw(st.sampled_from(SPECIAL))
        buf = io.BytesIO()
        tifffile.imwrite(buf, arr)
        data = buf.getvalue()
    else:
        arr = draw(hnp.arrays(np.uint8, draw(st.sampled_from([(1, 1), (9, 7), (6, 6, 3)]))))
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        data = buf.getvalue()
    cut = draw(st.one_of(st.just(len(data)), st.integers(0, len(data))))
    return suffix, data[:cut]


@pytest.mark.filterwarnings("ignore:.*zero-size array")
@FAST
@given(file=image_files())
def test_reader_gives_a_sample_or_one_image_read_error(tmp_path_factory, file):
    suffix, data = file
    path = tmp_path_factory.mktemp("hostile") / f"x{suffix}"
    path.write_bytes(data)
    try:
        sample = read_sample(path)
    except ImageReadError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    pixels = np.asarray(sample.pixels)
    assert pixels.size > 0
    if pixels.dtype.kind == "f":
        assert np.isfinite(pixels).all() and np.abs(pixels).max() < 3.5e38


label_arrays = st.one_of(
    hnp.arrays(
        st.sampled_from([np.uint8, np.int16, np.int64, bool, np.float32]),
        st.sampled_from([(4, 4), (3, 5), (0, 4), (4,)]),
        elements=None,
    ),
)


@FAST
@given(truth=label_arrays, pred=label_arrays)
def test_confusion_matrix_counts_or_refuses(truth, pred):
    try:
        cm = confusion_matrix(truth, pred)
    except (ValueError, TypeError) as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert 0 <= cm.total <= truth.size
    assert cm.mean_iou() is None or 0.0 <= cm.mean_iou() <= 1.0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
META_KEYS = ["format", "format_version", "architecture", "encoder", "in_channels", "classes"]
META_KEYS += ["ignore_index", "normalization", "refine", "pixel_size_nm", "name", "provenance"]


@pytest.fixture(scope="module")
def weights(model):
    return {k: v.contiguous() for k, v in model.net.state_dict().items()}


@FAST
@given(
    key=st.sampled_from(META_KEYS),
    value=json_values,
    whole=st.booleans(),
    cut=st.none() | st.integers(0, 4000),
)
def test_checkpoint_loader_gives_a_model_or_checkpoint_error(
    tmp_path_factory, model, weights, key, value, whole, cut
):
    meta = value if whole else {**model.meta.to_dict(), key: value}
    data = st_save(weights, metadata={"poregrain": json.dumps(meta)})
    path = tmp_path_factory.mktemp("ckpt") / "m.safetensors"
    path.write_bytes(data if cut is None else data[:cut])
    try:
        loaded = load_checkpoint(path)
    except CheckpointError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    assert loaded.meta.encoder == "resnet18" and loaded.meta.normalization.std > 0


# -- recipes (issue 26): any key, any TOML value -> a Recipe with values of the schema's types, or
# one sentence naming the file; never a TypeError deep in training, never a value silently wrong
_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=6)
_scalars = st.integers(-(2**40), 2**40) | st.floats() | st.booleans() | _text
toml_values = _scalars | st.lists(_scalars, max_size=3)
TRAIN_KEYS = ["steps", "crop", "batch", "lr", "scale_range", "seed", "patience", "amp", "stepz"]
SOURCE_KEYS = ["name", "images", "labels", "val", "repeat", "synthetic", "count", "size", "imgs"]
MODEL_KEYS = ["encoder", "refine", "name", "init", "encodr"]


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not np.isfinite(value):
        return "nan" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def _section(header: str, table: dict) -> str:
    return header + "\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in table.items())


@settings(FAST, max_examples=40)
@given(
    model=st.dictionaries(st.sampled_from(MODEL_KEYS), toml_values, max_size=2),
    train=st.dictionaries(st.sampled_from(TRAIN_KEYS), toml_values, max_size=3),
    source=st.dictionaries(st.sampled_from(SOURCE_KEYS), toml_values, max_size=3),
)
@example(model={"encodr": "x"}, train={"steps": True}, source={})  # used to train, 1 step
@example(model={}, train={"crop": "64", "scale_range": 3}, source={"images": 5})
def test_recipe_loader_gives_typed_settings_or_one_sentence(
    tmp_path_factory, model, train, source
):
    from napari_poregrain.training.config import TrainConfig
    from napari_poregrain.training.recipe import load_recipe

    path = tmp_path_factory.mktemp("recipe") / "r.toml"
    source = {"name": "s", "synthetic": True, **source}
    path.write_text(
        _section("[model]", model) + _section("[train]", train) + _section("[[source]]", source)
    )
    try:
        recipe = load_recipe(path)
    except ValueError as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
        return
    for key, value in recipe.train.items():  # what the schema let through has the field's type
        default = getattr(TrainConfig(), key)
        if isinstance(default, bool):
            assert isinstance(value, bool)
        elif isinstance(default, int):
            assert isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            assert isinstance(value, (int, float)) and np.isfinite(value)
    assert all(isinstance(recipe.model[k], str) for k in ("encoder", "name") if k in recipe.model)
    assert all(isinstance(s.name, str) and isinstance(s.repeat, int) for s in recipe.sources)


# -- option combinations (issue 26): what the parser accepts never makes a degenerate tile plan
@settings(FAST, max_examples=40)
@given(
    tile=st.none() | st.integers(1, 40).map(lambda n: 16 * n),
    overlap=st.floats(0, 0.999),
    length=st.integers(1, 5000),
)
@example(tile=16, overlap=0.99, length=100)  # was a ZeroDivisionError in tiling.layout
def test_accepted_tile_and_overlap_always_make_a_tile_plan(tile, overlap, length):
    from napari_poregrain.cli import build_parser
    from napari_poregrain.inference.options import CPU_TILE, DEFAULT_TILE
    from napari_poregrain.inference.tiling import layout, overlap_pixels

    argv = ["predict", "x.tif", "--out", "o", "--overlap", repr(overlap)]
    argv += ["--tile", str(tile)] if tile else []
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 2
        return
    for side in [args.tile] if args.tile else [CPU_TILE, DEFAULT_TILE]:
        size, starts = layout(length, side, overlap_pixels(side, args.overlap))
        assert starts[0] == 0 and starts[-1] + size >= length and size % 16 == 0
        assert all(b - a <= size for a, b in zip(starts, starts[1:]))  # no gap between tiles


_numbers = (
    st.integers(-(2**70), 2**70).map(str) | st.floats().map(repr) | st.sampled_from(["x", ""])
)


@settings(FAST, max_examples=40)
@given(
    options=st.dictionaries(
        st.sampled_from(["--crop", "--batch", "--lr", "--mix", "--seed", "--workers", "--steps"]),
        _numbers,
        max_size=4,
    ),
    scale=st.none() | st.tuples(_numbers, _numbers),
)
def test_accepted_train_options_always_make_a_valid_config(options, scale):
    from napari_poregrain.cli import build_parser
    from napari_poregrain.cli._train_args import CONFIG_OPTIONS
    from napari_poregrain.training.config import TrainConfig

    argv = ["train", "--images", "i", "--labels", "l", "--out", "m.safetensors"]
    argv += [f"{k}={v}" for k, v in options.items()]
    argv += ["--scale-range", *scale] if scale else []
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 2
        return
    cfg = TrainConfig()
    for dest, name in CONFIG_OPTIONS.items():
        if getattr(args, dest, None) is not None:
            setattr(
                cfg,
                name,
                tuple(getattr(args, dest)) if dest == "scale_range" else getattr(args, dest),
            )
    cfg.validate()  # what the parser lets through is a usable setting
    assert 0 <= cfg.seed < 2**32 and 0 <= cfg.num_workers <= 64
