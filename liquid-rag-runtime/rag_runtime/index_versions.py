"""Versions of an index folder: each save writes a complete new version, then switches to it.

Layout (index format version 2)::

    <index>/manifest.json            names the current version folder (``data``); written last
    <index>/v000003-1a2b3c4d/        docs.jsonl, bm25/, dense/ of version 3
    <index>/v000002-9f8e7d6c/        the version before (kept one save longer for readers mid-load)
    <index>/.index.lock              held (flock) while a save runs

A save writes every file of the new version into a fresh folder, fsyncs them, and only then
replaces ``manifest.json`` atomically (temporary file, fsync, rename). So a reader that sees a
manifest finds every file it names complete, and a save killed at any point (SIGKILL included)
leaves the previous manifest and version in place: the index stays loadable as it was. The next
save removes what a killed save left (version folders the manifest does not name, except the
previous one) before it writes. A watcher (``serve`` reloading a changed index) can take a change
of ``manifest.json`` as "a new version is complete".

Version 1 indexes (files directly in the index folder, no ``data`` in the manifest) still load;
saving over one writes a version folder and then removes the old top-level files.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from liquid_shared.atomic import fsync_dir

VERSION_DIR = re.compile(r"^v(\d{6,})-[0-9a-f]{8}$")
LOCK_FILE = ".index.lock"
V1_ENTRIES = ("docs.jsonl", "bm25", "dense")


def new_version_name(generation: int) -> str:
    return f"v{generation:06d}-{secrets.token_hex(4)}"


def is_version_name(name: str) -> bool:
    return VERSION_DIR.match(name) is not None


@contextmanager
def save_lock(folder: Path) -> Iterator[None]:
    """One save at a time per index folder (blocks until an earlier save in another process ends)."""
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def sweep_versions(folder: Path, keep: set[str]) -> list[str]:
    """Remove the version folders of ``folder`` not in ``keep``; returns their names."""
    removed = []
    for entry in sorted(folder.iterdir()):
        if entry.name not in keep and is_version_name(entry.name) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def remove_v1_files(folder: Path) -> None:
    """Drop a version-1 index's top-level files once a version folder has replaced them."""
    for name in V1_ENTRIES:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink(missing_ok=True)


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (and ``root`` itself), so a rename after it is safe."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)
