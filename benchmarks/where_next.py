"""Where to correct next: does correcting the head's top-ranked region teach more per painted
pixel than correcting a random region of the same size?

On real labelled tiles (Nankai mudrock, Duvernay): a few strokes (``--seed-pixels`` random
labelled pixels per class) fit the head; the Live mode's ranking (:func:`adapt.regions.
rank_regions`, boxes of a quarter of the tile side) picks a box; its true labels are added and
the head refitted. The same with random boxes. The gain is the mean IoU over the tile's labelled
pixels outside the box, after minus before, divided by the pixels corrected.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np
from _common import apply_threads, describe_machine, machine_info, save_results, script_parser

from napari_poregrain._widgets._live_jobs import LIVE_STEPS
from napari_poregrain.adapt.features import ImageFeatures
from napari_poregrain.adapt.head import fit_head
from napari_poregrain.adapt.regions import rank_regions
from napari_poregrain.analysis.metrics import ConfusionMatrix
from napari_poregrain.classes import IGNORE
from napari_poregrain.io import read_labels, read_sample
from napari_poregrain.model import load_checkpoint, resolve_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {"nankai": "nankai-mudrock", "duvernay": "duvernay-grains"}


def tiles(per_set: int) -> list[tuple[str, Path, Path]]:
    out = []
    for name, folder in SETS.items():
        images = sorted((DATA / folder / "images").iterdir())[::7][:per_set]
        for image in images:
            labels = DATA / folder / "labels" / f"{image.stem}.png"
            if labels.is_file():
                out.append((name, image, labels))
    return out


def miou(head, features, truth: np.ndarray, outside: np.ndarray) -> float:
    pred = head.predict(features)
    keep = outside & (truth != IGNORE)
    return float(ConfusionMatrix().update(truth, pred, keep).mean_iou() or 0.0)


def strokes(truth: np.ndarray, n: int, rng) -> np.ndarray:
    labels = np.full(truth.shape, IGNORE, np.uint8)
    for c in np.unique(truth[truth != IGNORE]):
        ys, xs = np.nonzero(truth == c)
        pick = rng.choice(len(ys), size=min(n, len(ys)), replace=False)
        labels[ys[pick], xs[pick]] = c
    return labels


def corrected_gain(features, truth, start, box, seed) -> tuple[float, int]:
    """IoU gain per corrected pixel (x 1e4) of adding ``box``'s true labels to ``start``."""
    y0, x0, y1, x1 = box
    outside = np.ones(truth.shape, bool)
    outside[y0:y1, x0:x1] = False
    before = miou(fit_head(features, start, seed=seed, steps=LIVE_STEPS), features, truth, outside)
    labels = start.copy()
    labels[y0:y1, x0:x1] = truth[y0:y1, x0:x1]
    after = miou(fit_head(features, labels, seed=seed, steps=LIVE_STEPS), features, truth, outside)
    n = int(np.count_nonzero(truth[y0:y1, x0:x1] != IGNORE))
    return (after - before) / max(n, 1) * 1e4, n


def one_tile(features, truth, seed: int, randoms: int) -> dict:
    rng = np.random.default_rng(seed)
    start = strokes(truth, 40, rng)
    h, w = truth.shape
    side = max(16, min(h, w) // 4)
    head = fit_head(features, start, seed=seed, steps=LIVE_STEPS)
    top = rank_regions(head.predict_proba(features), box=side, k=1)[0]
    ranked, _ = corrected_gain(features, truth, start, top, seed)
    rand = []
    for _ in range(randoms):
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        rand.append(
            corrected_gain(features, truth, start, (y0, x0, y0 + side, x0 + side), seed)[0]
        )
    return {"ranked": ranked, "random": statistics.mean(rand)}


def main(argv=None) -> int:
    parser = script_parser(__doc__)
    parser.add_argument("--per-set", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--randoms", type=int, default=4)
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    model = load_checkpoint(resolve_model(args.model))
    rows = []
    for name, image, label_path in tiles(1 if args.quick else args.per_set):
        sample = read_sample(image)
        features = ImageFeatures.compute(sample, model)
        truth = read_labels(label_path)[: features.shape[0]]
        for seed in range(1 if args.quick else args.seeds):
            r = one_tile(features, truth, seed, 1 if args.quick else args.randoms)
            rows.append({"set": name, "tile": image.stem, "seed": seed, **r})
            print(
                f"{name} {image.stem} seed {seed}: ranked {r['ranked']:+.3f}, "
                f"random {r['random']:+.3f} (mean IoU x1e4 per corrected pixel)",
                flush=True,
            )
    summary = {
        s: {
            k: round(statistics.median(r[k] for r in rows if r["set"] == s), 4)
            for k in ("ranked", "random")
        }
        for s in SETS
        if any(r["set"] == s for r in rows)
    }
    wins = sum(r["ranked"] > r["random"] for r in rows)
    print(describe_machine(machine_info("cpu")))
    print(f"median gain per corrected pixel (x1e4): {summary}")
    print(f"the ranked box beats the random ones in {wins} of {len(rows)} cases")
    results = {"rows": rows, "median": summary, "ranked_wins": f"{wins}/{len(rows)}"}
    save_results("where_next", results, args, argv, script=__file__, device="cpu")
    return 0


if __name__ == "__main__":
    sys.exit(main())
