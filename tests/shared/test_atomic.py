"""``liquid_shared.atomic``: a target is the old version or the complete new one, never half."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from liquid_shared.atomic import (
    atomic_dir,
    atomic_file,
    atomic_path,
    remove_temporaries,
    write_json_atomic,
)

REPO = Path(__file__).resolve().parents[2]

_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from liquid_shared.atomic import atomic_dir, atomic_file
folder = Path(sys.argv[1])
with atomic_file(folder / "data.jsonl", "w") as fh, atomic_dir(folder / "shard") as tmp:
    fh.write("half a line")
    fh.flush()
    (tmp / "part.txt").write_text("half a folder")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path):
    target = tmp_path / "data.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_file(target, "w") as fh:
        fh.write('{"v": 2, "half')
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]


def test_atomic_path_replaces_only_on_success(tmp_path: Path):
    target = tmp_path / "index.bin"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
        assert not target.exists()
    assert target.read_bytes() == b"new"
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise ValueError
    assert target.read_bytes() == b"new" and sorted(tmp_path.iterdir()) == [target]


def test_atomic_dir_swaps_a_whole_folder(tmp_path: Path):
    target = tmp_path / "shard"
    with atomic_dir(target, prefix=".tmp-shard") as tmp:
        (tmp / "a.txt").write_text("one")
    with pytest.raises(OSError), atomic_dir(target, prefix=".tmp-shard") as tmp:
        (tmp / "a.txt").write_text("two")
        raise OSError("disk full")
    assert (target / "a.txt").read_text() == "one"
    with atomic_dir(target, prefix=".tmp-shard") as tmp:
        (tmp / "b.txt").write_text("three")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard"]


def test_only_text_or_binary_whole_file_modes(tmp_path: Path):
    with pytest.raises(ValueError, match="mode"), atomic_file(tmp_path / "x", "a"):
        pass


def test_remove_temporaries_deletes_what_a_killed_writer_left_and_nothing_else(tmp_path: Path):
    write_json_atomic(tmp_path / "data.jsonl", {"v": 1})
    (tmp_path / ".etl.lock").write_text("")  # dot-named, but not a temporary
    (tmp_path / "notes.tmp").write_text("a user's file")
    (tmp_path / "sub").mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "liquid-shared-core"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(tmp_path)], env=env, timeout=60)
    assert done.returncode == -signal.SIGKILL
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != ".etl.lock")
    assert len(left) == 2, left  # the file's and the folder's temporaries, under this module's names
    (tmp_path / "sub" / left[0]).write_text("below the folder: not swept")
    assert remove_temporaries(tmp_path) == left
    assert sorted(p.name for p in tmp_path.iterdir()) == [".etl.lock", "data.jsonl", "notes.tmp", "sub"]
    assert json.loads((tmp_path / "data.jsonl").read_text()) == {"v": 1}
    assert remove_temporaries(tmp_path) == [] and remove_temporaries(tmp_path / "absent") == []
