"""``liquid_shared.atomic``: a target is the old version or the complete new one, never half."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from liquid_shared.atomic import atomic_dir, atomic_file, atomic_path, write_json_atomic


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
