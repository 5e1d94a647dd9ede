"""Fork server of the kill-anywhere soak (``test_kill_anywhere_soak``): one import, many ETL runs.

Started once by the test; it imports the ETL (the slow part of a start) but runs no model or
tensor code itself, so forking it is safe. Each ``{"op": "run", ...}`` line on stdin forks a
child that runs the ETL on the given folders with the scripted model and appends phase
markers (``start``, ``doc``, ``merge``, ``index``, ``end`` with monotonic times) to a log file;
the server answers with the child's pid. The test SIGKILLs that pid at its chosen instant, then
sends ``{"op": "wait", "pid": ...}`` and gets the exit status back.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import faiss  # noqa: E402,F401
import sentence_transformers  # noqa: E402,F401
from etl_helpers import ScriptedModels  # noqa: E402

import etl_pipeline.faiss_index  # noqa: E402,F401 - imported before forking, so children start fast
import etl_pipeline.merge as merge  # noqa: E402
import etl_pipeline.runner as runner  # noqa: E402
from etl_pipeline.graph import Events  # noqa: E402


def _child(cmd: dict) -> int:
    log = open(cmd["log"], "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the child

    def mark(phase: str) -> None:
        log.write(f"{time.monotonic():.6f} {phase}\n")
        os.fsync(log.fileno())

    class Marks(Events):
        def document_done(self, outcome) -> None:
            mark("doc")

    real_merge, real_index = runner.merge_run, merge.write_faiss_index

    def merge_run(*args, **kwargs):
        mark("merge")
        return real_merge(*args, **kwargs)

    def write_index(*args, **kwargs):
        mark("index")
        return real_index(*args, **kwargs)

    runner.merge_run, merge.write_faiss_index = merge_run, write_index
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
