"""A model file from a resumable run's latest state: the weights of every validated epoch.

    python benchmarks/state_model.py RUN OUT_DIR [--start default] [--watch SECONDS]

``poregrain train --run-dir RUN`` keeps its whole state in ``RUN/state.safetensors`` (written
after every validation, see ``training/resume.py``); the run saves only its best epoch by the
merged validation score. To score *every* epoch on a protocol of its own
(``benchmarks/nankai.py``: choose on some sample groups, report on others), this writes the
validated weights (the EMA's when the run keeps one) of the state's step to
``OUT_DIR/step-NNNNN.safetensors`` (fp16), taking the metadata from the starting model.
``--watch S`` checks every S seconds until the run's last step.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file

from napari_poregrain.model import load_checkpoint, resolve_model, save_checkpoint


def _state(path: Path) -> tuple[dict, dict]:
    with safe_open(str(path), "pt") as f:
        scalars = json.loads(f.metadata()["state"])
    return scalars, load_file(path)


def snapshot(run: Path, out_dir: Path, start: str) -> Path | None:
    """Write the state's validated weights (None: the state is between two validations)."""
    scalars, tensors = _state(run / "state.safetensors")
    step = scalars["step"]
    history = scalars["history"]
    if not history or history[-1]["step"] != step:
        return None
    out = out_dir / f"step-{step:05d}.safetensors"
    if out.exists():
        return out
    prefix = "ema.module." if any(k.startswith("ema.module.") for k in tensors) else "net."
    weights = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
    model = load_checkpoint(resolve_model(start))
    model.net.load_state_dict(weights)
    model.meta = replace(model.meta, name=f"{run.name}-step-{step}")
    model.meta.provenance = {"run": str(run), "step": step, "validation": history[-1]}
    out_dir.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(model, out, half=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--start", default="default", help="the run's starting model (metadata)")
    p.add_argument("--watch", type=float, help="check every S seconds until the last step")
    args = p.parse_args(argv)
    total = json.loads((args.run / "run.json").read_text())["settings"]["steps"]
    while True:
        try:
            path = snapshot(args.run, args.out_dir, args.start)
        except (OSError, ValueError) as exc:  # the state is being replaced: try again
            print(f"not read: {exc}")
            path = None
        if path is not None:
            print(f"weights: {path}", flush=True)
        done = path is not None and path.stem.endswith(f"{total:05d}")
        if args.watch is None or done:
            return 0
        time.sleep(args.watch)


if __name__ == "__main__":
    raise SystemExit(main())
