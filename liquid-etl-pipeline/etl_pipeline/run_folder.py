"""Guards of a run folder: one run at a time, and one input folder per output folder.

* ``hold_output_lock(out)``: an exclusive ``fcntl.flock`` on ``<out>/.etl.lock`` for the whole
  run. A second run on the same folder stops at once with a message naming the holder (pid,
  host, start time, written into the lock file). The kernel drops a flock when its process dies,
  so a SIGKILLed run never leaves a stale lock: the lock file may remain, but nothing holds it
  and the next run takes it. (On NFS, flock is not reliable across hosts: keep run folders on
  local disks.) The lock is re-entrant inside one process.
* ``check_input_folder(out, input_dir, force)``: ``<out>/input.json`` records the input folder
  the run folder was made for; another input folder is refused unless ``force`` (which then
  replaces the folder's documents: shards of sources not in the new input are removed).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from liquid_shared.atomic import write_json_atomic

LOCK_NAME = ".etl.lock"
INPUT_RECORD = "input.json"


class RunFolderError(RuntimeError):
    """The run folder cannot be used by this run (held by another run, or made for other input)."""


_held: dict[Path, int] = {}
_held_guard = threading.Lock()


@contextmanager
def hold_output_lock(out: Path) -> Iterator[None]:
    """Hold the run folder's lock for the ``with`` body; ``RunFolderError`` if another run has it."""
    out = Path(out).resolve()
    with _held_guard:
        if out in _held:  # this process holds it already
            _held[out] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                _held[out] -= 1
        return
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
            raise RunFolderError(
                f"output folder {out} is in use by another ETL run ({holder}); wait for it to end or choose another --output"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode(), 0)
        with _held_guard:
            _held[out] = 1
        try:
            yield
        finally:
            with _held_guard:
                _held.pop(out, None)
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def recorded_input_folder(out: Path) -> str | None:
    """The input folder a run folder was made for (``input.json``, else an older run's manifest)."""
    for name in (INPUT_RECORD, "manifest.json"):
        path = Path(out) / name
        if path.is_file():
            try:
                value = json.loads(path.read_text(encoding="utf-8")).get("input_dir")
            except (ValueError, OSError, AttributeError):
                continue
            if isinstance(value, str):
                return value
    return None


def check_input_folder(out: Path, input_dir: Path, *, force: bool) -> str | None:
    """Refuse a run folder made for another input folder (unless ``force``); record this one.

    Returns the previous input folder when ``force`` replaced it, else ``None``.
    """
    previous = recorded_input_folder(out)
    current = str(Path(input_dir).resolve())
    replaced = None
    if previous is not None and previous != current:
        if not force:
            raise RunFolderError(
                f"output folder {out} holds a run of input folder {previous}, not {current}; choose another "
                "--output, or pass --force to replace its documents with this folder's"
            )
        replaced = previous
    if previous != current or not (Path(out) / INPUT_RECORD).is_file():
        write_json_atomic(Path(out) / INPUT_RECORD, {"input_dir": current})
    return replaced
