"""Kill-anywhere soak: SIGKILL the ETL at 20 seeded random instants, resume, compare bytes.

A fork server (``soak_server``) imports the ETL once; every run is a forked child (the real
runner, shards, merge and FAISS index; the scripted ``FunctionModel`` as the LLM and the real
MiniLM embedder). First one uninterrupted reference run gives the timeline (phase markers:
start, each document, merge, index, end). Then, 20 times, a fresh run folder: a run is SIGKILLed
at a seeded random instant inside one phase of the reference timeline (phases taken in turn:
loading up to the first document, each document's stages and shard write, the merge, the index
and report), timed from that phase's marker in the killed run, and a second run resumes it.
(A warm-up run comes first, so the reference timeline is not the one with cold caches.)
Every resumed folder's top-level outputs must equal the reference byte for byte, with no
temporary left behind. The test prints the phases hit and the time overhead of resuming.
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
from etl_helpers import REPO

pytestmark = pytest.mark.slow

SEED = 15
KILLS = 20
COMPARED = ("chunks.jsonl", "metadata.jsonl", "summaries.jsonl", "qa_pairs.jsonl", "validation.jsonl", "ft/train.jsonl",
            "ft/samples.jsonl", "ft/train_alpaca.jsonl", "index/chunks.faiss", "index/id_map.json", "index/metadata.jsonl",
            "taxonomy.json", "manifest.json")


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

    def start(self, input_dir: Path, out: Path, log: Path) -> int:
        return self._ask(op="run", input=str(input_dir), output=str(out), log=str(log))["pid"]

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


def _phase_at(marks: list[tuple[float, str]], instant: float) -> str:
    """Name of the phase a kill at ``instant`` (monotonic) interrupted."""
    names = {"start": "load/stages", "doc": "stages/shard write", "merge": "merge", "index": "index/report", "end": "finished"}
    before = [phase for t, phase in marks if t <= instant]
    if not before:
        return "start-up"
    return names[before[-1]]


def test_kill_anywhere_soak(tmp_path: Path):
    docs = tmp_path / "docs"
    _corpus(docs)
    server = ForkServer(tmp_path)
    try:
        # a warm-up run first (file caches, first loads), so the reference timeline is a typical run's
        assert server.wait(server.start(docs, tmp_path / "warmup", tmp_path / "warmup.log")) == 0
        shutil.rmtree(tmp_path / "warmup")
        reference, ref_log = tmp_path / "reference", tmp_path / "reference.log"
        t0 = time.monotonic()
        assert server.wait(server.start(docs, reference, ref_log)) == 0
        uninterrupted = time.monotonic() - t0
        marks = _marks(ref_log)
        # the reference's phases: start -> each document -> merge -> index -> end; a kill is aimed
        # at a seeded random instant inside one phase (cycling through them, so each is hit), timed
        # from that phase's marker in the killed run itself, so a slower or faster run is still hit
        # in the phase aimed at
        segments = [(i, marks[i + 1][0] - marks[i][0]) for i in range(len(marks) - 2)]  # not 'end'
        rng = random.Random(SEED)
        aims = [(segments[k % len(segments)][0], rng.random()) for k in range(KILLS)]
        rng.shuffle(aims)
        hit: dict[str, int] = {}
        spent = []
        for i, (segment, fraction) in enumerate(aims):
            out, log = tmp_path / f"run{i}", tmp_path / f"run{i}.log"
            t_start = time.monotonic()
            pid = server.start(docs, out, log)
            deadline = time.monotonic() + 600
            while len(_marks(log)) <= segment:  # wait for the phase's first marker in this run
                if time.monotonic() > deadline or (_marks(log) and _marks(log)[-1][1] == "end"):
                    pytest.fail(f"run {i} never reached phase {segment}: {_marks(log)}")
                time.sleep(0.002)
            began = _marks(log)[segment][0]
            time.sleep(max(0.0, began + fraction * dict(segments)[segment] - time.monotonic()))
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            status = server.wait(pid)
            phase = _phase_at(_marks(log), killed_at) if status == -signal.SIGKILL else "finished"
            hit[phase] = hit.get(phase, 0) + 1
            assert server.wait(server.start(docs, out, tmp_path / f"resume{i}.log")) == 0, f"resume {i} failed"
            spent.append(time.monotonic() - t_start)
            for name in COMPARED:
                assert (out / name).read_bytes() == (reference / name).read_bytes(), f"kill {i} ({phase}): {name} differs"
            assert not [p for p in (out / "docs").iterdir() if p.name.startswith(".")], f"kill {i}: temporaries left"
            shutil.rmtree(out)
        summary = {
            "kills": KILLS,
            "phases_hit": hit,
            "outputs_identical": True,
            "uninterrupted_s": round(uninterrupted, 3),
            "killed_plus_resume_mean_s": round(sum(spent) / len(spent), 3),
            "resume_overhead": round(sum(spent) / len(spent) / uninterrupted, 3),
        }
        print("SOAK", json.dumps(summary))
        assert sum(hit.values()) == KILLS
        assert hit.get("finished", 0) < KILLS // 2, f"most runs ended before their kill: {hit}"
    finally:
        server.close()
