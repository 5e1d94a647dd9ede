"""Kill-anywhere soak: SIGKILL the ETL at seeded random instants in every phase, resume, compare bytes.

A fork server (``soak_server``) imports the ETL once; every run is a forked child: the real
runner, shards, merge and FAISS index and the real MiniLM embedder, with a *scripted LLM* (the
``ScriptedModels`` ``FunctionModel``: this soak tests bookkeeping, not what a model writes; the
real-model kill test is ``test_e2e_real_model.py``). A warm-up run, then one uninterrupted
reference run, give the timeline: phase markers ``start``, one ``doc`` per document, ``merge``,
``index``, ``report``, ``end``. Then 20 kills, each in a fresh run folder: the aims go through
the segments between markers in turn, the last one (report to end) included, and a kernel timer
armed at that segment's marker in the killed run SIGKILLs it a seeded random fraction of the
segment's shortest duration seen so far (warm-up, reference, every earlier run) later; a second
run resumes the folder.

Asserted: every resumed folder's outputs equal the reference byte for byte; no temporary is left
anywhere in the folder tree (the run root, ``ft/``, ``index/``, ``docs/``: only the lock file is
dot-named); every phase (load/stages, stages/shard write, merge, index, report) is hit at least
once; no counted kill lands after its run finished. A kill whose run finished first (its phase
ran faster than any seen before) is a miss: not counted, aimed again; a phase that none of the 20
kills landed in (a kill can land in a later phase than aimed) gets one more kill aimed at it;
misses and such extra aims together at most ``MAX_MISSES``. The test prints the phases hit, the misses, how many kills left temporaries for the resume to sweep,
and the time overhead of resuming.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from etl_helpers import REPO, RUN_INDEX_FILES, run_file

pytestmark = pytest.mark.slow

SEED = 15
KILLS = 20
MAX_MISSES = 6  # re-aimed kills (a run that finished before its kill, a phase not hit yet) in all
COMPARED = ("chunks.jsonl", "metadata.jsonl", "summaries.jsonl", "qa_pairs.jsonl", "validation.jsonl", "ft/train.jsonl",
            "ft/samples.jsonl", "ft/train_alpaca.jsonl", *RUN_INDEX_FILES,
            "taxonomy.json", "manifest.json")
PHASE = {"start": "load/stages", "doc": "stages/shard write", "merge": "merge", "index": "index", "report": "report",
         "end": "finished"}
"""The phase a kill interrupted, named by the last marker its run wrote."""
PHASES = ("load/stages", "stages/shard write", "merge", "index", "report")


def _corpus(folder: Path) -> None:
    folder.mkdir()
    (folder / "owls.txt").write_text("Owls hunt at night. Their soft feathers make their flight almost silent.", encoding="utf-8")
    (folder / "tides.md").write_text("# Tides\n\nTides rise and fall twice a day because of the Moon.\n", encoding="utf-8")
    (folder / "bees.txt").write_text("Bees dance to tell the hive where flowers are. The dance points at the sun.", encoding="utf-8")
    records = [{"id": "moth", "text": "Moths fly towards lamps at night."}, {"id": "fern", "text": "Ferns spread by spores, not seeds."}]
    (folder / "notes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


class ForkServer:
    def __init__(self, tmp: Path):
        env = {**os.environ}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "liquid-shared-core"), str(REPO / "liquid-etl-pipeline"), env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("soak_server.py"))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tmp,
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def _ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def start(self, input_dir: Path, out: Path, log: Path, kill: dict | None = None) -> int:
        """Fork a run; ``kill``: ``{"after_mark": k, "delay_s": d}`` SIGKILLs it d seconds after its k-th marker."""
        return self._ask(op="run", input=str(input_dir), output=str(out), log=str(log), kill=kill)["pid"]

    def wait(self, pid: int) -> int:
        return self._ask(op="wait", pid=pid)["exit"]

    def close(self) -> None:
        self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _marks(log: Path) -> list[tuple[float, str]]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        t, phase = line.split()
        out.append((float(t), phase))
    return out


def _segments(marks: list[tuple[float, str]]) -> dict[tuple[str, int, str], float]:
    """Duration of each complete segment between two markers, keyed (marker, its ordinal, next marker)."""
    seen: dict[str, int] = {}
    out = {}
    for (t, name), (t_next, name_next) in zip(marks, marks[1:], strict=False):
        out[(name, seen.get(name, 0), name_next)] = t_next - t
        seen[name] = seen.get(name, 0) + 1
    return out


def _temporaries(root: Path) -> list[str]:
    """Every dot-named file or folder anywhere under a run folder, but its lock file."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*") if p.name not in (".etl.lock", ".index.lock"))


