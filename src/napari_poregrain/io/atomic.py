"""Atomic file writes: a temporary file in the same folder, then a rename or an exclusive claim.

Temporary files are named ``.poregrain-tmp-<hash of the final name><random>.tmp``: a fixed
length (:data:`TMP_NAME_LENGTH`) whatever the final name, so a final name the file system accepts
never fails as its temporary. They are removed on every exit path Python sees (errors, Ctrl-C).
A process killed outright cannot clean up, so each save first removes the stale ones (older than
a day) left in its folder.

Two ways to give the finished file its name:

- :func:`atomic_write_bytes` replaces ``path`` (readers see the old file or the new one);
- :func:`write_exclusive` / :func:`claim` create ``path`` only if no file has that name, atomically
  (``os.link`` of the finished temporary file; ``O_EXCL`` where links are not supported), so of
  two concurrent writers exactly one gets the name and the other gets :class:`FileExistsError`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
import time
from pathlib import Path

TMP_PREFIX = ".poregrain-tmp-"
TMP_SUFFIX = ".tmp"
TMP_NAME_LENGTH = len(TMP_PREFIX) + 16 + len(TMP_SUFFIX)
"""Every temporary name is this long: prefix, 8 hex of the final name's hash, 8 random, suffix."""
STALE_AFTER_S = 24 * 3600
MAX_FREE_NAMES = 10_000
# link() failures that mean "this file system cannot link", not "the name is taken"
_NO_LINK = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so readers see either the old or the new file (replaces it)."""
    path = Path(path)
    tmp = write_temporary(path, data)
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_exclusive(path: str | os.PathLike, data: bytes, *, free_name: bool = False) -> Path:
    """Create ``path`` holding ``data`` only if no file has that name; return the path written.

    When the name is taken: :class:`FileExistsError`, or with ``free_name`` the first free name
    among ``<stem>-2<suffix>``, ``<stem>-3<suffix>``, ... (claimed just as atomically).
    """
    path = Path(path)
    tmp = write_temporary(path, data)
    try:
        for candidate in _names(path, free_name):
            try:
                return claim(tmp, candidate)
            except FileExistsError:
                continue
        if not free_name:
            raise FileExistsError(f"{path} already exists; choose another name")
        raise FileExistsError(f"{path} and {MAX_FREE_NAMES} numbered names after it are taken")
    finally:
        tmp.unlink(missing_ok=True)


def write_temporary(path: Path, data: bytes) -> Path:
    """``data`` in a fresh temporary file beside ``path`` (flushed to disk); return its path.

    Creates the folder and cleans its stale temporary files first. The temporary file is
    removed again if writing fails.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    tmp = _create_temporary(path)
    try:
        os.chmod(tmp, mode)  # created 0600; keep ordinary permissions
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def temporary_path(path: str | os.PathLike) -> Path:
    """A fresh temporary name beside ``path`` (``TMP_NAME_LENGTH`` characters; not created)."""
    path = Path(path)
    return path.parent / f"{_name_hash(path)}{secrets.token_hex(4)}{TMP_SUFFIX}"


def _name_hash(path: Path) -> str:
    return TMP_PREFIX + _hash8(path.name)


def _hash8(name: str) -> str:
    return hashlib.sha256(os.fsencode(name)).hexdigest()[:8]


SHORT_STEM = 40
"""Characters of the stem kept by :func:`short_name`."""


def short_name(path: str | os.PathLike, folder: str | os.PathLike | None = None) -> Path:
    """A short name for a file that could not be saved as ``path``: ``<stem[:40]>-<hash><suffix>``
    in ``folder`` (default: ``path``'s own), so finished work can still be kept."""
    path = Path(path)
    stem, suffix = path.stem, path.suffix[:16]
    return Path(folder or path.parent) / f"{stem[:SHORT_STEM]}-{_hash8(path.name)}{suffix}"


def _create_temporary(path: Path) -> Path:
    """Create an empty temporary file beside ``path`` (exclusively, mode 0600) and return it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = temporary_path(path)
        try:
            os.close(os.open(tmp, flags, 0o600))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")  # pragma: no cover


def claim(tmp: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Give the finished file ``tmp`` the name ``final`` unless a file already has it.

    Atomic and exclusive: :class:`FileExistsError` when ``final`` exists (``tmp`` is then left
    in place for another try). On success ``tmp`` is gone and ``final`` is returned.
    """
    tmp, final = Path(tmp), Path(final)
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise FileExistsError(f"{final} already exists") from None
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
        _copy_exclusive(tmp, final)
    tmp.unlink(missing_ok=True)
    return final


def _copy_exclusive(tmp: Path, final: Path) -> None:
    """Fallback for file systems without hard links: create ``final`` with ``O_EXCL``, copy."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(final, flags, tmp.stat().st_mode & 0o777)
    except FileExistsError:
        raise FileExistsError(f"{final} already exists") from None
    try:
        with os.fdopen(fd, "wb") as dst, open(tmp, "rb") as src:
            shutil.copyfileobj(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
    except BaseException:
        final.unlink(missing_ok=True)  # ours: created by the O_EXCL open above
        raise


def clean_stale(folder: str | os.PathLike, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove this package's temporary files older than ``max_age_s`` in ``folder``.

    Returns the files removed; files that vanish or cannot be removed are skipped quietly.
    """
    limit = time.time() - max_age_s
    removed = []
    try:
        candidates = list(Path(folder).glob(f"{TMP_PREFIX}*"))
    except OSError:
        return removed
    for p in candidates:
        try:
            if p.is_file() and not p.is_symlink() and p.stat().st_mtime < limit:
                p.unlink()
                removed.append(p)
        except OSError:
            continue
    return removed


def _names(path: Path, free_name: bool):
    """``path``, then (with ``free_name``) ``<stem>-2<suffix>``, ``<stem>-3<suffix>``, ..."""
    yield path
    if free_name:
        for i in range(2, MAX_FREE_NAMES + 2):
            yield path.with_name(f"{path.stem}-{i}{path.suffix}")
