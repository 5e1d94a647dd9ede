"""Fork server of the kill-anywhere soak (``test_kill_anywhere_soak``): one import, many ETL runs.

Started once by the test; it imports the ETL (the slow part of a start) but runs no model or
tensor code itself, so forking it is safe. Each ``{"op": "run", ...}`` line on stdin forks a
child that runs the ETL on the given folders with the scripted LLM (``ScriptedModels``, a
pydantic-ai ``FunctionModel``) and the real MiniLM embedder, and appends phase markers to a log
file: ``start``, one ``doc`` per finished document, ``merge`` (the data files), ``index`` (the
FAISS files), ``report`` (taxonomy, manifest, report, quality check) and ``end``, each with its
monotonic time. The server answers with the child's pid; ``{"op": "wait", "pid": ...}`` returns
its exit status.

A run may carry ``"kill": {"after_mark": k, "delay_s": d}``: when the child writes its k-th
marker (0-based) it arms a kernel timer (``timer_create`` on ``CLOCK_MONOTONIC``) that sends
SIGKILL to the child ``d`` seconds later. The kernel delivers it at that instant whatever the
child is doing; no Python code of the child runs for it (a thread would need the GIL and a
poller in the test would add its own lag, and both miss phases a few milliseconds long).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import faiss  # noqa: E402,F401
import sentence_transformers  # noqa: E402,F401
from etl_helpers import ScriptedModels  # noqa: E402

import etl_pipeline.merge as merge  # noqa: E402
import etl_pipeline.run_index  # noqa: E402,F401 - imported before forking, so children start fast
import etl_pipeline.runner as runner  # noqa: E402
from etl_pipeline.graph import Events  # noqa: E402

CLOCK_MONOTONIC = 1
SIGEV_SIGNAL = 0


class _SigEvent(ctypes.Structure):  # struct sigevent (64 bytes on Linux)
    _fields_ = [("value", ctypes.c_void_p), ("signo", ctypes.c_int), ("notify", ctypes.c_int), ("pad", ctypes.c_int * 12)]


class _TimeSpec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("interval", _TimeSpec), ("value", _TimeSpec)]


def arm_sigkill(delay_s: float) -> None:
    """Have the kernel SIGKILL this process ``delay_s`` seconds from now (a one-shot POSIX timer)."""
    libc = ctypes.CDLL(None, use_errno=True)
    timer = ctypes.c_void_p()
    event = _SigEvent(None, signal.SIGKILL, SIGEV_SIGNAL)
    if libc.timer_create(CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer)) != 0:
        raise OSError(ctypes.get_errno(), "timer_create failed")
    ns = max(1, int(delay_s * 1e9))  # 0 would disarm the timer
    spec = _ITimerSpec(_TimeSpec(0, 0), _TimeSpec(ns // 1_000_000_000, ns % 1_000_000_000))
    if libc.timer_settime(timer, 0, ctypes.byref(spec), None) != 0:
        raise OSError(ctypes.get_errno(), "timer_settime failed")


def _child(cmd: dict) -> int:
    log = open(cmd["log"], "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the child
    kill = cmd.get("kill")
    written = 0

    def mark(phase: str) -> None:
        nonlocal written
        # one write(2) per line: a kill leaves whole lines, and a line is in the file once it returns
        log.write(f"{time.monotonic():.6f} {phase}\n")
        if kill is not None and written == kill["after_mark"]:
            arm_sigkill(kill["delay_s"])
        written += 1

    class Marks(Events):
        def document_done(self, outcome) -> None:
            mark("doc")

    real_merge, real_index = runner.merge_run, merge.write_run_index

    def merge_run(*args, **kwargs):
        mark("merge")
        return real_merge(*args, **kwargs)

    def write_index(*args, **kwargs):
        mark("index")
        result = real_index(*args, **kwargs)
        mark("report")
        return result

    runner.merge_run, merge.write_run_index = merge_run, write_index
    mark("start")
    config = runner.EtlConfig(input_dir=cmd["input"], output_dir=cmd["output"], concurrency=4, docs_in_flight=1)
    result = runner.run(config, model_provider=ScriptedModels(), events=Marks(), track=False)
    mark("end")
    return result.exit_code


def main() -> None:
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "run":
            pid = os.fork()
            if pid == 0:
                code = 99
                try:
                    sys.stdin.close()
                    code = _child(cmd)
                finally:
                    os._exit(code)
            print(json.dumps({"pid": pid}), flush=True)
        elif cmd["op"] == "wait":
            _, status = os.waitpid(cmd["pid"], 0)
            print(json.dumps({"exit": os.waitstatus_to_exitcode(status)}), flush=True)
        elif cmd["op"] == "quit":
            return


if __name__ == "__main__":
    main()
