"""The Nankai protocol: recipe sources split by sample group, and the group benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_poregrain.synthetic import make_sample
from napari_poregrain.training.recipe import group, load_recipe, load_split

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _tiles(folder: Path, stems: list[str]) -> None:
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for i, stem in enumerate(stems):
        image, truth = make_sample((48, 56), seed=i)
        Image.fromarray(image).save(folder / "images" / f"{stem}.png")
        Image.fromarray(truth).save(folder / "labels" / f"{stem}.png")


def test_groups_split_whole_samples_and_skipped_groups_are_never_read(tmp_path):
    stems = ["10_1_a", "11_1_a", "11_2_b", "12_1_a", "13_1_a", "13_4_c"]
    _tiles(tmp_path / "nankai", stems)
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[[source]]\nname = "nankai"\nimages = "nankai/images"\nlabels = "nankai/labels"\n'
        'val_groups = ["10", "12"]\nskip_groups = ["13"]\n'
    )
    split = load_split(load_recipe(recipe))
    assert [s.name for s in split.train["nankai"]] == ["11_1_a", "11_2_b"]
    assert [s.name for s in split.val["nankai"]] == ["10_1_a", "12_1_a"]
    train = split.train["nankai"][0]
    truth = np.array(Image.open(tmp_path / "nankai" / "labels" / "11_1_a.png"))
    assert np.array_equal(train.labels, truth)  # 0/1/2 as given: no remapping
    assert group("13_4_c") == "13" and group("train_4") == "train"


def test_benchmark_parts_are_disjoint_groups_and_cli_agrees(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    nankai = pytest.importorskip("nankai")
    if not (nankai.NANKAI / "labels").is_dir():
        pytest.skip(f"the Nankai tiles are not at {nankai.NANKAI}")
    parts = {part: nankai.stems(part) for part in nankai.GROUPS}
    assert [len(parts[p]) for p in ("train", "choose", "report")] == [75, 6, 75]
    seen = [set(map(nankai.group_of, names)) for names in parts.values()]
    assert all(a.isdisjoint(b) for i, a in enumerate(seen) for b in seen[i + 1 :])
    quick = nankai.stems("choose", quick=True)
    cm = nankai.predecessor(quick)
    cli = nankai.cli_predecessor(quick)
    assert cli == pytest.approx([round(float(v), 4) for v in cm.per_class_iou()], abs=1e-4)
