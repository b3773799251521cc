"""Start-up: `poregrain <command> --help` and whole `poregrain predict` runs on small files.

    python benchmarks/startup.py [--quick] [--repeat 3] [--files 40]

Each case is a fresh process, timed from launch to exit (wall) with its CPU time (user + sys,
from ``os.wait4``: on a shared machine the CPU time is the steadier figure). Cases:

help       ``poregrain <command> --help`` for every command.
first      ``poregrain predict one.png`` with an empty export cache (the one-off ONNX export).
one        the same with the export cached: the quick start (target <= 3 s).
many       ``poregrain predict`` of --files small files at once; tiles/s after the first =
           (files - 1) / (many - one).
torch      ``--backend torch`` on one file (the torch network built, as before the cache).

Small files are 400 x 343 crops of the shared Zeiss images (a synthetic image without them).
Results: benchmarks/results/startup.json.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import describe_machine, machine_info, save_results, script_parser, table

COMMANDS = ("predict", "evaluate", "train", "measure", "demo")
ZEISS = Path(__file__).resolve().parents[2] / "shared" / "data" / "zeiss-shale-pores"
COLUMNS = [("case", "case"), ("wall", "wall s (median)"), ("cpu", "CPU s (median)"), ("n", "runs")]


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one child process; raises if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime


def small_files(folder: Path, n: int) -> list[Path]:
    """``n`` 400 x 343 PNG crops of a Zeiss image (or of a synthetic image)."""
    from napari_poregrain.io.images import read_sample, write_labels
    from napari_poregrain.synthetic import make_sample

    source = sorted(ZEISS.glob("images/*.tif"))
    big = read_sample(source[0]).content() if source else make_sample((691, 1024))[0]
    paths = []
    for i in range(n):
        y, x = (i * 7) % (big.shape[0] - 343), (i * 13) % (big.shape[1] - 400)
        paths.append(
            write_labels(folder / f"small{i:02d}.png", np.asarray(big[y : y + 343, x : x + 400]))
        )
    return paths


class Cases:
    """Runs each case ``repeat`` times in fresh processes and keeps one row per case."""

    def __init__(self, work: Path, model: str, repeat: int) -> None:
        self.work, self.model, self.repeat = work, model, repeat
        self.cache = work / "cache"
        self.env = {**os.environ, "NAPARI_POREGRAIN_CACHE_DIR": str(self.cache)}
        self.rows: list[dict] = []

    def run(self, name: str, cmd: list[str], n: int | None = None, fresh: bool = False) -> dict:
        times = []
        for k in range(n or self.repeat):
            if fresh:
                shutil.rmtree(self.cache, ignore_errors=True)
            out = ["--out", str(self.work / f"out-{len(self.rows)}-{k}"), "--model", self.model]
            times.append(timed(cmd + (out if "predict" in cmd else []), self.env))
        walls, cpus = zip(*times)
        row = {"case": name, "wall": statistics.median(walls), "cpu": statistics.median(cpus),
               "n": len(times), "all_wall": walls, "all_cpu": cpus}  # fmt: skip
        self.rows.append(row)
        return row


def run_cases(work: Path, files: list[Path], model: str, repeat: int) -> list[dict]:
    """Every case of the module docstring, in order."""
    cli = [sys.executable, "-m", "napari_poregrain.cli"]
    cases = Cases(work, model, repeat)
    for command in COMMANDS:
        cases.run(f"{command} --help", [*cli, command, "--help"])
    one = [*cli, "predict", str(files[0])]
    cases.run("first (export)", one, n=1, fresh=True)
    single = cases.run("one file, export cached", one)
    many = cases.run(f"{len(files)} files", [*cli, "predict", *map(str, files)])
    cases.run("one file, --backend torch", [*one, "--backend", "torch"])
    rate = (len(files) - 1) / max(many["wall"] - single["wall"], 1e-9)
    cases.rows.append({"case": "tiles/s after the first", "wall": rate})
    return cases.rows


def main(argv: list[str] | None = None) -> int:
    p = script_parser(__doc__)
    p.add_argument("--repeat", type=int, help="runs per case (3; --quick 1)")
    p.add_argument("--files", type=int, help="small files in the batch case (40; --quick 3)")
    args = p.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)
    n = args.files or (3 if args.quick else 40)
    info = machine_info("cpu")
    print(describe_machine(info))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = run_cases(work, small_files(work, n), args.model, repeat)
    print(table(rows, COLUMNS))
    results = {"rows": rows, "files": n}
    save_results("startup", results, args, argv, script=__file__, device="cpu")
    return 0


if __name__ == "__main__":
    sys.exit(main())
