"""Tests that need a CUDA device; each module skips itself where there is none (CI has none).

Run them on a GPU machine with ``python3 -m pytest tests/gpu`` (``benchmarks/device/run.sh``
does, before the GPU benchmark). They use SQLite only: a GPU machine may have no PostgreSQL.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.e2e.conftest import start_worker  # noqa: F401  (a fixture of these tests too)

# The training-core tests' helpers, a plain module beside them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "training"))
