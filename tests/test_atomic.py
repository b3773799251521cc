"""Atomic and exclusive writes: recognisable temporary files, stale clean-up, the race."""

import os
import subprocess
import sys
import time

import pytest

from napari_poregrain.io.atomic import (
    TMP_NAME_LENGTH,
    TMP_PREFIX,
    atomic_write_bytes,
    claim,
    clean_stale,
    short_name,
    temporary_path,
    write_exclusive,
    write_temporary,
)
from napari_poregrain.model import load_checkpoint


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(TMP_PREFIX))


def test_replace_write_leaves_no_temporary_file(tmp_path):
    path = atomic_write_bytes(tmp_path / "a.txt", b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two" and _leftovers(tmp_path) == []


def test_failed_write_removes_its_temporary_file(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "a.txt", object())  # not bytes: write() fails
    assert list(tmp_path.iterdir()) == []
    folder = tmp_path / "taken"
    folder.mkdir()
    with pytest.raises(OSError):
        atomic_write_bytes(folder, b"x")  # a folder cannot be replaced by a file
    assert _leftovers(tmp_path) == [] and folder.is_dir()


def test_claim_is_exclusive_and_keeps_the_existing_file(tmp_path):
    final = tmp_path / "m.bin"
    final.write_bytes(b"user's file")
    tmp = write_temporary(final, b"new")
    assert tmp.name.startswith(TMP_PREFIX) and len(tmp.name) == TMP_NAME_LENGTH
    with pytest.raises(FileExistsError, match="already exists"):
        claim(tmp, final)
    assert final.read_bytes() == b"user's file" and tmp.exists()
    other = claim(tmp, tmp_path / "n.bin")
    assert other.read_bytes() == b"new" and not tmp.exists()


def test_write_exclusive_refuses_or_finds_a_free_name(tmp_path):
    path = tmp_path / "m.safetensors"
    assert write_exclusive(path, b"1") == path
    with pytest.raises(FileExistsError, match="already exists"):
        write_exclusive(path, b"2")
    assert path.read_bytes() == b"1"
    assert write_exclusive(path, b"2", free_name=True) == tmp_path / "m-2.safetensors"
    assert write_exclusive(path, b"3", free_name=True) == tmp_path / "m-3.safetensors"
    assert (tmp_path / "m-2.safetensors").read_bytes() == b"2"
    assert _leftovers(tmp_path) == []


def test_stale_temporary_files_are_cleaned_at_the_next_save(tmp_path):
    stale = tmp_path / f"{TMP_PREFIX}m.safetensors.abc123.tmp"
    fresh = tmp_path / f"{TMP_PREFIX}m.safetensors.def456.tmp"
    user = tmp_path / ".m.safetensors.xyz.tmp"  # not ours: never touched
    for p in (stale, fresh, user):
        p.write_bytes(b"partial")
    old = time.time() - 2 * 24 * 3600
    os.utime(stale, (old, old))
    os.utime(user, (old, old))
    atomic_write_bytes(tmp_path / "other.txt", b"x")
    assert not stale.exists() and fresh.exists() and user.exists()
    assert clean_stale(tmp_path, max_age_s=0) == [fresh]


_SAVE = """
import sys, time
from napari_poregrain.model import new_model, save_checkpoint
model = new_model("resnet18", name=sys.argv[2])
while time.time() < float(sys.argv[3]):
    pass
print(save_checkpoint(model, sys.argv[1], exclusive=True))
"""


@pytest.mark.slow  # two children importing torch: ~40 s on a shared 2-core machine
def test_two_processes_saving_the_same_name_never_replace_each_other(tmp_path):
    target = tmp_path / "m.safetensors"
    start = time.time() + 8  # both children are ready (torch imported) before it
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SAVE, str(target), name, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("first", "second")
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
    paths = {out.strip() for out, _ in results}
    assert paths == {str(target), str(tmp_path / "m-2.safetensors")}  # one wins, one is told
    names = {load_checkpoint(p).meta.name for p in paths}
    assert names == {"first", "second"}  # both models kept, neither replaced
    assert _leftovers(tmp_path) == []


# -- issue 26: the temporary name used to be 28 characters longer than the final one -----------
def test_a_final_name_the_file_system_takes_never_fails_as_its_temporary(tmp_path):
    longest = tmp_path / ("m" * (255 - len(".safetensors")) + ".safetensors")  # 255 bytes
    assert write_exclusive(longest, b"model") == longest and longest.read_bytes() == b"model"
    assert atomic_write_bytes(longest, b"again").read_bytes() == b"again"
    assert _leftovers(tmp_path) == []


def test_temporary_names_have_one_length_and_differ(tmp_path):
    names = {temporary_path(tmp_path / n).name for n in ("a", "b" * 200, "a")}
    assert len(names) == 3 and {len(n) for n in names} == {TMP_NAME_LENGTH}
    assert all(n.startswith(TMP_PREFIX) for n in names)


def test_short_name_fits_and_keeps_the_suffix(tmp_path):
    long = tmp_path / ("x" * 250 + ".png")
    short = short_name(long)
    assert short.parent == tmp_path and short.suffix == ".png" and len(short.name) < 60
    assert short_name(long) == short != short_name(tmp_path / ("x" * 249 + ".png"))
