"""tqdm progress bars on stderr for the command line."""

from __future__ import annotations

from tqdm import tqdm


class TileBar(tqdm):
    """A tqdm bar usable as an engine ``progress(done, total)`` callback."""

    def __init__(self, desc: str, unit: str = "tile") -> None:
        super().__init__(desc=desc, unit=unit, leave=False, dynamic_ncols=True)

    def update_to(self, done: int, total: int) -> None:
        self.total = total
        self.update(done - self.n)
