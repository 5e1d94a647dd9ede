"""LVM tests: the helpers in ``lvm_testkit`` are importable from the test modules."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
