"""Regenerate the small real crops in tests/data/ from the full shared data set.

Run from the repository root: ``python tests/data/make_crops.py [--source ../shared/data]``.
Zeiss: the full 768 rows (the data bar starts at row 691) of a band of columns, the grey palette
and the ``CZ_SEM`` tag (the vendor's own lines, a subset, see README.md), zlib-compressed.
Duvernay: a few tiles copied byte for byte (LZW). Labels: the same crop of the PNG.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

HERE = Path(__file__).resolve().parent
ZEISS = "zeiss-shale-pores"
DUVERNAY = "duvernay-grains"
CZ_SEM = 34118
# stem -> (first column, width): per image, the band (on a 32-column grid) with the most labelled
# pore pixels above the data bar among those where the bar is still found at row 691.
ZEISS_CROPS = {
    "train_1": (448, 64), "train_2": (480, 32), "train_3": (704, 32), "train_4": (256, 96),
}  # fmt: skip
# Held out of the default model's training (its validation tiles 0056-0069): the two whose grain
# fraction is closest to one half.
DUVERNAY_TILES = ("Tile_r1-c1_Chenzh-P7-run1_0057", "Tile_r1-c1_Chenzh-P7-run1_0067")
# CZ_SEM entries kept (upper-case name line + value line, verbatim, in the file's order).
KEEP = {
    "AP_PIXEL_SIZE", "AP_IMAGE_PIXEL_SIZE", "AP_MAG", "AP_ACTUALKV", "AP_WD", "AP_DATE",
    "AP_TIME", "DP_DETECTOR_TYPE", "DP_DETECTOR_CHANNEL", "SV_VERSION",
}  # fmt: skip


def cz_sem_subset(raw: bytes) -> bytes:
    """The unnamed leading values and the KEEP entries of a raw ``CZ_SEM`` tag."""
    lines = raw.rstrip(b"\0").split(b"\r\n")
    out, i = [], 0
    while i < len(lines) and not lines[i].isupper():
        out.append(lines[i])
        i += 1
    while i + 1 < len(lines):
        if lines[i].decode("latin-1") in KEEP:
            out += lines[i : i + 2]
        i += 2
    return b"\r\n".join(out) + b"\r\n"


def crop_zeiss(src: Path, dst: Path, x0: int, width: int) -> None:
    """Columns ``x0:x0+width`` of a Zeiss palette TIFF, all rows, with its CZ_SEM subset."""
    with tifffile.TiffFile(src) as tf:
        page = tf.pages.first
        indices = page.asarray()[:, x0 : x0 + width]
        tag = page.tags[CZ_SEM]
        tf.filehandle.seek(tag.valueoffset)
        raw = tf.filehandle.read(tag.count)
        colormap = page.colormap
    tifffile.imwrite(
        dst,
        np.ascontiguousarray(indices),
        photometric="palette",
        colormap=colormap,
        compression="zlib",
        predictor=True,
        compressionargs={"level": 9},
        extratags=[(CZ_SEM, "B", 0, cz_sem_subset(raw), True)],
    )
    with tifffile.TiffFile(dst) as tf:  # the reader's contract still holds
        assert tf.is_sem and tf.sem_metadata["ap_pixel_size"][0] == "Pixel Size", dst


def crop_png(src: Path, dst: Path, x0: int, width: int) -> None:
    with Image.open(src) as im:
        im.crop((x0, 0, x0 + width, im.height)).save(dst, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=HERE.parents[1].parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    for sub in (f"{ZEISS}/images", f"{ZEISS}/labels", f"{DUVERNAY}/images", f"{DUVERNAY}/labels"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    for name in (ZEISS, DUVERNAY):
        shutil.copyfile(args.source / name / "LICENSE", args.out / name / "LICENSE")
    for stem, (x0, width) in ZEISS_CROPS.items():
        src, dst = args.source / ZEISS, args.out / ZEISS
        crop_zeiss(src / "images" / f"{stem}.tif", dst / "images" / f"{stem}.tif", x0, width)
        crop_png(src / "labels" / f"{stem}.png", dst / "labels" / f"{stem}.png", x0, width)
    for stem in DUVERNAY_TILES:
        for kind, ext in (("images", "tif"), ("labels", "png")):
            rel = f"{DUVERNAY}/{kind}/{stem}.{ext}"
            shutil.copyfile(args.source / rel, args.out / rel)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{args.out}: {total / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