def test_kill_anywhere_soak(tmp_path: Path):
    docs = tmp_path / "docs"
    _corpus(docs)
    server = ForkServer(tmp_path)
    shortest: dict[tuple[str, int, str], float] = {}

    def observe(log: Path) -> None:
        for key, seconds in _segments(_marks(log)).items():
            shortest[key] = min(seconds, shortest.get(key, seconds))

    try:
        # a warm-up run first (file caches, first loads), so the reference timeline is a typical run's
        assert server.wait(server.start(docs, tmp_path / "warmup", tmp_path / "warmup.log")) == 0
        observe(tmp_path / "warmup.log")
        shutil.rmtree(tmp_path / "warmup")
        reference, ref_log = tmp_path / "reference", tmp_path / "reference.log"
        t0 = time.monotonic()
        assert server.wait(server.start(docs, reference, ref_log)) == 0
        uninterrupted = time.monotonic() - t0
        observe(ref_log)
        assert _temporaries(reference) == []
        # the reference's segments: start -> each document -> merge -> index -> report -> end; every
        # one is aimed at in turn, the last (report -> end) included
        segments = list(_segments(_marks(ref_log)))
        assert [key[0] for key in segments] == ["start"] + ["doc"] * 5 + ["merge", "index", "report"], segments
        rng = random.Random(SEED)
        queue = [k % len(segments) for k in range(KILLS)]
        rng.shuffle(queue)
        hit = {phase: 0 for phase in PHASES}
        misses: list[str] = []
        left_temporaries: dict[str, int] = {}
        spent = []
        run = extra = 0
        while queue:
            segment = queue.pop(0)
            key = segments[segment]
            out, log = tmp_path / f"run{run}", tmp_path / f"run{run}.log"
            run += 1
            delay = rng.random() * shortest[key]
            t_start = time.monotonic()
            status = server.wait(server.start(docs, out, log, kill={"after_mark": segment, "delay_s": delay}))
            observe(log)
            marks = _marks(log)
            assert status in (0, -signal.SIGKILL), f"run {run - 1} ended with status {status}: {marks}"
            if status == 0 or marks[-1][1] == "end":  # the run finished before its kill: a miss, aimed again
                misses.append(PHASE[key[0]])
                assert len(misses) <= MAX_MISSES, f"too many kills after their run finished: {misses}"
                queue.insert(0, segment)
                shutil.rmtree(out)
                continue
            phase = PHASE[marks[-1][1]]
            hit[phase] += 1
            left = _temporaries(out)
            for path in left:
                where = Path(path).parts[0] if len(Path(path).parts) > 1 else "run root"
                left_temporaries[where] = left_temporaries.get(where, 0) + 1
            resume_log = tmp_path / f"resume{run - 1}.log"
            assert server.wait(server.start(docs, out, resume_log)) == 0, f"resume of run {run - 1} failed"
            observe(resume_log)
            spent.append(time.monotonic() - t_start)
            for name in COMPARED:
                assert run_file(out, name) == run_file(reference, name), f"run {run - 1} ({phase}): {name} differs"
            assert _temporaries(out) == [], f"run {run - 1} ({phase}): temporaries left after the resume"
            shutil.rmtree(out)
            unhit = [p for p in PHASES if hit[p] == 0]
            if not queue and unhit:  # one more kill, aimed at a phase none has landed in yet
                misses.append(f"{unhit[0]} not hit")
                assert len(misses) <= MAX_MISSES, f"phases never hit: {unhit} ({hit})"
                queue.append(next(i for i, k in enumerate(segments) if PHASE[k[0]] == unhit[0]))
                extra += 1
        summary = {
            "llm": "scripted (FunctionModel)",
            "kills": sum(hit.values()),
            "phases_hit": hit,
            "misses_reaimed": misses,
            "temporaries_left_by_kills": left_temporaries,
            "outputs_identical": True,
            "uninterrupted_s": round(uninterrupted, 3),
            "killed_plus_resume_mean_s": round(sum(spent) / len(spent), 3),
            "resume_overhead": round(sum(spent) / len(spent) / uninterrupted, 3),
        }
        print("SOAK", json.dumps(summary))
        assert sum(hit.values()) == KILLS + extra  # each one interrupted its run: none landed after it finished
        assert all(hit[p] >= 1 for p in PHASES), f"a phase was never hit: {hit}"
    finally:
        server.close()
