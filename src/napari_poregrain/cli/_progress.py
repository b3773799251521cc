"""tqdm progress bars on stderr for the command line."""

from __future__ import annotations

from tqdm import tqdm


class TileBar(tqdm):
    """A tqdm bar usable as an engine ``progress(done, total)`` callback.

    Shown only once its image has taken ``delay`` seconds (a small image that is done at once
    prints no bar, never a ``0tile`` one); it counts ``done/total`` tiles from the first report.
    """

    def __init__(self, desc: str, unit: str = "tile", delay: float = 0.5) -> None:
        super().__init__(desc=desc, unit=unit, leave=False, dynamic_ncols=True, delay=delay)

    def update_to(self, done: int, total: int) -> None:
        self.total = total
        self.update(done - self.n)


class ImageBar(tqdm):
    """The images of a batch done so far (shown for two images or more)."""

    def __init__(self, total: int, desc: str = "predict") -> None:
        super().__init__(
            total=total, desc=desc, unit="image", dynamic_ncols=True, disable=total < 2
        )
