"""``python -m rag_runtime``: see ``rag_runtime.cli``."""

from rag_runtime.cli import main

main()
