"""Atomic writes: a file or a folder is either the old one or the complete new one, never half.

One helper for the whole stack. A file is written to a temporary name in the same folder,
flushed and fsynced, then ``os.replace``d over the target; a folder is built under a temporary
name and then swapped in with renames. A failure (or a kill) before the rename leaves the
target untouched and at most a dot-named temporary behind, which callers may sweep.

* ``atomic_file(path, mode)``: a context manager yielding an open file handle;
* ``atomic_path(path)``: yields a temporary *path* for libraries that write by name
  (``faiss.write_index``), replaced over ``path`` on success;
* ``write_bytes_atomic``, ``write_text_atomic``, ``write_json_atomic``: the one-call forms;
* ``atomic_dir(path)``: yields a fresh temporary folder, swapped in for ``path`` on success;
* ``remove_temporaries(folder)``: deletes what killed writers of the helpers above left in a
  folder (for a folder that one process owns, such as a locked run folder).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_dir",
    "atomic_file",
    "atomic_path",
    "fsync_dir",
    "remove_temporaries",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


_TEMPORARY = re.compile(r"^\..+(\.tmp|\.tmp-\d+(\.old)?)$")
"""The names this module gives its temporaries: ``atomic_path``'s ``.<name>.<random>.tmp`` and
``atomic_dir``'s default ``.<name>.tmp-<pid>`` (and its ``.old`` twin during a swap)."""


def remove_temporaries(folder: str | Path) -> list[str]:
    """Delete the temporaries a killed atomic write left directly in ``folder``; returns their names.

    Only the names this module's helpers make (see ``_TEMPORARY``) are touched, and only in
    ``folder`` itself, not below it. A temporary of a writer that is still running would go too,
    so call this only on a folder no other process writes to (a run folder under its lock).
    A missing folder has none.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in sorted(folder.iterdir()):
        if not _TEMPORARY.match(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry.name)
    if removed:
        fsync_dir(folder)
    return removed


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_file(path: str | Path, mode: str = "w", *, encoding: str = "utf-8", durable: bool = True) -> Iterator[IO[Any]]:
    """Yield a file handle (``mode`` ``"w"`` or ``"wb"``); on success the file replaces ``path``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file writes whole files: mode must be 'w' or 'wb', not {mode!r}")
    with atomic_path(path, durable=False) as tmp:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": encoding})) as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
    if durable:
        fsync_dir(Path(path).parent)


def write_bytes_atomic(path: str | Path, data: bytes, *, durable: bool = True) -> None:
    with atomic_file(path, "wb", durable=durable) as fh:
        fh.write(data)


def write_text_atomic(path: str | Path, text: str, *, durable: bool = True) -> None:
    with atomic_file(path, "w", durable=durable) as fh:
        fh.write(text)


def write_json_atomic(
    path: str | Path,
    obj: Any,
    *,
    indent: int | None = 2,
    default: Callable[[Any], Any] | None = None,
    sort_keys: bool = False,
    durable: bool = True,
) -> None:
    """Write ``obj`` as JSON (UTF-8, a final newline when indented)."""
    with atomic_file(path, "w", durable=durable) as fh:
        json.dump(obj, fh, indent=indent, ensure_ascii=False, default=default, sort_keys=sort_keys)
        if indent is not None:
            fh.write("\n")


@contextmanager
def atomic_dir(path: str | Path, *, prefix: str | None = None, durable: bool = True) -> Iterator[Path]:
    """Yield a new empty folder next to ``path``; on success it takes ``path``'s place.

    An existing ``path`` is renamed aside first and removed after the swap, so at every instant
    ``path`` is either the complete old folder, absent for one rename, or the complete new one.
    ``prefix`` names the temporary folder (default ``.<name>.tmp-<pid>``), so a caller can sweep
    what a killed process left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / (prefix or f".{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            old = tmp.with_name(tmp.name + ".old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
