"""Nankai mudrock: our models against the TensorFlow predecessor, by held-out sample group.

    python benchmarks/nankai.py [--models default,build/a.safetensors] [--label NAME] [--cli]

The predecessor's published test tiles (``../shared/data/nankai-mudrock``: images, labels and
``seedpred``, its own model's predictions) are named ``<sample>_<image>_<crop>``; tiles of one
sample group are near-copies of each other, so a random tile split flatters. The protocol holds
out whole groups:

* ``train``: group 11 (75 tiles), the only Nankai group a candidate may be trained on;
* ``choose``: groups 10 and 12 (6 tiles), the only Nankai tiles a checkpoint may be chosen on;
* ``report``: group 13 (75 tiles), never used for training or choosing: the figure to quote.

Every row scores the predecessor's ``seedpred`` maps and each model on the same tiles, per class
(matrix / grain / pore IoU from the confusion matrix summed over the tiles). The labels already
use the package encoding (0 matrix, 1 grain, 2 pore; every pixel labelled). ``--cli``
also scores the predecessor on each row with ``poregrain evaluate --pred --truth --json`` (the
tiles linked into temporary folders) as a check of the in-process figures.
Results: ``benchmarks/results/nankai[-LABEL].json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import (
    apply_threads,
    describe_machine,
    load_model,
    machine_info,
    save_results,
    script_parser,
)
from finetune import DATA, zoomed

from napari_poregrain.analysis.metrics import ConfusionMatrix
from napari_poregrain.inference.predict import predict, resolve_device
from napari_poregrain.io.images import read_sample

NANKAI = DATA / "nankai-mudrock"
GROUPS = {"train": ("11",), "choose": ("10", "12"), "report": ("13",)}
"""The fixed split by sample group (the stem's first field)."""


def group_of(stem: str) -> str:
    """A tile's sample group: the first ``_``-separated field of its name."""
    return stem.split("_", 1)[0]


def stems(part: str, quick: bool = False) -> list[str]:
    """The tile names of ``part`` (a key of :data:`GROUPS`), sorted; 2 per group when quick."""
    folder = NANKAI / "labels"
    names = sorted(p.stem for p in folder.glob("*.png")) if folder.is_dir() else []
    out = [s for s in names if group_of(s) in GROUPS[part]]
    if quick:
        out = [s for g in GROUPS[part] for s in [n for n in out if group_of(n) == g][:2]]
    return out


def _truth(stem: str) -> np.ndarray:
    return read_sample(NANKAI / "labels" / f"{stem}.png").pixels


def predecessor(names: list[str]) -> ConfusionMatrix:
    """The predecessor's ``seedpred`` maps scored against the labels."""
    cm = ConfusionMatrix()
    for stem in names:
        cm.update(_truth(stem), read_sample(NANKAI / "seedpred" / f"{stem}.png").pixels)
    return cm


def ours(model, names: list[str], device: str, zoom: float = 1.0) -> ConfusionMatrix:
    """``model``'s predictions scored against the labels (``zoom``: the tile enlarged first,
    the labels with it)."""
    cm = ConfusionMatrix()
    for stem in names:
        sample = read_sample(NANKAI / "images" / f"{stem}.png", labels=NANKAI / "labels" /
                             f"{stem}.png")  # fmt: skip
        if zoom != 1.0:
            sample = zoomed(sample, zoom)
        cm.update_sample(sample, predict(sample, model, device=device).labels)
    return cm


def cli_predecessor(names: list[str]) -> list[float | None]:
    """``poregrain evaluate --pred seedpred --truth labels --json`` on ``names`` only."""
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("seedpred", "labels"):
            (Path(tmp) / kind).mkdir()
            for stem in names:
                (Path(tmp) / kind / f"{stem}.png").symlink_to(NANKAI / kind / f"{stem}.png")
        cmd = [sys.executable, "-m", "napari_poregrain.cli", "evaluate", "--pred",
               f"{tmp}/seedpred", "--truth", f"{tmp}/labels", "--json"]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    iou = json.loads(out)["per_class_iou"]
    return [None if iou[k] is None else round(iou[k], 4) for k in ("matrix", "grain", "pore")]


def _iou(cm: ConfusionMatrix) -> list[float | None]:
    return [None if v is None else round(float(v), 4) for v in cm.per_class_iou()]


def _cells(iou: list[float | None]) -> str:
    return " / ".join("-" if v is None else f"{v:.3f}" for v in iou)


def main(argv: list[str] | None = None) -> int:
    p = script_parser(__doc__)
    p.add_argument("--models", default="default", help="comma-separated checkpoints")
    p.add_argument("--label", help="suffix of the results file")
    p.add_argument("--zoom", type=float, default=1.0, help="enlarge each tile first (a lever)")
    p.add_argument("--parts", default="report,choose,train", help="which parts to score")
    p.add_argument("--cli", action="store_true", help="check the predecessor with the CLI")
    args = p.parse_args(argv)
    apply_threads(args.threads)
    device = str(resolve_device(args.device))
    parts = {part: stems(part, args.quick) for part in args.parts.split(",")}
    results: dict = {"groups": {k: list(GROUPS[k]) for k in parts}, "zoom": args.zoom}
    rows = {}
    for part, names in parts.items():
        rows[part] = {"tiles": len(names), "predecessor": _iou(predecessor(names))}
        if args.cli:
            rows[part]["predecessor (poregrain evaluate --pred)"] = cli_predecessor(names)
    for spec in args.models.split(","):
        model, desc = load_model(spec)
        results.setdefault("models", {})[spec] = desc
        for part, names in parts.items():
            rows[part][spec] = _iou(ours(model, names, device, args.zoom))
    results["iou"] = rows
    print(describe_machine(machine_info(device)))
    print("matrix / grain / pore IoU")
    for part, row in rows.items():
        print(f"{part} (groups {', '.join(GROUPS[part])}; {row['tiles']} tiles)")
        for who, iou in row.items():
            if isinstance(iou, list):
                print(f"  {who:40s} {_cells(iou)}")
    save_results("nankai", results, args, argv, script=__file__, device=device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
