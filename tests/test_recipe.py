import json

import numpy as np
import pytest
from PIL import Image

from napari_poregrain.cli import main
from napari_poregrain.synthetic import make_sample
from napari_poregrain.training.recipe import (
    baseline,
    load_recipe,
    load_split,
    unlabelled_pores,
    validation_report,
)


@pytest.fixture
def recipe_file(tmp_path):
    images, labels = tmp_path / "data" / "images", tmp_path / "data" / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    for i in range(4):
        image, truth = make_sample((64, 64), seed=i)
        truth[truth == 2] = 0  # a set without a pore class
        Image.fromarray(image).save(images / f"tile{i}.png")
        Image.fromarray(truth).save(labels / f"tile{i}.png")
    path = tmp_path / "recipes" / "r.toml"
    path.parent.mkdir()
    path.write_text(
        """
[model]
encoder = "resnet18"
[train]
crop = 64
steps = 2
[[source]]
name = "tiles"
images = "../data/images"
labels = "../data/labels"
val_last = 1
pores_unlabelled = true
repeat = 2
[[source]]
name = "syn"
synthetic = true
count = 1
val_count = 1
size = 64
"""
    )
    return path


def test_recipe_split_is_fixed_and_paths_are_relative(recipe_file):
    recipe = load_recipe(recipe_file)
    assert recipe.train == {"crop": 64, "steps": 2}
    assert recipe.sources[0].images == (recipe_file.parent.parent / "data" / "images").resolve()
    split = load_split(recipe)
    assert [s.name for s in split.train["tiles"]] == ["tile0", "tile1", "tile2"] * 2
    assert [s.name for s in split.val["tiles"]] == ["tile3"]
    assert len(split.train["syn"]) == 1 and len(split.val["syn"]) == 1
    # held-out labels are untouched; training labels lose the pore-like dark pixels
    image, lab = split.train["tiles"][0].pixels, split.train["tiles"][0].labels
    assert set(np.unique(lab)) <= {0, 1, 255}
    ignored = lab == 255
    assert ignored.any() and image[ignored].mean() < image[~ignored].mean() - 40
    assert split.val["tiles"][0].labels.max() <= 1


def test_bad_recipes_are_refused(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[source]]\nname = 'x'\nimage = 'typo'\n")
    with pytest.raises(ValueError, match="unknown key 'image'.*did you mean 'images'"):
        load_recipe(bad)
    bad.write_text("[train]\ncrop = 64\n")
    with pytest.raises(ValueError, match="no \\[\\[source\\]\\]"):
        load_recipe(bad)


def test_unlabelled_pores_finds_dark_spots_only():
    image = np.full((64, 64), 180, np.uint8) + np.random.default_rng(0).integers(0, 6, (64, 64))
    image = image.astype(np.uint8)
    image[30:34, 30:34] = 40
    mask = unlabelled_pores(image)
    assert mask[31, 31] and mask.sum() < 100  # the 4x4 spot and a thin margin


def test_baselines():
    image = np.array([[10, 10, 200, 200]], np.uint8)
    np.testing.assert_array_equal(baseline(image, "otsu"), [[2, 2, 0, 0]])
    np.testing.assert_array_equal(baseline(image, "majority", majority=1), [[1, 1, 1, 1]])


def test_validation_report_and_cli(recipe_file, tiny_model, tiny_checkpoint, capsys):
    report = validation_report(load_split(load_recipe(recipe_file)), tiny_model, tile=64)
    assert set(report) == {"tiles", "syn"}
    assert set(report["tiles"]) == {"model", "otsu", "majority", "images"}
    assert report["tiles"]["majority"]["per_class_iou"]["pore"] is None
    code = main(
        [
            "evaluate",
            "--config",
            str(recipe_file),
            "--model",
            str(tiny_checkpoint),
            "--tile",
            "64",
            "--json",
        ]
    )
    assert code == 0
    assert set(json.loads(capsys.readouterr().out)) == {"tiles", "syn"}


def _synthetic_styles(path, body: str) -> list:
    """The training styles of a recipe whose one source, ``syn``, is ``body``."""
    path.write_text("[[source]]\nname = 'syn'\nsynthetic = true\n" + body)
    return [s.metadata["style"] for s in load_split(load_recipe(path)).train["syn"]]


def test_synthetic_sources_can_draw_organic_matter(tmp_path):
    body = "count = 8\nsize = 96\n"
    plain = _synthetic_styles(tmp_path / "r.toml", body)
    organic = _synthetic_styles(tmp_path / "r.toml", body + "organic = true\n")
    assert all(st.organic_fraction == 0 for st in plain)
    with_om = [st for st in organic if st.organic_fraction > 0]
    assert 0 < len(with_om) < len(organic)  # about half the images
    assert all(st.pore < st.organic < st.matrix for st in with_om)  # grey between pore and matrix


def test_wide_synthetic_styles_span_magnifications_and_detectors(tmp_path):
    body = "count = 12\nsize = 64\norganic = true\n"
    plain = _synthetic_styles(tmp_path / "r.toml", body)
    wide = _synthetic_styles(tmp_path / "r.toml", body + "wide = true\n")
    assert wide[0].matrix == plain[0].matrix  # the usual draws first, then the widening
    m = wide[0].grain_radius / plain[0].grain_radius  # one magnification for every size
    assert m != 1 and np.isclose(wide[0].pore_radius / plain[0].pore_radius, m)
    radii = [w.grain_radius for w in wide]  # the usual draw spans 12-50 px
    assert min(radii) < 12 and max(radii) > 50  # lower and higher magnifications
    assert len({round(w.noise, 3) for w in wide}) > 6
    assert all(w.pore < w.matrix < w.grain for w in wide)  # the phases keep their order
