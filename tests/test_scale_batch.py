"""Batch prediction on dask.distributed: labels of one process, failures named, no partials."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import threading
import time

import numpy as np
import pytest
import tifffile
from PIL import Image

pytest.importorskip("distributed")

from napari_poregrain.cli import CliError  # noqa: E402
from napari_poregrain.cli import predict as predict_cli  # noqa: E402
from napari_poregrain.cli._cluster import run_on_cluster  # noqa: E402
from napari_poregrain.inference.predict import predict  # noqa: E402
from napari_poregrain.io.images import read_sample  # noqa: E402
from napari_poregrain.model import load_checkpoint  # noqa: E402
from napari_poregrain.scale.batch import (  # noqa: E402
    ClusterError,
    PredictOptions,
    open_client,
    parse_address,
    run_batch,
)
from napari_poregrain.synthetic import make_sample  # noqa: E402

OPTIONS = PredictOptions(tile=64, device="cpu", precision="fp32")


def _images(folder, shapes):
    paths = []
    for i, shape in enumerate(shapes):
        path = folder / f"img{i}.tif"
        tifffile.imwrite(path, make_sample(shape, seed=i)[0])
        paths.append(path)
    return paths


def _reference(path, checkpoint):
    model = load_checkpoint(checkpoint)
    return predict(read_sample(path), model, **OPTIONS.keywords()).labels


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


def _args(*argv):
    p = argparse.ArgumentParser()
    predict_cli.add_arguments(p)  # includes the cluster options
    return p.parse_args([str(a) for a in argv])


@pytest.mark.slow
def test_two_workers_match_one_process_and_name_the_bad_file(tiny_checkpoint, tmp_path):
    images = _images(tmp_path, [(96, 128), (80, 80), (130, 70)])
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00 not really a tiff")
    out = tmp_path / "out"
    with open_client("local:2") as client:
        assert len(client.scheduler_info()["workers"]) == 2
        report = run_batch(client, [*images, broken], out, tiny_checkpoint, OPTIONS)
    assert set(report.failed) == {broken} and "broken.tif" in report.failed[broken]
    assert set(report.done) == set(images)
    for path in images:
        got = np.asarray(Image.open(out / f"{path.stem}.png"))
        np.testing.assert_array_equal(got, _reference(path, tiny_checkpoint))
    assert not (out / "broken.png").exists() and not _leftovers(out)


class _KillWhenBusy(threading.Thread):
    """Kill (SIGKILL) the worker process that is running a task, once one is."""

    def __init__(self, client, pids):
        super().__init__(daemon=True)
        self.client, self.pids, self.killed = client, pids, None

    def run(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.killed is None:
            busy = [w for w, keys in self.client.processing().items() if keys]
            if busy:
                time.sleep(0.5)  # let it start the task
                os.kill(self.pids[busy[0]], signal.SIGKILL)
                self.killed = busy[0]
            time.sleep(0.05)


@pytest.mark.slow
def test_a_worker_killed_mid_task_has_its_work_redone(tiny_checkpoint, tmp_path):
    (image,) = _images(tmp_path, [(256, 256)])
    out = tmp_path / "out"
    with open_client("local:2") as client:
        pids = client.run(os.getpid)
        killer = _KillWhenBusy(client, pids)
        killer.start()
        report = run_batch(client, [image], out, tiny_checkpoint, OPTIONS)
        killer.join(5)
    assert killer.killed is not None, "no worker was killed: the test proved nothing"
    assert report.ok, report.failed
    got = np.asarray(Image.open(out / "img0.png"))
    np.testing.assert_array_equal(got, _reference(image, tiny_checkpoint))
    assert not _leftovers(out)


def test_a_silent_scheduler_is_one_clear_error_within_the_timeout(tiny_checkpoint, tmp_path):
    (image,) = _images(tmp_path, [(64, 64)])
    silent = socket.socket()  # accepts connections, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
    out = tmp_path / "out"
    args = _args(image, "--out", out, "--model", tiny_checkpoint, "--cluster", address,
                 "--cluster-timeout", "2")  # fmt: skip
    start = time.monotonic()
    try:
        with pytest.raises(CliError, match=r"no dask scheduler answered at .* within 2 s"):
            run_on_cluster(args)
    finally:
        silent.close()
    assert time.monotonic() - start < 15
    assert not out.exists()


def test_something_else_answering_is_not_taken_for_a_scheduler(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        threading.Thread(target=_answer_garbage, args=(server,), daemon=True).start()
        with pytest.raises(ClusterError, match="did not answer as a dask scheduler"):
            with open_client(address, timeout=3):
                pass


def _answer_garbage(server):
    conn, _ = server.accept()
    with conn:
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" * 8)
        time.sleep(5)


@pytest.mark.parametrize("spec", ["local:0", "local:x", "nonsense"])
def test_bad_cluster_specs_are_refused(spec):
    with pytest.raises(ValueError, match="--cluster"):
        parse_address(spec)


@pytest.mark.slow
def test_cli_run_on_a_local_cluster_reports_the_failed_input(tiny_checkpoint, tmp_path, capsys):
    (image,) = _images(tmp_path, [(64, 96)])
    missing = tmp_path / "missing.tif"
    out = tmp_path / "out"
    args = _args(image, missing, "--out", out, "--model", tiny_checkpoint, "--tile", "64",
                 "--device", "cpu", "--cluster", "local:1")  # fmt: skip
    assert run_on_cluster(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if line.startswith("poregrain predict:")] == [
        line for line in err if str(missing) in line
    ]
    assert (out / "img0.png").is_file() and not (out / "missing.png").exists()
