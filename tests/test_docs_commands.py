"""Every command the README and docs/ show exists: its ``--help`` exits 0.

The commands are read out of the Markdown files themselves (``python -m MODULE [SUBCOMMAND]``,
``python run_experiments.py [SUBCOMMAND]``, ``liquid SUB [SUBCOMMAND]``, ``python bench/X.py``),
so a renamed command or module that a guide still names fails here. Each one runs in process,
as ``python -m`` would run it (``runpy``), to keep this in the fast tier.
"""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
NOT_OURS = {"pytest", "pip", "venv", "mlflow", "ipykernel", "http.server"}

_PATTERN = re.compile(
    r"(?:python3? -m (?P<module>[A-Za-z_][\w.]*)|python3? (?P<script>run_experiments\.py|bench/\w+\.py)"
    r"|(?<![\w/-])(?P<liquid>liquid)(?= ))"
    r"(?P<rest>(?: [^\s`|]+)*)"
)
_WORD = re.compile(r"^[a-z][a-z-]*$")


def documented_commands() -> list[tuple[str, str, tuple[str, ...]]]:
    found: set[tuple[str, str, tuple[str, ...]]] = set()
    for doc in DOCS:
        for match in _PATTERN.finditer(doc.read_text(encoding="utf-8")):
            kind = "module" if match["module"] else "script" if match["script"] else "liquid"
            target = match["module"] or match["script"] or "liquid"
            if kind == "module" and target.split(".")[0] in NOT_OURS:
                continue
            words = []  # leading sub-command words (the rest are arguments and options)
            for token in match["rest"].split():
                if not _WORD.match(token) or len(words) == (2 if kind == "liquid" else 1):
                    break
                words.append(token)
            found.add((kind, target, tuple(words)))
    return sorted(found)


def _run(kind: str, target: str, args: list[str], monkeypatch) -> int:
    if kind == "liquid":
        from liquid_shared.cli import main

        call = lambda: main(args)  # noqa: E731
    elif kind == "script":
        monkeypatch.syspath_prepend(str(REPO / Path(target).parent))
        monkeypatch.setattr(sys, "argv", [target, *args])
        call = lambda: runpy.run_path(str(REPO / target), run_name="__main__")  # noqa: E731
    else:
        monkeypatch.setattr(sys, "argv", [target, *args])
        call = lambda: runpy.run_module(target, run_name="__main__", alter_sys=True)  # noqa: E731
    try:
        call()
    except SystemExit as exc:
        return 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    return 0


COMMANDS = documented_commands()


def test_the_docs_name_commands():
    kinds = {kind for kind, _, _ in COMMANDS}
    assert {"module", "script", "liquid"} <= kinds, COMMANDS


@pytest.mark.parametrize(("kind", "target", "words"), COMMANDS, ids=[" ".join([t, *w]) for _, t, w in COMMANDS])
def test_documented_command_help_exits_0(kind, target, words, monkeypatch, capsys):
    code = _run(kind, target, [*words, "--help"], monkeypatch)
    out = capsys.readouterr()
    assert code == 0, f"`{target} {' '.join(words)} --help` exited {code}: {out.err[-800:] or out.out[-800:]}"
    assert "usage" in (out.out + out.err).lower()
