import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from napari_poregrain.inference.predict import predict
from napari_poregrain.model import (
    MODEL_DIR_ENV,
    CheckpointError,
    available_models,
    build_model,
    load_checkpoint,
    new_model,
    resolve_model,
    save_checkpoint,
)
from napari_poregrain.synthetic import make_sample


def test_model_shape_and_no_download():
    net = build_model("resnet18").eval()
    with torch.inference_mode():
        out = net(torch.zeros(1, 1, 64, 96))
    assert out.shape == (1, 3, 64, 96)
    with pytest.raises(ValueError, match="unknown encoder"):
        build_model("no-such-encoder")


def test_round_trip_keeps_predictions_and_metadata(tiny_model, tmp_path):
    tiny_model.meta.provenance["data"] = "unit test"
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    loaded = load_checkpoint(path)
    assert loaded.meta.encoder == "resnet18" and loaded.meta.name == "tiny"
    assert loaded.meta.normalization == tiny_model.meta.normalization
    assert loaded.meta.provenance["data"] == "unit test" and "created" in loaded.meta.provenance
    image, _ = make_sample((64, 64), seed=0)
    np.testing.assert_array_equal(
        predict(image, loaded, tile=64).labels, predict(image, tiny_model, tile=64).labels
    )


def test_half_precision_checkpoint_is_smaller_and_loads(tiny_model, tmp_path):
    full = save_checkpoint(tiny_model, tmp_path / "f.safetensors")
    half = save_checkpoint(tiny_model, tmp_path / "h.safetensors", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    assert next(load_checkpoint(half).net.parameters()).dtype == torch.float32


def test_existing_file_is_never_overwritten(tiny_checkpoint, tiny_model):
    before = tiny_checkpoint.read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        save_checkpoint(tiny_model, tiny_checkpoint)
    assert tiny_checkpoint.read_bytes() == before


def test_corrupt_truncated_and_foreign_files_are_refused(tiny_checkpoint, tmp_path):
    data = tiny_checkpoint.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x80\x04not a model at all" * 10)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    for path, message in [
        (truncated, "corrupt or truncated"),
        (garbage, "corrupt or truncated"),
        (foreign, "not a napari-poregrain model"),
        (tmp_path / "missing.safetensors", "no such model file"),
    ]:
        with pytest.raises(CheckpointError, match=message) as info:
            load_checkpoint(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_wrong_metadata_or_weights_are_refused(tiny_model, tmp_path):
    state = {k: v.contiguous() for k, v in tiny_model.net.state_dict().items()}
    meta = tiny_model.meta.to_dict()
    cases = {
        "classes": ({**meta, "classes": ["a", "b"]}, state),
        "encoder": ({**meta, "encoder": "resnet34"}, state),
        "missing": (meta, {k: v for k, v in list(state.items())[1:]}),
        "non-finite": (
            meta,
            {**state, "segmentation_head.0.bias": torch.full((3,), float("nan"))},
        ),
    }
    for name, (m, s) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(s, str(path), metadata={"poregrain": json.dumps(m)})
        with pytest.raises(CheckpointError):
            load_checkpoint(path)


def test_refinement_head_starts_as_identity_and_round_trips(tmp_path):
    torch.manual_seed(0)
    refined = new_model("resnet18", refine=True, name="refined")
    plain = build_model("resnet18").eval()
    head = {k for k in refined.net.state_dict() if k.startswith("refine.")}
    assert head and 0 < sum(refined.net.state_dict()[k].numel() for k in head) < 10_000
    plain.load_state_dict({k: v for k, v in refined.net.state_dict().items() if k not in head})
    x = torch.randn(1, 1, 64, 96)
    with torch.inference_mode():
        assert torch.equal(refined.net(x), plain(x))  # zero-initialised correction
        refined.net.refine[-1].bias.copy_(torch.tensor([0.0, 0.0, 5.0]))
        assert not torch.equal(refined.net(x), plain(x))
    loaded = load_checkpoint(save_checkpoint(refined, tmp_path / "r.safetensors"))
    assert loaded.meta.refine and hasattr(loaded.net, "refine")
    with torch.inference_mode():
        assert torch.equal(loaded.net(x), refined.net(x))


def test_files_without_the_refine_key_load_as_plain_deeplab(tiny_model, tmp_path):
    state = {k: v.contiguous() for k, v in tiny_model.net.state_dict().items()}
    meta = tiny_model.meta.to_dict()
    del meta["refine"]  # a checkpoint written before the head existed
    old = tmp_path / "old.safetensors"
    save_file(state, str(old), metadata={"poregrain": json.dumps(meta)})
    loaded = load_checkpoint(old)
    assert not loaded.meta.refine and not hasattr(loaded.net, "refine")
    wrong = tmp_path / "wrong.safetensors"
    save_file(state, str(wrong), metadata={"poregrain": json.dumps({**meta, "refine": True})})
    with pytest.raises(CheckpointError, match="refinement head .*6 missing"):
        load_checkpoint(wrong)


def test_user_models_are_listed_and_resolved(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    save_checkpoint(tiny_model, tmp_path / "my-shale.safetensors")
    assert available_models()["my-shale"] == tmp_path / "my-shale.safetensors"
    assert resolve_model("my-shale") == tmp_path / "my-shale.safetensors"
    assert resolve_model(tmp_path / "other.safetensors") == tmp_path / "other.safetensors"


@pytest.mark.parametrize(
    ("document", "why"),
    [
        ("null", "its metadata is null, not a JSON object"),
        ("[1, 2]", "its metadata is list, not a JSON object"),
        ('"a string"', "its metadata is str, not a JSON object"),
        ("{not json", "its metadata is not JSON"),
    ],
)
def test_metadata_that_is_not_an_object_is_not_a_model(tiny_model, tmp_path, document, why):
    state = {k: v.contiguous() for k, v in tiny_model.net.state_dict().items()}
    path = tmp_path / "m.safetensors"
    save_file(state, str(path), metadata={"poregrain": document})
    with pytest.raises(CheckpointError, match="not a napari-poregrain model: " + why) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"normalization": "percentile"}, "normalization has the wrong type"),
        ({"normalization": [1, 99]}, "normalization has the wrong type"),
        ({"normalization": {"method": "percentile", "p_low": "1"}}, "p_low is '1'"),
        (
            {
                "normalization": {
                    "method": "percentile",
                    "p_low": 1,
                    "p_high": 99,
                    "mean": 0.5,
                    "std": float("inf"),
                }
            },
            "std is inf",
        ),
        ({"format_version": True}, "format_version has the wrong type"),
        ({"refine": "yes"}, "refine has the wrong type"),
        ({"encoder": 18}, "encoder has the wrong type"),
        ({"provenance": "me"}, "provenance has the wrong type"),
        ({"pixel_size_nm": -3}, "pixel size -3 nm"),
        ({"pixel_size_nm": "5 nm"}, "pixel_size_nm has the wrong type"),
        ({"in_channels": None}, "in_channels has the wrong type"),
        ({"classes": None}, "classes has the wrong type"),
    ],
)
def test_metadata_of_the_wrong_type_is_not_a_model(tiny_model, tmp_path, change, why):
    state = {k: v.contiguous() for k, v in tiny_model.net.state_dict().items()}
    meta = {**tiny_model.meta.to_dict(), **change}
    path = tmp_path / "m.safetensors"
    save_file(state, str(path), metadata={"poregrain": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="not a napari-poregrain model: .*" + why):
        load_checkpoint(path)


def test_exclusive_save_keeps_the_existing_model_and_reports_a_free_name(
    tiny_checkpoint, tiny_model
):
    before = tiny_checkpoint.read_bytes()
    second = save_checkpoint(tiny_model, tiny_checkpoint, exclusive=True)
    assert second == tiny_checkpoint.with_name("tiny-2.safetensors")
    assert tiny_checkpoint.read_bytes() == before and load_checkpoint(second).meta.name == "tiny"
    with pytest.raises(ValueError, match="exclude each other"):
        save_checkpoint(tiny_model, tiny_checkpoint, overwrite=True, exclusive=True)
    replaced = save_checkpoint(tiny_model, tiny_checkpoint, overwrite=True, half=True)
    assert replaced == tiny_checkpoint and len(tiny_checkpoint.read_bytes()) < len(before)
    assert not [p for p in tiny_checkpoint.parent.iterdir() if p.name.startswith(".")]
